#pragma once
// The matrix kernels of the built-in catalog (matrix.multiply, matrix.transpose, matrix.inverse):
// shape functions, CPU implementations (the gpubridge_samples_cpu algorithms' span forms, reading
// and writing the tensors in place), GPU recipes and
// verification examples.
#include "gpubridge/compute/kernel_catalog.hpp"

namespace gpubridge::compute::detail {

// Adds the matrix kernels to `catalog` (their ids must be free).
Status add_matrix_kernels(KernelCatalog& catalog);

// A matrix dimension from a scalar: a whole number in [1, kMaxElements]. Errors:
// invalid_argument "<kernel>: dimension <name> = <value> ...".
Result<std::size_t> matrix_dimension(std::string_view kernel, std::string_view name, double value);

}  // namespace gpubridge::compute::detail

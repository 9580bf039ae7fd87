// Matrix kernels, row-major. CPU implementations call the sample algorithms
// (include/gpubridge/samples/algorithms.hpp): OpenBLAS GEMM, tiled transpose, LU inverse with
// partial pivoting; GPU recipes live in gpu/matrix_recipes.cpp.
#include "compute/kernels/matrix_kernels.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include "compute/gpu/gpu_recipe.hpp"
#include "gpubridge/samples/algorithms.hpp"

namespace gpubridge::compute::detail {

namespace {

std::string format(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

Error invalid(std::string_view kernel, const std::string& what) {
  return Error(ErrorCode::invalid_argument, std::string(kernel) + ": " + what);
}

// Checks that input `name` holds rows * cols elements.
Status check_count(std::string_view kernel, std::string_view name, std::size_t count, std::string_view rows_name,
                   std::size_t rows, std::string_view cols_name, std::size_t cols) {
  std::size_t product = 0;
  const bool overflow = __builtin_mul_overflow(rows, cols, &product);
  if (overflow || product != count) {
    return invalid(kernel, std::string(name) + " has " + std::to_string(count) + " elements, " + std::string(rows_name) +
                               "*" + std::string(cols_name) + " = " + std::to_string(rows) + "*" +
                               std::to_string(cols) + " = " + (overflow ? std::string("(overflow)") : std::to_string(product)));
  }
  return {};
}

Result<std::size_t> multiply_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "matrix.multiply";
  auto m = matrix_dimension(k, "m", scalars[0]);
  if (!m) return m.error();
  auto inner = matrix_dimension(k, "k", scalars[1]);
  if (!inner) return inner.error();
  auto n = matrix_dimension(k, "n", scalars[2]);
  if (!n) return n.error();
  if (Status s = check_count(k, "a", counts[0], "m", *m, "k", *inner); !s) return s.error();
  if (Status s = check_count(k, "b", counts[1], "k", *inner, "n", *n); !s) return s.error();
  std::size_t out = 0;
  if (__builtin_mul_overflow(*m, *n, &out)) return invalid(k, "m*n overflows");
  return out;
}

Result<std::size_t> transpose_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "matrix.transpose";
  auto m = matrix_dimension(k, "m", scalars[0]);
  if (!m) return m.error();
  auto n = matrix_dimension(k, "n", scalars[1]);
  if (!n) return n.error();
  if (Status s = check_count(k, "a", counts[0], "m", *m, "n", *n); !s) return s.error();
  return counts[0];
}

Result<std::size_t> inverse_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "matrix.inverse";
  auto n = matrix_dimension(k, "n", scalars[0]);
  if (!n) return n.error();
  if (Status s = check_count(k, "a", counts[0], "n", *n, "n", *n); !s) return s.error();
  return counts[0];
}

// Views of the call's input `index` (rows x cols) and of its output: the algorithms read and
// write the tensors in place.
template <typename T>
samples::MatrixView<T> input_matrix(const CpuKernelArgs& a, std::size_t index, std::size_t rows, std::size_t cols) {
  return samples::MatrixView<T>{rows, cols, {static_cast<const T*>(a.inputs[index]), rows * cols}};
}
template <typename T>
std::span<T> output_of(const CpuKernelArgs& a) {
  return {static_cast<T*>(a.output), a.output_count};
}

// The algorithm's status, its error named after the kernel.
Status named(std::string_view kernel, const Status& s) {
  if (s) return s;
  return Error(s.error().code(), std::string(kernel) + ": " + s.error().message());
}

template <typename T>
Status cpu_multiply(const CpuKernelArgs& a) {
  const auto m = static_cast<std::size_t>(a.scalars[0]), k = static_cast<std::size_t>(a.scalars[1]),
             n = static_cast<std::size_t>(a.scalars[2]);
  return named("matrix.multiply",
               samples::matmul(input_matrix<T>(a, 0, m, k), input_matrix<T>(a, 1, k, n), output_of<T>(a)));
}

template <typename T>
Status cpu_transpose(const CpuKernelArgs& a) {
  const auto m = static_cast<std::size_t>(a.scalars[0]), n = static_cast<std::size_t>(a.scalars[1]);
  return named("matrix.transpose", samples::transpose(input_matrix<T>(a, 0, m, n), output_of<T>(a)));
}

Status cpu_inverse(const CpuKernelArgs& a) {
  const auto n = static_cast<std::size_t>(a.scalars[0]);
  return named("matrix.inverse", samples::inverse(input_matrix<double>(a, 0, n, n), output_of<double>(a)));
}

template <Status (*F32)(const CpuKernelArgs&), Status (*F64)(const CpuKernelArgs&)>
CpuKernelFn by_dtype() {
  return [](const CpuKernelArgs& a) { return a.dtype == DType::f32 ? F32(a) : F64(a); };
}

double epsilon(DType dtype) {
  return dtype == DType::f32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
}

// Uniform values in [-1, 1), representable in `dtype`.
std::vector<double> uniform(std::size_t count, DType dtype, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(count);
  for (double& x : v) {
    x = dist(rng);
    if (dtype == DType::f32) x = static_cast<float>(x);
  }
  return v;
}

// Non-square shapes from one size: a (s x s/2+1) times b (s/2+1 x s+2).
KernelExample multiply_example(std::size_t size, DType dtype, std::uint64_t seed) {
  const std::size_t m = size, k = size / 2 + 1, n = size + 2;
  std::mt19937_64 rng(seed ^ 0x6d756c74ULL ^ size);
  KernelExample e;
  e.inputs = {uniform(m * k, dtype, rng), uniform(k * n, dtype, rng)};
  e.scalars = {static_cast<double>(m), static_cast<double>(k), static_cast<double>(n)};
  e.expected.resize(m * n);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      long double acc = 0;
      for (std::size_t q = 0; q < k; ++q) acc += static_cast<long double>(e.inputs[0][i * k + q]) * e.inputs[1][q * n + j];
      e.expected[i * n + j] = static_cast<double>(acc);
    }
  }
  // |a|, |b| < 1: each output sums k products of magnitude < 1.
  e.tolerance = 4 * epsilon(dtype) * static_cast<double>(k + 2);
  return e;
}

// a (s x s+5): rows and columns that are not multiples of the tile.
KernelExample transpose_example(std::size_t size, DType dtype, std::uint64_t seed) {
  const std::size_t m = size, n = size + 5;
  std::mt19937_64 rng(seed ^ 0x7472616eULL ^ size);
  KernelExample e;
  e.inputs = {uniform(m * n, dtype, rng)};
  e.scalars = {static_cast<double>(m), static_cast<double>(n)};
  e.expected.resize(m * n);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) e.expected[j * m + i] = e.inputs[0][i * n + j];
  }
  e.tolerance = 0;  // a permutation: exact
  return e;
}

// A strictly diagonally dominant n x n matrix (margin 1, so ||A^-1||_inf <= 1) and its inverse by
// Gauss-Jordan elimination in long double.
KernelExample inverse_example(std::size_t size, DType dtype, std::uint64_t seed) {
  const std::size_t n = size;
  std::mt19937_64 rng(seed ^ 0x696e7676ULL ^ size);
  KernelExample e;
  std::vector<double> a = uniform(n * n, dtype, rng);
  for (std::size_t i = 0; i < n; ++i) {
    double off = 0;
    for (std::size_t j = 0; j < n; ++j) off += j == i ? 0 : std::abs(a[i * n + j]);
    a[i * n + i] = (a[i * n + i] < 0 ? -1 : 1) * (off + 1.0);
  }
  std::vector<long double> w(a.begin(), a.end()), x(n * n, 0);
  for (std::size_t i = 0; i < n; ++i) x[i * n + i] = 1;
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t p = c;
    for (std::size_t r = c + 1; r < n; ++r) {
      if (std::abs(w[r * n + c]) > std::abs(w[p * n + c])) p = r;
    }
    for (std::size_t j = 0; j < n; ++j) {
      std::swap(w[c * n + j], w[p * n + j]);
      std::swap(x[c * n + j], x[p * n + j]);
    }
    const long double pivot = w[c * n + c];
    for (std::size_t j = 0; j < n; ++j) {
      w[c * n + j] /= pivot;
      x[c * n + j] /= pivot;
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const long double f = w[r * n + c];
      if (f == 0) continue;
      for (std::size_t j = 0; j < n; ++j) {
        w[r * n + j] -= f * w[c * n + j];
        x[r * n + j] -= f * x[c * n + j];
      }
    }
  }
  e.inputs = {std::move(a)};
  e.scalars = {static_cast<double>(n)};
  e.expected.assign(x.begin(), x.end());
  // cond_inf(A) <= 2 * max row sum <= 4n: error ~ n * cond * eps with room to spare.
  e.tolerance = 16 * epsilon(dtype) * static_cast<double>((n + 1) * (n + 1));
  return e;
}

}  // namespace

Result<std::size_t> matrix_dimension(std::string_view kernel, std::string_view name, double value) {
  const std::string what = "dimension " + std::string(name) + " = " + format(value);
  if (!std::isfinite(value)) return invalid(kernel, what + " is not a finite number");
  if (value < 1) return invalid(kernel, what + " must be at least 1");
  if (value != std::floor(value)) return invalid(kernel, what + " is not a whole number");
  if (value > static_cast<double>(kMaxElements)) {
    return invalid(kernel, what + " exceeds the limit of " + std::to_string(kMaxElements));
  }
  return static_cast<std::size_t>(value);
}

Status add_matrix_kernels(KernelCatalog& c) {
  const std::vector<DType> floats{DType::f32, DType::f64};
  const std::vector<std::size_t> sizes{1, 3, 17, 64, 129};
  KernelDef multiply{"matrix.multiply", "out (m x n) = a (m x k) * b (k x n), row-major",
                     {{"a", "b"}, {"m", "k", "n"}, OutputShape::computed, floats, multiply_shape},
                     by_dtype<cpu_multiply<float>, cpu_multiply<double>>(), &kMatrixMultiplyRecipe,
                     multiply_example, sizes};
  KernelDef transpose{"matrix.transpose", "out (n x m) = a (m x n)^T, row-major",
                      {{"a"}, {"m", "n"}, OutputShape::computed, floats, transpose_shape},
                      by_dtype<cpu_transpose<float>, cpu_transpose<double>>(), &kMatrixTransposeRecipe,
                      transpose_example, sizes};
  KernelDef inverse{"matrix.inverse",
                    "out = a^-1 (n x n, row-major) by LU with partial pivoting; singular when a pivot's magnitude "
                    "is <= n * DBL_EPSILON * max|a|",
                    {{"a"}, {"n"}, OutputShape::computed, {DType::f64}, inverse_shape},
                    cpu_inverse, &kMatrixInverseRecipe, inverse_example, sizes};
  for (KernelDef* def : {&multiply, &transpose, &inverse}) {
    if (Status s = c.add(std::move(*def)); !s) return s;
  }
  return {};
}

}  // namespace gpubridge::compute::detail

#pragma once
// Verification of the kernel catalog: every kernel, on every available device of the chosen
// backends, on generated inputs of several sizes, compared with the CPU implementation (and the
// CPU implementation itself with a serial long-double oracle). Calls never fall back: a device
// that cannot run a kernel gives a `skipped` row with the reason. Kernels with their own shapes
// (OutputShape::computed) run the cases of their KernelDef::example generator at
// KernelDef::example_sizes (VerifyOptions::sizes is for element-wise kernels), with the
// example's tolerance; the CPU row compares with the example's own reference when it has one.
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "gpubridge/compute/executor.hpp"

namespace gpubridge::compute {

enum class VerifyStatus { pass, fail, skipped };
std::string_view to_string(VerifyStatus s) noexcept;

struct VerifyRow {
  std::string kernel;
  DType dtype = DType::f32;
  std::string backend;
  std::string device;  // device id and name, or empty when the backend has no device
  std::size_t n = 0;  // the input length, or the example size of a computed kernel
  VerifyStatus status = VerifyStatus::skipped;
  double max_abs_error = 0;
  double tolerance = 0;
  std::string reason;  // why it failed or was skipped
};

struct VerifyOptions {
  std::optional<BackendKind> backend;  // all backends when empty
  std::optional<std::string> kernel;   // all kernels when empty
  std::vector<std::size_t> sizes{1, 3, 255, 256, 257, 1000, 4099, 65536, 1000003};
  unsigned seed = 42;
};

struct VerifyReport {
  std::vector<VerifyRow> rows;
  std::size_t passed() const;
  std::size_t failed() const;
  std::size_t skipped() const;
};

// Errors: not_found for an unknown --kernel id.
Result<VerifyReport> verify_catalog(Executor& executor, const VerifyOptions& options);

}  // namespace gpubridge::compute

#pragma once
// Shared helpers for tests: executors, backend presence, reference values.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gpubridge/compute/executor.hpp"

namespace gpubridge::testing {

// The shared data sets (../shared/data): $GPUBRIDGE_DATA_DIR when set (a machine that runs the
// built tests away from the source tree, e.g. scripts/gpu-check.sh), else the compiled-in path.
inline std::string shared_data_dir(const char* compiled_in) {
  const char* env = std::getenv("GPUBRIDGE_DATA_DIR");
  return env != nullptr && *env != '\0' ? env : compiled_in;
}

inline std::unique_ptr<compute::Executor> make_executor(compute::ExecutorOptions options = {}) {
  auto e = compute::Executor::create(options);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().to_string());
  return e.ok() ? std::move(e).value() : nullptr;
}

// True when GPUBRIDGE_REQUIRE_BACKENDS (comma-separated) names the backend: its absence is then
// a failure rather than a skip (CI installs PoCL, so OpenCL must really run there).
inline bool backend_required(std::string_view name) {
  const char* env = std::getenv("GPUBRIDGE_REQUIRE_BACKENDS");
  if (env == nullptr) return false;
  std::string_view rest(env);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    if (rest.substr(0, comma) == name) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

inline std::string absent_reason(const compute::Executor& e, compute::BackendKind kind) {
  for (const auto& b : e.backends()) {
    if (b.kind == kind) return b.available ? std::string() : (b.reason.empty() ? "no device" : b.reason);
  }
  return "backend not registered";
}

inline std::vector<float> random_f32(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<double> random_f64(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(-1., 1.);
  std::vector<double> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace gpubridge::testing

// Skips the test (or fails it when the backend is required) when `kind` has no device.
// Skips the test with `reason` (a part of the backend is missing, e.g. cuBLAS or NVML), or fails
// it when GPUBRIDGE_REQUIRE_BACKENDS names the backend: a GPU check must not pass without it.
#define GB_SKIP_UNLESS_REQUIRED(backend_name, reason)                                             \
  do {                                                                                            \
    if (::gpubridge::testing::backend_required(backend_name))                                     \
      FAIL() << "required backend " << (backend_name) << " lacks a part: " << (reason);           \
    GTEST_SKIP() << (reason);                                                                     \
  } while (0)

#define GB_REQUIRE_BACKEND(executor, kind)                                                        \
  do {                                                                                            \
    const std::string gb_reason_ = ::gpubridge::testing::absent_reason(*(executor), (kind));     \
    if (!gb_reason_.empty()) {                                                                    \
      if (::gpubridge::testing::backend_required(::gpubridge::compute::to_string(kind)))          \
        FAIL() << "required backend " << ::gpubridge::compute::to_string(kind) << " is absent: " << gb_reason_; \
      GTEST_SKIP() << "no " << ::gpubridge::compute::to_string(kind) << " device: " << gb_reason_; \
    }                                                                                             \
  } while (0)

#pragma once
// cuBLAS, loaded at run time with dlopen (never linked): a CUDA build runs without it, and
// matrix.multiply on CUDA then fails with failed_precondition saying why. Only the five entry
// points GEMM needs are resolved; their prototypes are declared here, not taken from cublas_v2.h.
//
// Thread-safety: a CublasLibrary is immutable after load(); handles are not thread-safe (cuBLAS
// rule), so each user keeps its own (the CUDA backend: one per lane, used under the lane's lock).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

#include "gpubridge/compute/dtype.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::cuda {

inline constexpr const char* kCublasSoname = "libcublas.so.13";

class CublasLibrary {
 public:
  // The process-wide instance, loaded from kCublasSoname on first use (thread-safe).
  static const CublasLibrary& instance();
  // Loads `soname` now (tests use a missing name to see the failure path).
  static std::unique_ptr<CublasLibrary> load(const char* soname);
  ~CublasLibrary();
  CublasLibrary(const CublasLibrary&) = delete;
  CublasLibrary& operator=(const CublasLibrary&) = delete;

  bool available() const noexcept { return handle_ != nullptr; }
  // Why it is not available ("dlopen(libcublas.so.13): ..."), empty when it is.
  const std::string& unavailable_reason() const noexcept { return reason_; }

  // A cuBLAS handle on the current device. failed_precondition when the library is unavailable.
  Result<void*> create_handle() const;
  void destroy_handle(void* handle) const noexcept;  // errors ignored: nothing to report them to
  // Row-major c (m x n) = a (m x k) * b (k x n) of `dtype` on `stream`, device pointers.
  // failed_precondition: library unavailable or a dimension above INT_MAX; internal: a cuBLAS error.
  Status gemm(void* handle, cudaStream_t stream, DType dtype, std::uint64_t m, std::uint64_t k, std::uint64_t n,
              const void* a, const void* b, void* c) const;

 private:
  CublasLibrary() = default;
  struct Api;
  void* handle_ = nullptr;  // dlopen handle
  std::unique_ptr<Api> api_;
  std::string reason_;
};

}  // namespace gpubridge::compute::cuda

#include "compute/cuda/cublas_library.hpp"

#include <dlfcn.h>

#include <climits>
#include <string>
#include <type_traits>

namespace gpubridge::compute::cuda {

namespace {

// The cuBLAS C ABI used here (cublas_api.h): status 0 is CUBLAS_STATUS_SUCCESS, operation 0 is
// CUBLAS_OP_N, a handle is an opaque pointer.
using CublasStatus = int;
using CublasHandle = void*;
constexpr int kOpN = 0;
using CreateFn = CublasStatus (*)(CublasHandle*);
using DestroyFn = CublasStatus (*)(CublasHandle);
using SetStreamFn = CublasStatus (*)(CublasHandle, cudaStream_t);
using SgemmFn = CublasStatus (*)(CublasHandle, int, int, int, int, int, const float*, const float*, int, const float*,
                                 int, const float*, float*, int);
using DgemmFn = CublasStatus (*)(CublasHandle, int, int, int, int, int, const double*, const double*, int,
                                 const double*, int, const double*, double*, int);

// cuBLAS statuses (cublas_api.h): 1 NOT_INITIALIZED (no usable device or driver), 3 ALLOC_FAILED.
Error cublas_error(CublasStatus s, const char* what) {
  const ErrorCode code = s == 3 ? ErrorCode::resource_exhausted : s == 1 ? ErrorCode::unavailable : ErrorCode::internal;
  return Error(code, std::string(what) + " failed with cuBLAS status " + std::to_string(s));
}

}  // namespace

struct CublasLibrary::Api {
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn set_stream = nullptr;
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
};

std::unique_ptr<CublasLibrary> CublasLibrary::load(const char* soname) {
  std::unique_ptr<CublasLibrary> lib(new CublasLibrary());
  void* h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* why = dlerror();
    lib->reason_ = std::string("cuBLAS is not available: dlopen(") + soname + "): " + (why ? why : "unknown error");
    return lib;
  }
  auto api = std::make_unique<Api>();
  std::string missing;
  const auto resolve = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
    if (fn == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(name);
  };
  resolve(api->create, "cublasCreate_v2");
  resolve(api->destroy, "cublasDestroy_v2");
  resolve(api->set_stream, "cublasSetStream_v2");
  resolve(api->sgemm, "cublasSgemm_v2");
  resolve(api->dgemm, "cublasDgemm_v2");
  if (!missing.empty()) {
    dlclose(h);
    lib->reason_ = std::string("cuBLAS is not available: ") + soname + " lacks " + missing;
    return lib;
  }
  lib->handle_ = h;
  lib->api_ = std::move(api);
  return lib;
}

const CublasLibrary& CublasLibrary::instance() {
  // Never destroyed: a backend owned by a static object destroys its handles at exit, possibly
  // after function-local statics constructed later than it are gone.
  static const CublasLibrary* const lib = load(kCublasSoname).release();
  return *lib;
}

CublasLibrary::~CublasLibrary() {
  if (handle_ != nullptr) dlclose(handle_);
}

Result<void*> CublasLibrary::create_handle() const {
  if (!available()) return Error(ErrorCode::failed_precondition, reason_);
  CublasHandle h = nullptr;
  if (CublasStatus s = api_->create(&h); s != 0) return cublas_error(s, "cublasCreate_v2");
  return h;
}

void CublasLibrary::destroy_handle(void* handle) const noexcept {
  if (available() && handle != nullptr) api_->destroy(handle);
}

Status CublasLibrary::gemm(void* handle, cudaStream_t stream, DType dtype, std::uint64_t m, std::uint64_t k,
                           std::uint64_t n, const void* a, const void* b, void* c) const {
  if (!available()) return Error(ErrorCode::failed_precondition, reason_);
  if (m > INT_MAX || k > INT_MAX || n > INT_MAX) {
    return Error(ErrorCode::failed_precondition, "cuBLAS GEMM takes dimensions up to INT_MAX, got m=" +
                                                     std::to_string(m) + " k=" + std::to_string(k) +
                                                     " n=" + std::to_string(n));
  }
  if (CublasStatus s = api_->set_stream(handle, stream); s != 0) return cublas_error(s, "cublasSetStream_v2");
  const int im = static_cast<int>(m), ik = static_cast<int>(k), in = static_cast<int>(n);
  // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS sees b as an n x k matrix (ld n),
  // a as k x m (ld k) and writes c as n x m (ld n).
  CublasStatus s = 0;
  if (dtype == DType::f32) {
    const float one = 1, zero = 0;
    s = api_->sgemm(handle, kOpN, kOpN, in, im, ik, &one, static_cast<const float*>(b), in,
                    static_cast<const float*>(a), ik, &zero, static_cast<float*>(c), in);
  } else {
    const double one = 1, zero = 0;
    s = api_->dgemm(handle, kOpN, kOpN, in, im, ik, &one, static_cast<const double*>(b), in,
                    static_cast<const double*>(a), ik, &zero, static_cast<double*>(c), in);
  }
  if (s != 0) return cublas_error(s, dtype == DType::f32 ? "cublasSgemm_v2" : "cublasDgemm_v2");
  return {};
}

}  // namespace gpubridge::compute::cuda

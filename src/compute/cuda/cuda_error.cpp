#include "compute/cuda/cuda_error.hpp"

namespace gpubridge::compute::cuda {

std::string describe(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + std::to_string(static_cast<int>(e)) + "): " +
         cudaGetErrorString(e);
}

Error to_error(cudaError_t e, std::string_view what) {
  ErrorCode code = ErrorCode::internal;
  switch (e) {
    case cudaErrorMemoryAllocation:
      code = ErrorCode::resource_exhausted;
      break;
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorStubLibrary:
    case cudaErrorDevicesUnavailable:
      code = ErrorCode::unavailable;
      break;
    default:
      break;
  }
  return Error(code, std::string(what) + ": " + describe(e));
}

Error to_error(nvrtcResult r, std::string_view what) {
  return Error(ErrorCode::internal, std::string(what) + ": " + nvrtcGetErrorString(r) + " (" +
                                        std::to_string(static_cast<int>(r)) + ")");
}

}  // namespace gpubridge::compute::cuda

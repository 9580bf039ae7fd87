#pragma once
// The one place that turns CUDA runtime and NVRTC status codes into gpubridge::Error.
#include <cuda_runtime_api.h>
#include <nvrtc.h>

#include <string>
#include <string_view>

#include "gpubridge/core/error.hpp"

namespace gpubridge::compute::cuda {

// "cudaErrorMemoryAllocation (2): out of memory"
std::string describe(cudaError_t e);
// Code mapping: allocation failures -> resource_exhausted; no driver / no device / stub
// library -> unavailable; everything else -> internal.
Error to_error(cudaError_t e, std::string_view what);
Error to_error(nvrtcResult r, std::string_view what);

}  // namespace gpubridge::compute::cuda

// Evaluates a CUDA runtime call; on failure returns its Error from the enclosing function.
#define GB_CUDA_TRY(expr)                                                         \
  do {                                                                            \
    const cudaError_t gb_cuda_status_ = (expr);                                   \
    if (gb_cuda_status_ != cudaSuccess)                                           \
      return ::gpubridge::compute::cuda::to_error(gb_cuda_status_, #expr);        \
  } while (0)

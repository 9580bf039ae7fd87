#pragma once
// Compiles the portable kernel source with NVRTC for one device architecture and loads it with
// cudaLibraryLoadData (no driver API). Compiled images are cached on disk under
// $GPUBRIDGE_CACHE_DIR (default $XDG_CACHE_HOME/gpubridge or ~/.cache/gpubridge), keyed by a
// hash of source, options and NVRTC version; a corrupt or unreadable cache entry is recompiled.
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include <string_view>

#include "gpubridge/compute/dtype.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::cuda {

// Compiles `source` for one dtype to a cubin ("sm_90") or PTX ("compute_90") image. Needs no
// driver, so it also runs on build machines without a GPU.
Result<std::vector<char>> compile_portable(std::string_view source, DType dtype, const std::string& target);

// compile_portable() through the disk cache: the image an earlier compile of the same source,
// dtype, target and NVRTC version stored (from_cache), else compiled now and stored (best
// effort). `recompile` skips the lookup (for an entry that failed to load). PTX is NUL-terminated.
struct CachedImage {
  std::vector<char> image;
  bool from_cache = false;
};
Result<CachedImage> cached_image(std::string_view source, DType dtype, const std::string& target,
                                 bool recompile = false);

// Loads a compiled image (a cubin, or NUL-terminated PTX) into `device`'s context with every kernel
// loaded now rather than at its first launch, with the device's persistent kernels stepped aside
// (see device_idle.hpp). Unload with cudaLibraryUnload, likewise through DeviceIdle::run.
Result<cudaLibrary_t> load_library(int device, const std::vector<char>& image);

// A loaded program (load_library). Thread-safe.
class NvrtcProgram {
 public:
  // For the CUDA device `device`; compute_capability: major * 10 + minor (90 for sm_90).
  static Result<std::shared_ptr<NvrtcProgram>> build(std::string_view source, DType dtype, int device,
                                                     int compute_capability);
  NvrtcProgram(const NvrtcProgram&) = delete;
  NvrtcProgram& operator=(const NvrtcProgram&) = delete;
  ~NvrtcProgram();

  // not_found when the entry point does not exist.
  Result<cudaKernel_t> kernel(const std::string& entry);
  const std::string& target() const { return target_; }  // "sm_90" (cubin) or "compute_89" (PTX, JIT)
  bool from_disk_cache() const { return from_cache_; }
  int device() const { return device_; }

 private:
  NvrtcProgram(cudaLibrary_t lib, int device, std::string target, bool from_cache)
      : library_(lib), device_(device), target_(std::move(target)), from_cache_(from_cache) {}
  std::mutex mutex_;  // guards kernels_
  cudaLibrary_t library_ = nullptr;
  int device_ = 0;
  std::string target_;
  bool from_cache_ = false;
  std::map<std::string, cudaKernel_t, std::less<>> kernels_;
};

}  // namespace gpubridge::compute::cuda

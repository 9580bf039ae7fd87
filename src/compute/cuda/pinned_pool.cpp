#include "compute/cuda/pinned_pool.hpp"

#include <bit>

#include <cuda_runtime_api.h>

#include "compute/cuda/cuda_error.hpp"
#include "compute/cuda/device_idle.hpp"

namespace gpubridge::compute::cuda {

PinnedPool::~PinnedPool() {
  // Errors freeing at teardown are ignored: the process is giving the memory back anyway.
  for (auto& [cap, list] : free_) {
    for (std::byte* p : list) DeviceIdle::run(DeviceIdle::kEveryDevice, [&] { cudaFreeHost(p); });
  }
}

Result<PinnedBuffer> PinnedPool::acquire(std::size_t bytes) {
  const std::size_t cap = std::bit_ceil(std::max<std::size_t>(bytes, 4096));
  {
    std::lock_guard lock(mutex_);
    auto& list = free_[cap];
    if (!list.empty()) {
      std::byte* p = list.back();
      list.pop_back();
      cached_bytes_ -= cap;
      ++stats_.hits;
      stats_.bytes_in_use += cap;
      stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
      return PinnedBuffer{p, cap};
    }
  }
  void* p = nullptr;
  // Page-locked allocations and frees may wait for every device to go idle (device_idle.hpp).
  if (cudaError_t e = DeviceIdle::run(DeviceIdle::kEveryDevice, [&] { return cudaHostAlloc(&p, cap, cudaHostAllocPortable); });
      e != cudaSuccess) {
    Error err = to_error(e, "cudaHostAlloc(" + std::to_string(cap) + " bytes)");
    return Error(ErrorCode::resource_exhausted, err.message());
  }
  std::lock_guard lock(mutex_);
  ++stats_.misses;
  stats_.bytes_in_use += cap;
  stats_.bytes_reserved += cap;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  return PinnedBuffer{static_cast<std::byte*>(p), cap};
}

void PinnedPool::release(PinnedBuffer buffer) {
  if (buffer.data == nullptr) return;
  {
    std::lock_guard lock(mutex_);
    stats_.bytes_in_use -= buffer.capacity;
    if (cached_bytes_ + buffer.capacity <= max_cached_) {
      free_[buffer.capacity].push_back(buffer.data);
      cached_bytes_ += buffer.capacity;
      return;
    }
    stats_.bytes_reserved -= buffer.capacity;
  }
  // Over the cache cap; a failure here leaks nothing we could reuse.
  DeviceIdle::run(DeviceIdle::kEveryDevice, [&] { cudaFreeHost(buffer.data); });
}

PoolStats PinnedPool::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace gpubridge::compute::cuda

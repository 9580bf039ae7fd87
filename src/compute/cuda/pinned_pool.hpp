#pragma once
// Page-locked host staging buffers, reused across calls. Buffers come in power-of-two size
// classes; released buffers are cached for the next call up to a cap on cached bytes, beyond
// which they are freed. Thread-safe.
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::cuda {

struct PinnedBuffer {
  std::byte* data = nullptr;
  std::size_t capacity = 0;
};

class PinnedPool {
 public:
  explicit PinnedPool(std::size_t max_cached_bytes) : max_cached_(max_cached_bytes) {}
  ~PinnedPool();
  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;

  // resource_exhausted when the host cannot pin more memory.
  Result<PinnedBuffer> acquire(std::size_t bytes);
  void release(PinnedBuffer buffer);
  PoolStats stats() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::size_t, std::vector<std::byte*>> free_;  // by capacity
  std::size_t max_cached_;
  std::size_t cached_bytes_ = 0;
  PoolStats stats_;
};

}  // namespace gpubridge::compute::cuda

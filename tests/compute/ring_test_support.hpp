#pragma once
// Helpers shared by the ring protocol tests (CPU server, host-compiled CUDA kernel, GPU kernel).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace gpubridge::testing::ring_support {

using Clock = std::chrono::steady_clock;

// A deadline no test reaches.
inline Clock::time_point far_deadline() { return Clock::now() + std::chrono::minutes(5); }

inline std::vector<std::byte> bytes_of(std::uint64_t value) {
  std::vector<std::byte> out(sizeof value);
  std::memcpy(out.data(), &value, sizeof value);
  return out;
}

inline std::uint64_t u64_of(const std::vector<std::byte>& bytes, std::size_t at = 0) {
  std::uint64_t value = 0;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

// What a blocking handler waits on until the test opens it. Thread-safe.
class Gate {
 public:
  void wait() {
    entered_.fetch_add(1);
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return is_open_; });
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      is_open_ = true;
    }
    cv_.notify_all();
  }
  // Returns once `count` handlers wait (or have waited) on the gate.
  void wait_entered(int count = 1) const {
    while (entered_.load() < count) std::this_thread::yield();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool is_open_ = false;
  std::atomic<int> entered_{0};
};

}  // namespace gpubridge::testing::ring_support

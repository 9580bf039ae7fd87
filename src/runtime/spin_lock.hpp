#pragma once
// SpinLock: a mutex for critical sections of a few pointer operations (mailboxes, queue links,
// directory lookups) that many threads take at a high rate. Unlike std::mutex it never parks a
// thread in the kernel: a waiter spins briefly, then yields its time slice to the holder
// (which may have been preempted on a machine with more threads than cores). Contended
// std::mutex unlocks cost a futex wake and the waiter a sleep, which on the grain call path
// cost more than the work they guard.
//
// Use only where the holder never blocks, allocates rarely and runs no user code.
// Meets Lockable (std::lock_guard, std::unique_lock). Thread-safe.
#include <atomic>
#include <thread>

#include "gpubridge/core/cpu_relax.hpp"

namespace gpubridge::runtime::internal {

class SpinLock {
 public:
  void lock() noexcept {
    for (int spins = 0;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < kSpinsBeforeYield) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  static constexpr int kSpinsBeforeYield = 64;
  std::atomic<bool> locked_{false};
};

}  // namespace gpubridge::runtime::internal

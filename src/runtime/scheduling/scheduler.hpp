#pragma once
// Scheduler: a fixed pool of worker threads running WorkItems (activations with work, caller
// resumptions, root tasks). One FIFO queue for the pool, guarded by a mutex; idle workers spin
// briefly before sleeping on a condition variable, so a burst of calls does not pay a futex wake
// per item.
//
// Each worker also has a one-item "run next" slot: an item posted by a worker goes there and runs
// right after the current one, on the same core (a grain call and its answer ping-pong on one
// worker instead of bouncing between caches). The item it displaces goes to the shared queue,
// and after kMaxLocalStreak slot runs in a row the slot is flushed to the queue, so work still
// spreads and nothing starves.
//
// Ownership: post() does not take ownership; the item's owner keeps it alive until its run()
// has been called (and must not post it again before that).
// Thread-safety: post() from any thread. stop() from a non-worker thread: workers run what is
// queued, then exit; it joins them. Items posted after stop() are dropped.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubridge/runtime/messaging/message.hpp"

namespace gpubridge::runtime::internal {

class Scheduler {
 public:
  // `on_thread_start(index)` runs first on each worker (sets its thread-local context).
  Scheduler(std::size_t workers, void (*on_thread_start)(void* arg, std::size_t index), void* arg);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void post(WorkItem* item) noexcept;
  // Like post(), but always to the shared queue, behind the work already there (a slice that
  // used its budget yields with this).
  void post_shared(WorkItem* item) noexcept;
  void stop();
  std::size_t size() const noexcept { return threads_.size(); }
  // True on one of this scheduler's workers.
  bool on_worker() const noexcept;

 private:
  void worker(std::size_t index, void (*on_thread_start)(void*, std::size_t), void* arg);
  WorkItem* pop_locked() noexcept;
  WorkItem* next_item(int& local_streak) noexcept;

  std::mutex mu_;
  std::condition_variable cv_;
  WorkItem* head_ = nullptr;
  WorkItem* tail_ = nullptr;
  std::size_t sleepers_ = 0;
  bool stopping_ = false;
  bool closed_ = false;  // all workers gone: post() drops
  std::atomic<std::size_t> queued_{0};
  std::vector<std::thread> threads_;
};

}  // namespace gpubridge::runtime::internal

#pragma once
// Scheduler: a fixed pool of worker threads running WorkItems (activations with work, caller
// resumptions, root tasks).
//
// Queues. Each worker has
//   - a one-item "run next" slot: an item posted by a worker goes there and runs right after the
//     current one, on the same core (a grain call and its answer ping-pong on one worker instead
//     of bouncing between caches). After kMaxLocalStreak slot runs in a row the slot is flushed
//     to the worker's local queue, so nothing behind it starves;
//   - a local FIFO queue (the item a post() displaces from the slot goes there). Its owner pops
//     from it; idle workers steal from it (from the front), so work still spreads.
// Items posted from outside the pool, and post_shared() items (a slice that used its budget),
// go to one shared FIFO queue. A worker takes from it when its own queues are empty and, for
// fairness, first every kGlobalCheckInterval items.
// Each queue has its own lock (a worker's local lock is normally taken only by its owner), so
// workers do not contend on one mutex/cache line.
//
// Idle workers: a worker with nothing to run "searches" (polls the shared queue and steals) for
// a while, yielding its core now and then to other runnable threads (backend and batcher
// threads that produce the completions it waits for), then sleeps on a condition variable. At
// most about half of the workers search at a time. Posting to a queue wakes a sleeper only
// when no worker is searching (a searcher will find the item) - so a burst of posts does not pay
// a futex wake per item; a searcher that finds work while it is the last searcher wakes a
// sleeper if more work is visible (wakes chain as work grows).
//
// Ownership: post() does not take ownership; the item's owner keeps it alive until its run()
// has been called (and must not post it again before that).
// Thread-safety: post() from any thread. stop() from a non-worker thread: workers run what is
// queued, then exit; it joins them. Items posted after stop() are dropped.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubridge/runtime/messaging/message.hpp"
#include "spin_lock.hpp"

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

  // A worker's local FIFO queue (one cache line of its own).
  struct alignas(64) LocalQueue {
    std::atomic<bool> locked{false};
    std::atomic<std::size_t> size{0};  // written under the lock; read without it (hints)
    WorkItem* head = nullptr;
    WorkItem* tail = nullptr;

    void lock() noexcept;
    bool try_lock() noexcept { return !locked.exchange(true, std::memory_order_acquire); }
    void unlock() noexcept { locked.store(false, std::memory_order_release); }
  };

 private:
  struct WorkerState;
  void worker(std::size_t index, void (*on_thread_start)(void*, std::size_t), void* arg);
  WorkItem* next_item(WorkerState& w) noexcept;
  void push_local(WorkItem* item) noexcept;
  WorkItem* pop_local(LocalQueue& q) noexcept;
  WorkItem* pop_global() noexcept;
  WorkItem* steal(WorkerState& w) noexcept;
  WorkItem* find_work(WorkerState& w) noexcept;  // global queue, then steal
  bool any_work_visible() const noexcept;
  bool try_start_searching() noexcept;
  void stop_searching() noexcept;   // found work; wakes a sleeper if it was the last searcher
  void wake_one_if_needed() noexcept;  // after a push: wake a sleeper when nobody searches

  std::size_t n_ = 0;
  std::unique_ptr<LocalQueue[]> locals_;

  // Sleeping, under mu_.
  alignas(64) std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  // The shared queue, under queue_mu_ (a spin lock: taken for a few pointer operations, often
  // by a backend thread posting completions while workers pop).
  alignas(64) SpinLock queue_mu_;
  WorkItem* head_ = nullptr;
  WorkItem* tail_ = nullptr;
  bool closed_ = false;  // all workers gone: post() drops
  alignas(64) std::atomic<std::size_t> global_size_{0};
  alignas(64) std::atomic<std::size_t> searching_{0};
  alignas(64) std::atomic<std::size_t> sleepers_{0};  // changed under mu_
  std::vector<std::thread> threads_;
};

}  // namespace gpubridge::runtime::internal

#pragma once
// A fixed pool of worker threads. post() never blocks on the work itself; parallel loops run
// by for_chunks() are completed by the calling thread when workers are busy, so a task running
// on the pool may itself call for_chunks() without deadlock.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "gpubridge/compute/kernel_catalog.hpp"

namespace gpubridge::compute {

class ThreadPool final : public CpuParallel {
 public:
  // 0: hardware concurrency. Threads are named "<name>-<i>" (gpubridge/core/thread_name.hpp).
  // Throws std::system_error when a thread cannot start (the ones that did are joined first).
  ThreadPool(unsigned threads, std::string_view name);
  ~ThreadPool() override;                 // runs every queued task, then joins
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }
  void post(std::function<void()> task);

  std::size_t chunk_count(std::size_t n, std::size_t min_chunk) const override;
  // fn must not throw. Returns once every chunk has run, whatever the pool could post.
  void for_chunks(std::size_t n, std::size_t min_chunk,
                  const std::function<void(std::size_t, std::size_t, std::size_t)>& fn) override;

 private:
  void worker_loop();
  void stop_and_join() noexcept;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace gpubridge::compute

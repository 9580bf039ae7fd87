#include "compute/cpu/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>

#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::compute {

ThreadPool::ThreadPool(unsigned threads, std::string_view name) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  try {
    workers_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) {
      workers_.push_back(named_thread(std::string(name) + "-" + std::to_string(i), [this] { worker_loop(); }));
    }
  } catch (...) {
    stop_and_join();  // the threads that did start (joinable threads must not be destroyed)
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_and_join(); }

void ThreadPool::stop_and_join() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

std::size_t ThreadPool::chunk_count(std::size_t n, std::size_t min_chunk) const {
  if (n == 0) return 0;
  min_chunk = std::max<std::size_t>(min_chunk, 1);
  const std::size_t by_size = (n + min_chunk - 1) / min_chunk;
  return std::min<std::size_t>(by_size, workers_.size());
}

void ThreadPool::for_chunks(std::size_t n, std::size_t min_chunk,
                            const std::function<void(std::size_t, std::size_t, std::size_t)>& fn) {
  const std::size_t chunks = chunk_count(n, min_chunk);
  if (chunks == 0) return;
  if (chunks == 1) {
    fn(0, 0, n);
    return;
  }
  // Chunks are claimed through a shared counter by the caller and by helper tasks; the caller
  // keeps claiming until none is left, so progress never depends on a free worker.
  struct Shared {
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> done{0};
    std::mutex m;
    std::condition_variable cv;
  };
  auto shared = std::make_shared<Shared>();
  const std::size_t base = n / chunks;
  const std::size_t extra = n % chunks;
  auto run_chunks = [shared, chunks, base, extra, &fn] {
    for (std::size_t c; (c = shared->next.fetch_add(1)) < chunks;) {
      const std::size_t begin = c * base + std::min(c, extra);
      const std::size_t end = begin + base + (c < extra ? 1 : 0);
      fn(c, begin, end);
      if (shared->done.fetch_add(1) + 1 == chunks) {
        std::lock_guard lock(shared->m);
        shared->cv.notify_all();
      }
    }
  };
  // Helpers may start after this call returned; they then find no chunk left and never touch fn.
  // A helper that cannot be posted (out of memory) leaves its chunks to the others and the caller:
  // this call must not unwind while posted helpers may still be running fn.
  for (std::size_t i = 1; i < chunks; ++i) {
    try {
      post(run_chunks);
    } catch (...) {
      break;
    }
  }
  run_chunks();
  std::unique_lock lock(shared->m);
  shared->cv.wait(lock, [&] { return shared->done.load() == chunks; });
}

}  // namespace gpubridge::compute

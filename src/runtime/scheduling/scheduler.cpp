#include "scheduling/scheduler.hpp"

#include <string>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GPUBRIDGE_CPU_RELAX() _mm_pause()
#else
#define GPUBRIDGE_CPU_RELAX() std::this_thread::yield()
#endif

namespace gpubridge::runtime::internal {

namespace {
thread_local const Scheduler* t_worker_of = nullptr;
thread_local WorkItem* t_run_next = nullptr;  // this worker's "run next" slot
constexpr int kSpinRounds = 4000;             // ~10-40 us of polling before a worker sleeps
constexpr int kMaxLocalStreak = 32;
}  // namespace

Scheduler::Scheduler(std::size_t workers, void (*on_thread_start)(void*, std::size_t), void* arg) {
  threads_.reserve(workers);
  for (std::size_t i = 0; i < workers; ++i) {
    threads_.emplace_back([this, i, on_thread_start, arg] { worker(i, on_thread_start, arg); });
  }
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::post(WorkItem* item) noexcept {
  if (t_worker_of == this) {
    item->next = nullptr;
    item = std::exchange(t_run_next, item);
    if (item == nullptr) return;
  }
  post_shared(item);
}

void Scheduler::post_shared(WorkItem* item) noexcept {
  item->next = nullptr;
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (tail_ != nullptr) {
      tail_->next = item;
    } else {
      head_ = item;
    }
    tail_ = item;
    queued_.fetch_add(1, std::memory_order_relaxed);
    wake = sleepers_ > 0;
  }
  if (wake) cv_.notify_one();
}

WorkItem* Scheduler::pop_locked() noexcept {
  WorkItem* item = head_;
  if (item != nullptr) {
    head_ = item->next;
    if (head_ == nullptr) tail_ = nullptr;
    item->next = nullptr;
    queued_.fetch_sub(1, std::memory_order_relaxed);
  }
  return item;
}

WorkItem* Scheduler::next_item(int& local_streak) noexcept {
  if (t_run_next != nullptr) {
    if (local_streak < kMaxLocalStreak) {
      ++local_streak;
      return std::exchange(t_run_next, nullptr);
    }
    post_shared(std::exchange(t_run_next, nullptr));  // let the other workers have it
  }
  local_streak = 0;
  for (int spin = 0; spin < kSpinRounds && queued_.load(std::memory_order_relaxed) == 0; ++spin) {
    GPUBRIDGE_CPU_RELAX();
  }
  std::unique_lock lock(mu_);
  for (;;) {
    if (WorkItem* item = pop_locked()) return item;
    if (stopping_) return nullptr;
    ++sleepers_;
    cv_.wait(lock);
    --sleepers_;
  }
}

void Scheduler::worker(std::size_t index, void (*on_thread_start)(void*, std::size_t), void* arg) {
  t_worker_of = this;
  if (on_thread_start != nullptr) on_thread_start(arg, index);
  int local_streak = 0;
  while (WorkItem* item = next_item(local_streak)) item->run(item);  // null: stopping, all done
  t_worker_of = nullptr;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard lock(mu_);
  closed_ = true;
  head_ = tail_ = nullptr;  // posted after the last worker left: dropped, owners release them
}

bool Scheduler::on_worker() const noexcept { return t_worker_of == this; }

}  // namespace gpubridge::runtime::internal

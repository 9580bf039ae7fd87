#include "scheduling/scheduler.hpp"

#include <cstdint>
#include <string>
#include <utility>

#include "gpubridge/core/cpu_relax.hpp"
#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::runtime::internal {

namespace {
constexpr int kSearchRounds = 2000;       // polls (each a scan of the queues + a pause) before sleeping
constexpr int kYieldInterval = 32;        // polls between two yields of the core while searching
constexpr int kMaxLocalStreak = 32;       // slot runs in a row before the slot is flushed
constexpr unsigned kGlobalCheckInterval = 61;  // items between forced looks at the shared queue
constexpr std::size_t kMaxSteal = 1;  // items taken from a victim at once (batches measured no better here)
}  // namespace

struct Scheduler::WorkerState {
  std::size_t index = 0;
  WorkItem* run_next = nullptr;  // this worker's "run next" slot
  int local_streak = 0;
  unsigned tick = 0;
  std::uint32_t rng = 0;
};

namespace {
thread_local const Scheduler* t_worker_of = nullptr;
thread_local void* t_state = nullptr;  // this worker's WorkerState
}  // namespace

void Scheduler::LocalQueue::lock() noexcept {
  for (int spins = 0;;) {
    if (!locked.exchange(true, std::memory_order_acquire)) return;
    while (locked.load(std::memory_order_relaxed)) {
      if (++spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // the holder (a thief) may have been preempted
      }
    }
  }
}

Scheduler::Scheduler(std::size_t workers, void (*on_thread_start)(void*, std::size_t), void* arg)
    : n_(workers), locals_(new LocalQueue[workers == 0 ? 1 : workers]) {
  threads_.reserve(workers);
  for (std::size_t i = 0; i < workers; ++i) {
    threads_.push_back(named_thread("gb-worker-" + std::to_string(i),
                                    [this, i, on_thread_start, arg] { worker(i, on_thread_start, arg); }));
  }
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::post(WorkItem* item) noexcept {
  if (t_worker_of == this) {
    auto& w = *static_cast<WorkerState*>(t_state);
    item->next = nullptr;
    item = std::exchange(w.run_next, item);
    if (item != nullptr) push_local(item);
    return;
  }
  post_shared(item);
}

// Other threads (batchers, ring clients, backends) resume work here. The wake-up happens under
// queue_mu_ too: once stop() took queue_mu_ for the last time, no such thread touches the
// scheduler any more, so the runtime may be destroyed right after it stopped even while those
// threads live on. (Lock order queue_mu_ -> mu_; nothing takes them the other way round.)
void Scheduler::post_shared(WorkItem* item) noexcept {
  item->next = nullptr;
  std::lock_guard lock(queue_mu_);
  if (closed_) return;
  if (tail_ != nullptr) {
    tail_->next = item;
  } else {
    head_ = item;
  }
  tail_ = item;
  global_size_.fetch_add(1, std::memory_order_seq_cst);
  wake_one_if_needed();
}

void Scheduler::push_local(WorkItem* item) noexcept {
  auto& w = *static_cast<WorkerState*>(t_state);
  LocalQueue& q = locals_[w.index];
  item->next = nullptr;
  q.lock();
  if (q.tail != nullptr) {
    q.tail->next = item;
  } else {
    q.head = item;
  }
  q.tail = item;
  q.size.fetch_add(1, std::memory_order_seq_cst);  // ordered before the reads in wake_one_if_needed
  q.unlock();
  wake_one_if_needed();
}

void Scheduler::wake_one_if_needed() noexcept {
  // Pairs with the sleeper's sleepers_ increment followed by its look at the queues (both
  // seq_cst): either it sees the item, or this sees it (and nobody searching) and wakes it.
  if (searching_.load(std::memory_order_seq_cst) != 0) return;
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  { std::lock_guard lock(mu_); }  // a sleeper that counted itself is now waiting
  cv_.notify_one();
}

WorkItem* Scheduler::pop_local(LocalQueue& q) noexcept {
  if (q.size.load(std::memory_order_relaxed) == 0) return nullptr;
  q.lock();
  WorkItem* item = q.head;
  if (item != nullptr) {
    q.head = item->next;
    if (q.head == nullptr) q.tail = nullptr;
    item->next = nullptr;
    q.size.store(q.size.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
  q.unlock();
  return item;
}

WorkItem* Scheduler::pop_global() noexcept {
  if (global_size_.load(std::memory_order_relaxed) == 0) return nullptr;
  std::lock_guard lock(queue_mu_);
  WorkItem* item = head_;
  if (item != nullptr) {
    head_ = item->next;
    if (head_ == nullptr) tail_ = nullptr;
    item->next = nullptr;
    global_size_.fetch_sub(1, std::memory_order_relaxed);
  }
  return item;
}

WorkItem* Scheduler::steal(WorkerState& w) noexcept {
  if (n_ < 2) return nullptr;
  w.rng ^= w.rng << 13;
  w.rng ^= w.rng >> 17;
  w.rng ^= w.rng << 5;
  const std::size_t start = w.rng % n_;
  for (std::size_t k = 0; k < n_; ++k) {
    const std::size_t v = (start + k) % n_;
    if (v == w.index) continue;
    LocalQueue& q = locals_[v];
    if (q.size.load(std::memory_order_relaxed) == 0) continue;
    if (!q.try_lock()) continue;
    const std::size_t size = q.size.load(std::memory_order_relaxed);
    std::size_t take = (size + 1) / 2;
    if (take > kMaxSteal) take = kMaxSteal;
    WorkItem* first = q.head;
    WorkItem* last = first;
    for (std::size_t i = 1; i < take && last != nullptr; ++i) last = last->next;
    if (first == nullptr || last == nullptr) {  // cannot happen (size says so); be safe
      q.unlock();
      continue;
    }
    q.head = last->next;
    if (q.head == nullptr) q.tail = nullptr;
    q.size.store(size - take, std::memory_order_relaxed);
    q.unlock();
    last->next = nullptr;
    WorkItem* rest = first->next;
    first->next = nullptr;
    if (rest != nullptr) {  // the rest goes to this worker's queue (empty: it was searching)
      LocalQueue& mine = locals_[w.index];
      mine.lock();
      if (mine.tail != nullptr) {
        mine.tail->next = rest;
      } else {
        mine.head = rest;
      }
      mine.tail = last;
      mine.size.fetch_add(take - 1, std::memory_order_seq_cst);
      mine.unlock();
    }
    return first;
  }
  return nullptr;
}

WorkItem* Scheduler::find_work(WorkerState& w) noexcept {
  if (WorkItem* item = pop_global()) return item;
  return steal(w);
}

bool Scheduler::any_work_visible() const noexcept {
  if (global_size_.load(std::memory_order_seq_cst) != 0) return true;
  for (std::size_t i = 0; i < n_; ++i) {
    if (locals_[i].size.load(std::memory_order_seq_cst) != 0) return true;
  }
  return false;
}

bool Scheduler::try_start_searching() noexcept {
  // At most about half of the workers poll at a time (the rest sleep), so idle workers do not
  // hammer the queues' cache lines.
  const std::size_t s = searching_.load(std::memory_order_relaxed);
  if (2 * s >= n_ && s != 0) return false;
  searching_.fetch_add(1, std::memory_order_seq_cst);
  return true;
}

void Scheduler::stop_searching() noexcept {
  if (searching_.fetch_sub(1, std::memory_order_seq_cst) != 1) return;
  // The last searcher found work: if there is more, wake a sleeper to look for it (posts made
  // while this was searching did not wake anybody).
  if (sleepers_.load(std::memory_order_seq_cst) == 0 || !any_work_visible()) return;
  { std::lock_guard lock(mu_); }
  cv_.notify_one();
}

WorkItem* Scheduler::next_item(WorkerState& w) noexcept {
  if (w.run_next != nullptr) {
    if (w.local_streak < kMaxLocalStreak) {
      ++w.local_streak;
      return std::exchange(w.run_next, nullptr);
    }
    push_local(std::exchange(w.run_next, nullptr));  // behind the rest; others may steal it
  }
  w.local_streak = 0;
  if (++w.tick % kGlobalCheckInterval == 0) {
    if (WorkItem* item = pop_global()) return item;
  }
  if (WorkItem* item = pop_local(locals_[w.index])) return item;
  for (;;) {
    if (WorkItem* item = find_work(w)) return item;
    bool searching = try_start_searching();
    if (searching) {
      for (int round = 0; round < kSearchRounds; ++round) {
        if (WorkItem* item = find_work(w)) {
          stop_searching();
          return item;
        }
        // Every kYieldInterval polls the core goes to any other runnable thread (a backend's
        // or batcher's thread producing the completions this worker waits for): spinning
        // must not starve them when there are more threads than cores.
        if (round % kYieldInterval == kYieldInterval - 1) {
          std::this_thread::yield();
        } else {
          cpu_relax();
        }
      }
    }
    std::unique_lock lock(mu_);
    if (searching) searching_.fetch_sub(1, std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    // Look again after counting as a sleeper (see wake_one_if_needed()).
    if (!any_work_visible()) {
      if (stopping_) {
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        return nullptr;  // stopping, all done
      }
      cv_.wait(lock);
    }
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    lock.unlock();
    cpu_relax();
  }
}

void Scheduler::worker(std::size_t index, void (*on_thread_start)(void*, std::size_t), void* arg) {
  WorkerState w;
  w.index = index;
  w.rng = static_cast<std::uint32_t>(index * 2654435761u + 1u);
  if (w.rng == 0) w.rng = 1;
  t_worker_of = this;
  t_state = &w;
  if (on_thread_start != nullptr) on_thread_start(arg, index);
  while (WorkItem* item = next_item(w)) item->run(item);  // null: stopping, all done
  t_state = nullptr;
  t_worker_of = nullptr;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(queue_mu_);
    if (closed_) return;
  }
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard lock(queue_mu_);
  closed_ = true;
  head_ = tail_ = nullptr;  // posted after the last worker left: dropped, owners release them
  global_size_.store(0, std::memory_order_relaxed);
}

bool Scheduler::on_worker() const noexcept { return t_worker_of == this; }

}  // namespace gpubridge::runtime::internal

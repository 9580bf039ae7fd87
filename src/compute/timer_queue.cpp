#include "compute/timer_queue.hpp"

#include <cstdio>
#include <utility>

#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::compute {

TimerQueue::TimerQueue() : thread_(named_thread("gb-exec-timers", [this] { loop(); })) {}

TimerQueue::~TimerQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  // Tasks not yet due are dropped with the queue.
}

void TimerQueue::schedule(Clock::time_point when, std::function<void()> task) {
  bool earliest = false;
  {
    std::lock_guard lock(mutex_);
    earliest = entries_.empty() || when < entries_.top().when;
    entries_.push(Entry{when, next_seq_++, std::move(task)});
  }
  if (earliest) cv_.notify_one();
}

std::size_t TimerQueue::pending() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

void TimerQueue::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (entries_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const Clock::time_point due = entries_.top().when;
    if (Clock::now() < due) {
      cv_.wait_until(lock, due);
      continue;
    }
    // priority_queue::top() is const: the task is moved out through a const_cast of an entry
    // that is popped right after.
    std::function<void()> task = std::move(const_cast<Entry&>(entries_.top()).task);
    entries_.pop();
    lock.unlock();
    try {
      task();
    } catch (...) {
      std::fputs("gpubridge: a timer task threw; exception ignored\n", stderr);
    }
    task = nullptr;  // captures released outside the lock
    lock.lock();
  }
}

}  // namespace gpubridge::compute

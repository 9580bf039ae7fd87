#include "timers/timer_service.hpp"

#include <algorithm>

#include "activation/activation.hpp"
#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::runtime::internal {

TimerService::TimerService(Clock& clock) : clock_(clock) {
  listener_ = clock_.add_listener([this] {
    { std::lock_guard lock(mu_); }  // the timer thread is waiting or has not read the clock yet
    cv_.notify_all();
  });
  thread_ = named_thread("gb-timers", [this] { loop(); });
}

TimerService::~TimerService() { stop(); }

void TimerService::push_locked(const std::shared_ptr<Timer>& timer, Clock::time_point due) {
  ++timer->generation;
  heap_.push_back(Entry{due, timer->generation, timer});
  std::push_heap(heap_.begin(), heap_.end(), later);
}

void TimerService::arm(const std::shared_ptr<Timer>& timer, Clock::time_point due) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    push_locked(timer, due);
  }
  cv_.notify_all();
}

bool TimerService::cancel(Timer& timer) {
  std::lock_guard lock(mu_);
  timer.cancelled = true;
  ++timer.generation;  // heap entries become stale
  return timer.in_flight;
}

bool TimerService::tick_finished(const std::shared_ptr<Timer>& timer) {
  {
    std::lock_guard lock(mu_);
    timer->in_flight = false;
    if (timer->cancelled || timer->period.count() <= 0 || stopping_) return false;
    push_locked(timer, clock_.now() + timer->period);
  }
  cv_.notify_all();
  return true;
}

void TimerService::pause() {
  std::lock_guard lock(mu_);
  paused_ = true;
}

void TimerService::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  clock_.remove_listener(listener_);
  std::lock_guard lock(mu_);
  heap_.clear();
}

void TimerService::loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (heap_.empty() || paused_) {
      cv_.wait(lock);
      continue;
    }
    const Clock::time_point now = clock_.now();
    if (heap_.front().due > now) {
      cv_.wait_for(lock, heap_.front().due - now);
      continue;
    }
    std::pop_heap(heap_.begin(), heap_.end(), later);
    Entry e = std::move(heap_.back());
    heap_.pop_back();
    Timer& t = *e.timer;
    if (t.cancelled || e.generation != t.generation) continue;  // stale entry
    if (t.job) {
      push_locked(e.timer, now + t.period);
      auto job = e.timer;  // keeps the job alive while unlocked
      lock.unlock();
      job->job();
      lock.lock();
      continue;
    }
    t.in_flight = true;
    t.activation->enqueue_tick(t.tick);
  }
}

}  // namespace gpubridge::runtime::internal

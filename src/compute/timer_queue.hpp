#pragma once
// One thread that runs short tasks at given steady_clock times: deadlines, retry backoffs and
// the delays of injected faults, so that no executor or backend thread ever sleeps for them.
//
// Tasks run on the timer thread, in time order, one at a time, and must be short (they may
// start work on a backend, never wait for it). schedule() is thread-safe and may be called from
// a task. The destructor drops tasks not yet due without running them (their captures are
// destroyed) and joins the thread; owners make sure nothing they need is still scheduled.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace gpubridge::compute {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;

  TimerQueue();
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `task` on the timer thread at `when` (at once if it passed). Throws std::bad_alloc.
  void schedule(Clock::time_point when, std::function<void()> task);
  // Tasks not yet run.
  std::size_t pending() const;

 private:
  struct Entry {
    Clock::time_point when;
    std::uint64_t seq;  // FIFO among equal times
    std::function<void()> task;
  };
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const noexcept {
      return a.when != b.when ? a.when > b.when : a.seq > b.seq;
    }
  };
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, Later> entries_;
  std::uint64_t next_seq_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: started once everything else is set
};

}  // namespace gpubridge::compute

#pragma once
// TimerService: one thread that fires due timers, on the runtime's Clock (a ManualClock moves
// only when the test advances it). A grain timer's tick is not run here: it is queued to the
// timer's activation as a tick message and runs as a turn there. Runtime jobs (periodic idle
// collection) run on the timer thread itself and must be short and non-blocking.
//
// A grain timer has at most one tick in flight: it is re-armed only when the tick's turn ends
// (tick_finished), so ticks never pile up behind a busy activation.
//
// Ownership: shared_ptr<Timer> is held by the activation (until the timer ends) and by the
// heap entries. Cancellation and firing both happen under the service mutex, so a cancelled
// timer never touches its activation again; an activation cancels all its timers before it
// is destroyed. Lock order: service mutex, then an activation's mutex.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubridge/runtime/clock.hpp"
#include "gpubridge/runtime/grain.hpp"
#include "gpubridge/runtime/messaging/message.hpp"

namespace gpubridge::runtime::internal {

class Activation;

struct Timer {
  TimerId id = 0;
  Activation* activation = nullptr;           // grain timers
  std::function<Task<void>()> callback;       // grain timers
  std::function<void()> job;                  // runtime jobs, run on the timer thread
  Clock::duration period{0};                  // 0: one-shot
  Message tick;                               // grain timers: queued to the activation
  // Guarded by the service mutex:
  bool cancelled = false;
  bool in_flight = false;  // tick queued or running
  std::uint64_t generation = 0;
};

class TimerService {
 public:
  explicit TimerService(Clock& clock);
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  void arm(const std::shared_ptr<Timer>& timer, Clock::time_point due);
  // No tick is queued after this returns. True when a tick is in flight (queued or running).
  bool cancel(Timer& timer);
  // The tick's turn ended: re-arms a periodic timer. False when the timer is over (cancelled
  // or one-shot) and its activation should drop it.
  bool tick_finished(const std::shared_ptr<Timer>& timer);
  // Stops firing anything (stop() phase 1); armed timers stay armed but never fire again.
  void pause();
  void stop();  // joins the thread; drops every entry

 private:
  struct Entry {
    Clock::time_point due;
    std::uint64_t generation;
    std::shared_ptr<Timer> timer;
  };
  static bool later(const Entry& a, const Entry& b) { return a.due > b.due; }
  void push_locked(const std::shared_ptr<Timer>& timer, Clock::time_point due);
  void loop();

  Clock& clock_;
  std::uint64_t listener_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> heap_;
  bool paused_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace gpubridge::runtime::internal

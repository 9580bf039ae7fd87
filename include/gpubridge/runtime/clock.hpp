#pragma once
// The runtime's notion of time, injectable so that tests drive timers and idle collection with
// manual time instead of sleeping.
//
// Clock::now() is monotonic. ManualClock only moves when advance() is called; listeners (the
// runtime's timer service) are told so they can fire what became due. All members are
// thread-safe.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace gpubridge::runtime {

class Clock {
 public:
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;

  virtual ~Clock() = default;
  virtual time_point now() const noexcept = 0;
  // now(), possibly a few milliseconds behind and never ahead, cheaper to read: for bookkeeping
  // on every call (when an activation was last active), never for timers.
  virtual time_point now_coarse() const noexcept { return now(); }

  // Registers `fn`, called (on the thread that moved the clock) after the clock jumps forward.
  // Real clocks never jump and ignore listeners. Returns an id for remove_listener.
  virtual std::uint64_t add_listener(std::function<void()> fn);
  virtual void remove_listener(std::uint64_t id);
};

// std::chrono::steady_clock; now_coarse() reads the same clock at the kernel's tick resolution
// (CLOCK_MONOTONIC_COARSE on Linux).
class SteadyClock final : public Clock {
 public:
  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
  time_point now_coarse() const noexcept override;
};

// Manual time for tests: starts at an arbitrary fixed point and moves only by advance().
class ManualClock final : public Clock {
 public:
  ManualClock();
  time_point now() const noexcept override;
  // Moves time forward by `d` (>= 0), then calls every listener.
  void advance(duration d);

  std::uint64_t add_listener(std::function<void()> fn) override;
  void remove_listener(std::uint64_t id) override;

 private:
  std::atomic<std::int64_t> now_ns_;
  std::mutex mu_;  // guards listeners_ and serialises advance()
  std::vector<std::pair<std::uint64_t, std::function<void()>>> listeners_;
  std::uint64_t next_id_ = 1;
};

}  // namespace gpubridge::runtime

#pragma once
// Circuit breakers: stop sending work to a (device, kernel) pair that keeps failing, and probe it
// again after a pause.
//
//   closed    --failure_threshold consecutive failures-->  open
//   open      --open_interval elapsed, next allow()----->  half_open (admits half_open_probes callers)
//   half_open --record_success()----------------------->  closed
//   half_open --record_failure()----------------------->  open (the interval restarts)
//
// Thread-safety: CircuitBreaker is safe to share; allow(), record_success(), record_failure(),
// state() and opened_count() are lock-free (one 64-bit atomic word holds the state and either the
// failure count, the probe count or the time it opened). set_listener() must be called before the
// breaker is shared. BreakerSet is safe to share; get() takes a shared lock (exclusive only to
// create a breaker).
//
// Contract for callers: every allow() that returned true must be followed by exactly one
// record_success() or record_failure(); a half-open breaker whose probes never report stays
// half-open and keeps rejecting.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::resilience {

// The time source of a breaker; empty means std::chrono::steady_clock::now. Injectable, so that
// tests drive the open interval with a manual clock instead of sleeping. Must be callable from several threads at once and never go back.
using BreakerClock = std::function<std::chrono::steady_clock::time_point()>;

struct BreakerOptions {
  std::uint32_t failure_threshold = 5;            // consecutive failures that open the breaker (>= 1)
  std::chrono::milliseconds open_interval{5000};  // time open before a half-open probe (>= 0)
  std::uint32_t half_open_probes = 1;             // callers admitted while half-open (>= 1)
};

// invalid_argument naming the field when an option is out of range.
Status validate(const BreakerOptions& options);

// Numeric values are exported as a gauge (0 closed, 1 half_open, 2 open); do not renumber.
enum class BreakerState : std::uint8_t { closed = 0, half_open = 1, open = 2 };

std::string_view to_string(BreakerState state) noexcept;  // "closed", "half_open", "open"

class CircuitBreaker {
 public:
  // Invoked on every transition, once per transition, by the thread that made it. Transitions
  // made by different threads may reach the listener concurrently; it must be thread-safe and
  // must not call back into this breaker's record_*()/allow().
  using Listener = std::function<void(BreakerState from, BreakerState to)>;

  // Throws ErrorException(invalid_argument) when validate(options) fails.
  explicit CircuitBreaker(BreakerOptions options = {}, BreakerClock clock = {});
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // closed: true. open: false until open_interval has passed since it opened; then the breaker
  // turns half_open and admits this caller. half_open: true for the first half_open_probes
  // callers since it turned half_open, false for the rest.
  bool allow() noexcept;
  // closed: resets the consecutive-failure count. half_open: -> closed. open: ignored (a late
  // result from a call admitted before the breaker opened).
  void record_success() noexcept;
  // closed: counts; reaching failure_threshold -> open. half_open: -> open, the interval restarts.
  // open: ignored.
  void record_failure() noexcept;

  BreakerState state() const noexcept;
  std::uint64_t opened_count() const noexcept;  // times the breaker moved to open
  const BreakerOptions& options() const noexcept { return options_; }

  // Not thread-safe: call before the breaker is shared.
  void set_listener(Listener listener);

 private:
  std::int64_t now_ns() const noexcept;
  bool transition(std::uint64_t& expected, std::uint64_t desired) noexcept;

  BreakerOptions options_;
  BreakerClock clock_;
  std::chrono::steady_clock::time_point epoch_;  // open times are stored relative to this
  Listener listener_;
  // Low 2 bits: BreakerState. Upper 62 bits: consecutive failures (closed), probes admitted
  // (half_open) or nanoseconds since epoch_ when it opened (open).
  std::atomic<std::uint64_t> word_{0};
  std::atomic<std::uint64_t> opened_count_{0};
};

// Breakers keyed by (device id, kernel id), created on first use with one BreakerOptions.
// References returned by get() stay valid for the life of the set.
class BreakerSet {
 public:
  using Listener = std::function<void(std::string_view device, std::string_view kernel,
                                      BreakerState from, BreakerState to)>;
  struct Entry {
    std::string device;
    std::string kernel;
    BreakerState state;
    std::uint64_t opened;  // opened_count()
  };

  // Throws ErrorException(invalid_argument) when validate(options) fails.
  explicit BreakerSet(BreakerOptions options = {}, BreakerClock clock = {});
  BreakerSet(const BreakerSet&) = delete;
  BreakerSet& operator=(const BreakerSet&) = delete;

  CircuitBreaker& get(std::string_view device, std::string_view kernel);
  // Every breaker created so far, ordered by (device, kernel).
  std::vector<Entry> snapshot() const;
  // Call before the set is shared; applies to breakers created before and after the call.
  // Same threading rules as CircuitBreaker::Listener.
  void set_listener(Listener listener);

 private:
  struct Key {
    std::string device;
    std::string kernel;
  };
  struct KeyView {
    std::string_view device;
    std::string_view kernel;
  };
  struct KeyLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const noexcept {
      const std::string_view ad = a.device, bd = b.device;
      if (ad != bd) return ad < bd;
      return std::string_view(a.kernel) < std::string_view(b.kernel);
    }
  };
  void attach_listener(const Key& key, CircuitBreaker& breaker);

  BreakerOptions options_;
  BreakerClock clock_;
  std::shared_ptr<const Listener> listener_;
  mutable std::shared_mutex mutex_;
  std::map<Key, std::unique_ptr<CircuitBreaker>, KeyLess> breakers_;
};

}  // namespace gpubridge::resilience

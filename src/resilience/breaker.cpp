#include "gpubridge/resilience/breaker.hpp"

#include <mutex>
#include <string>

namespace gpubridge::resilience {
namespace {

constexpr std::uint64_t kStateMask = 0x3;
constexpr unsigned kPayloadShift = 2;
// Largest payload the word can hold (62 bits); counts saturate here.
constexpr std::uint64_t kMaxPayload = ~std::uint64_t{0} >> kPayloadShift;

constexpr std::uint64_t pack(BreakerState state, std::uint64_t payload) noexcept {
  return (payload << kPayloadShift) | static_cast<std::uint64_t>(state);
}
constexpr BreakerState state_of(std::uint64_t word) noexcept {
  return static_cast<BreakerState>(word & kStateMask);
}
constexpr std::uint64_t payload_of(std::uint64_t word) noexcept { return word >> kPayloadShift; }

}  // namespace

Status validate(const BreakerOptions& options) {
  if (options.failure_threshold == 0) {
    return Error(ErrorCode::invalid_argument, "breaker failure_threshold must be at least 1");
  }
  if (options.open_interval.count() < 0) {
    return Error(ErrorCode::invalid_argument,
                 "breaker open_interval must not be negative (got " +
                     std::to_string(options.open_interval.count()) + " ms)");
  }
  if (options.half_open_probes == 0) {
    return Error(ErrorCode::invalid_argument, "breaker half_open_probes must be at least 1");
  }
  return {};
}

std::string_view to_string(BreakerState state) noexcept {
  switch (state) {
    case BreakerState::closed: return "closed";
    case BreakerState::half_open: return "half_open";
    case BreakerState::open: return "open";
  }
  return "invalid_breaker_state";
}

CircuitBreaker::CircuitBreaker(BreakerOptions options, BreakerClock clock)
    : options_(options), clock_(std::move(clock)) {
  if (Status valid = validate(options_); !valid.ok()) throw ErrorException(valid.error());
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
  epoch_ = clock_();
}

std::int64_t CircuitBreaker::now_ns() const noexcept {
  const auto elapsed = clock_() - epoch_;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
  return ns < 0 ? 0 : ns;  // a clock that reads before construction counts as the epoch
}

// One CAS; on success reports the transition (if the state changed) to the listener.
bool CircuitBreaker::transition(std::uint64_t& expected, std::uint64_t desired) noexcept {
  if (!word_.compare_exchange_weak(expected, desired, std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
    return false;
  }
  const BreakerState from = state_of(expected);
  const BreakerState to = state_of(desired);
  if (from != to) {
    if (to == BreakerState::open) opened_count_.fetch_add(1, std::memory_order_relaxed);
    if (listener_) {
      // The listener is user code; a throwing listener must not break the breaker's noexcept
      // contract, so its exception is dropped here (the transition itself has happened).
      try {
        listener_(from, to);
      } catch (...) {
      }
    }
  }
  return true;
}

bool CircuitBreaker::allow() noexcept {
  std::uint64_t word = word_.load(std::memory_order_acquire);
  for (;;) {
    switch (state_of(word)) {
      case BreakerState::closed:
        return true;
      case BreakerState::open: {
        const auto opened_at = static_cast<std::int64_t>(payload_of(word));
        const std::int64_t interval =
            std::chrono::duration_cast<std::chrono::nanoseconds>(options_.open_interval).count();
        if (now_ns() - opened_at < interval) return false;
        // This caller is the first probe.
        if (transition(word, pack(BreakerState::half_open, 1))) return true;
        break;  // lost a race; look again
      }
      case BreakerState::half_open: {
        const std::uint64_t admitted = payload_of(word);
        if (admitted >= options_.half_open_probes) return false;
        if (transition(word, pack(BreakerState::half_open, admitted + 1))) return true;
        break;
      }
    }
  }
}

void CircuitBreaker::record_success() noexcept {
  std::uint64_t word = word_.load(std::memory_order_acquire);
  for (;;) {
    switch (state_of(word)) {
      case BreakerState::closed:
        if (payload_of(word) == 0) return;
        if (transition(word, pack(BreakerState::closed, 0))) return;
        break;
      case BreakerState::half_open:
        if (transition(word, pack(BreakerState::closed, 0))) return;
        break;
      case BreakerState::open:
        return;
    }
  }
}

void CircuitBreaker::record_failure() noexcept {
  std::uint64_t word = word_.load(std::memory_order_acquire);
  for (;;) {
    switch (state_of(word)) {
      case BreakerState::closed: {
        const std::uint64_t failures = payload_of(word) + 1;
        const std::uint64_t desired =
            failures >= options_.failure_threshold
                ? pack(BreakerState::open, static_cast<std::uint64_t>(now_ns()) & kMaxPayload)
                : pack(BreakerState::closed, failures);
        if (transition(word, desired)) return;
        break;
      }
      case BreakerState::half_open:
        if (transition(word, pack(BreakerState::open,
                                  static_cast<std::uint64_t>(now_ns()) & kMaxPayload))) {
          return;
        }
        break;
      case BreakerState::open:
        return;
    }
  }
}

BreakerState CircuitBreaker::state() const noexcept {
  return state_of(word_.load(std::memory_order_acquire));
}

std::uint64_t CircuitBreaker::opened_count() const noexcept {
  return opened_count_.load(std::memory_order_relaxed);
}

void CircuitBreaker::set_listener(Listener listener) { listener_ = std::move(listener); }

BreakerSet::BreakerSet(BreakerOptions options, BreakerClock clock)
    : options_(options), clock_(std::move(clock)) {
  if (Status valid = validate(options_); !valid.ok()) throw ErrorException(valid.error());
}

void BreakerSet::attach_listener(const Key& key, CircuitBreaker& breaker) {
  if (!listener_) {
    breaker.set_listener({});
    return;
  }
  // The key lives in the map node, which never moves, so the views stay valid.
  breaker.set_listener([listener = listener_, device = std::string_view(key.device),
                        kernel = std::string_view(key.kernel)](BreakerState from, BreakerState to) {
    (*listener)(device, kernel, from, to);
  });
}

CircuitBreaker& BreakerSet::get(std::string_view device, std::string_view kernel) {
  const KeyView view{device, kernel};
  {
    std::shared_lock lock(mutex_);
    if (auto it = breakers_.find(view); it != breakers_.end()) return *it->second;
  }
  std::unique_lock lock(mutex_);
  if (auto it = breakers_.find(view); it != breakers_.end()) return *it->second;  // raced
  auto breaker = std::make_unique<CircuitBreaker>(options_, clock_);
  auto it = breakers_.emplace(Key{std::string(device), std::string(kernel)}, std::move(breaker)).first;
  attach_listener(it->first, *it->second);
  return *it->second;
}

std::vector<BreakerSet::Entry> BreakerSet::snapshot() const {
  std::shared_lock lock(mutex_);
  std::vector<Entry> entries;
  entries.reserve(breakers_.size());
  for (const auto& [key, breaker] : breakers_) {
    entries.push_back({key.device, key.kernel, breaker->state(), breaker->opened_count()});
  }
  return entries;
}

void BreakerSet::set_listener(Listener listener) {
  std::unique_lock lock(mutex_);
  listener_ = listener ? std::make_shared<const Listener>(std::move(listener)) : nullptr;
  for (auto& [key, breaker] : breakers_) attach_listener(key, *breaker);
}

}  // namespace gpubridge::resilience

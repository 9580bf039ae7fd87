#include "gpubridge/resilience/retry.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <thread>

namespace gpubridge::resilience {

Status validate(const RetryOptions& options) {
  if (options.max_attempts == 0) {
    return Error(ErrorCode::invalid_argument, "retry max_attempts must be at least 1 (1 = no retry)");
  }
  if (options.initial_backoff.count() < 0) {
    return Error(ErrorCode::invalid_argument, "retry initial_backoff must not be negative (got " +
                                                  std::to_string(options.initial_backoff.count()) + " ms)");
  }
  if (!std::isfinite(options.multiplier) || options.multiplier < 1.0) {
    return Error(ErrorCode::invalid_argument,
                 "retry multiplier must be a finite number >= 1 (got " + std::to_string(options.multiplier) + ")");
  }
  if (options.max_backoff < options.initial_backoff) {
    return Error(ErrorCode::invalid_argument,
                 "retry max_backoff (" + std::to_string(options.max_backoff.count()) +
                     " ms) must not be below initial_backoff (" +
                     std::to_string(options.initial_backoff.count()) + " ms)");
  }
  return {};
}

bool is_retryable(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::unavailable:
    case ErrorCode::aborted:
    case ErrorCode::resource_exhausted:
      return true;
    default:
      return false;
  }
}

std::chrono::nanoseconds backoff_delay(const RetryOptions& options, std::uint32_t retry,
                                       std::uint64_t random_bits) noexcept {
  if (retry == 0) return std::chrono::nanoseconds{0};
  const double initial_ns = std::chrono::duration<double, std::nano>(options.initial_backoff).count();
  const double max_ns = std::chrono::duration<double, std::nano>(options.max_backoff).count();
  // Computed in double and capped before converting back, so large retry numbers cannot overflow.
  const double grown = initial_ns * std::pow(options.multiplier, static_cast<double>(retry - 1));
  const double capped_ns = std::max(0.0, std::min(grown, max_ns));  // min also discards NaN/inf
  const auto capped = static_cast<std::uint64_t>(capped_ns);
  if (!options.jitter) return std::chrono::nanoseconds{static_cast<std::int64_t>(capped)};
  // Uniform in [0, capped]; the modulo bias is below 2^-20 for any cap under 2^44 ns (4.9 hours).
  const std::uint64_t jittered = capped == 0 ? 0 : random_bits % (capped + 1);
  return std::chrono::nanoseconds{static_cast<std::int64_t>(jittered)};
}

std::uint64_t random_bits() noexcept {
  // splitmix64 over a per-thread state seeded from the thread id and the clock: fast, no locks,
  // good enough spread for jitter and fault probabilities.
  thread_local std::uint64_t state =
      std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
      0x9e3779b97f4a7c15ULL;
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace gpubridge::resilience

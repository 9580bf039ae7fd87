#pragma once
// Retry policy: which errors are worth another try, and how long to wait before it
// (capped exponential backoff with "full jitter": a uniform draw in [0, capped exponential], which
// spreads the retries of many callers that failed together). Pure functions; thread-safe.
#include <chrono>
#include <cstdint>

#include "gpubridge/core/error.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::resilience {

struct RetryOptions {
  std::uint32_t max_attempts = 3;              // total tries including the first; 1 = no retry (>= 1)
  std::chrono::milliseconds initial_backoff{5};  // backoff before the first retry (>= 0)
  double multiplier = 2.0;                     // growth per retry (finite, >= 1)
  std::chrono::milliseconds max_backoff{500};  // cap on any one backoff (>= initial_backoff)
  bool jitter = true;                          // full jitter: uniform in [0, capped exponential]
};

// invalid_argument naming the field when an option is out of range.
Status validate(const RetryOptions& options);

// Transient conditions that may clear by themselves: unavailable (device or service down for
// now), aborted (a conflict; the operation may be repeated) and resource_exhausted (a full queue
// or memory pool that drains as other calls finish). Everything else is not retried: the request
// itself is wrong (invalid_argument, not_found, out_of_range, failed_precondition, ...), the
// caller gave up (cancelled, deadline_exceeded: the time budget is spent), or repeating would
// hide a bug (internal, data_loss, unknown, unimplemented).
bool is_retryable(ErrorCode code) noexcept;

// The wait before retry number `retry` (1 = the first retry, after the first failed attempt):
// capped = min(initial_backoff * multiplier^(retry-1), max_backoff); with jitter a uniform value in
// [0, capped] picked by `random_bits` (any 64 random bits, e.g. from random_bits()), otherwise
// capped. retry == 0 gives zero. Options are assumed valid (see validate()).
std::chrono::nanoseconds backoff_delay(const RetryOptions& options, std::uint32_t retry,
                                       std::uint64_t random_bits) noexcept;

// 64 pseudo-random bits from a per-thread generator seeded once per thread; for jitter and fault
// probabilities, not for anything that needs to be unpredictable.
std::uint64_t random_bits() noexcept;

}  // namespace gpubridge::resilience

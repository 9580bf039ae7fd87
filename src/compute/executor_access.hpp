#pragma once
// Internal access to an Executor's parts for the other compute components (the dynamic
// batcher), so that they place work with the same fallback policy and count it in the same
// statistics as Executor::submit. Not a public API. Thread-safe like the Executor.
#include <cstdint>

#include "compute/fallback_policy.hpp"

namespace gpubridge::compute::detail {

struct ExecutorAccess {
  static const FallbackPolicy& policy(const Executor& executor);
  // One call (a batch counts once) completed on `slot`'s device; `failed` also counts an error.
  static void count_call(Executor& executor, const DeviceSlot& slot, bool failed);
  // `calls` calls ran somewhere other than asked, for `reason` (ExecutorStats::fallbacks).
  static void count_fallback(Executor& executor, FallbackReason reason, std::uint64_t calls);
};

}  // namespace gpubridge::compute::detail

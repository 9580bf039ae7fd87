#pragma once
// Internal access to an Executor's parts for the other compute components (the dynamic
// batcher), so that they place work with the same fallback policy and count it in the same
// statistics as Executor::submit. Not a public API. Thread-safe like the Executor.
#include <cstdint>
#include <string_view>

#include "compute/fallback_policy.hpp"

namespace gpubridge::resilience {
class CircuitBreaker;
class Bulkhead;
}  // namespace gpubridge::resilience

namespace gpubridge::compute::detail {

struct ExecutorAccess {
  static const FallbackPolicy& policy(const Executor& executor);
  // One call (a batch counts once) completed on `slot`'s device; `failed` also counts an error.
  static void count_call(Executor& executor, const DeviceSlot& slot, bool failed);
  // `calls` calls ran somewhere other than asked, for `reason` (ExecutorStats::fallbacks).
  static void count_fallback(Executor& executor, FallbackReason reason, std::uint64_t calls);
  // The observer of ExecutorOptions, or null.
  static ComputeObserver* observer(const Executor& executor);
  // The breaker of (slot's device, kernel); null when breakers are off or the device is the CPU.
  static resilience::CircuitBreaker* breaker(Executor& executor, const DeviceSlot& slot, std::string_view kernel);
  // The bulkhead of slot's device; null when there is none (off, or the CPU).
  static resilience::Bulkhead* bulkhead(Executor& executor, const DeviceSlot& slot);
  // `calls` calls completed with deadline_exceeded (ExecutorStats::deadline_exceeded).
  static void count_deadlines(Executor& executor, std::uint64_t calls);
};

}  // namespace gpubridge::compute::detail

#include "collection/activation_collector.hpp"

namespace gpubridge::runtime::internal {

std::size_t collect_idle(Runtime::Core& core, Clock::duration age, const std::shared_ptr<DeactivationWaiter>& waiter) {
  if (core.phase.load(std::memory_order_acquire) != Phase::running) return 0;
  const Clock::time_point now = core.clock->now();
  std::size_t n = 0;
  core.directory.for_each([&](Activation* a) {
    if (a->deactivate_if_idle(now, age, waiter)) ++n;
  });
  return n;
}

}  // namespace gpubridge::runtime::internal

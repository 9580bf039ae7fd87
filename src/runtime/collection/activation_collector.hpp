#pragma once
// Idle activation collection: activations that served no call and no tick for at least the
// collection age are asked to deactivate (on_deactivate runs as their last turn; a later call
// activates a fresh instance). Runs periodically on the timer thread (RuntimeOptions::
// collection_period) and on demand (Runtime::collect_idle_now). Never blocks: it only marks
// activations and queues them.
#include <cstddef>
#include <memory>

#include "activation/activation.hpp"
#include "runtime_core.hpp"

namespace gpubridge::runtime::internal {

// Returns how many activations were asked to deactivate; each registers `waiter` (may be null).
std::size_t collect_idle(Runtime::Core& core, Clock::duration age, const std::shared_ptr<DeactivationWaiter>& waiter);

}  // namespace gpubridge::runtime::internal

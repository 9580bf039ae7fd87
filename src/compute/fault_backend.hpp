#pragma once
// A Backend decorator that injects faults (resilience::FaultInjector) into the calls, batches
// and resident operations of the backend it wraps. Per operation it asks the injector
// match(backend name, kernel id) (resident copies use the kernel names "resident.write" and
// "resident.read"):
//   fail: completes at once with unavailable "injected fault ...", the inner backend not called;
//   slow: starts the operation on the inner backend `delay` later, from the timer thread;
//   hang: holds the operation until its delay passed or its rule was removed (then it runs on
//         the inner backend), until the batch was abandoned by the batcher, or until
//         release_all() (then it completes with cancelled). Polled every few milliseconds from
//         the timer thread; no thread blocks on a hang.
// Thread-safe like the backend it wraps. release_all() must run before the timer queue goes.
#include <memory>

#include "compute/backend.hpp"
#include "compute/timer_queue.hpp"

namespace gpubridge::resilience {
class FaultInjector;
}

namespace gpubridge::compute {

class FaultBackend;

std::unique_ptr<FaultBackend> make_fault_backend(std::unique_ptr<Backend> inner,
                                                 std::shared_ptr<resilience::FaultInjector> faults, TimerQueue& timer,
                                                 std::shared_ptr<ComputeObserver> observer);

class FaultBackend : public Backend {
 public:
  // Completes every held (hung) operation with cancelled now, and later hangs at once.
  virtual void release_all() noexcept = 0;
  // Operations held by a hang right now.
  virtual std::size_t hung() const = 0;
};

}  // namespace gpubridge::compute

#pragma once
// Internal: the host-side lifecycle of a persistent ring kernel - one implementation for
// CudaRingServer (a device) and for the host harness that runs the same generated kernel on
// threads in CI (tests/compute/ring_host_kernel), so CI exercises the lifecycle the device uses.
//
// Phases: created -> running (start) -> finished (the kernel returned for good: stop or drain
// finished it, it died, or a relaunch failed). While running it may be stepped_aside: asked to
// yield by DeviceIdle (device_idle.hpp) - every block returns after its current message - and
// relaunched when the operation that needed an idle device is done. A hot reload is a step aside
// during which the kernel's code is replaced. Registered with DeviceIdle from start() until
// leave() (the owner's destructor, after wait()).
//
// Thread-safety: all members from any thread. The platform's launch() and copy_back() run under
// the lifecycle's lock; wait_returned() and poll() without it, so they must not need it.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

#include "compute/cuda/device_idle.hpp"
#include "compute/ring/cuda_ring_server.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::ring::detail {

// What differs between a device and the host harness.
class KernelPlatform {
 public:
  virtual ~KernelPlatform() = default;
  // Launches every block of the kernel, asynchronously.
  virtual Status launch() = 0;
  // Returns once the latest launch has returned (every block): the kernel's error when it died.
  // May run while another thread relaunches (it may then return for either launch).
  virtual Status wait_returned() = 0;
  // As wait_returned(), for at most `limit`: nothing when the launch has not returned by then.
  virtual std::optional<Status> wait_returned_for(std::chrono::milliseconds limit) = 0;
  // The kernel has finished for good: copies the actor states back into the ring block.
  virtual Status copy_back() = 0;
  // The kernel's error if it is known to have died, without waiting (ok otherwise).
  virtual Status poll() const = 0;
  virtual KernelControl& control() = 0;
};

class KernelLifecycle final : public cuda::PersistentKernel {
 public:
  // `device`: the CUDA device (DeviceIdle registration); `shards`: blocks per launch.
  KernelLifecycle(KernelPlatform& platform, RingMemory& memory, int device, std::uint32_t shards)
      : platform_(platform), memory_(memory), device_(device), shards_(shards) {}
  KernelLifecycle(const KernelLifecycle&) = delete;
  KernelLifecycle& operator=(const KernelLifecycle&) = delete;

  // Runs `prepare` (copies states and the internal area in; under the lock), marks the block
  // running and launches. failed_precondition when already started.
  Status start(const std::function<Status()>& prepare);
  // Until the kernel has returned for good; its error when it died or returned unfinished.
  Status wait();
  // Runs `replace` (loads the new code and installs it under mutex()) with
  // every persistent kernel of the device stepped aside, this one included: it comes back running
  // the new code with its states and queued messages. An error of `replace` leaves the old code;
  // a failed relaunch ends the kernel and is returned.
  Status reload(const std::function<Status()>& replace);
  // Ok while the kernel runs or finished cleanly; its error once known.
  Status status() const;
  // Unregisters from DeviceIdle; call after wait() returned, before the platform goes away.
  void leave() { cuda::DeviceIdle::leave(this); }
  std::mutex& mutex() { return mutex_; }

  // PersistentKernel.
  bool step_aside() noexcept override;
  void come_back() noexcept override;

 private:
  enum class Phase { created, running, stepped_aside, finished };
  // Caller holds mutex_.
  Status launch_locked();
  void finish_locked();
  void fail_locked(Error error);

  KernelPlatform& platform_;
  RingMemory& memory_;
  const int device_;
  const std::uint32_t shards_;

  mutable std::mutex mutex_;
  std::condition_variable phase_changed_;  // leaving stepped_aside
  Phase phase_ = Phase::created;
  std::uint64_t launches_ = 0;
  std::optional<Error> error_;
};

}  // namespace gpubridge::compute::ring::detail

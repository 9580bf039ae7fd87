#pragma once
// Persistent kernels, and the CUDA operations that must not run beside them.
//
// A persistent kernel (a ring server's) does not return while it serves. Some CUDA operations wait
// for the device to go idle: loading a module or a kernel (with lazy loading, the default since
// CUDA 12.2, on a kernel's first launch), freeing device or page-locked memory, allocating or
// registering page-locked memory, cuBLAS creating a handle or loading a kernel for a new shape.
// Beside a persistent kernel such an operation would block until the kernel stops - possibly
// forever. So:
//   - a persistent kernel is launched through DeviceIdle::launch (which registers it) and leaves
//     with DeviceIdle::leave once it has returned for good;
//   - such operations run through DeviceIdle::run(device, fn): every persistent kernel registered
//     on that device (kEveryDevice: on any device, for host memory mapped into every context)
//     steps aside - returns, keeping its state and its queued messages - fn runs, and they are
//     relaunched. Without a registered kernel fn runs at once (beside other such operations).
// A persistent kernel stepping aside waits for the message it is serving; operations that need
// an idle device are rare (first uses, growth of pools, teardown) or, for cuBLAS, short host calls.
// A ring kernel serving a message waits for completion space, which the ring client's dispatcher
// threads make: code running on the only dispatcher thread of a ring (a send_async callback) must
// not run such an operation while that ring's completion ring may be full.
//
// Thread-safety: all functions from any thread. run() nested in run() (or in launch()'s callback)
// on one thread runs fn at once; launch() and leave() must not be called inside run(). Lock order: the registry, then a kernel's own locks (step_aside/come_back take them); a
// kernel must not call run(), launch() or leave() while holding a lock its step_aside takes.
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::cuda {

class PersistentKernel {
 public:
  virtual ~PersistentKernel() = default;
  // Returns once none of its blocks runs. False when it was not running (it finished, or died):
  // there is nothing to relaunch.
  virtual bool step_aside() noexcept = 0;
  // Relaunches it after a step_aside() that returned true; a failure is the kernel's to report
  // (to its callers), not the operation's.
  virtual void come_back() noexcept = 0;
};

class DeviceIdle {
 public:
  static constexpr int kEveryDevice = -1;

  // Runs `launch_kernel` (which launches `kernel` on `device`) with no operation of run() in
  // progress, and registers the kernel when it succeeds.
  static Status launch(int device, PersistentKernel* kernel, Status (*launch_kernel)(void*), void* arg);
  template <class F>
  static Status launch(int device, PersistentKernel* kernel, F&& launch_kernel) {
    return launch(device, kernel, [](void* f) { return (*static_cast<std::remove_reference_t<F>*>(f))(); },
                  erase(launch_kernel));
  }
  // Unregisters `kernel` (waits for a run() that is stepping it aside). Call once it has returned
  // for good, before it is destroyed.
  static void leave(PersistentKernel* kernel);
  // Persistent kernels registered on `device` now.
  static std::size_t registered(int device);

  // Runs fn() (returning void or a value) with every persistent kernel of `device` stepped aside.
  template <class F>
  static auto run(int device, F&& fn) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
      run_erased(device, [](void* f) { (*static_cast<std::remove_reference_t<F>*>(f))(); }, erase(fn));
    } else {
      std::optional<R> out;
      auto call = [&] { out.emplace(fn()); };
      run_erased(device, [](void* c) { (*static_cast<decltype(call)*>(c))(); }, &call);
      return std::move(*out);
    }
  }

 private:
  template <class T>
  static void* erase(T& callable) noexcept {  // const callables too: cast back to their own type
    return const_cast<void*>(static_cast<const void*>(std::addressof(callable)));
  }
  static void run_erased(int device, void (*fn)(void*), void* arg);
};

}  // namespace gpubridge::compute::cuda

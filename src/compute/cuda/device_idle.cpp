#include "compute/cuda/device_idle.hpp"

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <vector>

namespace gpubridge::compute::cuda {

namespace {

struct Registered {
  int device;
  PersistentKernel* kernel;
};

// Shared by operations while no persistent kernel of their device is registered; exclusive while
// kernels step aside, and while one is launched or leaves. Never destroyed: objects destroyed at
// exit (an executor held by a static) may still free memory through run().
std::shared_mutex& registry_mutex() {
  static auto* mu = new std::shared_mutex;
  return *mu;
}
std::vector<Registered>& registry() {  // under registry_mutex()
  static auto* kernels = new std::vector<Registered>;
  return *kernels;
}

thread_local bool t_in_run = false;

bool concerns(const Registered& r, int device) { return device == DeviceIdle::kEveryDevice || r.device == device; }

bool any_on(int device) {
  const auto& kernels = registry();
  return std::any_of(kernels.begin(), kernels.end(), [&](const Registered& r) { return concerns(r, device); });
}

// Marks this thread as inside an operation (or a launch) for a scope: nested run() calls then
// run their fn at once.
class InRun {
 public:
  InRun() noexcept { t_in_run = true; }
  ~InRun() { t_in_run = false; }
  InRun(const InRun&) = delete;
  InRun& operator=(const InRun&) = delete;
};

}  // namespace

Status DeviceIdle::launch(int device, PersistentKernel* kernel, Status (*launch_kernel)(void*), void* arg) {
  std::unique_lock lock(registry_mutex());
  auto& kernels = registry();
  const bool known = std::any_of(kernels.begin(), kernels.end(), [&](const Registered& r) { return r.kernel == kernel; });
  if (!known) kernels.reserve(kernels.size() + 1);  // may throw: before anything is launched
  Status launched;
  {
    const InRun in_run;  // an operation the launch itself needs runs at once (the registry is held)
    launched = launch_kernel(arg);
  }
  if (launched && !known) kernels.push_back({device, kernel});
  return launched;
}

void DeviceIdle::leave(PersistentKernel* kernel) {
  std::unique_lock lock(registry_mutex());
  std::erase_if(registry(), [&](const Registered& r) { return r.kernel == kernel; });
}

std::size_t DeviceIdle::registered(int device) {
  std::shared_lock lock(registry_mutex());
  const auto& kernels = registry();
  return static_cast<std::size_t>(
      std::count_if(kernels.begin(), kernels.end(), [&](const Registered& r) { return concerns(r, device); }));
}

void DeviceIdle::run_erased(int device, void (*fn)(void*), void* arg) {
  if (t_in_run) return fn(arg);
  {
    std::shared_lock lock(registry_mutex());
    if (!any_on(device)) {
      const InRun in_run;
      return fn(arg);
    }
  }
  std::unique_lock lock(registry_mutex());
  std::vector<PersistentKernel*> aside;
  aside.reserve(registry().size());  // nothing can fail once the first kernel has stepped aside
  for (const Registered& r : registry()) {
    if (concerns(r, device) && r.kernel->step_aside()) aside.push_back(r.kernel);
  }
  const auto come_back = [&] {
    for (auto it = aside.rbegin(); it != aside.rend(); ++it) (*it)->come_back();
  };
  try {
    const InRun in_run;
    fn(arg);
  } catch (...) {
    come_back();
    throw;
  }
  come_back();
}

}  // namespace gpubridge::compute::cuda

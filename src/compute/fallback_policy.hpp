#pragma once
// The fallback policy: decides which device runs a call, and whether an error on a device
// sends the call to the CPU. Every decision other than "ran where asked" carries a reason.
#include <string>
#include <vector>

#include "compute/backend.hpp"

namespace gpubridge::compute {

// A device together with the backend that owns it.
struct DeviceSlot {
  Backend* backend = nullptr;
  Device device;
};

struct Placement {
  const DeviceSlot* slot = nullptr;
  FallbackReason fallback = FallbackReason::none;
  std::string detail;  // why it fell back (empty when fallback == none)
};

class FallbackPolicy {
 public:
  // `devices` are every available device, best first (CUDA, OpenCL GPUs, CPU, OpenCL CPUs);
  // exactly one is the CPU backend's device. `statuses` are every backend's discovery results.
  FallbackPolicy(std::vector<DeviceSlot> devices, std::vector<BackendStatus> statuses);

  // Picks the device for a call. Errors (only when options.allow_fallback is false):
  // unavailable (requested device absent) or failed_precondition (kernel missing there).
  Result<Placement> place(const KernelDef& def, DType dtype, const CallOptions& options) const;

  // Maps a device's execution error to a fallback reason; none means "not a device problem,
  // return the error to the caller" (e.g. invalid input data).
  static FallbackReason reason_for(const Error& error);

  const DeviceSlot& cpu() const { return *cpu_; }
  const std::vector<DeviceSlot>& devices() const { return devices_; }
  const std::vector<BackendStatus>& statuses() const { return statuses_; }

 private:
  Result<Placement> fall_back(FallbackReason reason, std::string detail, const CallOptions& options) const;

  std::vector<DeviceSlot> devices_;
  std::vector<BackendStatus> statuses_;
  const DeviceSlot* cpu_ = nullptr;
};

std::string describe_request(const CallOptions& options);

}  // namespace gpubridge::compute

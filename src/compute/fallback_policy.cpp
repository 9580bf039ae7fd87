#include "compute/fallback_policy.hpp"

#include <stdexcept>

namespace gpubridge::compute {

std::string describe_request(const CallOptions& options) {
  return options.device_id.empty() ? std::string(to_string(options.backend)) : options.device_id;
}

FallbackPolicy::FallbackPolicy(std::vector<DeviceSlot> devices, std::vector<BackendStatus> statuses)
    : devices_(std::move(devices)), statuses_(std::move(statuses)) {
  for (const auto& d : devices_) {
    if (d.device.backend == BackendKind::cpu) cpu_ = &d;
  }
  if (cpu_ == nullptr) throw std::logic_error("FallbackPolicy: no CPU device");
}

FallbackReason FallbackPolicy::reason_for(const Error& error) {
  switch (error.code()) {
    case ErrorCode::resource_exhausted: return FallbackReason::out_of_memory;
    case ErrorCode::failed_precondition: return FallbackReason::kernel_missing;
    case ErrorCode::invalid_argument:
    case ErrorCode::out_of_range:
    case ErrorCode::not_found:
    case ErrorCode::cancelled:
    case ErrorCode::deadline_exceeded: return FallbackReason::none;
    default: return FallbackReason::device_error;
  }
}

Result<Placement> FallbackPolicy::fall_back(FallbackReason reason, std::string detail,
                                            const CallOptions& options) const {
  if (!options.allow_fallback) {
    const ErrorCode code =
        reason == FallbackReason::no_device ? ErrorCode::unavailable : ErrorCode::failed_precondition;
    return Error(code, detail, "requested " + describe_request(options) + ", fallback disabled");
  }
  return Placement{cpu_, reason, std::move(detail)};
}

Result<Placement> FallbackPolicy::place(const KernelDef& def, DType dtype, const CallOptions& options) const {
  auto runnable = [&](const DeviceSlot& s) { return s.backend->can_run(s.device.ordinal, def, dtype); };

  if (!options.device_id.empty()) {
    for (const auto& s : devices_) {
      if (s.device.id != options.device_id) continue;
      if (Status ok = runnable(s); !ok) return fall_back(FallbackReason::kernel_missing, ok.error().message(), options);
      return Placement{&s, FallbackReason::none, {}};
    }
    std::string detail = "no device '" + options.device_id + "'";
    const auto prefix = options.device_id.substr(0, options.device_id.find(':'));
    for (const auto& st : statuses_) {
      if (to_string(st.kind) == prefix && !st.available) detail += " (" + st.reason + ")";
    }
    return fall_back(FallbackReason::no_device, std::move(detail), options);
  }

  if (options.backend == BackendChoice::cpu) return Placement{cpu_, FallbackReason::none, {}};

  std::string missing;  // why devices that exist cannot run the kernel
  bool any_gpu = false;
  for (const auto& s : devices_) {
    const bool wanted = options.backend == BackendChoice::automatic
                            ? s.device.is_gpu
                            : to_string(s.device.backend) == to_string(options.backend);
    if (!wanted) continue;
    any_gpu = true;
    if (Status ok = runnable(s); !ok) {
      missing += (missing.empty() ? "" : "; ") + s.device.id + ": " + ok.error().message();
      continue;
    }
    return Placement{&s, FallbackReason::none, {}};
  }
  if (any_gpu) return fall_back(FallbackReason::kernel_missing, missing, options);
  if (options.backend == BackendChoice::automatic) {
    return Placement{cpu_, FallbackReason::none, {}};  // no GPU: the CPU is the best device
  }
  std::string detail = "no " + std::string(to_string(options.backend)) + " device";
  for (const auto& st : statuses_) {
    if (to_string(st.kind) == to_string(options.backend) && !st.reason.empty()) detail += ": " + st.reason;
  }
  return fall_back(FallbackReason::no_device, std::move(detail), options);
}

}  // namespace gpubridge::compute

#include "gpubridge/compute/dtype.hpp"

#include "gpubridge/compute/device.hpp"
#include "gpubridge/compute/executor.hpp"

namespace gpubridge::compute {

std::string_view to_string(DType t) noexcept { return t == DType::f32 ? "f32" : "f64"; }

std::optional<DType> parse_dtype(std::string_view s) noexcept {
  if (s == "f32" || s == "float32") return DType::f32;
  if (s == "f64" || s == "float64") return DType::f64;
  return std::nullopt;
}

std::string_view to_string(BackendKind b) noexcept {
  switch (b) {
    case BackendKind::cpu: return "cpu";
    case BackendKind::cuda: return "cuda";
    case BackendKind::opencl: return "opencl";
  }
  return "invalid";
}

std::optional<BackendKind> parse_backend(std::string_view s) noexcept {
  if (s == "cpu") return BackendKind::cpu;
  if (s == "cuda") return BackendKind::cuda;
  if (s == "opencl") return BackendKind::opencl;
  return std::nullopt;
}

std::string_view to_string(BackendChoice c) noexcept {
  switch (c) {
    case BackendChoice::automatic: return "auto";
    case BackendChoice::cpu: return "cpu";
    case BackendChoice::cuda: return "cuda";
    case BackendChoice::opencl: return "opencl";
  }
  return "invalid";
}

std::optional<BackendChoice> parse_backend_choice(std::string_view s) noexcept {
  if (s == "auto") return BackendChoice::automatic;
  if (s == "cpu") return BackendChoice::cpu;
  if (s == "cuda") return BackendChoice::cuda;
  if (s == "opencl") return BackendChoice::opencl;
  return std::nullopt;
}

std::string_view to_string(TransferDirection d) noexcept {
  return d == TransferDirection::host_to_device ? "host_to_device" : "device_to_host";
}

std::string_view to_string(BatchOutcome o) noexcept {
  switch (o) {
    case BatchOutcome::ok: return "ok";
    case BatchOutcome::error: return "error";
    case BatchOutcome::rejected_queue_full: return "rejected_queue_full";
    case BatchOutcome::expired: return "expired";
  }
  return "invalid";
}

std::string_view to_string(FallbackReason r) noexcept {
  switch (r) {
    case FallbackReason::none: return "none";
    case FallbackReason::no_device: return "no_device";
    case FallbackReason::kernel_missing: return "kernel_missing";
    case FallbackReason::device_error: return "device_error";
    case FallbackReason::out_of_memory: return "out_of_memory";
    case FallbackReason::breaker_open: return "breaker_open";
    case FallbackReason::bulkhead_full: return "bulkhead_full";
  }
  return "invalid";
}

}  // namespace gpubridge::compute

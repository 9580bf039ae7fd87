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

std::string_view to_string(FallbackReason r) noexcept {
  switch (r) {
    case FallbackReason::none: return "none";
    case FallbackReason::no_device: return "no_device";
    case FallbackReason::kernel_missing: return "kernel_missing";
    case FallbackReason::device_error: return "device_error";
    case FallbackReason::out_of_memory: return "out_of_memory";
  }
  return "invalid";
}

}  // namespace gpubridge::compute

#pragma once
// The device model shared by every backend, and the status of each backend on this machine.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gpubridge::compute {

enum class BackendKind { cpu, cuda, opencl };

std::string_view to_string(BackendKind b) noexcept;
std::optional<BackendKind> parse_backend(std::string_view s) noexcept;

struct DeviceCapabilities {
  bool fp64 = false;                 // double-precision arithmetic
  bool host_mapped_memory = false;   // device can access page-locked host memory directly
  bool host_native_atomics = false;  // atomics on host-mapped memory are coherent with the host
  bool peer_access = false;          // can access another device's memory directly
};

struct Device {
  std::string id;  // "<backend>:<ordinal>", stable within a process: "cpu:0", "cuda:0", "opencl:1"
  BackendKind backend = BackendKind::cpu;
  int ordinal = 0;  // index within its backend
  std::string name;
  std::string vendor;
  std::string driver;  // driver / runtime / platform version string
  std::uint64_t memory_total_bytes = 0;
  std::optional<std::uint64_t> memory_free_bytes;  // absent where the backend cannot tell
  std::uint32_t compute_units = 0;                 // SMs, OpenCL compute units, or CPU threads
  bool is_gpu = false;                             // false for CPUs (including OpenCL CPU devices)
  DeviceCapabilities caps;
  // PCI address (gpubridge/core/pci_address.hpp) where the backend knows it (CUDA devices), else
  // empty: what NVML readings are matched with (telemetry/nvml.hpp).
  std::string pci_bus_id;
};

// What discovery found for one backend. When `available` is false, `reason` says why
// (e.g. "cudaGetDeviceCount: cudaErrorInsufficientDriver (35): ...").
struct BackendStatus {
  BackendKind kind = BackendKind::cpu;
  bool available = false;
  std::string reason;
  std::vector<Device> devices;
};

}  // namespace gpubridge::compute

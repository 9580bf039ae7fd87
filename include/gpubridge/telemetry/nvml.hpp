#pragma once
// NVIDIA GPU readings through NVML, loaded with dlopen at run time (the library is never linked,
// so binaries start on machines without an NVIDIA driver).
//
// Real or absent: when NVML cannot be loaded or initialised, open() says why and no GPU metric
// exists; a single query that fails leaves that field of that GPU absent (never zero).
// Thread safety: NVML is thread-safe; read() and register_collector() may be called from any
// thread. The NVML session (nvmlInit/nvmlShutdown and the dlopen handle) lives until the monitor
// and every collector it registered are gone, so a registry may outlive the monitor safely.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpubridge/core/result.hpp"
#include "gpubridge/telemetry/metrics.hpp"

namespace gpubridge::telemetry {

inline constexpr const char* kNvmlLibrary = "libnvidia-ml.so.1";

// One GPU at one moment. Every field but index is absent when its NVML query failed.
struct GpuReading {
  unsigned index = 0;                                // NVML device index
  std::optional<std::string> name;                   // e.g. "NVIDIA H100 80GB HBM3"
  std::optional<double> utilization_ratio;           // 0..1, GPU busy over NVML's last sample period
  std::optional<std::uint64_t> memory_used_bytes;
  std::optional<std::uint64_t> memory_total_bytes;
  std::optional<double> temperature_celsius;         // GPU die
  std::optional<double> power_watts;                 // board power draw
  std::optional<std::string> pci_bus_id;             // gpubridge/core/pci_address.hpp (Device::pci_bus_id)
};

class NvmlMonitor {
 public:
  // Loads `library` (the driver's NVML by default) and initialises NVML.
  // unavailable with the reason when the library cannot be loaded (dlerror text), lacks a needed
  // symbol, nvmlInit_v2 fails (its return code and NVML's text for it), or the device count
  // query fails.
  static Result<std::unique_ptr<NvmlMonitor>> open(const std::string& library = kNvmlLibrary);

  ~NvmlMonitor();
  NvmlMonitor(const NvmlMonitor&) = delete;
  NvmlMonitor& operator=(const NvmlMonitor&) = delete;

  // Number of GPUs NVML saw at open().
  unsigned device_count() const noexcept;
  // One reading per GPU, in index order (a GPU whose handle cannot be obtained has only its index).
  std::vector<GpuReading> read() const;

  // Adds a collector to `registry` that reads the GPUs at every scrape and emits the gauges
  // gpubridge_gpu_utilization_ratio, gpubridge_gpu_memory_used_bytes,
  // gpubridge_gpu_memory_total_bytes, gpubridge_gpu_temperature_celsius and
  // gpubridge_gpu_power_watts, labels gpu (NVML's index in decimal: NVML numbers GPUs by PCI
  // address and sees those hidden from CUDA), name ("" when the name query failed) and device (the
  // compute device at the GPU's PCI address in `device_ids`, e.g. "cuda:0"; "" when none is); a
  // field that is absent in the reading is absent from the output.
  // Returns the collector's id (for Registry::remove_collector).
  Registry::CollectorId register_collector(Registry& registry, std::map<std::string, std::string> device_ids = {}) const;

  struct Session;  // the loaded library and its NVML initialisation (nvml.cpp)

 private:
  explicit NvmlMonitor(std::shared_ptr<const Session> session);
  std::shared_ptr<const Session> session_;
};

}  // namespace gpubridge::telemetry

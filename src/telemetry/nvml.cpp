// NVML through dlopen: the few C entry points we need, declared here from NVML's public ABI.
#include "gpubridge/telemetry/nvml.hpp"

#include <dlfcn.h>

#include <array>
#include <cstring>
#include <map>
#include <string>

#include "gpubridge/core/pci_address.hpp"

namespace gpubridge::telemetry {

namespace {

// NVML's C ABI (nvml.h), only what is used here.
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr int kNvmlTemperatureGpu = 0;                 // NVML_TEMPERATURE_GPU
constexpr unsigned kNvmlDeviceNameBufferSize = 96;     // NVML_DEVICE_NAME_V2_BUFFER_SIZE
struct NvmlUtilization {
  unsigned int gpu;     // percent of time a kernel ran over the sample period
  unsigned int memory;  // percent of time device memory was read or written
};
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct NvmlPciInfo {  // nvmlPciInfo_t
  char bus_id_legacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pci_device_id;
  unsigned int pci_subsystem_id;
  char bus_id[32];
};

using InitFn = nvmlReturn_t (*)();
using ShutdownFn = nvmlReturn_t (*)();
using ErrorStringFn = const char* (*)(nvmlReturn_t);
using GetCountFn = nvmlReturn_t (*)(unsigned int*);
using GetHandleFn = nvmlReturn_t (*)(unsigned int, nvmlDevice_t*);
using GetNameFn = nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned int);
using GetUtilizationFn = nvmlReturn_t (*)(nvmlDevice_t, NvmlUtilization*);
using GetMemoryFn = nvmlReturn_t (*)(nvmlDevice_t, NvmlMemory*);
using GetTemperatureFn = nvmlReturn_t (*)(nvmlDevice_t, int, unsigned int*);
using GetPowerFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned int*);
using GetPciInfoFn = nvmlReturn_t (*)(nvmlDevice_t, NvmlPciInfo*);

template <typename Fn>
bool load_symbol(void* handle, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  return fn != nullptr;
}

}  // namespace

struct NvmlMonitor::Session {
  void* handle = nullptr;
  bool initialised = false;
  unsigned device_count = 0;
  ShutdownFn shutdown = nullptr;
  ErrorStringFn error_string = nullptr;  // optional
  GetHandleFn get_handle = nullptr;
  GetNameFn get_name = nullptr;
  GetUtilizationFn get_utilization = nullptr;
  GetMemoryFn get_memory = nullptr;
  GetTemperatureFn get_temperature = nullptr;  // optional
  GetPowerFn get_power = nullptr;
  GetPciInfoFn get_pci_info = nullptr;  // optional

  Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Shuts NVML down and unloads it; a failing nvmlShutdown is ignored (nothing to recover).
  ~Session() {
    if (initialised && shutdown != nullptr) shutdown();
    if (handle != nullptr) dlclose(handle);
  }

  std::string describe(nvmlReturn_t code) const {
    std::string text = "NVML error " + std::to_string(code);
    if (error_string != nullptr) {
      if (const char* s = error_string(code); s != nullptr) text += std::string(" (") + s + ")";
    }
    return text;
  }
};

Result<std::unique_ptr<NvmlMonitor>> NvmlMonitor::open(const std::string& library) {
  auto session = std::make_shared<Session>();
  session->handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (session->handle == nullptr) {
    const char* reason = dlerror();
    return Error(ErrorCode::unavailable, "NVML is absent: cannot load " + library + ": " +
                                             (reason != nullptr ? reason : "unknown dlopen error"));
  }
  InitFn init = nullptr;
  GetCountFn get_count = nullptr;
  const char* missing = nullptr;
  Session& s = *session;
  if (!load_symbol(s.handle, "nvmlInit_v2", init)) missing = "nvmlInit_v2";
  else if (!load_symbol(s.handle, "nvmlShutdown", s.shutdown)) missing = "nvmlShutdown";
  else if (!load_symbol(s.handle, "nvmlDeviceGetCount_v2", get_count)) missing = "nvmlDeviceGetCount_v2";
  else if (!load_symbol(s.handle, "nvmlDeviceGetHandleByIndex_v2", s.get_handle)) missing = "nvmlDeviceGetHandleByIndex_v2";
  else if (!load_symbol(s.handle, "nvmlDeviceGetName", s.get_name)) missing = "nvmlDeviceGetName";
  else if (!load_symbol(s.handle, "nvmlDeviceGetUtilizationRates", s.get_utilization)) missing = "nvmlDeviceGetUtilizationRates";
  else if (!load_symbol(s.handle, "nvmlDeviceGetMemoryInfo", s.get_memory)) missing = "nvmlDeviceGetMemoryInfo";
  else if (!load_symbol(s.handle, "nvmlDeviceGetPowerUsage", s.get_power)) missing = "nvmlDeviceGetPowerUsage";
  if (missing != nullptr) {
    return Error(ErrorCode::unavailable, std::string("NVML is absent: ") + library + " lacks " + missing);
  }
  load_symbol(s.handle, "nvmlErrorString", s.error_string);  // optional: only improves messages
  // Optional: deprecated by NVIDIA; without it only the temperature gauge is absent.
  load_symbol(s.handle, "nvmlDeviceGetTemperature", s.get_temperature);
  // Optional: without it no GPU is matched with a compute device (the device label stays empty).
  load_symbol(s.handle, "nvmlDeviceGetPciInfo_v3", s.get_pci_info);

  if (const nvmlReturn_t rc = init(); rc != kNvmlSuccess) {
    return Error(ErrorCode::unavailable, "NVML is absent: nvmlInit_v2 failed: " + s.describe(rc));
  }
  s.initialised = true;
  unsigned count = 0;
  if (const nvmlReturn_t rc = get_count(&count); rc != kNvmlSuccess) {
    return Error(ErrorCode::unavailable, "NVML is absent: nvmlDeviceGetCount_v2 failed: " + s.describe(rc));
  }
  s.device_count = count;
  return std::unique_ptr<NvmlMonitor>(new NvmlMonitor(std::move(session)));
}

NvmlMonitor::NvmlMonitor(std::shared_ptr<const Session> session) : session_(std::move(session)) {}
NvmlMonitor::~NvmlMonitor() = default;

unsigned NvmlMonitor::device_count() const noexcept { return session_->device_count; }

namespace {

std::vector<GpuReading> read_gpus(const NvmlMonitor::Session& s) {
  std::vector<GpuReading> readings;
  readings.reserve(s.device_count);
  for (unsigned index = 0; index < s.device_count; ++index) {
    GpuReading reading;
    reading.index = index;
    nvmlDevice_t device = nullptr;
    if (s.get_handle(index, &device) != kNvmlSuccess) {
      readings.push_back(std::move(reading));
      continue;
    }
    std::array<char, kNvmlDeviceNameBufferSize> name{};
    if (s.get_name(device, name.data(), static_cast<unsigned>(name.size())) == kNvmlSuccess) {
      reading.name = std::string(name.data(), strnlen(name.data(), name.size()));
    }
    NvmlUtilization utilization{};
    if (s.get_utilization(device, &utilization) == kNvmlSuccess) {
      reading.utilization_ratio = static_cast<double>(utilization.gpu) / 100.0;
    }
    NvmlMemory memory{};
    if (s.get_memory(device, &memory) == kNvmlSuccess) {
      reading.memory_used_bytes = memory.used;
      reading.memory_total_bytes = memory.total;
    }
    unsigned temperature = 0;
    if (s.get_temperature != nullptr && s.get_temperature(device, kNvmlTemperatureGpu, &temperature) == kNvmlSuccess) {
      reading.temperature_celsius = static_cast<double>(temperature);
    }
    unsigned milliwatts = 0;
    if (s.get_power(device, &milliwatts) == kNvmlSuccess) {
      reading.power_watts = static_cast<double>(milliwatts) / 1000.0;
    }
    NvmlPciInfo pci{};
    if (s.get_pci_info != nullptr && s.get_pci_info(device, &pci) == kNvmlSuccess) {
      reading.pci_bus_id = pci_address(pci.domain, pci.bus, pci.device);
    }
    readings.push_back(std::move(reading));
  }
  return readings;
}

}  // namespace

std::vector<GpuReading> NvmlMonitor::read() const { return read_gpus(*session_); }

Registry::CollectorId NvmlMonitor::register_collector(Registry& registry,
                                                     std::map<std::string, std::string> device_ids) const {
  // The collector shares the session, so NVML stays loaded while the registry may still call it.
  return registry.add_collector([session = session_, device_ids = std::move(device_ids)](MetricSink& sink) {
    static constexpr std::array<std::string_view, 3> kLabelNames{"gpu", "name", "device"};
    const LabelValues labels{std::span<const std::string_view>(kLabelNames)};
    for (const GpuReading& gpu : read_gpus(*session)) {
      const std::string index = std::to_string(gpu.index);
      const std::string name = gpu.name.value_or("");
      std::string_view device;
      if (gpu.pci_bus_id) {
        if (auto it = device_ids.find(*gpu.pci_bus_id); it != device_ids.end()) device = it->second;
      }
      const std::array<std::string_view, 3> label_values{index, name, device};
      const LabelValues values{std::span<const std::string_view>(label_values)};
      if (gpu.utilization_ratio) {
        sink.gauge("gpubridge_gpu_utilization_ratio", "GPU busy ratio (0..1) over NVML's last sample period",
                   labels, values, *gpu.utilization_ratio);
      }
      if (gpu.memory_used_bytes) {
        sink.gauge("gpubridge_gpu_memory_used_bytes", "GPU memory in use, as NVML reports it", labels, values,
                   static_cast<double>(*gpu.memory_used_bytes));
      }
      if (gpu.memory_total_bytes) {
        sink.gauge("gpubridge_gpu_memory_total_bytes", "GPU memory installed, as NVML reports it", labels, values,
                   static_cast<double>(*gpu.memory_total_bytes));
      }
      if (gpu.temperature_celsius) {
        sink.gauge("gpubridge_gpu_temperature_celsius", "GPU die temperature", labels, values,
                   *gpu.temperature_celsius);
      }
      if (gpu.power_watts) {
        sink.gauge("gpubridge_gpu_power_watts", "GPU board power draw", labels, values, *gpu.power_watts);
      }
    }
  });
}

}  // namespace gpubridge::telemetry

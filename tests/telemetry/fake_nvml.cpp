// A stand-in for libnvidia-ml.so.1, used only by nvml_test to exercise NvmlMonitor's present path
// on machines without an NVIDIA driver. Two GPUs: GPU 0 answers every query; GPU 1 fails the
// utilisation, power and PCI queries (NVML_ERROR_NOT_SUPPORTED) and has quotes and a backslash in
// its name. FAKE_NVML_INIT_RC (environment, read by nvmlInit_v2) makes initialisation fail with that code.
#include <cstdlib>
#include <cstring>

namespace {
struct FakeDevice {
  const char* name;
  bool has_utilization;
  bool has_power;
  unsigned utilization_percent;
  unsigned long long memory_total;
  unsigned long long memory_used;
  unsigned temperature;
  unsigned power_milliwatts;
};
FakeDevice devices[] = {
    {"Fake GPU A", true, true, 42, 16ull << 30, 1ull << 30, 55, 123456},
    {"Fake \"GPU\" B\\", false, false, 0, 8ull << 30, 3ull << 29, 61, 0},
};
int init_count = 0;
int shutdown_count = 0;
constexpr int kSuccess = 0;
constexpr int kInvalidArgument = 2;
constexpr int kNotSupported = 3;
constexpr int kUninitialized = 1;

FakeDevice* as_device(void* handle) { return static_cast<FakeDevice*>(handle); }
}  // namespace

struct NvmlUtilization {
  unsigned gpu;
  unsigned memory;
};
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

extern "C" {

int nvmlInit_v2() {
  if (const char* rc = std::getenv("FAKE_NVML_INIT_RC"); rc != nullptr) return std::atoi(rc);
  ++init_count;
  return kSuccess;
}
int nvmlShutdown() {
  ++shutdown_count;
  return kSuccess;
}
const char* nvmlErrorString(int rc) { return rc == 9 ? "Driver Not Loaded" : "Fake Error"; }
int nvmlDeviceGetCount_v2(unsigned* count) {
  if (init_count == shutdown_count) return kUninitialized;
  *count = 2;
  return kSuccess;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
  if (index >= 2) return kInvalidArgument;
  *device = &devices[index];
  return kSuccess;
}
int nvmlDeviceGetName(void* device, char* name, unsigned length) {
  std::strncpy(name, as_device(device)->name, length);
  return kSuccess;
}
int nvmlDeviceGetUtilizationRates(void* device, NvmlUtilization* utilization) {
  if (!as_device(device)->has_utilization) return kNotSupported;
  utilization->gpu = as_device(device)->utilization_percent;
  utilization->memory = 0;
  return kSuccess;
}
int nvmlDeviceGetMemoryInfo(void* device, NvmlMemory* memory) {
  memory->total = as_device(device)->memory_total;
  memory->used = as_device(device)->memory_used;
  memory->free = memory->total - memory->used;
  return kSuccess;
}
#ifndef FAKE_NVML_WITHOUT_TEMPERATURE  // the variant of a driver that dropped the deprecated call
int nvmlDeviceGetTemperature(void* device, int sensor, unsigned* temperature) {
  if (sensor != 0) return kInvalidArgument;
  *temperature = as_device(device)->temperature;
  return kSuccess;
}
#endif
int nvmlDeviceGetPowerUsage(void* device, unsigned* milliwatts) {
  if (!as_device(device)->has_power) return kNotSupported;
  *milliwatts = as_device(device)->power_milliwatts;
  return kSuccess;
}
// nvmlPciInfo_t; GPU 0 sits at 0000:3B:00.0, GPU 1 does not say.
struct NvmlPciInfo {
  char bus_id_legacy[16];
  unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
  char bus_id[32];
};
int nvmlDeviceGetPciInfo_v3(void* device, NvmlPciInfo* pci) {
  if (as_device(device) != &devices[0]) return kNotSupported;
  *pci = {};
  std::strcpy(pci->bus_id, "00000000:3B:00.0");
  pci->domain = 0;
  pci->bus = 0x3b;
  pci->device = 0;
  return kSuccess;
}
// Test hooks (not NVML): how many times NVML was initialised and shut down.
int fake_nvml_init_count() { return init_count; }
int fake_nvml_shutdown_count() { return shutdown_count; }

}  // extern "C"

#pragma once
// The one spelling of a PCI address that GpuBridge compares across APIs (CUDA's device properties,
// NVML's PCI info): "dddd:bb:dd.0", lower-case hex, function 0 (GPUs are function 0).
#include <cstdio>
#include <string>

namespace gpubridge {

inline std::string pci_address(unsigned domain, unsigned bus, unsigned device) {
  char text[16];
  std::snprintf(text, sizeof text, "%04x:%02x:%02x.0", domain & 0xffffu, bus & 0xffu, device & 0xffu);
  return text;
}

}  // namespace gpubridge

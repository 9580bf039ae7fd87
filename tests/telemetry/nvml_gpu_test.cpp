// NvmlMonitor on a real NVIDIA driver (label gpu): skipped with the reason when NVML is absent,
// failed instead when GPUBRIDGE_REQUIRE_BACKENDS names cuda (the GPU check).
#include <gtest/gtest.h>

#include <string>

#include "gpubridge/telemetry/nvml.hpp"
#include "test_support.hpp"

namespace gpubridge::telemetry {
namespace {

TEST(NvmlGpuTest, ReadingsArePlausible) {
  auto monitor = NvmlMonitor::open();
  if (!monitor.ok()) GB_SKIP_UNLESS_REQUIRED("cuda", monitor.error().to_string());
  ASSERT_GT((*monitor)->device_count(), 0u);
  const auto readings = (*monitor)->read();
  ASSERT_EQ(readings.size(), (*monitor)->device_count());
  for (const GpuReading& gpu : readings) {
    SCOPED_TRACE("gpu " + std::to_string(gpu.index));
    ASSERT_TRUE(gpu.name.has_value());
    EXPECT_FALSE(gpu.name->empty());
    ASSERT_TRUE(gpu.memory_total_bytes.has_value());
    ASSERT_TRUE(gpu.memory_used_bytes.has_value());
    EXPECT_GE(*gpu.memory_total_bytes, 1ull << 30);
    EXPECT_LE(*gpu.memory_used_bytes, *gpu.memory_total_bytes);
    if (gpu.utilization_ratio) {
      EXPECT_GE(*gpu.utilization_ratio, 0.0);
      EXPECT_LE(*gpu.utilization_ratio, 1.0);
    }
    if (gpu.temperature_celsius) {
      EXPECT_GT(*gpu.temperature_celsius, 0.0);
      EXPECT_LT(*gpu.temperature_celsius, 130.0);
    }
    if (gpu.power_watts) {
      EXPECT_GT(*gpu.power_watts, 1.0);
      EXPECT_LT(*gpu.power_watts, 2000.0);
    }
  }
}

TEST(NvmlGpuTest, CollectorExportsTheDeviceGauges) {
  auto monitor = NvmlMonitor::open();
  if (!monitor.ok()) GB_SKIP_UNLESS_REQUIRED("cuda", monitor.error().to_string());
  Registry registry;
  (*monitor)->register_collector(registry);
  const std::string text = registry.prometheus_text();
  EXPECT_EQ(registry.collector_errors(), 0u);
  EXPECT_NE(text.find("# TYPE gpubridge_gpu_memory_total_bytes gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gpubridge_gpu_memory_total_bytes{gpu=\"0\",name=\""), std::string::npos) << text;
  EXPECT_NE(text.find("gpubridge_gpu_memory_used_bytes{gpu=\"0\",name=\""), std::string::npos) << text;
}

}  // namespace
}  // namespace gpubridge::telemetry

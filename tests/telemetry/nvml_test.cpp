// NvmlMonitor without a GPU: the absent path (no library, failed init) and, through a stand-in
// NVML library built with the tests, the present path with per-field failures.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "gpubridge/telemetry/nvml.hpp"

namespace gpubridge::telemetry {
namespace {

int fake_counter(const char* symbol) {
  void* handle = dlopen(GB_FAKE_NVML_PATH, RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return -1;
  auto fn = reinterpret_cast<int (*)()>(dlsym(handle, symbol));
  const int value = fn != nullptr ? fn() : -1;
  dlclose(handle);
  return value;
}

TEST(NvmlTest, MissingLibraryIsAbsentWithReasonAndNoGpuMetrics) {
  auto monitor = NvmlMonitor::open("libgpubridge-no-such-nvml.so.1");
  ASSERT_FALSE(monitor.ok());
  EXPECT_EQ(monitor.error().code(), ErrorCode::unavailable);
  EXPECT_NE(monitor.error().message().find("cannot load libgpubridge-no-such-nvml.so.1"), std::string::npos)
      << monitor.error().message();

  // A silo registers the collector only when open() succeeded: with NVML absent, the exposition
  // carries the silo's other metrics and no GPU metric at all (never zeros).
  Registry registry;
  ASSERT_TRUE(registry.gauge("gpubridge_silo_uptime_seconds", "Seconds since the silo started").ok());
  const std::string text = registry.prometheus_text();
  EXPECT_NE(text.find("gpubridge_silo_uptime_seconds"), std::string::npos);
  EXPECT_EQ(text.find("gpubridge_gpu_"), std::string::npos) << text;
}

TEST(NvmlTest, DriverLibraryEitherOpensOrSaysWhy) {
  auto monitor = NvmlMonitor::open();
  if (monitor.ok()) {
    EXPECT_EQ((*monitor)->read().size(), (*monitor)->device_count());
  } else {
    EXPECT_EQ(monitor.error().code(), ErrorCode::unavailable);
    EXPECT_NE(monitor.error().message().find("NVML is absent"), std::string::npos) << monitor.error().message();
  }
}

TEST(NvmlTest, InitFailureReportsTheCode) {
  ::setenv("FAKE_NVML_INIT_RC", "9", 1);
  auto monitor = NvmlMonitor::open(GB_FAKE_NVML_PATH);
  ::unsetenv("FAKE_NVML_INIT_RC");
  ASSERT_FALSE(monitor.ok());
  EXPECT_EQ(monitor.error().code(), ErrorCode::unavailable);
  EXPECT_NE(monitor.error().message().find("nvmlInit_v2 failed: NVML error 9 (Driver Not Loaded)"), std::string::npos)
      << monitor.error().message();
}

TEST(NvmlTest, LibraryWithoutNvmlSymbolsIsAbsent) {
  // libm has none of NVML's entry points.
  auto monitor = NvmlMonitor::open("libm.so.6");
  ASSERT_FALSE(monitor.ok());
  EXPECT_NE(monitor.error().message().find("lacks nvmlInit_v2"), std::string::npos) << monitor.error().message();
}

TEST(NvmlTest, ReadingsKeepOnlyTheFieldsThatAnswered) {
  auto monitor = NvmlMonitor::open(GB_FAKE_NVML_PATH);
  ASSERT_TRUE(monitor.ok()) << monitor.error().to_string();
  ASSERT_EQ((*monitor)->device_count(), 2u);
  const auto readings = (*monitor)->read();
  ASSERT_EQ(readings.size(), 2u);

  const GpuReading& a = readings[0];
  EXPECT_EQ(a.index, 0u);
  EXPECT_EQ(a.name, "Fake GPU A");
  EXPECT_EQ(a.utilization_ratio, 0.42);
  EXPECT_EQ(a.memory_total_bytes, 16ull << 30);
  EXPECT_EQ(a.memory_used_bytes, 1ull << 30);
  EXPECT_EQ(a.temperature_celsius, 55.0);
  EXPECT_EQ(a.power_watts, 123.456);
  EXPECT_EQ(a.pci_bus_id, "0000:3b:00.0");

  const GpuReading& b = readings[1];
  EXPECT_EQ(b.index, 1u);
  EXPECT_EQ(b.name, "Fake \"GPU\" B\\");
  EXPECT_FALSE(b.utilization_ratio.has_value());
  EXPECT_FALSE(b.power_watts.has_value());
  EXPECT_EQ(b.memory_total_bytes, 8ull << 30);
  EXPECT_EQ(b.temperature_celsius, 61.0);
  EXPECT_FALSE(b.pci_bus_id.has_value());
}

TEST(NvmlTest, WithoutTheDeprecatedTemperatureCallOnlyTemperatureIsAbsent) {
  auto monitor = NvmlMonitor::open(GB_FAKE_NVML_WITHOUT_TEMPERATURE_PATH);
  ASSERT_TRUE(monitor.ok()) << monitor.error().to_string();
  const auto readings = (*monitor)->read();
  ASSERT_EQ(readings.size(), 2u);
  for (const GpuReading& gpu : readings) EXPECT_FALSE(gpu.temperature_celsius.has_value()) << gpu.index;
  EXPECT_EQ(readings[0].utilization_ratio, 0.42);
  EXPECT_EQ(readings[0].memory_used_bytes, 1ull << 30);
  EXPECT_EQ(readings[0].power_watts, 123.456);
}

TEST(NvmlTest, CollectorEmitsGaugesAndOmitsFailedFields) {
  Registry registry;
  {
    auto monitor = NvmlMonitor::open(GB_FAKE_NVML_PATH);
    ASSERT_TRUE(monitor.ok()) << monitor.error().to_string();
    // GPU 0 is the compute device cuda:0 (matched by PCI address); GPU 1 does not say where it is.
    (*monitor)->register_collector(registry, {{"0000:3b:00.0", "cuda:0"}, {"0000:3c:00.0", "cuda:1"}});
  }  // the registry outlives the monitor: the collector keeps NVML loaded
  const int shutdowns_before = fake_counter("fake_nvml_shutdown_count");
  const std::string text = registry.prometheus_text();
  EXPECT_EQ(registry.collector_errors(), 0u);
  EXPECT_NE(text.find("# TYPE gpubridge_gpu_utilization_ratio gauge\n"
                      "gpubridge_gpu_utilization_ratio{gpu=\"0\",name=\"Fake GPU A\",device=\"cuda:0\"} 0.42\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gpubridge_gpu_memory_total_bytes{gpu=\"0\",name=\"Fake GPU A\",device=\"cuda:0\"} 17179869184\n"
                      "gpubridge_gpu_memory_total_bytes{gpu=\"1\",name=\"Fake \\\"GPU\\\" B\\\\\",device=\"\"} 8589934592\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gpubridge_gpu_power_watts{gpu=\"0\",name=\"Fake GPU A\",device=\"cuda:0\"} 123.456\n"), std::string::npos);
  EXPECT_EQ(text.find("gpubridge_gpu_power_watts{gpu=\"1\""), std::string::npos) << text;
  EXPECT_EQ(text.find("gpubridge_gpu_utilization_ratio{gpu=\"1\""), std::string::npos) << text;
  EXPECT_NE(text.find("gpubridge_gpu_temperature_celsius{gpu=\"1\",name=\"Fake \\\"GPU\\\" B\\\\\",device=\"\"} 61\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gpubridge_gpu_memory_used_bytes{gpu=\"1\",name=\"Fake \\\"GPU\\\" B\\\\\",device=\"\"} 1610612736\n"),
            std::string::npos)
      << text;
  // NVML was not shut down while the collector could still run.
  EXPECT_EQ(fake_counter("fake_nvml_shutdown_count"), shutdowns_before);
}

TEST(NvmlTest, SessionShutsDownWhenMonitorAndCollectorAreGone) {
  Registry registry;
  auto monitor = NvmlMonitor::open(GB_FAKE_NVML_PATH);
  ASSERT_TRUE(monitor.ok()) << monitor.error().to_string();
  const int shutdowns_before = fake_counter("fake_nvml_shutdown_count");
  const Registry::CollectorId id = (*monitor)->register_collector(registry);
  monitor = Error(ErrorCode::cancelled, "dropped by the test");
  EXPECT_EQ(fake_counter("fake_nvml_shutdown_count"), shutdowns_before);
  // Keep the library mapped across the close so the counter can still be read.
  void* keep = dlopen(GB_FAKE_NVML_PATH, RTLD_NOW);
  ASSERT_NE(keep, nullptr);
  registry.remove_collector(id);
  EXPECT_EQ(fake_counter("fake_nvml_shutdown_count"), shutdowns_before + 1);
  EXPECT_EQ(registry.prometheus_text().find("gpubridge_gpu_"), std::string::npos);
  dlclose(keep);
}

}  // namespace
}  // namespace gpubridge::telemetry

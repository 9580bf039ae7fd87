// Discovery: the CPU is always present; absent backends say why; required backends are present.
#include <gtest/gtest.h>

#include <set>

#include "test_support.hpp"

namespace gpubridge::compute {
namespace {

TEST(DeviceDiscovery, CpuIsAlwaysPresentAndDescribed) {
  auto ex = testing::make_executor();
  ASSERT_NE(ex, nullptr);
  bool found = false;
  for (const auto& b : ex->backends()) {
    if (b.kind != BackendKind::cpu) continue;
    found = true;
    ASSERT_TRUE(b.available);
    ASSERT_EQ(b.devices.size(), 1u);
    const Device& d = b.devices[0];
    EXPECT_EQ(d.id, "cpu:0");
    EXPECT_GT(d.compute_units, 0u);
    EXPECT_GT(d.memory_total_bytes, 0u);
    ASSERT_TRUE(d.memory_free_bytes.has_value());
    EXPECT_TRUE(d.caps.fp64);
  }
  EXPECT_TRUE(found);
}

TEST(DeviceDiscovery, EveryBackendIsReportedAndAbsentOnesSayWhy) {
  auto ex = testing::make_executor();
  std::set<std::string> kinds;
  for (const auto& b : ex->backends()) {
    kinds.insert(std::string(to_string(b.kind)));
    if (!b.available) {
      EXPECT_FALSE(b.reason.empty()) << to_string(b.kind);
      EXPECT_TRUE(b.devices.empty());
    } else {
      EXPECT_FALSE(b.devices.empty());
    }
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"cpu", "cuda", "opencl"}));
}

TEST(DeviceDiscovery, DeviceIdsAreUniqueAndBestFirst) {
  auto ex = testing::make_executor();
  auto devices = ex->devices();
  std::set<std::string> ids;
  for (const auto& d : devices) EXPECT_TRUE(ids.insert(d.id).second) << d.id;
  ASSERT_FALSE(devices.empty());
  // GPUs come before the CPU; OpenCL CPU devices after it.
  bool seen_cpu = false;
  for (const auto& d : devices) {
    if (d.backend == BackendKind::cpu) seen_cpu = true;
    if (d.is_gpu) {
      EXPECT_FALSE(seen_cpu) << d.id << " listed after the CPU";
    }
  }
}

TEST(DeviceDiscovery, DisabledBackendsSaySo) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  for (const auto& b : ex->backends()) {
    if (b.kind == BackendKind::cpu) continue;
    EXPECT_FALSE(b.available);
    EXPECT_EQ(b.reason, "disabled by configuration");
  }
}

TEST(DeviceDiscovery, RequiredBackendsArePresent) {
  const char* env = std::getenv("GPUBRIDGE_REQUIRE_BACKENDS");
  if (env == nullptr || *env == '\0') GTEST_SKIP() << "GPUBRIDGE_REQUIRE_BACKENDS not set";
  auto ex = testing::make_executor();
  for (const char* name : {"cpu", "cuda", "opencl"}) {
    if (!testing::backend_required(name)) continue;
    const std::string reason = testing::absent_reason(*ex, *parse_backend(name));
    EXPECT_TRUE(reason.empty()) << name << " is required but absent: " << reason;
  }
}

}  // namespace
}  // namespace gpubridge::compute

// The OpenCL backend on the machine's OpenCL devices (PoCL on CI machines).
#include "compute/backend_conformance.hpp"

namespace gpubridge::compute {
namespace {

class OpenClBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { executor = testing::make_executor({.enable_cuda = false, .enable_opencl = true}); }
  std::unique_ptr<Executor> executor;
};

TEST_F(OpenClBackendTest, DeviceModelIsFilled) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  for (const auto& b : executor->backends()) {
    if (b.kind != BackendKind::opencl) continue;
    ASSERT_FALSE(b.devices.empty());
    const Device& d = b.devices[0];
    EXPECT_EQ(d.id, "opencl:0");
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.memory_total_bytes, 0u);
    EXPECT_GT(d.compute_units, 0u);
    EXPECT_FALSE(d.memory_free_bytes.has_value()) << "OpenCL cannot tell free memory: absent, not zero";
  }
}

TEST_F(OpenClBackendTest, AllKernelsMatchCpu) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  testing::expect_all_kernels_match_cpu(*executor, BackendChoice::opencl);
}

TEST_F(OpenClBackendTest, WarmCallsReusePooledBuffers) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  testing::expect_pool_reuse(*executor, BackendChoice::opencl);
}

TEST_F(OpenClBackendTest, ConcurrentCallsAllComplete) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  testing::expect_concurrent_calls_complete(*executor, BackendChoice::opencl);
}

TEST_F(OpenClBackendTest, ZeroNormIsAnError) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  testing::expect_zero_norm_is_error(*executor, BackendChoice::opencl);
}

}  // namespace
}  // namespace gpubridge::compute

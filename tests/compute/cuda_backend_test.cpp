// The CUDA backend (label gpu): skipped with the reason when no CUDA device is present.
#include "compute/backend_conformance.hpp"

namespace gpubridge::compute {
namespace {

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { executor = testing::make_executor({.enable_cuda = true, .enable_opencl = false}); }
  std::unique_ptr<Executor> executor;
};

TEST_F(CudaBackendTest, DeviceModelIsFilled) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  for (const auto& b : executor->backends()) {
    if (b.kind != BackendKind::cuda) continue;
    const Device& d = b.devices.at(0);
    EXPECT_EQ(d.id, "cuda:0");
    EXPECT_TRUE(d.is_gpu);
    EXPECT_TRUE(d.caps.fp64);
    EXPECT_GT(d.memory_total_bytes, 0u);
    ASSERT_TRUE(d.memory_free_bytes.has_value());
    EXPECT_LE(*d.memory_free_bytes, d.memory_total_bytes);
  }
}

TEST_F(CudaBackendTest, AllKernelsMatchCpu) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  testing::expect_all_kernels_match_cpu(*executor, BackendChoice::cuda);
}

TEST_F(CudaBackendTest, WarmCallsReusePooledMemory) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  testing::expect_pool_reuse(*executor, BackendChoice::cuda);
  for (const auto& d : executor->stats().devices) {
    if (d.device_id == "cuda:0") {
      EXPECT_GT(d.staging_pool.hits, 0u) << "page-locked staging is reused";
    }
  }
}

TEST_F(CudaBackendTest, ConcurrentCallsAllComplete) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  testing::expect_concurrent_calls_complete(*executor, BackendChoice::cuda);
}

TEST_F(CudaBackendTest, ZeroNormIsAnError) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  testing::expect_zero_norm_is_error(*executor, BackendChoice::cuda);
}

TEST_F(CudaBackendTest, LargeCallsStreamThroughBoundedStaging) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  constexpr std::size_t n = 10'000'019;  // 40 MB per f32 input: above the packed-path limit
  auto x = testing::random_f32(n, 21);
  auto y = testing::random_f32(n, 22);
  for (const char* id : {"vector.add", "vector.normalize", "vector.dot"}) {
    SCOPED_TRACE(id);
    KernelCall call{id, DType::f32, {x}, {}};
    if (std::string(id) != "vector.normalize") call.inputs.emplace_back(y);
    auto gpu = executor->run(call, testing::strictly_on(BackendChoice::cuda));
    auto cpu = executor->run(call, testing::strictly_on(BackendChoice::cpu));
    ASSERT_TRUE(gpu.ok()) << gpu.error().to_string();
    ASSERT_TRUE(cpu.ok());
    const Tensor& a = gpu->outputs[0];
    const Tensor& b = cpu->outputs[0];
    ASSERT_EQ(a.count(), b.count());
    const double tol = a.count() == 1 ? 1e-2 : 1e-6;
    for (std::size_t i = 0; i < a.count(); i += 997) ASSERT_NEAR(a.at(i), b.at(i), tol) << i;
    ASSERT_NEAR(a.at(a.count() - 1), b.at(b.count() - 1), tol);
  }
  for (const auto& d : executor->stats().devices) {
    if (d.device_id != "cuda:0") continue;
    EXPECT_LE(d.staging_pool.peak_bytes_in_use, std::uint64_t{64} << 20) << "staging must not grow with the call";
    EXPECT_EQ(d.device_pool.bytes_in_use, 0u);
  }
}

TEST_F(CudaBackendTest, AutoPicksTheGpu) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  std::vector<float> a(100, 1.f), b(100, 2.f);
  auto r = executor->run({"vector.add", DType::f32, {a, b}, {}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.device_id, "cuda:0");
  EXPECT_EQ(r->report.fallback, FallbackReason::none);
}

TEST_F(CudaBackendTest, PoolLimitFallsBackAsOutOfMemory) {
  auto capped = testing::make_executor({.enable_cuda = true, .enable_opencl = false, .device_pool_limit_bytes = 1 << 20});
  GB_REQUIRE_BACKEND(capped, BackendKind::cuda);
  auto x = testing::random_f32(1 << 20, 1);
  auto r = capped->run({"reduce.sum", DType::f32, {x}, {}}, {.backend = BackendChoice::cuda});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.fallback, FallbackReason::out_of_memory);
  EXPECT_EQ(r->report.device_id, "cpu:0");
}

TEST(CudaAbsence, ReasonIsKeptWhenNoDevice) {
  auto ex = testing::make_executor();
  for (const auto& b : ex->backends()) {
    if (b.kind != BackendKind::cuda) continue;
    if (b.available) GTEST_SKIP() << "a CUDA device is present";
    EXPECT_FALSE(b.reason.empty());
    EXPECT_TRUE(b.devices.empty());
  }
}

}  // namespace
}  // namespace gpubridge::compute

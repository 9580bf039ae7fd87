// The dynamic batcher on CUDA (label gpu): skipped with the reason when no CUDA device is present.
#include "batcher_support.hpp"

namespace gpubridge::compute {
namespace {

class CudaBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { executor = testing::make_executor({.enable_cuda = true, .enable_opencl = false}); }
  std::unique_ptr<Executor> executor;
};

TEST_F(CudaBatcherTest, BatchesMatchUnbatchedRuns) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  testing::expect_batched_matches_unbatched(*executor, BackendChoice::cuda, BackendKind::cuda);
}

TEST_F(CudaBatcherTest, ZeroNormSegmentFailsAlone) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  testing::expect_zero_segment_fails_alone(*executor, BackendChoice::cuda);
}

TEST_F(CudaBatcherTest, LargeBatchesArePackedInParallelAndReuseStaging) {
  GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
  const KernelDef& add = **executor->catalog().lookup("vector.add");
  BatchPolicy policy;
  policy.max_batch = 4096;  // 4096 x 256 floats: above the parallel packing threshold
  policy.max_delay = std::chrono::seconds(10);
  auto batcher = DynamicBatcher::create(*executor, "vector.add", DType::f32, policy,
                                        testing::only_on(BackendChoice::cuda));
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  testing::Completions done;
  std::vector<std::unique_ptr<testing::Job>> jobs;
  for (unsigned i = 0; i < 4096; ++i) jobs.push_back(testing::make_job(add, DType::f32, 256, i, done));
  for (unsigned round = 1; round <= 3; ++round) {
    for (auto& j : jobs) ASSERT_TRUE((*batcher)->submit(j->request).ok());
    ASSERT_TRUE(done.wait_for(4096 * round));
  }
  for (auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok()) << j->request.status.error().to_string();
    ASSERT_EQ(j->request.report.batch_size, 4096u);
    const auto* a = reinterpret_cast<const float*>(j->inputs[0].data());
    const auto* b = reinterpret_cast<const float*>(j->inputs[1].data());
    for (std::size_t i = 0; i < 256; i += 51) ASSERT_EQ(testing::output_at(*j, DType::f32, i), a[i] + b[i]);
  }
  for (const auto& d : executor->stats().devices) {
    if (d.device_id != "cuda:0") continue;
    EXPECT_GT(d.staging_pool.hits, 0u);
    EXPECT_GT(d.device_pool.hits, 0u);
    EXPECT_EQ(d.device_pool.bytes_in_use, 0u);
  }
}

TEST_F(CudaBatcherTest, PoolLimitSendsTheBatchToTheCpuAsOutOfMemory) {
  auto capped = testing::make_executor({.enable_cuda = true, .enable_opencl = false, .device_pool_limit_bytes = 1 << 20});
  GB_REQUIRE_BACKEND(capped, BackendKind::cuda);
  const KernelDef& sum = **capped->catalog().lookup("reduce.sum");
  BatchPolicy policy;
  policy.max_batch = 4;
  policy.max_delay = std::chrono::seconds(10);
  auto batcher = DynamicBatcher::create(*capped, "reduce.sum", DType::f32, policy, {.backend = BackendChoice::cuda});
  ASSERT_TRUE(batcher.ok());
  testing::Completions done;
  std::vector<std::unique_ptr<testing::Job>> jobs;
  for (unsigned i = 0; i < 4; ++i) jobs.push_back(testing::make_job(sum, DType::f32, 100000, i, done));
  for (auto& j : jobs) ASSERT_TRUE((*batcher)->submit(j->request).ok());
  ASSERT_TRUE(done.wait_for(4));
  for (auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok());
    EXPECT_EQ(j->request.report.fallback, FallbackReason::out_of_memory);
  }
}

}  // namespace
}  // namespace gpubridge::compute

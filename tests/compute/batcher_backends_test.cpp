// The dynamic batcher on the real backends of this machine (CPU always, OpenCL on PoCL in CI):
// batched results equal one-by-one Executor::run results for every built-in kernel, f32 and f64,
// over segments of varied lengths in one launch; a failing segment fails alone; a batch the
// device's pool cannot hold runs on the CPU with the reason out_of_memory.
#include "batcher_support.hpp"

namespace gpubridge::compute {
namespace {

using testing::Completions;
using testing::make_job;

TEST(BatcherBackends, CpuBatchesMatchUnbatchedRuns) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  testing::expect_batched_matches_unbatched(*ex, BackendChoice::cpu, BackendKind::cpu);
}

class OpenClBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { executor = testing::make_executor({.enable_cuda = false, .enable_opencl = true}); }
  std::unique_ptr<Executor> executor;
};

TEST_F(OpenClBatcherTest, BatchesMatchUnbatchedRuns) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  testing::expect_batched_matches_unbatched(*executor, BackendChoice::opencl, BackendKind::opencl);
}

TEST_F(OpenClBatcherTest, ZeroNormSegmentFailsAlone) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  testing::expect_zero_segment_fails_alone(*executor, BackendChoice::opencl);
}

TEST_F(OpenClBatcherTest, WarmBatchesReuseStagingBuffers) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  const KernelDef& add = **executor->catalog().lookup("vector.add");
  BatchPolicy policy;
  policy.max_batch = 16;
  policy.max_delay = std::chrono::seconds(10);
  auto batcher = DynamicBatcher::create(*executor, "vector.add", DType::f32, policy, testing::only_on(BackendChoice::opencl));
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  Completions done;
  std::vector<std::unique_ptr<testing::Job>> jobs;
  for (unsigned i = 0; i < 16; ++i) jobs.push_back(make_job(add, DType::f32, 256, i, done));
  for (unsigned round = 1; round <= 10; ++round) {
    for (auto& j : jobs) ASSERT_TRUE((*batcher)->submit(j->request).ok());
    ASSERT_TRUE(done.wait_for(16 * round));
    for (auto& j : jobs) ASSERT_TRUE(j->request.status.ok());
  }
  EXPECT_EQ((*batcher)->stats().batches, 10u);
  const std::string ran_on = (*batcher)->device().id;  // the first OpenCL GPU if any, else opencl:0
  for (const auto& d : executor->stats().devices) {
    if (d.device_id != ran_on) continue;
    EXPECT_EQ(d.calls, 10u) << "one launch sequence per batch";
    // (Buffers go back to the pool just after on_done, so bytes_in_use may still count the last batch.)
    EXPECT_GT(d.staging_pool.hits, d.staging_pool.misses) << "warm batches reuse their staging buffers";
  }
}

TEST(OpenClBatcherLimits, BatchOverThePoolLimitRunsOnTheCpuAsOutOfMemory) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true, .device_pool_limit_bytes = 1 << 20});
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  const KernelDef& add = **ex->catalog().lookup("vector.add");
  BatchPolicy policy;
  policy.max_batch = 4;
  policy.max_delay = std::chrono::seconds(10);
  auto batcher = DynamicBatcher::create(*ex, "vector.add", DType::f32, policy, {.backend = BackendChoice::opencl});
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  EXPECT_EQ((*batcher)->device().backend, BackendKind::opencl);
  Completions done;
  std::vector<std::unique_ptr<testing::Job>> jobs;
  for (unsigned i = 0; i < 4; ++i) jobs.push_back(make_job(add, DType::f32, 100000, i, done));  // 3.2 MB of inputs
  for (auto& j : jobs) ASSERT_TRUE((*batcher)->submit(j->request).ok());
  ASSERT_TRUE(done.wait_for(4));
  for (auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok()) << j->request.status.error().to_string();
    EXPECT_EQ(j->request.report.fallback, FallbackReason::out_of_memory);
    EXPECT_EQ(j->request.report.backend, BackendKind::cpu);
    const auto* a = reinterpret_cast<const float*>(j->inputs[0].data());
    const auto* b = reinterpret_cast<const float*>(j->inputs[1].data());
    EXPECT_EQ(testing::output_at(*j, DType::f32, 99999), a[99999] + b[99999]);
  }
  EXPECT_EQ(ex->stats().fallback_count(FallbackReason::out_of_memory), 4u);
}

}  // namespace
}  // namespace gpubridge::compute

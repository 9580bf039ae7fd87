// The OpenCL backend on the machine's OpenCL devices (PoCL on CI machines), and its batch
// staging: buffers kept mapped between batches, copies split over threads for large batches.
#include <chrono>
#include <thread>

#include "compute/backend_conformance.hpp"
#include "compute/batcher_support.hpp"

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

// Runs one batch of vector.add f32 with one request per entry of `lengths` on `batcher` and checks
// every output element against the host sum.
void expect_one_add_batch(DynamicBatcher& batcher, const KernelDef& add, const std::vector<std::size_t>& lengths,
                          unsigned seed) {
  testing::Completions done;
  std::vector<std::unique_ptr<testing::Job>> jobs;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    jobs.push_back(testing::make_job(add, DType::f32, lengths[i], seed + static_cast<unsigned>(i), done));
  }
  for (auto& j : jobs) ASSERT_TRUE(batcher.submit(j->request).ok());
  ASSERT_TRUE(done.wait_for(jobs.size()));
  for (const auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok()) << j->request.status.error().to_string();
    ASSERT_EQ(j->request.report.backend, BackendKind::opencl);
    EXPECT_EQ(j->request.report.batch_size, lengths.size());
    const auto* a = reinterpret_cast<const float*>(j->inputs[0].data());
    const auto* b = reinterpret_cast<const float*>(j->inputs[1].data());
    const std::size_t n = j->request.inputs[0].count;
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(testing::output_at(*j, DType::f32, i), a[i] + b[i]) << "element " << i;
  }
}

Result<std::unique_ptr<DynamicBatcher>> add_batcher(Executor& ex, std::size_t max_batch) {
  BatchPolicy policy;
  policy.max_batch = max_batch;
  policy.max_delay = std::chrono::seconds(10);  // batches close by size
  return DynamicBatcher::create(ex, "vector.add", DType::f32, policy, testing::only_on(BackendChoice::opencl));
}

PoolStats staging_stats(Executor& ex, const std::string& device_id) {
  for (const auto& d : ex.stats().devices) {
    if (d.device_id == device_id) return d.staging_pool;
  }
  ADD_FAILURE() << "no statistics for " << device_id;
  return {};
}

// 8 segments of 100k floats: 6.4 MB packed and 3.2 MB scattered per batch, split over threads.
TEST_F(OpenClBackendTest, LargeBatchesSplitTheirCopiesAndMatchTheHost) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  const KernelDef& add = **executor->catalog().lookup("vector.add");
  auto batcher = add_batcher(*executor, 8);
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  const std::vector<std::size_t> lengths{100000, 99999, 100001, 1, 100000, 131072, 77777, 100000};
  for (unsigned round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    expect_one_add_batch(**batcher, add, lengths, 10 * round + 1);
  }
  EXPECT_EQ((*batcher)->stats().batches, 3u);
}

// One batch of n and one of 2n elements of vector.add, alternately: the first's upload buffer and
// the second's download buffer share a size class, so a buffer left mapped for writing by an
// upload comes back as a download, and one left mapped for reading comes back as an upload.
TEST_F(OpenClBackendTest, StagingBuffersChangeRolesBetweenBatches) {
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  const KernelDef& add = **executor->catalog().lookup("vector.add");
  auto batcher = add_batcher(*executor, 1);
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  for (unsigned round = 0; round < 12; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::size_t n = round % 2 == 0 ? 100000 : 200000;  // uploads ~0.8 / 1.6 MB, downloads 0.4 / 0.8 MB
    expect_one_add_batch(**batcher, add, {n}, round + 1);
  }
  EXPECT_EQ((*batcher)->stats().batches, 12u);
  const PoolStats stats = staging_stats(*executor, (*batcher)->device().id);
  EXPECT_GT(stats.hits, stats.misses) << "staging buffers are reused whatever role they had";
}

// A staging pool at its limit drops cached (still mapped) buffers to make room, then serves the
// larger batch; results stay right and the limit holds.
TEST(OpenClBatchStaging, CachedMappedBuffersAreDroppedForRoomUnderThePoolLimit) {
  constexpr std::uint64_t kLimit = 4u << 20;
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true, .device_pool_limit_bytes = kLimit});
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  const KernelDef& add = **ex->catalog().lookup("vector.add");
  auto batcher = add_batcher(*ex, 1);
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  // 1 MiB + 512 KiB classes cached after the first; the second needs 2 MiB + 1 MiB new ones.
  for (std::size_t n : {std::size_t{100000}, std::size_t{200000}, std::size_t{100000}}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    // A batch's staging buffers go back to the pool just after its requests completed (off their
    // latency): until then they are in use, not cached, and cannot make room.
    const auto returned = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (staging_stats(*ex, (*batcher)->device().id).bytes_in_use != 0 && std::chrono::steady_clock::now() < returned) {
      std::this_thread::yield();
    }
    ASSERT_EQ(staging_stats(*ex, (*batcher)->device().id).bytes_in_use, 0u);
    expect_one_add_batch(**batcher, add, {n}, static_cast<unsigned>(n % 97));
    EXPECT_LE(staging_stats(*ex, (*batcher)->device().id).bytes_reserved, kLimit);
  }
}

}  // namespace
}  // namespace gpubridge::compute

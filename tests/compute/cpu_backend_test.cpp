// The CPU implementations of the built-in kernels, against straightforward serial loops.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <numeric>

#include "compute/cpu/thread_pool.hpp"
#include "test_support.hpp"

namespace gpubridge::compute {
namespace {

class CpuBackendTest : public ::testing::TestWithParam<std::size_t> {
 protected:
  void SetUp() override {
    executor = testing::make_executor({.enable_cuda = false, .enable_opencl = false, .cpu_threads = 4});
    ASSERT_NE(executor, nullptr);
  }
  Result<KernelResult> run(KernelCall call) { return executor->run(std::move(call), {.backend = BackendChoice::cpu}); }
  std::unique_ptr<Executor> executor;
};

TEST_P(CpuBackendTest, ElementwiseKernelsMatchSerialLoops) {
  const std::size_t n = GetParam();
  auto x = testing::random_f64(n, 1);
  auto y = testing::random_f64(n, 2);
  auto add = run({"vector.add", DType::f64, {x, y}, {}});
  auto axpy = run({"vector.axpy", DType::f64, {x, y}, {-0.5}});
  ASSERT_TRUE(add.ok()) << add.error().to_string();
  ASSERT_TRUE(axpy.ok()) << axpy.error().to_string();
  EXPECT_EQ(add->report.device_id, "cpu:0");
  EXPECT_EQ(add->report.fallback, FallbackReason::none);
  auto sum = add->outputs[0].as<double>();
  auto ax = axpy->outputs[0].as<double>();
  ASSERT_EQ(sum.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(sum[i], x[i] + y[i]) << i;
    ASSERT_DOUBLE_EQ(ax[i], -0.5 * x[i] + y[i]) << i;
  }
}

TEST_P(CpuBackendTest, ReductionsMatchSerialSums) {
  const std::size_t n = GetParam();
  auto x = testing::random_f32(n, 3);
  auto y = testing::random_f32(n, 4);
  long double dot = 0, sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    dot += static_cast<long double>(x[i]) * y[i];
    sum += x[i];
  }
  auto d = run({"vector.dot", DType::f32, {x, y}, {}});
  auto s = run({"reduce.sum", DType::f32, {x}, {}});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(d->outputs[0].count(), 1u);
  EXPECT_NEAR(d->outputs[0].at(0), static_cast<double>(dot), 1e-6 * (1 + static_cast<double>(n)) * 1e-1);
  EXPECT_NEAR(s->outputs[0].at(0), static_cast<double>(sum), 1e-6 * (1 + static_cast<double>(n)) * 1e-1);
}

TEST_P(CpuBackendTest, NormalizeGivesUnitVector) {
  const std::size_t n = GetParam();
  auto x = testing::random_f64(n, 5);
  auto r = run({"vector.normalize", DType::f64, {x}, {}});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  auto out = r->outputs[0].as<double>();
  double ss = 0;
  for (double v : out) ss += v * v;
  EXPECT_NEAR(ss, 1.0, 1e-12);
  EXPECT_GT(out[0] * x[0], 0);  // same direction
}

INSTANTIATE_TEST_SUITE_P(Sizes, CpuBackendTest, ::testing::Values(1, 7, 1000, 100003, 1 << 20));

TEST(CpuKernels, NormalizeOfZeroVectorIsAnErrorWithNoOutput) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  std::vector<float> zeros(100, 0.f);
  auto r = ex->run({"vector.normalize", DType::f32, {zeros}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("zero L2 norm"), std::string::npos);
  EXPECT_EQ(ex->stats().fallback_count(FallbackReason::device_error), 0u);
}

TEST(CpuKernels, NormalizeOverflowingF32IsAnError) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  std::vector<float> big(4, 1e30f);
  auto r = ex->run({"vector.normalize", DType::f32, {big}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("not finite"), std::string::npos);
}

TEST(ThreadPool, ForChunksCoversRangeExactlyOnceAndNestsWithoutDeadlock) {
  ThreadPool pool(2, "gb-test");
  std::vector<std::atomic<int>> hits(100000);
  std::atomic<int> outer_done{0};
  // Every worker runs a task that itself runs a parallel loop on the same pool.
  for (int t = 0; t < 4; ++t) {
    pool.post([&] {
      pool.for_chunks(hits.size(), 1000, [&](std::size_t, std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      outer_done.fetch_add(1);
    });
  }
  while (outer_done.load() < 4) std::this_thread::yield();
  for (std::size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 4) << i;
}

TEST(ThreadPool, ChunkCountDependsOnSizeAndPool) {
  ThreadPool pool(4, "gb-test");
  EXPECT_EQ(pool.chunk_count(0, 10), 0u);
  EXPECT_EQ(pool.chunk_count(5, 10), 1u);
  EXPECT_EQ(pool.chunk_count(25, 10), 3u);
  EXPECT_EQ(pool.chunk_count(1000, 10), 4u);
}

TEST(CpuExecutor, ManyConcurrentCallbacksAllComplete) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false, .cpu_threads = 2});
  auto x = testing::random_f32(50000, 9);  // above the inline threshold: runs on the pool
  std::atomic<int> ok{0};
  constexpr int kCalls = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCalls / 4; ++i) {
        ex->submit({"reduce.sum", DType::f32, {x}, {}}, {}, [&](Result<KernelResult> r) {
          if (r.ok() && r->outputs[0].count() == 1) ok.fetch_add(1);
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  ex.reset();  // waits for every call and callback
  EXPECT_EQ(ok.load(), kCalls);
}

}  // namespace
}  // namespace gpubridge::compute

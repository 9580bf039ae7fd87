// No heap allocation per request on the batched hot path. This binary replaces the global
// operator new with a counting one, warms a batcher up (pools, kernel builds, queues), then
// pushes 10,000 requests through it in waves of one batch each and counts every operator new in
// the process (all threads) during that phase.
//
// Bound asserted: allocations <= kPerBatch * batches + kSlack. What a batch may allocate, once
// warm: the CPU backend's hand-off of a batch to its pool and the pool's parallel loop (a task
// closure, shared loop state, deque blocks); the OpenCL backend's per-batch record (pending
// call, event and buffer lists). None of it depends on the number of requests in the batch. With
// 100 requests per batch the bound is far below one allocation per request, and the test also
// asserts that directly (allocations * 10 < requests). Requests run inline on the host allocate
// nothing at all.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>

#include "support/counting_new.hpp"
#include "batcher_support.hpp"

namespace gpubridge::compute {
namespace {

constexpr std::size_t kBatch = 100;
constexpr std::size_t kRequests = 10'000;
constexpr std::uint64_t kPerBatch = 8;
constexpr std::uint64_t kSlack = 64;

// Completion without allocating: an atomic counter the test waits on (C++20 atomic wait).
std::atomic<std::uint64_t> g_completed{0};
void on_done(BatchRequest&) {
  g_completed.fetch_add(1, std::memory_order_release);
  g_completed.notify_all();
}
void wait_completed(std::uint64_t n) {
  for (std::uint64_t seen = g_completed.load(std::memory_order_acquire); seen < n;
       seen = g_completed.load(std::memory_order_acquire)) {
    g_completed.wait(seen);
  }
}

struct Measured {
  std::uint64_t allocations = 0;
  std::uint64_t batches = 0;
  bool all_ok = true;
};

// Runs `waves` waves of kBatch vector.add f32 requests (256 elements) through `batcher`.
Measured run_waves(DynamicBatcher& batcher, std::vector<testing::Job>& jobs, std::size_t waves) {
  Measured m;
  const std::uint64_t batches_before = batcher.stats().batches;
  const std::uint64_t before = gpubridge::testing::allocations();
  for (std::size_t w = 0; w < waves; ++w) {
    const std::uint64_t target = g_completed.load() + kBatch;
    for (auto& j : jobs) {
      if (!batcher.submit(j.request).ok()) m.all_ok = false;
    }
    wait_completed(target);
    for (auto& j : jobs) m.all_ok = m.all_ok && j.request.status.ok();
  }
  m.allocations = gpubridge::testing::allocations() - before;
  m.batches = batcher.stats().batches - batches_before;
  return m;
}

void expect_no_allocation_per_request(Executor& ex, BackendChoice backend) {
  BatchPolicy policy;
  policy.max_batch = kBatch;
  policy.max_delay = std::chrono::seconds(10);  // batches close by size
  auto batcher = DynamicBatcher::create(ex, "vector.add", DType::f32, policy, testing::only_on(backend));
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  const auto a = testing::random_f32(256, 1);
  const auto b = testing::random_f32(256, 2);
  std::vector<testing::Job> jobs(kBatch);
  for (auto& j : jobs) {
    j.output.resize(256);
    j.request.inputs[0] = TensorView(a);
    j.request.inputs[1] = TensorView(b);
    j.request.output = j.output.data();
    j.request.output_capacity = 256;
    j.request.on_done = on_done;
  }
  const Measured warm = run_waves(**batcher, jobs, 20);
  ASSERT_TRUE(warm.all_ok);
  const Measured m = run_waves(**batcher, jobs, kRequests / kBatch);
  ASSERT_TRUE(m.all_ok);
  const auto* out = reinterpret_cast<const float*>(jobs[7].output.data());
  EXPECT_EQ(out[100], a[100] + b[100]);
  ::testing::Test::RecordProperty("allocations", static_cast<int>(m.allocations));
  ::testing::Test::RecordProperty("batches", static_cast<int>(m.batches));
  std::printf("%s: %zu requests in %llu batches: %llu allocations (bound %llu)\n",
              std::string(to_string(backend)).c_str(), kRequests, static_cast<unsigned long long>(m.batches),
              static_cast<unsigned long long>(m.allocations),
              static_cast<unsigned long long>(kPerBatch * m.batches + kSlack));
  EXPECT_GE(m.batches, kRequests / kBatch);
  EXPECT_LE(m.allocations, kPerBatch * m.batches + kSlack);
  EXPECT_LT(m.allocations * 10, kRequests) << "far below one allocation per request";
}

#ifndef GB_ALLOC_TEST_CUDA  // batcher_alloc_test (integration): CPU and OpenCL

TEST(BatcherAllocations, CpuHotPathAllocatesNothingPerRequest) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  expect_no_allocation_per_request(*ex, BackendChoice::cpu);
}

// Small host requests run inline (DynamicBatcher::run_inline) allocate nothing at all once warm.
TEST(BatcherAllocations, CpuInlineRunsAllocateNothing) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  auto batcher = DynamicBatcher::create(*ex, "vector.add", DType::f32, {}, testing::only_on(BackendChoice::cpu));
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  const auto a = testing::random_f32(256, 1);
  const auto b = testing::random_f32(256, 2);
  std::vector<float> out(256);
  BatchRequest r;
  r.inputs[0] = TensorView(a);
  r.inputs[1] = TensorView(b);
  r.output = out.data();
  r.output_capacity = out.size();
  bool all_inline = true;
  for (int i = 0; i < 100; ++i) all_inline = all_inline && (*batcher)->run_inline(r) && r.status.ok();
  ASSERT_TRUE(all_inline);
  const std::uint64_t before = gpubridge::testing::allocations();
  for (std::size_t i = 0; i < kRequests; ++i) all_inline = all_inline && (*batcher)->run_inline(r) && r.status.ok();
  const std::uint64_t allocations = gpubridge::testing::allocations() - before;
  ASSERT_TRUE(all_inline);
  EXPECT_EQ(out[100], a[100] + b[100]);
  EXPECT_EQ((*batcher)->stats().ran_inline, kRequests + 100);
  EXPECT_EQ(allocations, 0u);
}

TEST(BatcherAllocations, OpenClHotPathAllocatesNothingPerRequest) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  expect_no_allocation_per_request(*ex, BackendChoice::opencl);
}

#else  // batcher_alloc_cuda_test (gpu)

TEST(BatcherAllocations, CudaHotPathAllocatesNothingPerRequest) {
  auto ex = testing::make_executor({.enable_cuda = true, .enable_opencl = false});
  GB_REQUIRE_BACKEND(ex, BackendKind::cuda);
  expect_no_allocation_per_request(*ex, BackendChoice::cuda);
}

#endif

}  // namespace
}  // namespace gpubridge::compute

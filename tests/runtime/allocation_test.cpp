// Zero heap allocation per warm in-process grain call. This binary replaces the global
// operator new to count every allocation in the process (all threads). After a warm-up, N calls
// must allocate fewer than N/100 times (the bound; the steady state measured here is 0).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>

#include "support/counting_new.hpp"
#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

class Counter : public Grain {
 public:
  Task<std::int64_t> add(std::int64_t n) { co_return value_ += n; }

 private:
  std::int64_t value_ = 0;
};

// Calls another grain in a loop: exercises grain-to-grain calls and continuation queues.
class Relay : public Grain {
 public:
  Task<std::uint64_t> pump(std::int64_t warmup, std::int64_t n) {
    auto target = get_grain<Counter>("relay-target");
    for (std::int64_t i = 0; i < warmup; ++i) co_await target.call<&Counter::add>(1);
    const std::uint64_t before = gpubridge::testing::allocations();
    for (std::int64_t i = 0; i < n; ++i) co_await target.call<&Counter::add>(1);
    co_return gpubridge::testing::allocations() - before;
  }
};

constexpr std::int64_t kWarmup = 20'000;
constexpr std::int64_t kCalls = 200'000;

TEST(Allocation, WarmTopLevelCallsAllocateNothing) {
  auto rt = testing::make_runtime({.worker_threads = 2});
  ASSERT_TRUE(rt->register_grain<Counter>().ok());
  auto counter = rt->get<Counter>("c");  // the reference is made once: creating ids allocates
  auto loop = [&]() -> Task<std::uint64_t> {
    for (std::int64_t i = 0; i < kWarmup; ++i) co_await counter.call<&Counter::add>(1);
    const std::uint64_t before = gpubridge::testing::allocations();
    for (std::int64_t i = 0; i < kCalls; ++i) co_await counter.call<&Counter::add>(1);
    co_return gpubridge::testing::allocations() - before;
  };
  const std::uint64_t allocations = rt->run(loop());
  EXPECT_LT(allocations, static_cast<std::uint64_t>(kCalls / 100)) << allocations << " allocations in " << kCalls << " calls";
  RecordProperty("allocations_per_200k_calls", static_cast<int>(allocations));
  std::printf("top-level caller: %llu allocations in %lld warm calls\n", static_cast<unsigned long long>(allocations),
              static_cast<long long>(kCalls));
}

TEST(Allocation, WarmGrainToGrainCallsAllocateNothing) {
  auto rt = testing::make_runtime({.worker_threads = 2});
  ASSERT_TRUE(rt->register_grain<Counter>().ok());
  ASSERT_TRUE(rt->register_grain<Relay>().ok());
  const std::uint64_t allocations = rt->run(rt->get<Relay>(1).call<&Relay::pump>(kWarmup, kCalls));
  EXPECT_LT(allocations, static_cast<std::uint64_t>(kCalls / 100)) << allocations << " allocations in " << kCalls << " calls";
  std::printf("grain-to-grain: %llu allocations in %lld warm calls\n", static_cast<unsigned long long>(allocations),
              static_cast<long long>(kCalls));
}

}  // namespace
}  // namespace gpubridge::runtime

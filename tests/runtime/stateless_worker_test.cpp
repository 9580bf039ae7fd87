// Stateless workers: one grain id served by several activations; concurrent calls spread over
// them, a new activation is created only when the ones looked at are busy, up to the configured
// maximum.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <semaphore>
#include <set>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

std::counting_semaphore<64> g_entered{0};
AsyncEvent* g_gate = nullptr;
std::mutex g_mu;
std::set<const void*> g_instances;

class Resizer : public Grain {
 public:
  Task<int> work(int x) {
    {
      std::lock_guard lock(g_mu);
      g_instances.insert(this);
    }
    g_entered.release();
    co_await *g_gate;
    co_return x * 2;
  }
  Task<int> quick(int x) { co_return x + 1; }
};

TEST(StatelessWorker, ConcurrentCallsGetSeveralActivationsUpToTheMax) {
  while (g_entered.try_acquire()) {
  }
  {
    std::lock_guard lock(g_mu);
    g_instances.clear();  // what an earlier run of this test (--gtest_repeat) left
  }
  auto rt = testing::make_runtime({.worker_threads = 2});
  ASSERT_TRUE(rt->register_grain<Resizer>({.stateless_worker = true, .max_local_activations = 4}).ok());
  AsyncEvent gate;
  g_gate = &gate;
  auto w = rt->get<Resizer>(0);
  constexpr int kCalls = 6;
  std::latch done(kCalls);
  std::atomic<int> sum{0};
  auto one = [&](int i) -> Task<void> {
    sum.fetch_add(co_await w.call<&Resizer::work>(i));
    done.count_down();
  };
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(rt->spawn(one(i)));
  // Four calls are inside at once: each activation is non-reentrant, so that takes four of them.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(g_entered.try_acquire_for(30s)) << "only " << i << " calls started";
  EXPECT_EQ(rt->activation_count("Resizer"), 4u);
  {
    std::lock_guard lock(g_mu);
    EXPECT_EQ(g_instances.size(), 4u);
  }
  gate.set();
  done.wait();
  EXPECT_EQ(sum.load(), 2 * (0 + 1 + 2 + 3 + 4 + 5));
  EXPECT_EQ(rt->activation_count("Resizer"), 4u) << "never more than max_local_activations";
  g_gate = nullptr;
}

TEST(StatelessWorker, SequentialCallsReuseAnIdleActivation) {
  auto rt = testing::make_runtime({.worker_threads = 2});
  ASSERT_TRUE(rt->register_grain<Resizer>({.stateless_worker = true}).ok());
  auto w = rt->get<Resizer>(1);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(rt->run(w.call<&Resizer::quick>(i)), i + 1);
  EXPECT_EQ(rt->activation_count("Resizer"), 1u);
}

TEST(StatelessWorker, MaxActivationsIsOnlyForStatelessWorkers) {
  auto rt = testing::make_runtime();
  const Status s = rt->register_grain<Resizer>({.max_local_activations = 3});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace gpubridge::runtime

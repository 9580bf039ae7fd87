// Stateless workers: one grain id served by several activations; concurrent calls spread over
// them, a new activation is created only when the ones looked at are busy, up to the configured
// maximum.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <map>
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

// A reentrant stateless worker whose calls wait before they answer (yield_now: a hop through
// its own activation's queue), so that many calls are in flight at once, as with batch grains.
std::mutex g_served_mu;
std::map<const void*, int> g_served;  // calls answered per activation

class Hopper : public Grain {
 public:
  Task<int> hop(int x) {
    co_await yield_now();
    {
      std::lock_guard lock(g_served_mu);
      ++g_served[this];
    }
    co_return x + 1;
  }
};

// Callers mostly stay with the activation on their own thread (no look at other workers'
// counters), yet the calls still spread over one activation per worker.
TEST(StatelessWorker, ReentrantCallsSpreadOverTheWorkersActivations) {
  {
    std::lock_guard lock(g_served_mu);
    g_served.clear();
  }
  auto rt = testing::make_runtime({.worker_threads = 2});
  ASSERT_TRUE(rt->register_grain<Hopper>({.reentrant = true, .stateless_worker = true, .max_local_activations = 2}).ok());
  constexpr int kCallers = 64;
  constexpr int kCallsEach = 200;
  std::latch done(kCallers);
  std::atomic<int> wrong{0};
  auto caller = [&](int c) -> Task<void> {
    auto w = rt->get<Hopper>(0);
    for (int i = 0; i < kCallsEach; ++i) {
      if (co_await w.call<&Hopper::hop>(c + i) != c + i + 1) wrong.fetch_add(1);
    }
    done.count_down();
  };
  for (int c = 0; c < kCallers; ++c) ASSERT_TRUE(rt->spawn(caller(c)));
  done.wait();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(rt->activation_count("Hopper"), 2u);
  std::lock_guard lock(g_served_mu);
  ASSERT_EQ(g_served.size(), 2u);
  int total = 0;
  for (const auto& [activation, calls] : g_served) total += calls;
  EXPECT_EQ(total, kCallers * kCallsEach);
  for (const auto& [activation, calls] : g_served) {
    EXPECT_GE(calls, total / 10) << "one activation served " << calls << " of " << total << " calls";
  }
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

// Idle activation collection, driven by a ManualClock (no sleeping): activations idle for the
// collection age are deactivated (on_deactivate runs) and the next call activates a fresh
// instance; busy or recently used activations stay.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <semaphore>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

std::atomic<int> g_deactivated{0};
std::counting_semaphore<64> g_deactivations{0};
std::binary_semaphore g_waiting{0};
AsyncEvent* g_gate = nullptr;

class Session : public Grain {
 public:
  Task<int> touch() { co_return ++calls_; }
  Task<void> wait_gate() {
    g_waiting.release();
    co_await *g_gate;
  }
  Task<void> on_deactivate() override {
    g_deactivated.fetch_add(1);
    g_deactivations.release();
    co_return;
  }

 private:
  int calls_ = 0;
};

class CollectionTest : public ::testing::Test {
 protected:
  void start(Clock::duration period) {
    g_deactivated = 0;
    while (g_deactivations.try_acquire()) {
    }
    clock_ = std::make_shared<ManualClock>();
    rt_ = testing::make_runtime(
        {.worker_threads = 2, .collection_age = 10min, .collection_period = period, .clock = clock_});
    ASSERT_TRUE(rt_->register_grain<Session>().ok());
  }
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Runtime> rt_;
};

TEST_F(CollectionTest, OnlyActivationsIdleForTheAgeAreCollected) {
  start(Clock::duration::zero());  // no periodic collection: explicit trigger only
  auto old = rt_->get<Session>("old");
  auto recent = rt_->get<Session>("recent");
  EXPECT_EQ(rt_->run(old.call<&Session::touch>()), 1);
  EXPECT_EQ(rt_->run(recent.call<&Session::touch>()), 1);
  clock_->advance(5min);
  EXPECT_EQ(rt_->run(recent.call<&Session::touch>()), 2);
  clock_->advance(6min);  // old idle 11 min, recent 6 min
  EXPECT_EQ(rt_->collect_idle_now(), 1u);
  EXPECT_EQ(g_deactivated.load(), 1);
  EXPECT_EQ(rt_->activation_count(), 1u);
  EXPECT_EQ(rt_->run(recent.call<&Session::touch>()), 3) << "recent keeps its activation";
  EXPECT_EQ(rt_->run(old.call<&Session::touch>()), 1) << "old comes back as a fresh activation";
  EXPECT_EQ(rt_->collect_idle_now(), 0u) << "nothing is idle for 10 minutes any more";
}

TEST_F(CollectionTest, BusyActivationIsNotCollected) {
  start(Clock::duration::zero());
  AsyncEvent gate;
  g_gate = &gate;
  auto s = rt_->get<Session>("busy");
  std::binary_semaphore done{0};
  auto caller = [&]() -> Task<void> {
    co_await s.call<&Session::wait_gate>();
    done.release();
  };
  rt_->run(s.call<&Session::touch>());  // activated, then a call that stays in its turn
  ASSERT_TRUE(rt_->spawn(caller()));
  ASSERT_TRUE(g_waiting.try_acquire_for(30s));
  clock_->advance(1h);  // last call started an hour ago, but it is still in its turn
  EXPECT_EQ(rt_->collect_idle_now(), 0u);
  gate.set();
  ASSERT_TRUE(done.try_acquire_for(30s));
  clock_->advance(11min);
  EXPECT_EQ(rt_->collect_idle_now(), 1u);
  g_gate = nullptr;
}

TEST_F(CollectionTest, PeriodicCollectionRunsOnTheClock) {
  start(1min);
  auto s = rt_->get<Session>("periodic");
  rt_->run(s.call<&Session::touch>());
  clock_->advance(30s);  // the first collection (at 1 min) finds it idle for 1 min only
  clock_->advance(30s);
  clock_->advance(10min);  // the collection due then finds it idle for 11 min
  ASSERT_TRUE(g_deactivations.try_acquire_for(30s)) << "periodic collection did not deactivate the idle grain";
  EXPECT_EQ(g_deactivated.load(), 1);
  EXPECT_EQ(rt_->run(s.call<&Session::touch>()), 1);
}

}  // namespace
}  // namespace gpubridge::runtime

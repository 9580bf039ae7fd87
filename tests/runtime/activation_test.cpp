// Activation lifecycle: a grain is activated by its first call (never by get()), on_activate runs
// before any call and on_deactivate as the last turn; a failed on_activate fails the waiting
// calls and the next call tries a fresh activation; many grains share a fixed worker pool.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

std::atomic<int> g_activations{0};
std::atomic<int> g_deactivations{0};

class Lifecycle : public Grain {
 public:
  Task<void> on_activate() override {
    g_activations.fetch_add(1);
    activated_ = true;
    co_return;
  }
  Task<void> on_deactivate() override {
    g_deactivations.fetch_add(1);
    co_return;
  }
  Task<bool> activated() { co_return activated_; }
  Task<int> bump() { co_return ++calls_; }
  Task<std::string> who() { co_return id().to_string(); }
  Task<void> retire() {
    deactivate_on_idle();
    co_return;
  }

 private:
  bool activated_ = false;
  int calls_ = 0;
};

std::atomic<int> g_failures_left{0};

class Flaky : public Grain {
 public:
  Task<void> on_activate() override {
    if (g_failures_left.fetch_sub(1) > 0) throw std::runtime_error("activation refused");
    co_return;
  }
  Task<int> ping() { co_return 1; }
};

class ThreadProbe : public Grain {
 public:
  Task<std::thread::id> where() { co_return std::this_thread::get_id(); }
};

class ActivationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_activations = 0;
    g_deactivations = 0;
    rt_ = testing::make_runtime({.worker_threads = 2});
    ASSERT_TRUE(rt_->register_grain<Lifecycle>().ok());
  }
  std::unique_ptr<Runtime> rt_;
};

TEST_F(ActivationTest, FirstCallActivatesAndOnActivateRunsFirst) {
  auto ref = rt_->get<Lifecycle>(1);
  EXPECT_EQ(rt_->activation_count(), 0u) << "get() must not activate";
  EXPECT_EQ(g_activations.load(), 0);
  EXPECT_TRUE(rt_->run(ref.call<&Lifecycle::activated>()));
  EXPECT_EQ(g_activations.load(), 1);
  EXPECT_EQ(rt_->activation_count(), 1u);
  EXPECT_EQ(rt_->run(ref.call<&Lifecycle::bump>()), 1);
  EXPECT_EQ(rt_->run(ref.call<&Lifecycle::bump>()), 2) << "the same activation serves later calls";
  EXPECT_EQ(g_activations.load(), 1);
  EXPECT_EQ(rt_->run(ref.call<&Lifecycle::who>()), "Lifecycle/1");
}

TEST_F(ActivationTest, DeactivateOnIdleRunsOnDeactivateAndNextCallGetsAFreshInstance) {
  auto ref = rt_->get<Lifecycle>("a");
  EXPECT_EQ(rt_->run(ref.call<&Lifecycle::bump>()), 1);
  rt_->run(ref.call<&Lifecycle::retire>());
  // The next call queues behind the deactivation and is forwarded to a new activation, whose
  // counter starts again: on_deactivate ran before it.
  EXPECT_EQ(rt_->run(ref.call<&Lifecycle::bump>()), 1);
  EXPECT_EQ(g_deactivations.load(), 1);
  EXPECT_EQ(g_activations.load(), 2);
}

TEST_F(ActivationTest, StopDeactivatesEveryActivation) {
  for (int i = 0; i < 10; ++i) rt_->run(rt_->get<Lifecycle>(i).call<&Lifecycle::bump>());
  EXPECT_EQ(rt_->activation_count(), 10u);
  rt_->stop();
  EXPECT_EQ(g_deactivations.load(), 10);
  EXPECT_EQ(rt_->activation_count(), 0u);
}

TEST(Activation, FailedOnActivateFailsTheCallAndTheNextCallRetries) {
  g_failures_left = 1;
  auto rt = testing::make_runtime();
  ASSERT_TRUE(rt->register_grain<Flaky>().ok());
  auto ref = rt->get<Flaky>(7);
  try {
    rt->run(ref.call<&Flaky::ping>());
    FAIL() << "the call must fail with on_activate's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "activation refused");
  }
  EXPECT_EQ(rt->activation_count(), 0u) << "a failed activation leaves the directory";
  EXPECT_EQ(rt->run(ref.call<&Flaky::ping>()), 1);
}

TEST(Activation, ThousandGrainsShareTheFixedWorkerPool) {
  auto rt = testing::make_runtime({.worker_threads = 2});
  ASSERT_TRUE(rt->register_grain<ThreadProbe>().ok());
  Runtime* r = rt.get();
  auto fan_out = [r]() -> Task<std::set<std::thread::id>> {
    std::set<std::thread::id> threads;
    for (int i = 0; i < 1000; ++i) threads.insert(co_await r->get<ThreadProbe>(i).call<&ThreadProbe::where>());
    co_return threads;
  };
  const auto threads = rt->run(fan_out());
  EXPECT_EQ(rt->activation_count(), 1000u);
  EXPECT_LE(threads.size(), 2u) << "grains run on the two workers, no thread per grain";
  EXPECT_EQ(rt->worker_count(), 2u);
}

TEST(Activation, StateNamesAreStable) {
  EXPECT_EQ(to_string(ActivationState::creating), "creating");
  EXPECT_EQ(to_string(ActivationState::activating), "activating");
  EXPECT_EQ(to_string(ActivationState::valid), "valid");
  EXPECT_EQ(to_string(ActivationState::deactivating), "deactivating");
  EXPECT_EQ(to_string(ActivationState::invalid), "invalid");
}

}  // namespace
}  // namespace gpubridge::runtime

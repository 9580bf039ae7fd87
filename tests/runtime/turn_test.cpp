// Turn-based execution: a non-reentrant activation runs one call at a time from its start to its
// end, including the time the call spends suspended in co_await (on another grain, or on I/O
// completed by another thread). Asserted with in-grain counters, not with timing.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <semaphore>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

class Echo : public Grain {
 public:
  Task<int> ping(int v) { co_return v; }
};

// Gates for the I/O variant: the test thread opens them one at a time.
struct Gates {
  std::vector<std::unique_ptr<AsyncEvent>> events;
  std::counting_semaphore<1024> entered{0};
  std::atomic<int> current{-1};
};
Gates* g_gates = nullptr;

class Serial : public Grain {
 public:
  // Awaits another grain in the middle of the turn.
  Task<void> via_grain(int i) {
    enter();
    auto echo = get_grain<Echo>(i % 4);
    for (int k = 0; k < 3; ++k) {
      if (co_await echo.call<&Echo::ping>(k) != k) throw std::logic_error("echo");
      check_alone();
    }
    leave();
  }
  // Awaits I/O that another thread completes.
  Task<void> via_io(int i) {
    enter();
    g_gates->current.store(i);
    g_gates->entered.release();
    co_await *g_gates->events[static_cast<std::size_t>(i)];
    check_alone();
    leave();
  }
  // Yields the thread to queued work (yield_now) in the middle of the turn.
  Task<void> via_yield() {
    enter();
    for (int k = 0; k < 3; ++k) {
      co_await yield_now();
      check_alone();
    }
    leave();
  }
  Task<int> overlaps() { co_return overlaps_; }
  Task<int> completed() { co_return completed_; }

 private:
  void enter() {
    if (inside_ != 0) ++overlaps_;
    ++inside_;
  }
  void check_alone() {
    if (inside_ != 1) ++overlaps_;
  }
  void leave() {
    --inside_;
    ++completed_;
  }
  int inside_ = 0;  // plain int on purpose: turns must serialise access to it
  int overlaps_ = 0;
  int completed_ = 0;
};

class TurnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = testing::make_runtime({.worker_threads = 2});
    ASSERT_TRUE(rt_->register_grain<Echo>().ok());
    ASSERT_TRUE(rt_->register_grain<Serial>().ok());
  }
  std::unique_ptr<Runtime> rt_;
};

TEST_F(TurnTest, ConcurrentCallsNeverOverlapAcrossGrainAwaits) {
  constexpr int kCalls = 400;
  auto serial = rt_->get<Serial>("s");
  std::latch done(kCalls);
  auto one = [&](int i) -> Task<void> {
    co_await serial.call<&Serial::via_grain>(i);
    done.count_down();
  };
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(rt_->spawn(one(i)));
  done.wait();
  EXPECT_EQ(rt_->run(serial.call<&Serial::completed>()), kCalls);
  EXPECT_EQ(rt_->run(serial.call<&Serial::overlaps>()), 0);
}

TEST_F(TurnTest, ACallSuspendedOnIoKeepsTheTurn) {
  constexpr int kCalls = 50;
  Gates gates;
  for (int i = 0; i < kCalls; ++i) gates.events.push_back(std::make_unique<AsyncEvent>());
  g_gates = &gates;
  auto serial = rt_->get<Serial>("io");
  std::latch done(kCalls);
  auto one = [&](int i) -> Task<void> {
    co_await serial.call<&Serial::via_io>(i);
    done.count_down();
  };
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(rt_->spawn(one(i)));
  for (int k = 0; k < kCalls; ++k) {
    ASSERT_TRUE(gates.entered.try_acquire_for(std::chrono::seconds(30))) << "call " << k << " never started";
    // While this call waits for its I/O, no other call of the grain may have entered.
    EXPECT_FALSE(gates.entered.try_acquire()) << "a second call started while call " << gates.current << " waited";
    gates.events[static_cast<std::size_t>(gates.current.load())]->set();
  }
  done.wait();
  EXPECT_EQ(rt_->run(serial.call<&Serial::overlaps>()), 0);
  EXPECT_EQ(rt_->run(serial.call<&Serial::completed>()), kCalls);
  g_gates = nullptr;
}

TEST_F(TurnTest, YieldingKeepsTheTurn) {
  auto g = rt_->get<Serial>("yield");
  constexpr int kCalls = 32;
  std::latch done(kCalls);
  auto one = [&]() -> Task<void> {
    co_await g.call<&Serial::via_yield>();
    done.count_down();
  };
  for (int i = 0; i < kCalls; ++i) ASSERT_TRUE(rt_->spawn(one()));
  done.wait();
  EXPECT_EQ(rt_->run(g.call<&Serial::overlaps>()), 0);
  EXPECT_EQ(rt_->run(g.call<&Serial::completed>()), kCalls);
}

TEST_F(TurnTest, CallsOfOneCallerArriveInOrder) {
  class Log : public Grain {};
  auto serial = rt_->get<Serial>("order");
  auto caller = [&]() -> Task<int> {
    for (int i = 0; i < 100; ++i) co_await serial.call<&Serial::via_grain>(i);
    co_return co_await serial.call<&Serial::completed>();
  };
  EXPECT_EQ(rt_->run(caller()), 100);
}

}  // namespace
}  // namespace gpubridge::runtime

// Grain timers: ticks run as turns of their activation (never during another turn of a
// non-reentrant grain), stop when cancelled or when the activation deactivates, and report
// their exceptions. Driven by a ManualClock; "no tick happened" is checked against a witness
// timer that is due later (the timer thread fires in due order, and an activation runs its
// queued ticks in order), never by waiting.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <semaphore>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

std::counting_semaphore<1024> g_ticked{0};
std::counting_semaphore<1024> g_witness{0};
std::atomic<int> g_ticks{0};
std::binary_semaphore g_holding{0};
AsyncEvent* g_gate = nullptr;

class Ticker : public Grain {
 public:
  Task<void> on_activate() override {
    timer_ = register_timer(1s, 1s, [this]() -> Task<void> {
      ++ticks_;
      g_ticks.fetch_add(1);
      if (throw_on_tick_) throw std::runtime_error("tick failed");
      g_ticked.release();
      co_return;
    });
    co_return;
  }
  Task<int> ticks() { co_return ticks_; }
  Task<bool> cancel() { co_return cancel_timer(timer_); }
  Task<void> fail_ticks() {
    throw_on_tick_ = true;
    co_return;
  }
  Task<void> retire() {
    deactivate_on_idle();
    co_return;
  }
  // Holds the turn until the gate opens; returns the ticks that ran meanwhile.
  Task<int> hold() {
    const int before = ticks_;
    g_holding.release();
    co_await *g_gate;
    co_return ticks_ - before;
  }
  Task<void> witness(Clock::duration due) {
    register_timer(due, Clock::duration::zero(), []() -> Task<void> {
      g_witness.release();
      co_return;
    });
    co_return;
  }

 private:
  TimerId timer_ = 0;
  int ticks_ = 0;
  bool throw_on_tick_ = false;
};

class TimerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_ticks = 0;
    clock_ = std::make_shared<ManualClock>();
    rt_ = testing::make_runtime({.worker_threads = 2,
                                 .collection_period = Clock::duration::zero(),
                                 .clock = clock_,
                                 .on_unhandled_error = sink_.handler()});
    ASSERT_TRUE(rt_->register_grain<Ticker>().ok());
  }
  void expect_witness() { ASSERT_TRUE(g_witness.try_acquire_for(30s)) << "witness timer did not fire"; }
  testing::ErrorSink sink_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<Runtime> rt_;
};

TEST_F(TimerTest, TicksFollowTheClock) {
  auto t = rt_->get<Ticker>("a");
  EXPECT_EQ(rt_->run(t.call<&Ticker::ticks>()), 0);
  clock_->advance(1s);
  ASSERT_TRUE(g_ticked.try_acquire_for(30s));
  // The period runs from the end of the previous tick's turn: a call queued behind the tick
  // returns once that turn ended (and the timer was re-armed).
  EXPECT_EQ(rt_->run(t.call<&Ticker::ticks>()), 1);
  clock_->advance(1s);
  ASSERT_TRUE(g_ticked.try_acquire_for(30s));
  EXPECT_EQ(rt_->run(t.call<&Ticker::ticks>()), 2);
}

TEST_F(TimerTest, CancelledTimerStopsTicking) {
  auto t = rt_->get<Ticker>("b");
  EXPECT_TRUE(rt_->run(t.call<&Ticker::cancel>()));
  EXPECT_FALSE(rt_->run(t.call<&Ticker::cancel>())) << "already cancelled";
  rt_->run(t.call<&Ticker::witness>(Clock::duration(2s)));
  clock_->advance(2s);  // the cancelled timer was due at 1 s, the witness at 2 s
  expect_witness();
  EXPECT_EQ(rt_->run(t.call<&Ticker::ticks>()), 0);
}

TEST_F(TimerTest, TimersStopWhenTheActivationDeactivates) {
  auto t = rt_->get<Ticker>("c");
  auto w = rt_->get<Ticker>("witness");
  rt_->run(w.call<&Ticker::cancel>());  // w's own periodic timer off; it only hosts the witness
  rt_->run(t.call<&Ticker::retire>());
  rt_->run(w.call<&Ticker::witness>(Clock::duration(2s)));
  clock_->advance(2s);
  expect_witness();
  EXPECT_EQ(g_ticks.load(), 0) << "a deactivated grain's timer ticked";
}

TEST_F(TimerTest, TickWaitsForTheRunningTurn) {
  AsyncEvent gate;
  g_gate = &gate;
  auto t = rt_->get<Ticker>("d");
  auto w = rt_->get<Ticker>("witness");
  rt_->run(w.call<&Ticker::cancel>());
  rt_->run(t.call<&Ticker::ticks>());
  std::binary_semaphore done{0};
  std::atomic<int> during{-1};
  auto holder = [&]() -> Task<void> {
    during = co_await t.call<&Ticker::hold>();
    done.release();
  };
  ASSERT_TRUE(rt_->spawn(holder()));
  ASSERT_TRUE(g_holding.try_acquire_for(30s)) << "hold() did not start";
  rt_->run(w.call<&Ticker::witness>(Clock::duration(2s)));
  clock_->advance(2s);  // t's tick (due 1 s) is queued before the witness fires (due 2 s)
  expect_witness();
  gate.set();
  ASSERT_TRUE(done.try_acquire_for(30s));
  EXPECT_EQ(during.load(), 0) << "a tick ran inside another turn";
  ASSERT_TRUE(g_ticked.try_acquire_for(30s)) << "the tick runs once the turn ends";
  g_gate = nullptr;
}

TEST_F(TimerTest, TickExceptionIsReportedAndTheTimerGoesOn) {
  auto t = rt_->get<Ticker>("e");
  rt_->run(t.call<&Ticker::fail_ticks>());
  rt_->run(t.call<&Ticker::witness>(Clock::duration(1500ms)));
  clock_->advance(1s);
  clock_->advance(500ms);
  expect_witness();
  EXPECT_EQ(rt_->run(t.call<&Ticker::ticks>()), 1);
  clock_->advance(1s);  // re-armed at 1.5 s + 1 s after the failing tick ended... or earlier
  clock_->advance(1s);
  rt_->run(t.call<&Ticker::witness>(Clock::duration(1s)));
  clock_->advance(1s);
  expect_witness();
  EXPECT_GE(rt_->run(t.call<&Ticker::ticks>()), 2) << "the timer stopped after a failing tick";
  rt_->stop();
  bool reported = false;
  for (const auto& m : sink_.messages()) reported = reported || m.find("tick failed") != std::string::npos;
  EXPECT_TRUE(reported);
}

TEST(Timer, RealClockShortPeriod) {
  auto rt = testing::make_runtime({.worker_threads = 2});
  class Fast : public Grain {
   public:
    Task<void> start() {
      register_timer(1ms, 1ms, [this]() -> Task<void> {
        ++n_;
        g_ticked.release();
        co_return;
      });
      co_return;
    }
    Task<int> n() { co_return n_; }

   private:
    int n_ = 0;
  };
  ASSERT_TRUE(rt->register_grain<Fast>().ok());
  while (g_ticked.try_acquire()) {
  }
  auto f = rt->get<Fast>(1);
  rt->run(f.call<&Fast::start>());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(g_ticked.try_acquire_for(30s)) << "tick " << i;
  EXPECT_GE(rt->run(f.call<&Fast::n>()), 3);
}

}  // namespace
}  // namespace gpubridge::runtime

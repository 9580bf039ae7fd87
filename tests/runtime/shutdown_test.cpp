// Runtime::stop(): in-flight calls finish (and may still call other grains), new top-level calls
// fail with "unavailable: runtime stopped", every activation deactivates, calls stuck beyond the
// timeout are answered with `cancelled` instead of hanging, and nothing leaks (sanitizer runs).
// A runtime may be destroyed as soon as work posted from another thread ran.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <semaphore>
#include <thread>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

std::binary_semaphore g_entered{0};
AsyncEvent* g_gate = nullptr;
std::atomic<int> g_deactivated{0};

class Helper : public Grain {
 public:
  Task<int> twice(int x) { co_return 2 * x; }
};

class Worker : public Grain {
 public:
  // Waits for the gate, then calls another grain (activated during the drain).
  Task<int> slow(int x) {
    g_entered.release();
    co_await *g_gate;
    co_return co_await get_grain<Helper>(x).call<&Helper::twice>(x);
  }
  Task<int> quick() { co_return 1; }
  Task<void> on_deactivate() override {
    g_deactivated.fetch_add(1);
    co_return;
  }
};

std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

class ShutdownTest : public ::testing::Test {
 protected:
  void start(std::chrono::milliseconds stop_timeout) {
    g_deactivated = 0;
    while (g_entered.try_acquire()) {
    }
    rt_ = testing::make_runtime({.worker_threads = 2, .stop_timeout = stop_timeout});
    ASSERT_TRUE(rt_->register_grain<Worker>().ok());
    ASSERT_TRUE(rt_->register_grain<Helper>().ok());
  }
  AsyncEvent gate_;  // declared before the runtime: outlives the frames waiting on it
  std::unique_ptr<Runtime> rt_;
};

TEST_F(ShutdownTest, InFlightCallsFinishNewCallsAreRefused) {
  start(30s);
  g_gate = &gate_;
  auto w = rt_->get<Worker>(1);
  rt_->run(rt_->get<Worker>(2).call<&Worker::quick>());
  std::atomic<int> result{0};
  std::binary_semaphore done{0};
  auto caller = [&]() -> Task<void> {
    result = co_await w.call<&Worker::slow>(21);
    done.release();
  };
  ASSERT_TRUE(rt_->spawn(caller()));
  ASSERT_TRUE(g_entered.try_acquire_for(30s));
  std::thread stopper([&] { rt_->stop(); });
  while (!rt_->stopped()) std::this_thread::yield();  // stop() began draining
  try {
    sync_wait(w.call<&Worker::quick>());
    FAIL() << "a new call during stop must be refused";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::unavailable);
    EXPECT_EQ(std::string(e.what()), "unavailable: runtime stopped");
  }
  gate_.set();  // the in-flight call completes, calling Helper on the way
  ASSERT_TRUE(done.try_acquire_for(30s));
  stopper.join();
  EXPECT_EQ(result.load(), 42);
  EXPECT_EQ(g_deactivated.load(), 2) << "both Worker activations ran on_deactivate";
  EXPECT_EQ(rt_->activation_count(), 0u);
  try {
    sync_wait(w.call<&Worker::quick>());
    FAIL() << "calls after stop must fail";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().to_string(), "unavailable: runtime stopped");
  }
  EXPECT_THROW(rt_->run(w.call<&Worker::quick>()), ErrorException);
  auto nop = []() -> Task<void> { co_return; };
  EXPECT_FALSE(rt_->spawn(nop())) << "spawn after stop must refuse";
  rt_->stop();  // idempotent
  g_gate = nullptr;
}

TEST_F(ShutdownTest, StuckCallIsCancelledAndQueuedCallsFailWithinTheBound) {
  start(200ms);
  g_gate = &gate_;  // never set: the call is stuck
  auto w = rt_->get<Worker>(7);
  std::exception_ptr stuck_error, queued_error;
  std::counting_semaphore<2> done{0};
  auto stuck = [&]() -> Task<void> {
    try {
      co_await w.call<&Worker::slow>(1);
    } catch (...) {
      stuck_error = std::current_exception();
    }
    done.release();
  };
  auto queued = [&]() -> Task<void> {
    try {
      co_await w.call<&Worker::quick>();
    } catch (...) {
      queued_error = std::current_exception();
    }
    done.release();
  };
  ASSERT_TRUE(rt_->spawn(stuck()));
  ASSERT_TRUE(g_entered.try_acquire_for(30s));
  ASSERT_TRUE(rt_->spawn(queued()));
  const auto t0 = std::chrono::steady_clock::now();
  rt_->stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 20s) << "stop() must be bounded";
  ASSERT_TRUE(done.try_acquire_for(30s));
  ASSERT_TRUE(done.try_acquire_for(30s));
  ASSERT_TRUE(stuck_error);
  EXPECT_EQ(testing::code_of(stuck_error), ErrorCode::cancelled) << message_of(stuck_error);
  EXPECT_NE(message_of(stuck_error).find("runtime stopped before the call to Worker::slow on Worker/7 completed"),
            std::string::npos)
      << message_of(stuck_error);
  ASSERT_TRUE(queued_error);
  const ErrorCode queued_code = testing::code_of(queued_error);
  EXPECT_TRUE(queued_code == ErrorCode::unavailable) << message_of(queued_error);
  EXPECT_EQ(g_deactivated.load(), 0) << "an abandoned activation does not run on_deactivate";
  EXPECT_EQ(rt_->activation_count(), 0u);
  EXPECT_EQ(rt_->stats().activations_current, 0u) << "every activation is counted out once";
  g_gate = nullptr;
}

TEST_F(ShutdownTest, DestructorStopsARunningRuntime) {
  start(30s);
  for (int i = 0; i < 20; ++i) rt_->run(rt_->get<Worker>(i).call<&Worker::quick>());
  rt_.reset();
  EXPECT_EQ(g_deactivated.load(), 20);
}

// Threads outside the runtime post work to it (batchers and ring clients resume calls). Once that
// work ran, the owner may destroy the runtime while the posting thread lives on: the poster must
// be done with the scheduler by then (ThreadSanitizer found its wake-up still running, after the
// queue's lock, against the destructor).
void set_flag(std::atomic<bool>& flag) { flag.store(true); }
Task<void> raise(std::atomic<bool>& flag) {
  set_flag(flag);
  co_return;
}

TEST(RuntimeTeardown, DestroyedRightAfterWorkPostedFromAnotherThreadRan) {
  for (int round = 0; round < 20; ++round) {
    auto rt = testing::make_runtime({.worker_threads = 2});
    std::atomic<bool> ran{false};
    std::atomic<bool> posted{false};
    std::thread poster([&rt, &ran, &posted] {
      posted.store(rt->spawn(raise(ran)));
    });
    while (!ran.load()) std::this_thread::yield();
    rt.reset();
    poster.join();
    EXPECT_TRUE(posted.load());
  }
}

}  // namespace
}  // namespace gpubridge::runtime

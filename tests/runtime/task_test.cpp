// Task<T>: laziness, values, exceptions, symmetric transfer without stack growth, frame reuse,
// and starting tasks from non-coroutine code (sync_wait, Runtime::run, Runtime::spawn).
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "gpubridge/runtime/runtime.hpp"
#include "gpubridge/runtime/sync_wait.hpp"
#include "gpubridge/runtime/task.hpp"
#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

Task<int> value(int v) { co_return v; }
Task<std::string> text() { co_return std::string(100, 'x'); }
Task<void> nothing() { co_return; }
Task<int> thrower() {
  throw std::runtime_error("task failed");
  co_return 0;
}

TEST(Task, IsLazyAndReturnsItsValue) {
  bool started = false;
  auto make = [&]() -> Task<int> {
    started = true;
    co_return 7;
  };
  Task<int> t = make();
  EXPECT_FALSE(started) << "creating a Task must not run its body";
  EXPECT_EQ(sync_wait(std::move(t)), 7);
  EXPECT_TRUE(started);
  EXPECT_EQ(sync_wait(text()).size(), 100u);
  sync_wait(nothing());
}

TEST(Task, IsMoveOnlyAndDestroyingAnUnstartedTaskIsSafe) {
  static_assert(!std::is_copy_constructible_v<Task<int>>);
  static_assert(std::is_nothrow_move_constructible_v<Task<int>>);
  Task<int> a = value(1);
  Task<int> b = std::move(a);
  EXPECT_FALSE(a.valid());
  EXPECT_TRUE(b.valid());
  Task<int> c = value(2);
  c = std::move(b);  // destroys c's unstarted frame
  EXPECT_EQ(sync_wait(std::move(c)), 1);
}

TEST(Task, ExceptionReachesTheAwaiter) {
  auto outer = []() -> Task<std::string> {
    try {
      co_await thrower();
    } catch (const std::runtime_error& e) {
      co_return std::string("caught: ") + e.what();
    }
    co_return "not caught";
  };
  EXPECT_EQ(sync_wait(outer()), "caught: task failed");
  EXPECT_THROW(sync_wait(thrower()), std::runtime_error);
}

// One million synchronously completing awaits in a loop and a recursion 100000 frames deep: both
// would overflow an 8 MiB stack if awaiting or returning nested a call (the sanitizer builds
// included, where g++ emits no tail calls).
TEST(Task, SymmetricTransferKeepsTheStackFlat) {
  auto loop = []() -> Task<long> {
    long sum = 0;
    for (int i = 0; i < 1'000'000; ++i) sum += co_await value(i);
    co_return sum;
  };
  EXPECT_EQ(sync_wait(loop()), 499999500000L);
  struct Rec {
    static Task<int> depth(int d) {
      if (d == 0) co_return 0;
      co_return 1 + co_await depth(d - 1);
    }
  };
  EXPECT_EQ(sync_wait(Rec::depth(100'000)), 100'000);
}

TEST(Task, WarmFramesComeFromThePool) {
  auto loop = [](int n) -> Task<long> {
    long sum = 0;
    for (int i = 0; i < n; ++i) sum += co_await value(i);
    co_return sum;
  };
  sync_wait(loop(1000));  // warm this thread's free lists
  const auto before = FramePool::new_blocks();
  sync_wait(loop(100'000));
  EXPECT_EQ(FramePool::new_blocks(), before) << "100000 warm frames must all be recycled";
}

TEST(Task, FramesFreedOnAnotherThreadAreReused) {
  // Frames allocated on one thread and freed on another: the free lists exchange batches, so
  // the steady state stops going to the heap.
  constexpr int kRounds = 10'000;
  auto make = []() -> Task<int> { co_return 1; };
  for (int pass = 0; pass < 3; ++pass) {
    const auto before = FramePool::new_blocks();
    std::vector<Task<int>> tasks;
    tasks.reserve(kRounds);
    for (int i = 0; i < kRounds; ++i) tasks.push_back(make());
    std::thread([&] { tasks.clear(); }).join();
    if (pass == 2) {
      EXPECT_LT(FramePool::new_blocks() - before, static_cast<std::uint64_t>(kRounds) / 10);
    }
  }
}

TEST(Task, RuntimeRunExecutesOnAWorkerAndReturnsTheValue) {
  auto rt = testing::make_runtime({.worker_threads = 2});
  const auto caller = std::this_thread::get_id();
  auto where = [&]() -> Task<bool> { co_return std::this_thread::get_id() != caller; };
  EXPECT_TRUE(rt->run(where()));
  EXPECT_EQ(rt->run(value(42)), 42);
  EXPECT_THROW(rt->run(thrower()), std::runtime_error);
}

TEST(Task, SpawnRunsFireAndForgetAndReportsItsException) {
  testing::ErrorSink sink;
  auto rt = testing::make_runtime({.worker_threads = 2, .on_unhandled_error = sink.handler()});
  std::latch done(2);
  std::atomic<int> ran{0};
  auto job = [&]() -> Task<void> {
    ran.fetch_add(1);
    done.count_down();
    co_return;
  };
  auto failing = [&]() -> Task<void> {
    done.count_down();
    throw std::runtime_error("spawned failure");
    co_return;
  };
  EXPECT_TRUE(rt->spawn(job()));
  EXPECT_TRUE(rt->spawn(failing()));
  done.wait();
  rt->stop();  // joins the workers: the failing task's report happened
  EXPECT_EQ(ran.load(), 1);
  const auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("spawned failure"), std::string::npos) << messages[0];
  EXPECT_FALSE(rt->spawn(job())) << "spawn after stop must refuse";
}

TEST(Task, RunRefusesToBlockAWorker) {
  auto rt = testing::make_runtime({.worker_threads = 1});
  Runtime* r = rt.get();
  auto nested = [r]() -> Task<ErrorCode> {
    try {
      r->run(value(1));
    } catch (const ErrorException& e) {
      co_return e.error().code();
    }
    co_return ErrorCode::ok;
  };
  EXPECT_EQ(rt->run(nested()), ErrorCode::failed_precondition);
}

}  // namespace
}  // namespace gpubridge::runtime

// Reentrancy: a reentrant grain interleaves its turns at co_await points (never running two at
// the same instant), so the call chain A -> B -> A completes. On a non-reentrant A the same chain
// would deadlock (Orleans hangs until a timeout); here the runtime detects it when the chain
// re-enters A and fails the inner call with `aborted: deadlock: ...`, which unwinds the chain.
// Reentrancy can also be granted per method (always_interleave).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <semaphore>
#include <string>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

// B calls back whichever grain called it.
template <typename A>
class Bouncer : public Grain {
 public:
  Task<int> bounce(std::string back) {
    co_return co_await get_grain<A>(back).template call<&A::pong>() + 1;
  }
};

class Plain : public Grain {  // non-reentrant
 public:
  Task<int> ping();
  Task<int> pong() { co_return 10; }
  Task<int> self_call() { co_return co_await self<Plain>().call<&Plain::pong>(); }
};
class Reentrant : public Grain {  // registered with reentrant = true
 public:
  Task<int> ping();
  Task<int> pong() { co_return 20; }
  Task<int> self_call() { co_return co_await self<Reentrant>().call<&Reentrant::pong>(); }
};
class Interleaving : public Grain {  // non-reentrant, but pong may interleave
 public:
  Task<int> ping();
  Task<int> pong() { co_return 30; }
  using always_interleave = Methods<&Interleaving::pong>;
};

using PlainBouncer = Bouncer<Plain>;
using ReentrantBouncer = Bouncer<Reentrant>;
using InterleavingBouncer = Bouncer<Interleaving>;

Task<int> Plain::ping() { co_return co_await get_grain<PlainBouncer>("b").call<&PlainBouncer::bounce>(id().key().as_string()); }
Task<int> Reentrant::ping() {
  co_return co_await get_grain<ReentrantBouncer>("b").call<&ReentrantBouncer::bounce>(id().key().as_string());
}
Task<int> Interleaving::ping() {
  co_return co_await get_grain<InterleavingBouncer>("b").call<&InterleavingBouncer::bounce>(id().key().as_string());
}

// Two calls of a reentrant grain both inside at once, each waiting for its gate.
std::counting_semaphore<16> g_entered{0};
AsyncEvent* g_gate = nullptr;
std::atomic<int> g_running_segments{0};
std::atomic<int> g_simultaneous{0};

class Juggler : public Grain {
 public:
  Task<int> hold() {
    segment_begin();
    ++inside_;
    max_inside_ = std::max(max_inside_, inside_);
    g_entered.release();
    segment_end();
    co_await *g_gate;
    segment_begin();
    --inside_;
    segment_end();
    co_return max_inside_;
  }

 private:
  static void segment_begin() {
    if (g_running_segments.fetch_add(1) != 0) g_simultaneous.fetch_add(1);
  }
  static void segment_end() { g_running_segments.fetch_sub(1); }
  int inside_ = 0;
  int max_inside_ = 0;
};

class ReentrancyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = testing::make_runtime({.worker_threads = 2});
    ASSERT_TRUE(rt_->register_grain<Plain>().ok());
    ASSERT_TRUE(rt_->register_grain<Reentrant>({.reentrant = true}).ok());
    ASSERT_TRUE(rt_->register_grain<Interleaving>().ok());
    ASSERT_TRUE(rt_->register_grain<PlainBouncer>({.type_name = "PlainBouncer"}).ok());
    ASSERT_TRUE(rt_->register_grain<ReentrantBouncer>({.type_name = "ReentrantBouncer"}).ok());
    ASSERT_TRUE(rt_->register_grain<InterleavingBouncer>({.type_name = "InterleavingBouncer"}).ok());
    ASSERT_TRUE(rt_->register_grain<Juggler>({.reentrant = true}).ok());
  }
  std::unique_ptr<Runtime> rt_;
};

TEST_F(ReentrancyTest, ChainBackIntoAReentrantGrainCompletes) {
  EXPECT_EQ(rt_->run(rt_->get<Reentrant>("a").call<&Reentrant::ping>()), 21);
  EXPECT_EQ(rt_->run(rt_->get<Reentrant>("a").call<&Reentrant::self_call>()), 20);
}

TEST_F(ReentrancyTest, ChainBackIntoANonReentrantGrainIsADeadlockError) {
  try {
    rt_->run(rt_->get<Plain>("a").call<&Plain::ping>());
    FAIL() << "A -> B -> A on a non-reentrant A must not complete";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::aborted);
    const std::string& msg = e.error().message();
    EXPECT_NE(msg.find("deadlock"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Plain/a (Plain::ping) -> PlainBouncer/b (Bouncer<Plain>::bounce) -> Plain/a (Plain::pong)"),
              std::string::npos)
        << msg;
  }
  // The grain is not stuck: the deadlock was refused, not waited for.
  EXPECT_EQ(rt_->run(rt_->get<Plain>("a").call<&Plain::pong>()), 10);
  EXPECT_THROW(rt_->run(rt_->get<Plain>("a").call<&Plain::self_call>()), ErrorException);
}

TEST_F(ReentrancyTest, AlwaysInterleaveMethodMayReenter) {
  EXPECT_EQ(rt_->run(rt_->get<Interleaving>("a").call<&Interleaving::ping>()), 31);
}

TEST_F(ReentrancyTest, ReentrantTurnsInterleaveAtAwaitsButNeverRunAtOnce) {
  AsyncEvent gate;
  g_gate = &gate;
  auto j = rt_->get<Juggler>(1);
  std::binary_semaphore both_done{0};
  std::atomic<int> finished{0};
  std::atomic<int> max_seen{0};
  auto one = [&]() -> Task<void> {
    const int m = co_await j.call<&Juggler::hold>();
    max_seen.store(std::max(max_seen.load(), m));
    if (finished.fetch_add(1) == 1) both_done.release();
  };
  ASSERT_TRUE(rt_->spawn(one()));
  ASSERT_TRUE(rt_->spawn(one()));
  // Both calls enter before either finishes: only possible because the turns interleave.
  ASSERT_TRUE(g_entered.try_acquire_for(std::chrono::seconds(30)));
  ASSERT_TRUE(g_entered.try_acquire_for(std::chrono::seconds(30)));
  gate.set();
  ASSERT_TRUE(both_done.try_acquire_for(std::chrono::seconds(30)));
  EXPECT_EQ(max_seen.load(), 2);
  EXPECT_EQ(g_simultaneous.load(), 0) << "two segments of one activation ran at the same instant";
  g_gate = nullptr;
}

}  // namespace
}  // namespace gpubridge::runtime

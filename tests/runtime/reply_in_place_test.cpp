// Answers resumed in place: when a grain's turn waits for a call and the grain's activation is
// idle, the worker that completes the call takes the activation over and continues the turn at
// once, instead of queueing the activation to the scheduler (Activation::resume_here). These
// tests check that path is taken, and that it keeps the rules of turns: a non-reentrant grain
// never runs two turns at once, calls queued for it while its turn continued elsewhere still
// run, a deactivation it asked for still happens, and errors reach the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

testing::Parking* g_parking = nullptr;  // KeepsTurnsExclusiveAndQueuedCallsRunning's

constexpr int kClients = 16, kRounds = 40, kPokes = 30;  // KeepsTurnsExclusiveAndQueuedCallsRunning

// The callee: answers at once, or after being parked, or fails.
class Echo : public Grain {
 public:
  Task<int> at_once(int x) { co_return x + 1; }
  Task<int> parked(int x) {
    co_await testing::Park{*g_parking};
    co_return x + 1;
  }
  Task<int> fails(int x) {
    throw ErrorException(Error(ErrorCode::out_of_range, "no " + std::to_string(x)));
    co_return 0;
  }
};

// The caller: a non-reentrant grain whose turns record any overlap with another of its turns.
class Client : public Grain {
 public:
  // n calls in a row, each awaited; returns the last answer.
  Task<int> chain(int n, bool parked) {
    enter();
    auto echo = get_grain<Echo>(std::int64_t{0});
    int v = 0;
    for (int i = 0; i < n; ++i) {
      v = parked ? co_await echo.call<&Echo::parked>(v) : co_await echo.call<&Echo::at_once>(v);
      if (!inside_.load()) overlaps_.fetch_add(1);  // the turn is still this grain's only one
    }
    leave();
    co_return v;
  }
  // A short turn: must never run while chain() is between its start and its end.
  Task<int> poke() {
    enter();
    leave();
    co_return ++pokes_;
  }
  Task<int> chain_then_leave(int n) {
    deactivate_on_idle();
    co_return co_await chain(n, false);
  }
  Task<int> forwards_failure() {
    try {
      co_await get_grain<Echo>(std::int64_t{0}).call<&Echo::fails>(7);
    } catch (const ErrorException& e) {
      co_return e.error().code() == ErrorCode::out_of_range ? 1 : -1;
    }
    co_return 0;
  }
  Task<int> overlaps() const { co_return overlaps_.load(); }

 private:
  void enter() {
    if (inside_.exchange(true)) overlaps_.fetch_add(1);
  }
  void leave() { inside_.store(false); }
  std::atomic<bool> inside_{false};
  std::atomic<int> overlaps_{0};
  int pokes_ = 0;
};

std::unique_ptr<Runtime> make(unsigned workers, testing::ErrorSink& errors) {
  auto rt = testing::make_runtime({.worker_threads = workers, .on_unhandled_error = errors.handler()});
  if (!rt) return nullptr;
  EXPECT_TRUE(rt->register_grain<Echo>().ok());
  EXPECT_TRUE(rt->register_grain<Client>().ok());
  return rt;
}

// One worker makes the order certain: the caller's turn suspends and its slice ends before the
// callee's slice runs, so every answer finds the caller idle and continues it in place.
TEST(ReplyInPlace, ContinuesTheIdleCallersTurnOnTheCompletingWorker) {
  testing::ErrorSink errors;
  auto rt = make(1, errors);
  ASSERT_TRUE(rt);
  auto client = rt->get<Client>(std::int64_t{1});
  const std::uint64_t before = rt->stats().replies_resumed_in_place;
  EXPECT_EQ(rt->run(client.call<&Client::chain>(100, false)), 100);
  EXPECT_EQ(rt->stats().replies_resumed_in_place - before, 100u) << "every answer continued the turn in place";
  EXPECT_EQ(rt->run(client.call<&Client::forwards_failure>()), 1) << "the callee's error reaches the caller";
  EXPECT_EQ(rt->run(client.call<&Client::overlaps>()), 0);
  rt->stop();
  EXPECT_TRUE(errors.messages().empty()) << errors.messages().front();
}

// A deactivation asked for by a turn that then ends in place (inside the callee's slice) still
// happens: taking the activation back over schedules it.
TEST(ReplyInPlace, ADeactivationAskedForInTheTurnStillHappens) {
  testing::ErrorSink errors;
  auto rt = make(1, errors);
  ASSERT_TRUE(rt);
  EXPECT_EQ(rt->run(rt->get<Client>(std::int64_t{2}).call<&Client::chain_then_leave>(10)), 10);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (rt->stats().deactivations == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(rt->stats().deactivations, 1u);
  EXPECT_EQ(rt->activation_count("Client"), 0u);
  rt->stop();
  EXPECT_TRUE(errors.messages().empty()) << errors.messages().front();
}

// Many non-reentrant callers, their answers resumed in bulk by a thread outside the runtime (each
// callee turn then ends on whichever worker runs the callee's slice), while other callers keep
// poking the same grains: no two turns of a grain overlap, and every poke queued behind a chain
// runs once the chain's turn has ended in place.
TEST(ReplyInPlace, KeepsTurnsExclusiveAndQueuedCallsRunning) {
  testing::ErrorSink errors;
  auto rt = make(2, errors);
  ASSERT_TRUE(rt);
  testing::Parking parking;
  g_parking = &parking;
  testing::BulkResumer resumer(parking, 20us);
  std::atomic<int> wrong{0};
  std::latch done(2 * kClients);
  for (int c = 0; c < kClients; ++c) {
    auto client = rt->get<Client>(std::int64_t{100 + c});
    ASSERT_TRUE(rt->spawn([](GrainRef<Client> g, std::atomic<int>& w, std::latch& d) -> Task<void> {
      for (int r = 0; r < 3; ++r) w.fetch_add(co_await g.call<&Client::chain>(kRounds, true) != kRounds);
      d.count_down();
    }(client, wrong, done)));
    ASSERT_TRUE(rt->spawn([](GrainRef<Client> g, std::latch& d) -> Task<void> {
      for (int p = 0; p < kPokes; ++p) co_await g.call<&Client::poke>();
      d.count_down();
    }(client, done)));
  }
  const bool finished = testing::wait_for(done, 60s);
  resumer.stop();
  ASSERT_TRUE(finished) << "calls did not finish (a poke queued behind a chain was never started?)";
  EXPECT_EQ(wrong.load(), 0);
  for (int c = 0; c < kClients; ++c) {
    auto client = rt->get<Client>(std::int64_t{100 + c});
    EXPECT_EQ(rt->run(client.call<&Client::overlaps>()), 0) << "client " << c;
    EXPECT_EQ(rt->run(client.call<&Client::poke>()), kPokes + 1) << "client " << c;
  }
  EXPECT_GT(rt->stats().replies_resumed_in_place, 0u);
  rt->stop();
  g_parking = nullptr;
  EXPECT_TRUE(errors.messages().empty()) << errors.messages().front();
}

}  // namespace
}  // namespace gpubridge::runtime

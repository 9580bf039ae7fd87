// One-way calls (GrainRef::send): dispatched from the sending thread, so that the calls one turn
// sends to a grain start in the order sent; never started inside the sending code; not part of
// the sender's call chain; failures and refusals reported, refusals also returned.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpubridge/runtime/async_event.hpp"
#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

// Records the numbers it receives, in the order its turns run.
class Recorder : public Grain {
 public:
  Task<void> record(int n) {
    std::lock_guard lock(mu);
    seen.push_back(n);
    if (done != nullptr && static_cast<int>(seen.size()) == expected) done->count_down();
    co_return;
  }
  Task<int> fail(int n) {
    throw std::runtime_error("failure " + std::to_string(n));
    co_return n;
  }
  static inline std::mutex mu;
  static inline std::vector<int> seen;
  static inline int expected = 0;
  static inline std::latch* done = nullptr;
};

// Sends `count` numbered calls to one recorder from a single turn.
class Sender : public Grain {
 public:
  Task<int> send_numbers(int count) {
    auto recorder = get_grain<Recorder>(0);
    int taken = 0;
    for (int i = 0; i < count; ++i) taken += recorder.send<&Recorder::record>(i) ? 1 : 0;
    co_return taken;
  }
};

// Reentrant: a call it sends itself could start inside its own turn if one-way calls were
// started where they are sent.
class SelfSender : public Grain {
 public:
  Task<bool> send_to_self() {
    marked_.store(false);
    self<SelfSender>().send<&SelfSender::mark>();
    co_return marked_.load();  // the sent call must not have run yet
  }
  Task<void> mark() {
    marked_.store(true);
    if (done != nullptr) done->count_down();
    co_return;
  }
  static inline std::latch* done = nullptr;

 private:
  std::atomic<bool> marked_{false};
};

// Not reentrant: its turn sends to a Forwarder and waits until the Forwarder, while that turn
// still runs, calls back into it. Were the one-way call part of the turn's chain, the call back
// would be refused as a deadlock; it waits for the turn to end instead.
class Origin : public Grain {
 public:
  Task<void> start();
  Task<int> value() { co_return 42; }
  static inline AsyncEvent* released = nullptr;
};

class Forwarder : public Grain {
 public:
  Task<void> call_back() {
    Origin::released->set();  // Origin's turn continues later, on this runtime's only worker
    got = co_await get_grain<Origin>(0).call<&Origin::value>();
    if (done != nullptr) done->count_down();
  }
  static inline std::atomic<int> got{0};
  static inline std::latch* done = nullptr;
};

Task<void> Origin::start() {
  get_grain<Forwarder>(0).send<&Forwarder::call_back>();
  co_await *released;
}

class OneWayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_ = testing::make_runtime({.worker_threads = 2, .on_unhandled_error = errors_.handler()});
    ASSERT_TRUE(rt_->register_grain<Recorder>().ok());
    ASSERT_TRUE(rt_->register_grain<Sender>().ok());
    ASSERT_TRUE(rt_->register_grain<SelfSender>({.reentrant = true}).ok());
    Recorder::seen.clear();
    Recorder::done = nullptr;
  }
  testing::ErrorSink errors_;
  std::unique_ptr<Runtime> rt_;
};

TEST_F(OneWayTest, CallsSentByOneTurnStartInTheOrderSent) {
  constexpr int kCalls = 2000;
  std::latch done(1);
  Recorder::expected = kCalls;
  Recorder::done = &done;
  EXPECT_EQ(rt_->run(rt_->get<Sender>(0).call<&Sender::send_numbers>(kCalls)), kCalls);
  ASSERT_TRUE(testing::wait_for(done, std::chrono::seconds(10)));
  std::lock_guard lock(Recorder::mu);
  ASSERT_EQ(Recorder::seen.size(), static_cast<std::size_t>(kCalls));
  for (int i = 0; i < kCalls; ++i) ASSERT_EQ(Recorder::seen[static_cast<std::size_t>(i)], i) << "out of order";
  EXPECT_TRUE(errors_.messages().empty());
}

TEST_F(OneWayTest, ACallSentToItselfRunsAfterTheSendingTurn) {
  std::latch done(1);
  SelfSender::done = &done;
  EXPECT_FALSE(rt_->run(rt_->get<SelfSender>(0).call<&SelfSender::send_to_self>()))
      << "the one-way call ran inside the turn that sent it";
  EXPECT_TRUE(testing::wait_for(done, std::chrono::seconds(10)));
  SelfSender::done = nullptr;
}

TEST_F(OneWayTest, ACallSentIsNotPartOfTheSendersCallChain) {
  testing::ErrorSink errors;
  auto rt = testing::make_runtime({.worker_threads = 1, .on_unhandled_error = errors.handler()});
  ASSERT_TRUE(rt->register_grain<Origin>().ok());
  ASSERT_TRUE(rt->register_grain<Forwarder>().ok());
  AsyncEvent released;
  std::latch done(1);
  Origin::released = &released;
  Forwarder::got = 0;
  Forwarder::done = &done;
  rt->run(rt->get<Origin>(0).call<&Origin::start>());
  ASSERT_TRUE(testing::wait_for(done, std::chrono::seconds(10))) << "the call back failed";
  EXPECT_EQ(Forwarder::got.load(), 42);
  const auto messages = errors.messages();
  EXPECT_TRUE(messages.empty()) << messages.front();
  rt->stop();
  Forwarder::done = nullptr;
  Origin::released = nullptr;
}

TEST_F(OneWayTest, AFailedCallIsReportedWithItsMethodTargetAndReason) {
  EXPECT_TRUE(rt_->get<Recorder>(7).send<&Recorder::fail>(5));
  ASSERT_TRUE(errors_.wait_for(1));
  const auto messages = errors_.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("one-way call"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("Recorder/7"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("failure 5"), std::string::npos) << messages[0];
}

class Unregistered : public Grain {
 public:
  Task<void> f() { co_return; }
};

TEST_F(OneWayTest, ARefusedCallReturnsFalseAndIsReported) {
  EXPECT_FALSE(rt_->get<Unregistered>(1).send<&Unregistered::f>());
  const auto messages = errors_.messages();
  ASSERT_EQ(messages.size(), 1u) << "the refusal is reported before send returns";
  EXPECT_NE(messages[0].find("not registered"), std::string::npos) << messages[0];
  rt_->stop();
  EXPECT_FALSE(rt_->get<Recorder>(1).send<&Recorder::record>(1));
  EXPECT_EQ(errors_.messages().size(), 2u);
}

}  // namespace
}  // namespace gpubridge::runtime

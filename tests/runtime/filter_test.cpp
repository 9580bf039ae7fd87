// Call filters: before() in registration order, after() in reverse, around every grain call,
// with the grain id, method name, argument count, duration and the exception the caller will see.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

std::atomic<int> g_method_runs{0};

class Calc : public Grain {
 public:
  Task<int> add(int a, int b) {
    g_method_runs.fetch_add(1);
    co_return a + b;
  }
  Task<int> fail() {
    g_method_runs.fetch_add(1);
    throw std::invalid_argument("bad operand");
    co_return 0;
  }
  Task<void> nop() {
    g_method_runs.fetch_add(1);
    co_return;
  }
};

struct Log {
  std::mutex mu;
  std::vector<std::string> lines;
  void add(std::string s) {
    std::lock_guard lock(mu);
    lines.push_back(std::move(s));
  }
  std::vector<std::string> take() {
    std::lock_guard lock(mu);
    return std::exchange(lines, {});
  }
};

class Recorder : public CallFilter {
 public:
  Recorder(std::string name, Log& log) : name_(std::move(name)), log_(log) {}
  void before(CallContext& c) override {
    log_.add(name_ + ".before " + c.grain.to_string() + " " + std::string(c.method) + "/" +
             std::to_string(c.argument_count));
    if (throw_in_before) throw ErrorException(Error(ErrorCode::permission_denied, "quota exceeded"));
  }
  void after(CallContext& c) override {
    std::string outcome = "ok";
    if (c.exception) {
      try {
        std::rethrow_exception(c.exception);
      } catch (const std::exception& e) {
        outcome = std::string("error: ") + e.what();
      }
    }
    log_.add(name_ + ".after " + std::string(c.method) + " " + outcome + (c.duration.count() >= 0 ? "" : " negative"));
    last_duration_ns = c.duration.count();
  }
  bool throw_in_before = false;
  std::atomic<long long> last_duration_ns{-1};

 private:
  std::string name_;
  Log& log_;
};

class FilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_method_runs = 0;
    rt_ = testing::make_runtime({.worker_threads = 2});
    ASSERT_TRUE(rt_->register_grain<Calc>().ok());
    outer_ = std::make_shared<Recorder>("A", log_);
    inner_ = std::make_shared<Recorder>("B", log_);
    rt_->add_call_filter(outer_);
    rt_->add_call_filter(inner_);
  }
  Log log_;
  std::shared_ptr<Recorder> outer_, inner_;
  std::unique_ptr<Runtime> rt_;
};

TEST_F(FilterTest, BeforeInOrderAfterInReverseWithContext) {
  EXPECT_EQ(rt_->run(rt_->get<Calc>(3).call<&Calc::add>(2, 5)), 7);
  EXPECT_EQ(log_.take(), (std::vector<std::string>{"A.before Calc/3 Calc::add/2", "B.before Calc/3 Calc::add/2",
                                                   "B.after Calc::add ok", "A.after Calc::add ok"}));
  EXPECT_GE(outer_->last_duration_ns.load(), 0);
  rt_->run(rt_->get<Calc>(3).call<&Calc::nop>());
  EXPECT_EQ(log_.take().front(), "A.before Calc/3 Calc::nop/0");
}

TEST_F(FilterTest, AfterSeesTheMethodsException) {
  EXPECT_THROW(rt_->run(rt_->get<Calc>(1).call<&Calc::fail>()), std::invalid_argument);
  const auto lines = log_.take();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[2], "B.after Calc::fail error: bad operand");
  EXPECT_EQ(lines[3], "A.after Calc::fail error: bad operand");
}

TEST_F(FilterTest, ThrowingBeforeFailsTheCallWithoutRunningIt) {
  inner_->throw_in_before = true;
  try {
    rt_->run(rt_->get<Calc>(1).call<&Calc::add>(1, 1));
    FAIL() << "the filter's exception must reach the caller";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::permission_denied);
  }
  EXPECT_EQ(g_method_runs.load(), 0);
  // B's before() threw: only A (whose before() ran) gets after().
  EXPECT_EQ(log_.take(), (std::vector<std::string>{"A.before Calc/1 Calc::add/2", "B.before Calc/1 Calc::add/2",
                                                   "A.after Calc::add error: permission_denied: quota exceeded"}));
}

TEST_F(FilterTest, FiltersSeeGrainToGrainCalls) {
  class Front : public Grain {
   public:
    Task<int> sum() { co_return co_await get_grain<Calc>(9).call<&Calc::add>(4, 4); }
  };
  ASSERT_TRUE(rt_->register_grain<Front>().ok());
  EXPECT_EQ(rt_->run(rt_->get<Front>(1).call<&Front::sum>()), 8);
  const auto lines = log_.take();
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(lines[0], "A.before Front/1 Front::sum/0");
  EXPECT_EQ(lines[2], "A.before Calc/9 Calc::add/2");
}

}  // namespace
}  // namespace gpubridge::runtime

namespace gpubridge::runtime {
namespace {

// Counts the calls a filter sees and how many of them the runtime timed.
class TimingCounter final : public CallFilter {
 public:
  void before(CallContext&) override {}
  void after(CallContext& c) override {
    calls.fetch_add(1);
    if (c.timed) {
      timed.fetch_add(1);
      if (c.duration.count() < 0) negative.fetch_add(1);
    }
  }
  std::atomic<int> calls{0}, timed{0}, negative{0};
};

class Looper : public Grain {
 public:
  Task<int> call_nop(int n) {
    for (int i = 0; i < n; ++i) co_await get_grain<Calc>(5).call<&Calc::nop>();
    co_return n;
  }
};

// Every call is timed while calls are slow; a fast stream of calls on one worker is sampled
// (see CallContext::timed), and every call is still seen by the filter.
TEST(CallTimingTest, SlowCallsAreAllTimedAndFastStreamsAreSampled) {
  auto rt = testing::make_runtime({.worker_threads = 1});
  ASSERT_TRUE(rt->register_grain<Calc>().ok());
  ASSERT_TRUE(rt->register_grain<Looper>().ok());
  auto counter = std::make_shared<TimingCounter>();
  rt->add_call_filter(counter);

  constexpr int kSlow = 20;
  for (int i = 0; i < kSlow; ++i) {
    rt->run(rt->get<Calc>(1).call<&Calc::nop>());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(counter->calls.load(), kSlow);
  EXPECT_EQ(counter->timed.load(), kSlow) << "calls 2 ms apart are all timed";

  // Back to back on the one worker: timed calls are about kTimedCallGap apart, so there are about
  // min(calls, elapsed / gap) of them whatever this build's call rate (every call when calls take
  // longer than the gap, as in a sanitizer build). The bounds allow a factor 3 of noise.
  constexpr int kFast = 200000;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(rt->run(rt->get<Looper>(1).call<&Looper::call_nop>(kFast)), kFast);
  const double gaps = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0) /
                      std::chrono::duration<double>(kTimedCallGap);
  const int fast_calls = counter->calls.load() - kSlow;
  const int fast_timed = counter->timed.load() - kSlow;
  EXPECT_EQ(fast_calls, kFast + 1);  // the nops and call_nop itself
  const double expected = std::min(static_cast<double>(fast_calls), gaps);
  EXPECT_GE(fast_timed, expected / 3) << fast_calls << " calls over " << gaps << " gaps";
  EXPECT_LE(fast_timed, std::min(static_cast<double>(fast_calls), 3 * gaps + 10))
      << fast_calls << " calls over " << gaps << " gaps";
  EXPECT_EQ(counter->negative.load(), 0);
}

}  // namespace
}  // namespace gpubridge::runtime

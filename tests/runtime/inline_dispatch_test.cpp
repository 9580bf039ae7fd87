// Calls started inside their caller's dispatch: a caller that a reentrant activation's turn
// resumed on that activation's slice, and that calls the same activation again, has its call
// started on the spot (Activation::admit). These tests drive that path the way a batch grain
// does (many callers, each call suspended until another thread completes it) and check that it
// keeps every rule of an ordinary call: filters run around each call, results and exceptions
// (thrown before or after the first suspension) reach their callers, callers keep their own
// request context and the callee sees a copy of it, stateless workers stay within their
// maximum, and the runtime stops cleanly afterwards.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

testing::Parking* g_parking = nullptr;

// What the callee saw of its caller's request context, checked by the caller.
std::string traceparent_for(int caller) {
  std::string t = "00-" + std::string(32, 'a') + "-" + std::string(16, '0') + "-01";
  const std::string digits = std::to_string(caller);
  t.replace(3, digits.size(), digits);
  return t;
}

class Echo : public Grain {
 public:
  // Suspends until completed from outside, then answers.
  Task<std::string> parked(int x) {
    std::string seen(RequestContext::current().traceparent());
    co_await testing::Park{*g_parking};
    if (RequestContext::current().traceparent() != seen) throw std::logic_error("callee context changed across co_await");
    co_return seen + "/" + std::to_string(x);
  }
  // Fails after its first suspension.
  Task<int> parked_failure(int x) {
    co_await testing::Park{*g_parking};
    throw ErrorException(Error(ErrorCode::out_of_range, "late " + std::to_string(x)));
    co_return 0;
  }
  // Completes (or fails) without ever suspending.
  Task<int> at_once(int x) { co_return x + 1; }
  Task<int> fail_at_once(int x) {
    throw ErrorException(Error(ErrorCode::invalid_argument, "early " + std::to_string(x)));
    co_return 0;
  }
};

class CountingFilter : public CallFilter {
 public:
  void before(CallContext&) override { before_.fetch_add(1, std::memory_order_relaxed); }
  void after(CallContext&) override { after_.fetch_add(1, std::memory_order_relaxed); }
  int befores() const { return before_.load(); }
  int afters() const { return after_.load(); }

 private:
  std::atomic<int> before_{0};
  std::atomic<int> after_{0};
};

struct Outcome {
  std::mutex mu;
  std::vector<std::string> failures;
  std::atomic<int> calls{0};
  void fail(std::string what) {
    std::lock_guard lock(mu);
    if (failures.size() < 10) failures.push_back(std::move(what));
  }
};

Task<void> caller(GrainRef<Echo> echo, int id, int rounds, Outcome& out, std::latch& done) {
  const std::string mine = traceparent_for(id);
  RequestContext::current().set_traceparent(mine);
  for (int i = 0; i < rounds; ++i) {
    const std::string answer = co_await echo.call<&Echo::parked>(i);
    out.calls.fetch_add(1);
    if (answer != mine + "/" + std::to_string(i)) out.fail("caller " + std::to_string(id) + " got " + answer);
    if (RequestContext::current().traceparent() != mine) out.fail("caller " + std::to_string(id) + " lost its context");
    // Right after a resumption on the callee's slice: these calls start inside the dispatch.
    const int next = co_await echo.call<&Echo::at_once>(i);
    out.calls.fetch_add(1);
    if (next != i + 1) out.fail("at_once(" + std::to_string(i) + ") = " + std::to_string(next));
    if (i % 7 == 0) {
      try {
        out.calls.fetch_add(1);
        co_await echo.call<&Echo::fail_at_once>(i);
        out.fail("fail_at_once did not throw");
      } catch (const ErrorException& e) {
        if (e.error().code() != ErrorCode::invalid_argument) out.fail("fail_at_once: " + e.error().to_string());
      }
      try {
        out.calls.fetch_add(1);
        co_await echo.call<&Echo::parked_failure>(i);
        out.fail("parked_failure did not throw");
      } catch (const ErrorException& e) {
        if (e.error().code() != ErrorCode::out_of_range) out.fail("parked_failure: " + e.error().to_string());
      }
    }
    if (RequestContext::current().traceparent() != mine) out.fail("caller " + std::to_string(id) + " lost its context");
  }
  done.count_down();
}

void run_callers(GrainOptions options, int callers, int rounds) {
  testing::ErrorSink errors;
  auto rt = testing::make_runtime({.worker_threads = 2, .on_unhandled_error = errors.handler()});
  ASSERT_TRUE(rt);
  ASSERT_TRUE(rt->register_grain<Echo>(options).ok());
  auto filter = std::make_shared<CountingFilter>();
  rt->add_call_filter(filter);
  testing::Parking parking;
  g_parking = &parking;
  testing::BulkResumer completer(parking, 50us);
  Outcome out;
  std::latch done(callers);
  auto echo = rt->get<Echo>("e");
  for (int c = 0; c < callers; ++c) ASSERT_TRUE(rt->spawn(caller(echo, c, rounds, out, done)));
  const bool finished = testing::wait_for(done, 60s);
  completer.stop();
  ASSERT_TRUE(finished) << "callers did not finish";
  {
    std::lock_guard lock(out.mu);
    for (const auto& f : out.failures) ADD_FAILURE() << f;
  }
  EXPECT_EQ(filter->befores(), out.calls.load()) << "a filter's before() ran once per call";
  EXPECT_EQ(filter->afters(), out.calls.load()) << "a filter's after() ran once per call";
  if (options.stateless_worker) {
    EXPECT_GE(rt->activation_count("Echo"), 1u);
    EXPECT_LE(rt->activation_count("Echo"), rt->worker_count()) << "stateless workers stay within the maximum";
  } else {
    EXPECT_EQ(rt->activation_count("Echo"), 1u);
  }
  rt->stop();
  EXPECT_EQ(rt->activation_count(), 0u);
  EXPECT_TRUE(errors.messages().empty()) << errors.messages().front();
  g_parking = nullptr;
}

TEST(InlineDispatch, ReentrantStatelessWorkerKeepsCallSemantics) {
  run_callers({.reentrant = true, .stateless_worker = true}, 64, 60);
}

TEST(InlineDispatch, ReentrantSingleActivationKeepsCallSemantics) {
  run_callers({.reentrant = true}, 32, 60);
}

// Non-reentrant grains never start a call inside a dispatch; the same traffic still works.
TEST(InlineDispatch, NonReentrantGrainKeepsCallSemantics) { run_callers({}, 8, 20); }

}  // namespace
}  // namespace gpubridge::runtime

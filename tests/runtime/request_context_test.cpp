// RequestContext: a grain call carries its caller's context; the callee's turn reads and writes
// its own copy, which stays current across co_awaits resumed on any worker; changes never flow
// back to the caller. Runtime::stats() counts activations and calls.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

const std::string kOuter = "00-11111111111111111111111111111111-2222222222222222-01";
const std::string kInner = "00-33333333333333333333333333333333-4444444444444444-01";

// Resumes the awaiting coroutine from a separate thread, through its ResumeContext: the turn
// continues on whichever worker picks up its activation.
class ResumeFromThread {
 public:
  struct Awaiter {
    ResumeFromThread& owner;
    Resumption resumption;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      resumption.handle = h;
      ResumeContext context = ResumeContext::current();
      std::lock_guard lock(owner.mu_);
      owner.threads_.emplace_back([context, this] { context.resume(resumption); });
    }
    void await_resume() const noexcept {}
  };
  Awaiter operator co_await() { return Awaiter{*this, {}}; }
  ~ResumeFromThread() {
    std::lock_guard lock(mu_);
    for (auto& t : threads_) t.join();
  }

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

ResumeFromThread* g_resumer = nullptr;

class Leaf : public Grain {
 public:
  Task<std::string> seen() { co_return std::string(RequestContext::current().traceparent()); }
  // Overwrites its own context: the caller must not see it.
  Task<std::string> overwrite() {
    RequestContext::current().set_traceparent(kInner);
    co_return std::string(RequestContext::current().traceparent());
  }
};

class Middle : public Grain {
 public:
  // Sets its context, awaits a resumption from another thread, then calls Leaf.
  Task<std::vector<std::string>> relay() {
    std::vector<std::string> seen;
    seen.emplace_back(RequestContext::current().traceparent());
    RequestContext::current().set_traceparent(kInner);
    co_await *g_resumer;
    seen.emplace_back(RequestContext::current().traceparent());
    seen.push_back(co_await get_grain<Leaf>("leaf").call<&Leaf::seen>());
    seen.push_back(co_await get_grain<Leaf>("leaf").call<&Leaf::overwrite>());
    seen.emplace_back(RequestContext::current().traceparent());  // unchanged by the callee
    co_return seen;
  }
};

class RequestContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequestContext::current().clear();
    rt_ = testing::make_runtime({.worker_threads = 3});
    ASSERT_TRUE(rt_->register_grain<Leaf>().ok());
    ASSERT_TRUE(rt_->register_grain<Middle>().ok());
    g_resumer = &resumer_;
  }
  void TearDown() override { RequestContext::current().clear(); }
  std::unique_ptr<Runtime> rt_;
  // Declared after rt_, so destroyed first: its threads (still returning from a post to the
  // scheduler) are joined before the runtime goes away.
  ResumeFromThread resumer_;
};

TEST_F(RequestContextTest, OutsideCallerContextReachesTheGrain) {
  ASSERT_TRUE(RequestContext::current().set_traceparent(kOuter));
  EXPECT_EQ(rt_->run(rt_->get<Leaf>("a").call<&Leaf::seen>()), kOuter);
  EXPECT_EQ(sync_wait(rt_->get<Leaf>("a").call<&Leaf::seen>()), kOuter);
  RequestContext::current().clear();
  EXPECT_EQ(rt_->run(rt_->get<Leaf>("a").call<&Leaf::seen>()), "");
}

TEST_F(RequestContextTest, CalleeChangesDoNotFlowBack) {
  ASSERT_TRUE(RequestContext::current().set_traceparent(kOuter));
  auto task = [&]() -> Task<std::string> {
    std::string inner = co_await rt_->get<Leaf>("a").call<&Leaf::overwrite>();
    EXPECT_EQ(inner, kInner);
    co_return std::string(RequestContext::current().traceparent());
  };
  EXPECT_EQ(rt_->run(task()), kOuter);
  EXPECT_EQ(RequestContext::current().traceparent(), kOuter);
}

TEST_F(RequestContextTest, TurnContextSurvivesAwaitsAndFlowsToNestedCalls) {
  ASSERT_TRUE(RequestContext::current().set_traceparent(kOuter));
  for (int i = 0; i < 20; ++i) {  // several rounds: resumption lands on varying workers
    auto seen = rt_->run(rt_->get<Middle>(i).call<&Middle::relay>());
    ASSERT_EQ(seen.size(), 5u);
    EXPECT_EQ(seen[0], kOuter);  // the caller's context
    EXPECT_EQ(seen[1], kInner);  // its own change, after resuming from another thread
    EXPECT_EQ(seen[2], kInner);  // carried to the nested call
    EXPECT_EQ(seen[3], kInner);
    EXPECT_EQ(seen[4], kInner);  // the nested callee's overwrite did not flow back
  }
}

struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::string value;
  bool done = false;
};

Task<void> record_seen(GrainRef<Leaf> leaf, Seen& seen) {
  std::string s = co_await leaf.call<&Leaf::seen>();
  std::lock_guard lock(seen.mu);
  seen.value = s;
  seen.done = true;
  seen.cv.notify_all();
}

TEST_F(RequestContextTest, SpawnedCallsCarryTheSpawnersContext) {
  ASSERT_TRUE(RequestContext::current().set_traceparent(kOuter));
  Seen seen;
  ASSERT_TRUE(rt_->spawn(record_seen(rt_->get<Leaf>("s"), seen)));
  RequestContext::current().clear();  // the spawned task keeps the copy it started with
  std::unique_lock lock(seen.mu);
  ASSERT_TRUE(seen.cv.wait_for(lock, std::chrono::seconds(30), [&] { return seen.done; }));
  EXPECT_EQ(seen.value, kOuter);
}

TEST(RequestContextValue, AcceptsOnlyEmptyOrFullTraceparents) {
  RequestContext c;
  EXPECT_TRUE(c.empty());
  EXPECT_FALSE(c.set_traceparent("00-short"));
  EXPECT_TRUE(c.empty());
  EXPECT_TRUE(c.set_traceparent(kOuter));
  EXPECT_EQ(c.traceparent(), kOuter);
  EXPECT_TRUE(c.set_traceparent(""));
  EXPECT_TRUE(c.empty());
}

class Failing : public Grain {
 public:
  Task<int> fail() {
    throw std::runtime_error("no");
    co_return 0;
  }
};

TEST(RuntimeStats, CountsActivationsAndCalls) {
  auto rt = testing::make_runtime({.worker_threads = 2, .collection_age = std::chrono::seconds(0)});
  ASSERT_TRUE(rt->register_grain<Leaf>().ok());
  ASSERT_TRUE(rt->register_grain<Failing>().ok());
  for (int i = 0; i < 3; ++i) rt->run(rt->get<Leaf>(i).call<&Leaf::seen>());
  EXPECT_THROW(rt->run(rt->get<Failing>(0).call<&Failing::fail>()), std::runtime_error);
  RuntimeStats s = rt->stats();
  EXPECT_EQ(s.activations_created, 4u);
  EXPECT_EQ(s.activations_current, 4u);
  EXPECT_EQ(s.calls_completed, 3u);
  EXPECT_EQ(s.calls_failed, 1u);
  EXPECT_EQ(s.deactivations, 0u);
  EXPECT_EQ(rt->collect_idle_now(), 4u);
  s = rt->stats();
  EXPECT_EQ(s.deactivations, 4u);
  EXPECT_EQ(s.activations_current, 0u);
}

}  // namespace
}  // namespace gpubridge::runtime

// Resume batches (open_resume_batch / close_resume_batch): continuations bound for activations
// that a thread hands to ResumeContext::resume() while a batch is open run only once the
// outermost batch closes, each activation's in the order they were resumed; nothing is lost when
// more activations than one batch groups take part.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubridge/runtime/resume_context.hpp"
#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

using namespace std::chrono_literals;

// Continuations parked by the grains, completed by the test thread.
struct Parked {
  Resumption resumption;
  ResumeContext context;
  int tag = 0;
};

class ParkingLot {
 public:
  void park(Parked& p) {
    std::lock_guard lock(mu_);
    parked_.push_back(&p);
  }
  std::vector<Parked*> wait_for(std::size_t count) {
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (parked_.size() >= count) return parked_;
      }
      std::this_thread::sleep_for(1ms);
    }
  }

 private:
  std::mutex mu_;
  std::vector<Parked*> parked_;
};

ParkingLot* g_lot = nullptr;

// Suspends the calling turn until the test resumes it through its ResumeContext.
struct ParkHere {
  Parked parked;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) {
    parked.resumption.handle = handle;
    parked.context = ResumeContext::current();
    g_lot->park(parked);
  }
  void await_resume() const noexcept {}
};

// Reentrant, so that all of one grain's calls park at once; records the order its turns resume in.
class Waiter : public Grain {
 public:
  Task<int> wait(int tag) {
    ParkHere park;
    park.parked.tag = tag;
    co_await park;
    resumed_.push_back(tag);  // one turn at a time: no lock needed
    co_return tag;
  }
  Task<std::vector<int>> order() { co_return resumed_; }

 private:
  std::vector<int> resumed_;
};

struct Calls {
  std::atomic<int> done{0};
};

Task<void> call_wait(GrainRef<Waiter> grain, int tag, Calls& calls) {
  EXPECT_EQ(co_await grain.call<&Waiter::wait>(tag), tag);
  calls.done.fetch_add(1);
}

class ResumeBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_lot = &lot_;
    rt_ = testing::make_runtime({.worker_threads = 2});
    ASSERT_NE(rt_, nullptr);
    GrainOptions reentrant;
    reentrant.reentrant = true;
    ASSERT_TRUE(rt_->register_grain<Waiter>(reentrant).ok());
  }
  void TearDown() override {
    rt_.reset();
    g_lot = nullptr;
  }

  // Parks `per_grain` calls on each of `grains` grains; returns them in the order they parked.
  std::vector<Parked*> park_calls(int grains, int per_grain) {
    for (int g = 0; g < grains; ++g) {
      for (int i = 0; i < per_grain; ++i) {
        EXPECT_TRUE(rt_->spawn(call_wait(rt_->get<Waiter>(g), g * 1000 + i, calls_)));
      }
    }
    return lot_.wait_for(static_cast<std::size_t>(grains * per_grain));
  }

  void wait_done(int count) {
    while (calls_.done.load() < count) std::this_thread::sleep_for(1ms);
  }

  ParkingLot lot_;
  Calls calls_;
  std::unique_ptr<Runtime> rt_;
};

TEST_F(ResumeBatchTest, ContinuationsRunWhenTheOutermostBatchClosesInResumeOrder) {
  std::vector<Parked*> parked = park_calls(2, 8);
  // Resume in reverse parking order: each grain must see exactly this order.
  std::map<int, std::vector<int>> expected;
  open_resume_batch();
  open_resume_batch();  // nested
  for (auto it = parked.rbegin(); it != parked.rend(); ++it) {
    (*it)->context.resume((*it)->resumption);
    expected[(*it)->tag / 1000].push_back((*it)->tag);
  }
  close_resume_batch();
  std::this_thread::sleep_for(50ms);  // room for a continuation that was (wrongly) posted to run
  EXPECT_EQ(calls_.done.load(), 0) << "continuations ran before the outermost batch closed";
  close_resume_batch();
  wait_done(16);
  for (int g = 0; g < 2; ++g) {
    EXPECT_EQ(rt_->run(rt_->get<Waiter>(g).call<&Waiter::order>()), expected[g]) << "grain " << g;
  }
}

TEST_F(ResumeBatchTest, MoreActivationsThanGroupsAllResume) {
  constexpr int kGrains = 40;  // more than one batch groups at once
  std::vector<Parked*> parked = park_calls(kGrains, 3);
  open_resume_batch();
  for (Parked* p : parked) p->context.resume(p->resumption);
  close_resume_batch();
  wait_done(kGrains * 3);
  for (int g = 0; g < kGrains; ++g) {
    const std::vector<int> order = rt_->run(rt_->get<Waiter>(g).call<&Waiter::order>());
    std::vector<int> expected;
    for (Parked* p : parked) {
      if (p->tag / 1000 == g) expected.push_back(p->tag);
    }
    EXPECT_EQ(order, expected) << "grain " << g;
  }
}

TEST_F(ResumeBatchTest, WithoutABatchContinuationsRunAtOnce) {
  std::vector<Parked*> parked = park_calls(1, 4);
  for (Parked* p : parked) p->context.resume(p->resumption);
  wait_done(4);
  EXPECT_EQ(calls_.done.load(), 4);
}

}  // namespace
}  // namespace gpubridge::runtime

// Circuit breaker: thresholds, open interval, half-open probes, listener, concurrency.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "gpubridge/resilience/breaker.hpp"

namespace gpubridge::resilience {
namespace {

using namespace std::chrono_literals;

// A clock that moves only when the test advances it.
class FakeClock {
 public:
  BreakerClock clock() {
    return [this] { return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(now_ns_.load())); };
  }
  void advance(std::chrono::nanoseconds d) { now_ns_ += d.count(); }

 private:
  std::atomic<std::int64_t> now_ns_{1'000'000'000};
};

struct Transitions {
  std::mutex mutex;
  std::vector<std::pair<BreakerState, BreakerState>> seen;
  CircuitBreaker::Listener listener() {
    return [this](BreakerState from, BreakerState to) {
      std::lock_guard lock(mutex);
      seen.emplace_back(from, to);
    };
  }
};

BreakerOptions options(std::uint32_t threshold, std::chrono::milliseconds interval, std::uint32_t probes) {
  BreakerOptions o;
  o.failure_threshold = threshold;
  o.open_interval = interval;
  o.half_open_probes = probes;
  return o;
}

TEST(BreakerTest, StateNamesAndGaugeValues) {
  EXPECT_EQ(to_string(BreakerState::closed), "closed");
  EXPECT_EQ(to_string(BreakerState::half_open), "half_open");
  EXPECT_EQ(to_string(BreakerState::open), "open");
  EXPECT_EQ(static_cast<int>(BreakerState::closed), 0);
  EXPECT_EQ(static_cast<int>(BreakerState::half_open), 1);
  EXPECT_EQ(static_cast<int>(BreakerState::open), 2);
}

TEST(BreakerTest, RejectsInvalidOptions) {
  Status bad_threshold = validate(options(0, 10ms, 1));
  ASSERT_FALSE(bad_threshold.ok());
  EXPECT_EQ(bad_threshold.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(bad_threshold.error().message().find("failure_threshold"), std::string::npos);
  Status bad_probes = validate(options(1, 10ms, 0));
  ASSERT_FALSE(bad_probes.ok());
  EXPECT_NE(bad_probes.error().message().find("half_open_probes"), std::string::npos);
  Status bad_interval = validate(options(1, -1ms, 1));
  ASSERT_FALSE(bad_interval.ok());
  EXPECT_NE(bad_interval.error().message().find("open_interval"), std::string::npos);
  EXPECT_TRUE(validate(BreakerOptions{}).ok());
  EXPECT_THROW(CircuitBreaker(options(0, 10ms, 1)), ErrorException);
  EXPECT_THROW(BreakerSet(options(1, 10ms, 0)), ErrorException);
}

TEST(BreakerTest, OpensAfterExactlyThresholdConsecutiveFailures) {
  FakeClock clock;
  CircuitBreaker breaker(options(3, 100ms, 1), clock.clock());
  EXPECT_EQ(breaker.state(), BreakerState::closed);
  breaker.record_failure();
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::closed);
  EXPECT_TRUE(breaker.allow());
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::open);
  EXPECT_EQ(breaker.opened_count(), 1u);
  EXPECT_FALSE(breaker.allow());
  EXPECT_FALSE(breaker.allow());
}

TEST(BreakerTest, SuccessResetsTheFailureCount) {
  FakeClock clock;
  CircuitBreaker breaker(options(3, 100ms, 1), clock.clock());
  breaker.record_failure();
  breaker.record_failure();
  breaker.record_success();
  breaker.record_failure();
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::closed);
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::open);
}

TEST(BreakerTest, HalfOpensAfterTheIntervalAndAdmitsOnlyTheProbes) {
  FakeClock clock;
  CircuitBreaker breaker(options(1, 100ms, 2), clock.clock());
  breaker.record_failure();
  ASSERT_EQ(breaker.state(), BreakerState::open);
  clock.advance(99ms);
  EXPECT_FALSE(breaker.allow());
  EXPECT_EQ(breaker.state(), BreakerState::open);
  clock.advance(1ms);
  EXPECT_TRUE(breaker.allow());  // first probe
  EXPECT_EQ(breaker.state(), BreakerState::half_open);
  EXPECT_TRUE(breaker.allow());  // second probe
  EXPECT_FALSE(breaker.allow());
  EXPECT_FALSE(breaker.allow());
  EXPECT_EQ(breaker.state(), BreakerState::half_open);
}

TEST(BreakerTest, ProbeSuccessCloses) {
  FakeClock clock;
  CircuitBreaker breaker(options(2, 50ms, 1), clock.clock());
  breaker.record_failure();
  breaker.record_failure();
  clock.advance(50ms);
  ASSERT_TRUE(breaker.allow());
  breaker.record_success();
  EXPECT_EQ(breaker.state(), BreakerState::closed);
  EXPECT_TRUE(breaker.allow());
  // The failure count starts again from zero.
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::closed);
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::open);
  EXPECT_EQ(breaker.opened_count(), 2u);
}

TEST(BreakerTest, ProbeFailureReopensAndRestartsTheInterval) {
  FakeClock clock;
  CircuitBreaker breaker(options(1, 100ms, 1), clock.clock());
  breaker.record_failure();
  clock.advance(150ms);
  ASSERT_TRUE(breaker.allow());
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::open);
  EXPECT_EQ(breaker.opened_count(), 2u);
  clock.advance(99ms);  // measured from the reopening, not the first opening
  EXPECT_FALSE(breaker.allow());
  clock.advance(1ms);
  EXPECT_TRUE(breaker.allow());
  EXPECT_EQ(breaker.state(), BreakerState::half_open);
}

TEST(BreakerTest, LateResultsWhileOpenAreIgnored) {
  FakeClock clock;
  CircuitBreaker breaker(options(1, 100ms, 1), clock.clock());
  breaker.record_failure();
  breaker.record_success();  // a call admitted before the breaker opened
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::open);
  EXPECT_EQ(breaker.opened_count(), 1u);
}

TEST(BreakerTest, ZeroIntervalHalfOpensOnTheNextCall) {
  FakeClock clock;
  CircuitBreaker breaker(options(1, 0ms, 1), clock.clock());
  breaker.record_failure();
  EXPECT_EQ(breaker.state(), BreakerState::open);
  EXPECT_TRUE(breaker.allow());
  EXPECT_EQ(breaker.state(), BreakerState::half_open);
}

TEST(BreakerTest, ListenerSeesEachTransitionOnce) {
  FakeClock clock;
  Transitions transitions;
  CircuitBreaker breaker(options(2, 10ms, 1), clock.clock());
  breaker.set_listener(transitions.listener());
  breaker.record_failure();
  breaker.record_failure();  // -> open
  breaker.record_failure();  // ignored
  EXPECT_FALSE(breaker.allow());
  clock.advance(10ms);
  EXPECT_TRUE(breaker.allow());   // -> half_open
  EXPECT_FALSE(breaker.allow());
  breaker.record_failure();       // -> open
  clock.advance(10ms);
  EXPECT_TRUE(breaker.allow());   // -> half_open
  breaker.record_success();       // -> closed
  breaker.record_success();       // no transition
  using S = BreakerState;
  const std::vector<std::pair<S, S>> expected{{S::closed, S::open},
                                              {S::open, S::half_open},
                                              {S::half_open, S::open},
                                              {S::open, S::half_open},
                                              {S::half_open, S::closed}};
  EXPECT_EQ(transitions.seen, expected);
}

TEST(BreakerTest, ConcurrentCallersStayConsistent) {
  FakeClock clock;
  Transitions transitions;
  CircuitBreaker breaker(options(4, 10ms, 3), clock.clock());
  breaker.set_listener(transitions.listener());
  constexpr int kThreads = 8;
  constexpr int kRounds = 2000;
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      sync.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        if (breaker.allow()) {
          if ((i + t) % 7 == 0) breaker.record_success();
          else breaker.record_failure();
        }
        if (t == 0 && i % 50 == 0) clock.advance(10ms);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  // Listener calls from different threads may arrive out of order, so check what is exact: each
  // edge is legal, and per state the moves in and out balance against the final state.
  std::size_t into_open = 0, out_of_open = 0, into_half_open = 0, out_of_half_open = 0;
  for (const auto& [from, to] : transitions.seen) {
    const bool legal = (from == BreakerState::closed && to == BreakerState::open) ||
                       (from == BreakerState::open && to == BreakerState::half_open) ||
                       (from == BreakerState::half_open && to == BreakerState::open) ||
                       (from == BreakerState::half_open && to == BreakerState::closed);
    EXPECT_TRUE(legal) << to_string(from) << " -> " << to_string(to);
    into_open += to == BreakerState::open;
    out_of_open += from == BreakerState::open;
    into_half_open += to == BreakerState::half_open;
    out_of_half_open += from == BreakerState::half_open;
  }
  EXPECT_GT(into_open, 0u);
  EXPECT_EQ(breaker.opened_count(), into_open);
  const BreakerState final_state = breaker.state();
  EXPECT_EQ(into_open - out_of_open, final_state == BreakerState::open ? 1u : 0u);
  EXPECT_EQ(into_half_open - out_of_half_open, final_state == BreakerState::half_open ? 1u : 0u);
}

TEST(BreakerTest, ConcurrentHalfOpenAdmitsExactlyTheProbes) {
  FakeClock clock;
  constexpr std::uint32_t kProbes = 5;
  CircuitBreaker breaker(options(1, 10ms, kProbes), clock.clock());
  breaker.record_failure();
  clock.advance(10ms);
  constexpr int kThreads = 8;
  std::atomic<int> admitted{0};
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      sync.arrive_and_wait();
      for (int i = 0; i < 100; ++i) {
        if (breaker.allow()) admitted.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(admitted.load(), static_cast<int>(kProbes));
  EXPECT_EQ(breaker.state(), BreakerState::half_open);
}

TEST(BreakerSetTest, KeysByDeviceAndKernelWithStableReferences) {
  FakeClock clock;
  BreakerSet set(options(1, 100ms, 1), clock.clock());
  CircuitBreaker& a = set.get("cuda:0", "vector.add");
  CircuitBreaker& b = set.get("cuda:0", "vector.dot");
  CircuitBreaker& c = set.get("opencl:0", "vector.add");
  EXPECT_NE(&a, &b);
  EXPECT_NE(&a, &c);
  for (int i = 0; i < 100; ++i) set.get("cpu", "k" + std::to_string(i));  // grows the map
  EXPECT_EQ(&set.get("cuda:0", "vector.add"), &a);
  EXPECT_EQ(a.options().failure_threshold, 1u);

  b.record_failure();
  const auto entries = set.snapshot();
  ASSERT_EQ(entries.size(), 103u);
  bool found = false;
  for (const auto& entry : entries) {
    if (entry.device == "cuda:0" && entry.kernel == "vector.dot") {
      found = true;
      EXPECT_EQ(entry.state, BreakerState::open);
      EXPECT_EQ(entry.opened, 1u);
    } else {
      EXPECT_EQ(entry.state, BreakerState::closed);
      EXPECT_EQ(entry.opened, 0u);
    }
  }
  EXPECT_TRUE(found);
}

TEST(BreakerSetTest, ListenerNamesTheBreaker) {
  FakeClock clock;
  BreakerSet set(options(1, 100ms, 1), clock.clock());
  CircuitBreaker& before = set.get("cuda:0", "vector.add");
  std::vector<std::string> seen;
  set.set_listener([&](std::string_view device, std::string_view kernel, BreakerState from, BreakerState to) {
    seen.push_back(std::string(device) + "/" + std::string(kernel) + ":" + std::string(to_string(from)) +
                   "->" + std::string(to_string(to)));
  });
  before.record_failure();
  set.get("opencl:0", "vector.dot").record_failure();
  EXPECT_EQ(seen, (std::vector<std::string>{"cuda:0/vector.add:closed->open",
                                            "opencl:0/vector.dot:closed->open"}));
}

TEST(BreakerSetTest, ConcurrentGetReturnsOneBreakerPerKey) {
  BreakerSet set;
  constexpr int kThreads = 8;
  std::barrier sync(kThreads);
  std::vector<std::vector<CircuitBreaker*>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      sync.arrive_and_wait();
      for (int k = 0; k < 50; ++k) seen[t].push_back(&set.get("dev", "kernel." + std::to_string(k)));
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[t], seen[0]);
  EXPECT_EQ(set.snapshot().size(), 50u);
}

}  // namespace
}  // namespace gpubridge::resilience

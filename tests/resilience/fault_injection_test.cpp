// Fault injection: spec parsing, matching, probabilities, run-time switching, stalls.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gpubridge/resilience/fault_injection.hpp"

namespace gpubridge::resilience {
namespace {

using namespace std::chrono_literals;

FaultSpec spec(std::string backend, std::string kernel, FaultMode mode = FaultMode::fail,
               double probability = 1.0) {
  FaultSpec s;
  s.backend = std::move(backend);
  s.kernel = std::move(kernel);
  s.mode = mode;
  s.probability = probability;
  return s;
}

std::string parse_error(std::string_view text) {
  Result<FaultSpec> parsed = parse_fault_spec(text);
  EXPECT_FALSE(parsed.ok()) << "accepted: " << text;
  if (parsed.ok()) return {};
  EXPECT_EQ(parsed.error().code(), ErrorCode::invalid_argument);
  return parsed.error().message();
}

TEST(FaultSpecTest, ParsesValidSpecs) {
  Result<FaultSpec> fail = parse_fault_spec("backend=opencl,kernel=vector.add,mode=fail");
  ASSERT_TRUE(fail.ok()) << fail.error().to_string();
  EXPECT_EQ(fail->backend, "opencl");
  EXPECT_EQ(fail->kernel, "vector.add");
  EXPECT_EQ(fail->mode, FaultMode::fail);
  EXPECT_EQ(fail->delay, 0ms);
  EXPECT_EQ(fail->probability, 1.0);

  Result<FaultSpec> slow = parse_fault_spec(" backend = cuda , kernel=* ,mode=slow,delay_ms=50,probability=0.25 ");
  ASSERT_TRUE(slow.ok()) << slow.error().to_string();
  EXPECT_EQ(slow->backend, "cuda");
  EXPECT_EQ(slow->kernel, "*");
  EXPECT_EQ(slow->mode, FaultMode::slow);
  EXPECT_EQ(slow->delay, 50ms);
  EXPECT_EQ(slow->probability, 0.25);

  Result<FaultSpec> defaults = parse_fault_spec("mode=hang");
  ASSERT_TRUE(defaults.ok()) << defaults.error().to_string();
  EXPECT_EQ(defaults->backend, "*");
  EXPECT_EQ(defaults->kernel, "*");
  EXPECT_EQ(defaults->mode, FaultMode::hang);
  EXPECT_EQ(defaults->delay, 0ms);

  Result<FaultSpec> edge = parse_fault_spec("backend=cpu,probability=0");
  ASSERT_TRUE(edge.ok()) << edge.error().to_string();
  EXPECT_EQ(edge->probability, 0.0);
}

TEST(FaultSpecTest, RejectsBadSpecsNamingTheProblem) {
  EXPECT_NE(parse_error("").find("empty"), std::string::npos);
  EXPECT_NE(parse_error("backend=opencl,colour=red").find("unknown key 'colour'"), std::string::npos);
  EXPECT_NE(parse_error("backend=vulkan").find("unknown backend 'vulkan'"), std::string::npos);
  EXPECT_NE(parse_error("mode=explode").find("unknown mode 'explode'"), std::string::npos);
  EXPECT_NE(parse_error("mode=slow,delay_ms=abc").find("delay_ms 'abc'"), std::string::npos);
  EXPECT_NE(parse_error("mode=slow,delay_ms=10x").find("delay_ms '10x'"), std::string::npos);
  EXPECT_NE(parse_error("mode=hang,delay_ms=-5").find("delay_ms must not be negative"), std::string::npos);
  EXPECT_NE(parse_error("mode=slow").find("mode=slow needs delay_ms"), std::string::npos);
  EXPECT_NE(parse_error("mode=fail,delay_ms=5").find("delay_ms does not apply to mode=fail"),
            std::string::npos);
  EXPECT_NE(parse_error("probability=1.5").find("probability must be within [0, 1]"), std::string::npos);
  EXPECT_NE(parse_error("probability=-0.1").find("probability must be within [0, 1]"), std::string::npos);
  EXPECT_NE(parse_error("probability=often").find("probability 'often'"), std::string::npos);
  EXPECT_NE(parse_error("probability=nan").find("probability 'nan'"), std::string::npos);
  EXPECT_NE(parse_error("backend=cuda,backend=cpu").find("key 'backend' given twice"), std::string::npos);
  EXPECT_NE(parse_error("backend=cuda,,mode=fail").find("empty entry"), std::string::npos);
  EXPECT_NE(parse_error("backend").find("'backend' is not key=value"), std::string::npos);
  EXPECT_NE(parse_error("kernel=").find("bad kernel ''"), std::string::npos);
  EXPECT_NE(parse_error("kernel=vector add").find("bad kernel 'vector add'"), std::string::npos);
  // The message quotes the whole spec so that the user can find it.
  EXPECT_NE(parse_error("backend=gpu,kernel=x").find("\"backend=gpu,kernel=x\""), std::string::npos);
}

TEST(FaultSpecTest, TextFormRoundTrips) {
  for (const char* text : {"backend=opencl,kernel=vector.add,mode=fail",
                           "backend=cuda,kernel=*,mode=slow,delay_ms=50,probability=0.1",
                           "backend=*,kernel=vector.dot,mode=hang",
                           "backend=cpu,kernel=*,mode=hang,delay_ms=7,probability=0"}) {
    Result<FaultSpec> parsed = parse_fault_spec(text);
    ASSERT_TRUE(parsed.ok()) << parsed.error().to_string();
    EXPECT_EQ(to_string(*parsed), text);
    Result<FaultSpec> again = parse_fault_spec(to_string(*parsed));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *parsed);
  }
  FaultSpec odd = spec("cuda", "k", FaultMode::slow, 1.0 / 3.0);
  odd.delay = 3ms;
  Result<FaultSpec> back = parse_fault_spec(to_string(odd));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, odd);  // shortest round-trip form of the probability
}

TEST(FaultSpecTest, ParsesSeveralSpecs) {
  Result<std::vector<FaultSpec>> specs =
      parse_fault_specs("backend=cuda,mode=fail; backend=opencl,mode=slow,delay_ms=3 ;");
  ASSERT_TRUE(specs.ok()) << specs.error().to_string();
  ASSERT_EQ(specs->size(), 2u);
  EXPECT_EQ((*specs)[0].backend, "cuda");
  EXPECT_EQ((*specs)[1].delay, 3ms);
  Result<std::vector<FaultSpec>> none = parse_fault_specs("  ");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  Result<std::vector<FaultSpec>> bad = parse_fault_specs("backend=cuda;backend=tpu");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("unknown backend 'tpu'"), std::string::npos);
}

TEST(FaultInjectorTest, MatchesByBackendKernelAndWildcards) {
  FaultInjector injector;
  EXPECT_FALSE(injector.match("cuda", "vector.add").has_value());
  injector.set({spec("opencl", "vector.add"), spec("cuda", "*", FaultMode::hang), spec("*", "vector.dot")});

  auto exact = injector.match("opencl", "vector.add");
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(exact->mode, FaultMode::fail);
  EXPECT_FALSE(injector.match("opencl", "vector.axpy").has_value());
  EXPECT_FALSE(injector.match("cpu", "vector.add").has_value());

  auto any_kernel = injector.match("cuda", "graph.pagerank");
  ASSERT_TRUE(any_kernel.has_value());
  EXPECT_EQ(any_kernel->mode, FaultMode::hang);

  auto any_backend = injector.match("cpu", "vector.dot");
  ASSERT_TRUE(any_backend.has_value());
  EXPECT_EQ(any_backend->backend, "*");

  // The first matching rule wins.
  auto first = injector.match("cuda", "vector.dot");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->backend, "cuda");

  EXPECT_EQ(injector.injected(), 4u);
  const auto snapshot = injector.snapshot();
  ASSERT_EQ(snapshot.size(), 3u);
  EXPECT_EQ(snapshot[0].second, 1u);
  EXPECT_EQ(snapshot[1].second, 2u);
  EXPECT_EQ(snapshot[2].second, 1u);
}

TEST(FaultInjectorTest, ProbabilityZeroNeverAndOneAlways) {
  FaultInjector injector;
  injector.set({spec("cuda", "*", FaultMode::fail, 0.0)});
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(injector.match("cuda", "vector.add").has_value());
  EXPECT_EQ(injector.injected(), 0u);

  injector.set({spec("cuda", "*", FaultMode::fail, 0.0), spec("cuda", "*", FaultMode::slow, 1.0)});
  for (int i = 0; i < 1000; ++i) {
    auto hit = injector.match("cuda", "vector.add");
    ASSERT_TRUE(hit.has_value());
    EXPECT_EQ(hit->mode, FaultMode::slow);  // a rule whose draw fails lets later rules match
  }
  EXPECT_EQ(injector.injected(), 1000u);
  EXPECT_EQ(injector.snapshot()[0].second, 0u);
  EXPECT_EQ(injector.snapshot()[1].second, 1000u);
}

TEST(FaultInjectorTest, FractionalProbabilityInjectsSome) {
  FaultInjector injector;
  injector.set({spec("*", "*", FaultMode::fail, 0.5)});
  int hits = 0;
  for (int i = 0; i < 10000; ++i) hits += injector.match("cpu", "vector.add").has_value();
  // Binomial(10000, 0.5): these bounds are more than 20 standard deviations wide.
  EXPECT_GT(hits, 4000);
  EXPECT_LT(hits, 6000);
  EXPECT_EQ(injector.injected(), static_cast<std::uint64_t>(hits));
}

TEST(FaultInjectorTest, SetRestartsHitCountsButNotTheTotal) {
  FaultInjector injector;
  injector.set({spec("cpu", "*")});
  ASSERT_TRUE(injector.match("cpu", "k").has_value());
  injector.set({spec("cpu", "*")});
  EXPECT_EQ(injector.snapshot()[0].second, 0u);
  EXPECT_EQ(injector.injected(), 1u);
  injector.clear();
  EXPECT_TRUE(injector.snapshot().empty());
  EXPECT_FALSE(injector.match("cpu", "k").has_value());
}

TEST(FaultInjectorTest, SwitchingAtRunTimeWhileOthersMatch) {
  FaultInjector injector;
  constexpr int kReaders = 4;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> seen_hits{0};
  std::atomic<bool> bad_result{false};
  std::barrier sync(kReaders + 1);
  std::vector<std::thread> readers;
  for (int t = 0; t < kReaders; ++t) {
    readers.emplace_back([&] {
      sync.arrive_and_wait();
      while (!stop.load()) {
        auto hit = injector.match("cuda", "vector.add");
        if (!hit) continue;
        seen_hits.fetch_add(1);
        // Only whole rules that were set are ever returned.
        if (hit->backend != "cuda" || (hit->mode != FaultMode::fail && hit->mode != FaultMode::slow)) {
          bad_result.store(true);
        }
      }
    });
  }
  sync.arrive_and_wait();
  for (int i = 0; i < 2000; ++i) {
    if (i % 2 == 0) {
      FaultSpec slow = spec("cuda", "vector.add", FaultMode::slow);
      slow.delay = 1ms;
      injector.set({spec("opencl", "*"), slow});
    } else if (i % 3 == 0) {
      injector.clear();
    } else {
      injector.set({spec("cuda", "*")});
    }
  }
  stop.store(true);
  for (auto& reader : readers) reader.join();
  EXPECT_FALSE(bad_result.load());
  EXPECT_EQ(injector.injected(), seen_hits.load());
}

TEST(FaultInjectorTest, HangLastsUntilTheRuleIsCleared) {
  FaultInjector injector;
  FaultSpec hang = spec("cuda", "*", FaultMode::hang);
  injector.set({hang});
  auto hit = injector.match("cuda", "vector.add");
  ASSERT_TRUE(hit.has_value());
  std::atomic<bool> returned{false};
  std::thread caller([&] {
    injector.stall(*hit);
    returned.store(true);
  });
  // No timing assertion: the caller can only return once the rule is gone.
  injector.set({spec("opencl", "*")});
  caller.join();
  EXPECT_TRUE(returned.load());
  EXPECT_TRUE(injector.match("cuda", "vector.add") == std::nullopt);
}

TEST(FaultInjectorTest, ShutdownReleasesHangs) {
  FaultInjector injector;
  FaultSpec hang = spec("*", "*", FaultMode::hang);
  injector.set({hang});
  std::thread caller([&] { injector.stall(hang); });
  injector.shutdown();
  caller.join();
  injector.stall(hang);  // returns at once after shutdown
  EXPECT_TRUE(injector.match("cpu", "k").has_value());  // rules keep matching
}

TEST(FaultInjectorTest, TimedStallsReturn) {
  FaultInjector injector;
  FaultSpec slow = spec("*", "*", FaultMode::slow);
  slow.delay = 1ms;
  FaultSpec timed_hang = spec("*", "*", FaultMode::hang);
  timed_hang.delay = 1ms;
  injector.set({timed_hang});
  const auto start = std::chrono::steady_clock::now();
  injector.stall(slow);
  injector.stall(timed_hang);  // its rule is still set: it runs out its delay
  injector.stall(spec("*", "*", FaultMode::fail));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 2ms);  // a lower bound, not a performance check
}

}  // namespace
}  // namespace gpubridge::resilience

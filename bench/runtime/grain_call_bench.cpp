// bench_runtime: in-process grain call cost against references measured in the same run.
//
// Scenarios (each iteration is a burst of calls made inside the runtime by coroutines running on
// its workers; time per call = iteration time / calls per iteration):
//   sequential   one caller awaits each call before making the next (round trip). Also reports
//                the p50/p99 round trip of individual calls (steady_clock around each call;
//                the two clock reads, ~40 ns, are included).
//   from_grain   the same, but the caller is itself a grain (its continuation is queued to its
//                own activation after every call).
//   pipelined    64 callers, each making calls back to back, spread over 16 grains: many calls
//                outstanding; reports calls/s and calls/s per worker thread.
//   pipelined/stateless
//                the same 64 callers all calling ONE grain id of a reentrant stateless worker
//                type (one activation per worker): the routing pattern of batch grains, where
//                every call of every worker looks up the same directory entry. Each caller has
//                its own reference (get() once per caller).
//   pipelined/stateless_shared_ref
//                the same through copies of one GrainRef, whose shared reference count every
//                call updates (ratio to pipelined/stateless: that count's cost, which grows with
//                the number of workers).
//   population/runtime
//                a large population: 200,000 grains (activated before timing), the 64 callers
//                each calling grains picked at random (a fixed sequence) - a digital twin's
//                traffic, where almost every call finds its activation, its directory entry and
//                its reference out of the caches.
//   population/keyed_map
//                its reference: the same 200,000 adders in a std::unordered_map by key, called
//                directly in the same sequence (what a hand-rolled keyed object table costs).
// References:
//   direct       the grain method called as a plain coroutine (no runtime: no routing, no
//                mailbox, no turn) - the floor.
//   posted       the same work as a std::function run after a hop through the same worker pool
//                (a resumption posted to the scheduler and awaited) - what a hand-rolled
//                "post a closure to a thread pool and await it" costs.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/ratio_report.hpp"
#include "gpubridge/runtime/runtime.hpp"

namespace gpubridge::bench {
namespace {

using runtime::AsyncEvent;
using runtime::Grain;
using runtime::GrainRef;
using runtime::Runtime;
using runtime::Task;

constexpr int kSequentialCalls = 10000;
constexpr int kPipelinedCallers = 64;
constexpr int kCallsPerCaller = 200;
constexpr int kPipelinedGrains = 16;
constexpr int kPipelinedCalls = kPipelinedCallers * kCallsPerCaller;
constexpr std::size_t kPopulation = 200'000;

class Adder : public Grain {
 public:
  Task<std::int64_t> add(std::int64_t x) { co_return sum_ += x; }

 private:
  std::int64_t sum_ = 0;
};

// A reentrant stateless worker: no state, as many activations as workers.
class StatelessAdder : public Grain {
 public:
  Task<std::int64_t> add(std::int64_t x) { co_return x + 1; }
};

// The grain-to-grain caller.
class Driver : public Grain {
 public:
  Task<std::int64_t> drive(int n) {
    auto target = get_grain<Adder>(-1);
    std::int64_t last = 0;
    for (int i = 0; i < n; ++i) last = co_await target.call<&Adder::add>(1);
    co_return last;
  }
};

// What a reference call works on: its own adder and its own closure, so that concurrent
// callers share nothing (the grains are shared; the activations serialise them).
struct Local {
  Adder direct_target;  // called without the runtime
  GrainRef<StatelessAdder> stateless;  // this caller's own reference
  std::int64_t posted_sum = 0;
  std::function<std::int64_t(std::int64_t)> posted_fn = [this](std::int64_t x) { return posted_sum += x; };
};

struct Fixture {
  std::unique_ptr<Runtime> rt;
  std::vector<GrainRef<Adder>> grains;
  GrainRef<Driver> driver;
  GrainRef<StatelessAdder> stateless;
  std::vector<std::unique_ptr<Local>> locals;  // one per caller
};

// The population scenario's grains and their reference, made at first use. Grain keys are
// kPopulationBase + i, so they never meet the other scenarios' grains.
constexpr std::int64_t kPopulationBase = 1'000'000;
struct Population {
  std::vector<GrainRef<Adder>> grains;
  std::unordered_map<std::int64_t, std::unique_ptr<Adder>> keyed;  // the reference's table
  std::vector<std::uint32_t> picks;  // kPipelinedCalls indices into grains, pseudo-random
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->rt = Runtime::create({.worker_threads = workers()}).value();
    fx->rt->register_grain<Adder>().value();
    fx->rt->register_grain<Driver>().value();
    runtime::GrainOptions stateless;
    stateless.reentrant = true;
    stateless.stateless_worker = true;
    fx->rt->register_grain<StatelessAdder>(stateless).value();
    fx->stateless = fx->rt->get<StatelessAdder>(0);
    for (int i = 0; i < kPipelinedGrains; ++i) fx->grains.push_back(fx->rt->get<Adder>(i));
    fx->driver = fx->rt->get<Driver>(0);
    for (int i = 0; i < kPipelinedCallers; ++i) {
      fx->locals.push_back(std::make_unique<Local>());
      fx->locals.back()->stateless = fx->rt->get<StatelessAdder>(0);
    }
    on_shutdown([fx] { delete fx; });
    return fx;
  }();
  return *f;
}

std::string label() {
  return std::to_string(fixture().rt->worker_count()) + " worker threads, " +
         std::to_string(std::thread::hardware_concurrency()) + " hardware threads";
}

// ---------------------------------------------------------------- sequential

enum class Kind { runtime, direct, posted, stateless, stateless_shared_ref };

Task<std::int64_t> one_call(Kind kind, GrainRef<Adder>& ref, Local& local) {
  switch (kind) {
    case Kind::runtime: co_return co_await ref.call<&Adder::add>(1);
    case Kind::stateless: co_return co_await local.stateless.call<&StatelessAdder::add>(1);
    case Kind::stateless_shared_ref: co_return co_await fixture().stateless.call<&StatelessAdder::add>(1);
    case Kind::direct: co_return co_await local.direct_target.add(1);
    case Kind::posted: {
      co_await runtime::yield_now();  // one hop through the worker pool's queue
      co_return local.posted_fn(1);
    }
  }
  co_return 0;
}

Task<std::int64_t> sequential_loop(Kind kind, int n, std::vector<std::int64_t>* latencies_ns) {
  GrainRef<Adder> ref = fixture().grains[0];
  Local& local = *fixture().locals[0];
  std::int64_t last = 0;
  for (int i = 0; i < n; ++i) {
    if (latencies_ns != nullptr) {
      const auto t0 = std::chrono::steady_clock::now();
      last = co_await one_call(kind, ref, local);
      latencies_ns->push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    } else {
      last = co_await one_call(kind, ref, local);
    }
  }
  co_return last;
}

void report_percentiles(benchmark::State& state, std::vector<std::int64_t>& samples) {
  if (samples.empty()) return;
  std::sort(samples.begin(), samples.end());
  state.counters["p50_ns"] = static_cast<double>(samples[samples.size() / 2]);
  state.counters["p99_ns"] = static_cast<double>(samples[samples.size() * 99 / 100]);
}

void sequential(benchmark::State& state, Kind kind) {
  Fixture& f = fixture();
  f.rt->run(sequential_loop(kind, kSequentialCalls, nullptr));  // warm
  for (auto _ : state) benchmark::DoNotOptimize(f.rt->run(sequential_loop(kind, kSequentialCalls, nullptr)));
  // Latency samples in a separate pass so the clock reads do not slow down the timed loop.
  std::vector<std::int64_t> samples;
  samples.reserve(100'000);
  f.rt->run(sequential_loop(kind, 100'000, &samples));
  report_percentiles(state, samples);
  state.counters["calls_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()) * kSequentialCalls,
                                                     benchmark::Counter::kIsRate);
  state.SetLabel(label());
}

void from_grain(benchmark::State& state) {
  Fixture& f = fixture();
  f.rt->run(f.driver.call<&Driver::drive>(kSequentialCalls));
  for (auto _ : state) benchmark::DoNotOptimize(f.rt->run(f.driver.call<&Driver::drive>(kSequentialCalls)));
  state.counters["calls_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()) * kSequentialCalls,
                                                     benchmark::Counter::kIsRate);
  state.SetLabel(label());
}

// ---------------------------------------------------------------- pipelined

struct Burst {
  std::atomic<int> left{kPipelinedCallers};
  AsyncEvent done;
};

Task<void> pipelined_caller(Kind kind, int index, Burst& burst) {
  GrainRef<Adder>& ref = fixture().grains[static_cast<std::size_t>(index % kPipelinedGrains)];
  Local& local = *fixture().locals[static_cast<std::size_t>(index)];
  for (int i = 0; i < kCallsPerCaller; ++i) benchmark::DoNotOptimize(co_await one_call(kind, ref, local));
  if (burst.left.fetch_sub(1) == 1) burst.done.set();
}

// Spawns the kPipelinedCallers callers caller(arg, index, burst) and waits for all of them.
template <typename Arg>
Task<void> burst_of(Task<void> (*caller)(Arg, int, Burst&), Arg arg) {
  Burst burst;
  for (int c = 0; c < kPipelinedCallers; ++c) fixture().rt->spawn(caller(arg, c, burst));
  co_await burst.done;
}

void pipelined(benchmark::State& state, Kind kind) {
  Fixture& f = fixture();
  f.rt->run(burst_of(&pipelined_caller, kind));
  for (auto _ : state) f.rt->run(burst_of(&pipelined_caller, kind));
  const double calls = static_cast<double>(state.iterations()) * kPipelinedCalls;
  state.counters["calls_per_s"] = benchmark::Counter(calls, benchmark::Counter::kIsRate);
  state.counters["calls_per_s_per_worker"] =
      benchmark::Counter(calls / static_cast<double>(f.rt->worker_count()), benchmark::Counter::kIsRate);
  state.SetLabel(label());
}

// ---------------------------------------------------------------- population

Task<void> activate_all(std::vector<GrainRef<Adder>>& grains) {
  for (auto& g : grains) benchmark::DoNotOptimize(co_await g.call<&Adder::add>(0));
}

Population& population() {
  static Population* p = [] {
    auto* pop = new Population;
    Fixture& f = fixture();
    pop->grains.reserve(kPopulation);
    for (std::size_t i = 0; i < kPopulation; ++i) {
      const auto key = kPopulationBase + static_cast<std::int64_t>(i);
      pop->grains.push_back(f.rt->get<Adder>(key));
      pop->keyed.emplace(key, std::make_unique<Adder>());
    }
    std::uint64_t x = 0x9E3779B97F4A7C15ull;  // xorshift64: the same sequence on every run
    pop->picks.resize(kPipelinedCalls);
    for (auto& pick : pop->picks) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      pick = static_cast<std::uint32_t>(x % kPopulation);
    }
    f.rt->run(activate_all(pop->grains));
    on_shutdown([pop] { delete pop; });
    return pop;
  }();
  return *p;
}

// Caller `index` makes calls index, index + kPipelinedCallers, ... of the pick sequence.
Task<void> population_caller(bool keyed, int index, Burst& burst) {
  Population& pop = population();
  for (std::size_t i = static_cast<std::size_t>(index); i < pop.picks.size(); i += kPipelinedCallers) {
    const std::uint32_t pick = pop.picks[i];
    if (keyed) {
      Adder& a = *pop.keyed.find(kPopulationBase + pick)->second;
      benchmark::DoNotOptimize(co_await a.add(1));
    } else {
      benchmark::DoNotOptimize(co_await pop.grains[pick].call<&Adder::add>(1));
    }
  }
  if (burst.left.fetch_sub(1) == 1) burst.done.set();
}

void population_run(benchmark::State& state, bool keyed) {
  Fixture& f = fixture();
  population();
  f.rt->run(burst_of(&population_caller, keyed));
  for (auto _ : state) f.rt->run(burst_of(&population_caller, keyed));
  state.counters["calls_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kPipelinedCalls, benchmark::Counter::kIsRate);
  state.SetLabel(label() + ", " + std::to_string(kPopulation) + " grains");
}

void register_all() {
  benchmark::RegisterBenchmark("grain_call/sequential/runtime", [](benchmark::State& s) { sequential(s, Kind::runtime); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/sequential/direct", [](benchmark::State& s) { sequential(s, Kind::direct); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/sequential/posted", [](benchmark::State& s) { sequential(s, Kind::posted); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/from_grain/runtime", from_grain)->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/pipelined/runtime", [](benchmark::State& s) { pipelined(s, Kind::runtime); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/pipelined/direct", [](benchmark::State& s) { pipelined(s, Kind::direct); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/pipelined/posted", [](benchmark::State& s) { pipelined(s, Kind::posted); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/pipelined/stateless", [](benchmark::State& s) { pipelined(s, Kind::stateless); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/pipelined/stateless_shared_ref",
                               [](benchmark::State& s) { pipelined(s, Kind::stateless_shared_ref); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/population/runtime", [](benchmark::State& s) { population_run(s, false); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("grain_call/population/keyed_map", [](benchmark::State& s) { population_run(s, true); })
      ->UseRealTime();

  register_pair({"sequential", "runtime", "grain_call/sequential/runtime", "grain_call/sequential/direct", kSequentialCalls});
  register_pair({"sequential", "runtime", "grain_call/sequential/runtime", "grain_call/sequential/posted", kSequentialCalls});
  register_pair({"from_grain", "runtime", "grain_call/from_grain/runtime", "grain_call/sequential/posted", kSequentialCalls});
  register_pair({"pipelined", "runtime", "grain_call/pipelined/runtime", "grain_call/pipelined/direct", kPipelinedCalls});
  register_pair({"pipelined", "runtime", "grain_call/pipelined/runtime", "grain_call/pipelined/posted", kPipelinedCalls});
  register_pair({"pipelined", "stateless", "grain_call/pipelined/stateless", "grain_call/pipelined/posted", kPipelinedCalls});
  register_pair({"population", "runtime", "grain_call/population/runtime", "grain_call/population/keyed_map",
                 kPipelinedCalls});
  register_pair({"shared_ref", "stateless", "grain_call/pipelined/stateless_shared_ref", "grain_call/pipelined/stateless",
                 kPipelinedCalls});
}

}  // namespace
}  // namespace gpubridge::bench

int main(int argc, char** argv) {
  gpubridge::bench::register_all();
  return gpubridge::bench::run_with_ratio_report(
      argc, argv,
      {.help = "bench_runtime: in-process grain calls (Runtime, default worker count = hardware threads;\n"
               "--workers=N sets it) against a direct coroutine call and a std::function posted to the same worker pool.\n\n",
       .workers_flag = true});
}

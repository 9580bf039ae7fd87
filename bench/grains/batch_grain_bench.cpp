// bench_grains: the batched kernel path end to end - many callers, each calling the batch grain
// "vector.add/f32" on its own 256 floats, on a silo - against the raw backend API doing the same
// total number of requests in the same batch sizes, measured in the same run.
//
// Goal (from the issue): at least 0.8 of raw throughput on every backend (ratio <= 1.25 in the
// table printed after the run); on an H100, at least 5M requests/s (items_per_second).
//
// Measured (per backend cpu, cuda, opencl; Arg = batch size B, 256 and 4096; one iteration =
// 32768 requests, so the ratio table's time per call is per request):
//   grain_batch/<b>/grains  a Silo (backend <b>, allow_fallback = false, batching.max_batch = B,
//                           max_delay 100 us, --workers or one worker per hardware thread) and
//                           C = 2 * B concurrent callers
//                           (coroutines spawned on the silo's runtime), each making 32768 / C
//                           calls in a loop through
//                           runtime.get<BatchGrain>("vector.add/f32").call<&BatchGrain::run>().
//                           2 * B callers, so that the next full batch forms while one runs.
//                           As in the raw reference, every request of an iteration has its own
//                           input and output memory (caller c makes requests c, c + C, c + 2C, ...
//                           of 32768, in the reference's own memory), so neither side gains from
//                           data already in the caches.
//   grain_batch/<b>/grain_callers
//                           the same, with the C callers grains (CallerGrain, one activation
//                           each) as the "many grains each calling vector.add": each
//                           iteration calls every caller grain once (one-way), and its turn makes
//                           its share of the calls, so every call is sent from a turn and its
//                           reply resumes that turn through the caller's activation.
//   grain_batch/<b>/raw     the same 32768 requests in batches of B with the backend's own API
//                           (compute/raw_batch.hpp, the reference of bench_compute's batch/<b>/raw).
//   grain_batch/<b>/telemetry_off
//                           grains with telemetry.enabled = false (no grain call filter, no compute
//                           observer): the reference of the "telemetry" pair, which reports the cost
//                           of metrics on the batched hot path (goal: ratio on / off under 1.05).
// Counters: items_per_second = requests per second; avg_batch = requests per launch (grains);
// spawn_us: the part of an iteration that one worker spends spawning the C callers, or sending
// to the C caller grains (the harness's own serial cost: where it nears the iteration's time,
// the callers are the limit);
// on GPU backends the mean time of a call as its caller saw it (call_us) and the batcher's parts
// of it: queued_us (submit to the batch's dispatch), executed_us (dispatch to the batch's
// completion: packing, copies, kernel, scatter); the rest is the grain call and the caller's resumption.
// Backends without a device are skipped with the reason.
//
// Flags: Google Benchmark's, --ratio_out=FILE and --workers=N (see common/ratio_report.hpp): the
// scaling of the grain side with workers, e.g. on a many-core host; --silo=KEY=VALUE (repeatable):
// a silo configuration override for the grain side (server/silo_config.hpp), e.g.
// --silo=batching.max_inflight_batches=8, named in the label (a bad one is an error before
// anything runs). Each benchmark runs for at least 0.2 s unless --benchmark_min_time says otherwise.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ratio_report.hpp"
#include "compute/compute_fixture.hpp"
#include "compute/raw_batch.hpp"
#include "gpubridge/grains/batch_grain.hpp"
#include "gpubridge/runtime/async_event.hpp"
#include "gpubridge/server/silo.hpp"
#include "gpubridge/server/silo_config.hpp"

namespace gpubridge::bench {
namespace {

using compute::BackendKind;
using grains::BatchCall;
using grains::BatchGrain;
using runtime::Task;

constexpr std::size_t kN = kRawBatchElements;        // elements per request (256)
constexpr std::size_t kPerIteration = 32768;         // requests per benchmark iteration
constexpr std::uint32_t kMaxDelayUs = 100;
constexpr const char* kGrainKey = "vector.add/f32";

// --silo=KEY=VALUE overrides, in order (main() takes them off the command line).
std::vector<std::string>& silo_overrides() {
  static std::vector<std::string> overrides;
  return overrides;
}

// The memory of one iteration's requests: the raw reference's own (compute/raw_batch.hpp).
std::vector<RawRequest>& request_memory() { return raw_requests(kPerIteration); }

// One caller: its index among the C callers, its own reference to the grain (as a calling grain
// would hold one) and its call (views set per request).
struct Caller {
  std::size_t index = 0;
  runtime::GrainRef<BatchGrain> grain;
  BatchCall call;
  // Where a request's time went, summed over the timed iterations (GPU backends only, see
  // caller_loop): the whole call as the caller saw it, and the batcher's part of it.
  struct Times {
    std::uint64_t calls = 0;
    std::chrono::nanoseconds call{0};
    std::chrono::nanoseconds queued{0};    // BatchReport::queued: submit to the batch's dispatch
    std::chrono::nanoseconds executed{0};  // BatchReport::executed: dispatch to the batch's completion
  } times;
};

// A silo and its callers for one (backend, B); kept for the rest of the run.
class CallerGrain;
struct GrainFixture {
  std::unique_ptr<server::Silo> silo;
  std::vector<std::unique_ptr<Caller>> callers;  // 2 * B
  std::vector<runtime::GrainRef<CallerGrain>> caller_grains;  // callers[i] as grain i (grain_callers)
};

// One iteration's callers: the last one to finish sets `done`; the first error is kept.
struct Round {
  std::atomic<std::size_t> left{0};
  runtime::AsyncEvent done;
  std::chrono::nanoseconds spawning{0};  // burst()'s loop that spawns every caller
  std::mutex mu;
  std::string error;
  void fail(std::string message) {
    std::lock_guard lock(mu);
    if (error.empty()) error = std::move(message);
  }
};

Result<GrainFixture*> fixture_for(BackendKind backend, std::size_t batch, bool telemetry) {
  using Key = std::tuple<BackendKind, std::size_t, bool>;
  static std::map<Key, std::unique_ptr<GrainFixture>>* fixtures = [] {
    auto* m = new std::map<Key, std::unique_ptr<GrainFixture>>;
    on_shutdown([m] { delete m; });  // stops every silo while the drivers are still loaded
    return m;
  }();
  auto& slot = (*fixtures)[{backend, batch, telemetry}];
  if (slot) return slot.get();
  server::SiloConfig config;
  config.name = "bench_grains";
  config.telemetry_enabled = telemetry;  // the silo's default is on
  config.backend = std::string(compute::to_string(backend));
  config.allow_fallback = false;
  config.max_batch = batch;
  config.max_delay_us = kMaxDelayUs;
  config.workers = static_cast<unsigned>(workers());  // 0: one per hardware thread
  config.queue_capacity = std::max<std::size_t>(config.queue_capacity, 4 * batch);
  for (const std::string& o : silo_overrides()) {
    if (Status s = server::apply_override(config, o); !s) return s.error();
  }
  auto silo = server::Silo::start(config);
  if (!silo) return silo.error();
  auto f = std::make_unique<GrainFixture>();
  f->silo = std::move(silo).value();
  for (std::size_t i = 0; i < 2 * batch; ++i) {
    auto c = std::make_unique<Caller>();
    c->index = i;
    c->grain = f->silo->runtime().get<BatchGrain>(kGrainKey);
    c->call.input_count = 2;
    c->call.output_capacity = kN;
    f->callers.push_back(std::move(c));
  }
  slot = std::move(f);
  return slot.get();
}

// Times each call when the batches run on a GPU (a request there takes microseconds; on the CPU a
// request runs inline in a few hundred nanoseconds, which two clock reads would visibly slow).
Task<void> caller_loop(Caller& caller, std::size_t callers, Round& round,
                       BackendKind expected) {
  std::vector<RawRequest>& memory = request_memory();
  const bool timed = expected != BackendKind::cpu;
  try {
    for (std::size_t r = caller.index; r < kPerIteration; r += callers) {
      RawRequest& m = memory[r];
      caller.call.inputs[0] = compute::TensorView(compute::DType::f32, m.a.data(), m.a.size());
      caller.call.inputs[1] = compute::TensorView(compute::DType::f32, m.b.data(), m.b.size());
      caller.call.output = m.out.data();
      const auto start = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      const compute::BatchReport report = co_await caller.grain.call<&BatchGrain::run>(caller.call);
      if (timed) {
        Caller::Times& t = caller.times;
        ++t.calls;
        t.call += std::chrono::steady_clock::now() - start;
        t.queued += report.queued;
        t.executed += report.executed;
      }
      if (report.backend != expected) {
        round.fail(std::string("ran on ") + report.device_id);
        break;
      }
    }
  } catch (const ErrorException& e) {
    round.fail(e.error().to_string());
  } catch (const std::exception& e) {
    round.fail(e.what());
  }
  if (round.left.fetch_sub(1, std::memory_order_acq_rel) == 1) round.done.set();
}

// A caller as a grain: one turn per iteration makes the caller's share of the calls (caller_loop
// inside the turn, so each call is sent by the turn and its reply resumes the turn).
class CallerGrain : public runtime::Grain {
 public:
  Task<void> make_calls(Caller* caller, std::size_t callers, Round* round, BackendKind expected) {
    co_await caller_loop(*caller, callers, *round, expected);
  }
};

// Starts every caller (together making kPerIteration calls) - spawned, or as grains - and waits
// for all of them.
Task<void> burst(GrainFixture& f, Round& round, BackendKind expected, bool as_grains) {
  round.left.store(f.callers.size(), std::memory_order_relaxed);
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < f.callers.size(); ++i) {
    Caller& c = *f.callers[i];
    const bool started_ok =
        as_grains ? f.caller_grains[i].send<&CallerGrain::make_calls>(&c, f.callers.size(), &round, expected)
                  : f.silo->runtime().spawn(caller_loop(c, f.callers.size(), round, expected));
    if (!started_ok) {
      round.fail("runtime stopping");
      if (round.left.fetch_sub(1, std::memory_order_acq_rel) == 1) round.done.set();
    }
  }
  round.spawning = std::chrono::steady_clock::now() - started;
  co_await round.done;
}

// Runs one iteration's requests, adding the time spent starting the callers to `spawning`; the
// first error, if any.
std::optional<std::string> run_round(GrainFixture& f, BackendKind expected, std::chrono::nanoseconds& spawning,
                                     bool as_grains) {
  Round round;
  f.silo->runtime().run(burst(f, round, expected, as_grains));
  spawning += round.spawning;
  if (!round.error.empty()) return round.error;
  return std::nullopt;
}

std::optional<compute::BatcherStats> grain_batcher_stats(GrainFixture& f) {
  for (auto& [key, stats] : f.silo->gpu().batcher_stats()) {
    if (key == kGrainKey) return stats;
  }
  return std::nullopt;
}

// The caller grains of `f`, registered and referenced at first use.
Status make_caller_grains(GrainFixture& f) {
  if (!f.caller_grains.empty()) return {};
  runtime::Runtime& rt = f.silo->runtime();
  if (Status s = rt.register_grain<CallerGrain>(); !s) return s;
  for (std::size_t i = 0; i < f.callers.size(); ++i) {
    f.caller_grains.push_back(rt.get<CallerGrain>(static_cast<std::int64_t>(i)));
  }
  return {};
}

void grains_run_with(benchmark::State& state, BackendKind backend, bool telemetry, bool as_grains) {
  if (executor_for(state, backend) == nullptr) return;  // no device: skipped with the reason
  const auto batch = static_cast<std::size_t>(state.range(0));
  auto fixture = fixture_for(backend, batch, telemetry);
  if (!fixture) return skip(state, "Silo::start", fixture.error().to_string());
  GrainFixture& f = **fixture;
  if (as_grains) {
    if (Status s = make_caller_grains(f); !s) return skip(state, "register_grain<CallerGrain>", s.error().to_string());
  }
  // Warm-up (activation, batcher, kernel build, pools), checked on outputs cleared before it.
  clear_checked(request_memory());
  std::chrono::nanoseconds spawning{0};
  for (int i = 0; i < 2; ++i) {
    if (auto bad = run_round(f, backend, spawning, as_grains)) return skip(state, "BatchGrain::run", *bad);
  }
  if (auto bad = check_requests(request_memory())) return skip(state, "BatchGrain::run", *bad);
  std::string label = backend_label(backend) + ", " + std::to_string(f.callers.size()) +
                      (as_grains ? " caller grains, " : " callers, ") +
                      std::to_string(f.silo->runtime().worker_count()) + " workers";
  for (const std::string& o : silo_overrides()) label += ", " + o;
  state.SetLabel(label);
  const auto before = grain_batcher_stats(f);
  for (auto& c : f.callers) c->times = {};
  spawning = {};
  for (auto _ : state) {
    if (auto bad = run_round(f, backend, spawning, as_grains)) {
      skip(state, "BatchGrain::run", *bad);
      return;
    }
  }
  const auto after = grain_batcher_stats(f);
  if (before && after && after->batches > before->batches) {
    state.counters["avg_batch"] = static_cast<double>(after->batched_requests - before->batched_requests) /
                                  static_cast<double>(after->batches - before->batches);
  }
  Caller::Times sum;
  for (const auto& c : f.callers) {
    sum.calls += c->times.calls;
    sum.call += c->times.call;
    sum.queued += c->times.queued;
    sum.executed += c->times.executed;
  }
  if (sum.calls > 0) {
    const auto mean_us = [&](std::chrono::nanoseconds total) {
      return std::chrono::duration<double, std::micro>(total).count() / static_cast<double>(sum.calls);
    };
    state.counters["call_us"] = mean_us(sum.call);
    state.counters["queued_us"] = mean_us(sum.queued);
    state.counters["executed_us"] = mean_us(sum.executed);
  }
  state.counters["spawn_us"] =
      std::chrono::duration<double, std::micro>(spawning).count() / static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kPerIteration));
}

void grains_run(benchmark::State& state, BackendKind backend) { grains_run_with(state, backend, true, false); }
void grain_callers_run(benchmark::State& state, BackendKind backend) { grains_run_with(state, backend, true, true); }
void grains_telemetry_off_run(benchmark::State& state, BackendKind backend) {
  grains_run_with(state, backend, false, false);
}

void raw_run(benchmark::State& state, BackendKind backend) {
  raw_batch_run(state, backend, static_cast<std::size_t>(state.range(0)), kPerIteration);
}

void register_all() {
  for (BackendKind backend : {BackendKind::cpu, BackendKind::cuda, BackendKind::opencl}) {
    const std::string b(compute::to_string(backend));
    const std::string prefix = "grain_batch/" + b + "/";
    for (const auto& [name, fn] : {std::pair{"grains", &grains_run}, std::pair{"grain_callers", &grain_callers_run},
                                   std::pair{"raw", &raw_run}, std::pair{"telemetry_off", &grains_telemetry_off_run}}) {
      benchmark::RegisterBenchmark((prefix + name).c_str(), fn, backend)
          ->Arg(256)
          ->Arg(4096)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
    register_pair({"grain_batch", b, prefix + "grains", prefix + "raw", static_cast<double>(kPerIteration)});
    register_pair({"grain_callers", b, prefix + "grain_callers", prefix + "raw", static_cast<double>(kPerIteration)});
    register_pair({"telemetry", b, prefix + "grains", prefix + "telemetry_off", static_cast<double>(kPerIteration)});
  }
}

}  // namespace
}  // namespace gpubridge::bench

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a(argv[i]);
    if (i > 0 && a.starts_with("--silo=")) {
      gpubridge::bench::silo_overrides().emplace_back(a.substr(7));
    } else {
      args.push_back(argv[i]);
    }
  }
  args.push_back(nullptr);
  gpubridge::server::SiloConfig scratch;  // a bad override is an error before anything runs
  for (const std::string& o : gpubridge::bench::silo_overrides()) {
    if (gpubridge::Status s = gpubridge::server::apply_override(scratch, o); !s) {
      std::fprintf(stderr, "--silo=%s: %s\n", o.c_str(), s.error().to_string().c_str());
      return 2;
    }
  }
  gpubridge::bench::register_all();
  return gpubridge::bench::run_with_ratio_report(
      static_cast<int>(args.size()) - 1, args.data(),
      {.help = "bench_grains: many callers calling BatchGrain \"vector.add/f32\" (256 floats each) on a silo,\n"
               "against the raw backend API doing the same requests in the same batch sizes.\n\n"
               "  --silo=KEY=VALUE   a silo configuration override for the grain side (repeatable),\n"
               "                     e.g. --silo=batching.max_inflight_batches=8\n\n",
       .workers_flag = true});
}

// gpubridge run --demo [--duration S] [--sensors N] [--callers C] [--config F] [--set key=value]...
//
// Starts one silo and runs a digital-twin workload: C concurrent callers drive N sensor grains;
// each update of a sensor blends a new 256-value reading into its state with vector.axpy and
// takes the state's squared norm with vector.dot, both through batch grains, so requests of all
// sensors are batched onto the best device (on the CPU these small requests run inline on the
// calling worker instead, see DynamicBatcher::run_inline). Every 16th update of each sensor is recomputed on the host and
// compared. Prints live progress each second and a summary; exits 0 when every call succeeded
// and every check matched.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubridge/grains/batch_grain.hpp"
#include "gpubridge/server/silo.hpp"
#include "server/commands.hpp"
#include "server/latency_histogram.hpp"

namespace gpubridge::server {

namespace {

using Clock = std::chrono::steady_clock;
using runtime::Task;

constexpr std::size_t kFeatures = 256;
constexpr float kAlpha = 0.05f;
constexpr std::uint64_t kCheckEvery = 16;  // per sensor

struct DemoCounters {
  std::atomic<std::uint64_t> updates{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> checks{0};
  std::atomic<std::uint64_t> mismatches{0};
  std::mutex error_mutex;
  std::string first_error;
};

// A sensor's digital twin: its state is a smoothed sum of its readings.
class SensorGrain : public runtime::Grain {
 public:
  explicit SensorGrain(DemoCounters& counters) : counters_(counters) {}

  Task<void> on_activate() override {
    axpy_ = get_grain<grains::BatchGrain>("vector.axpy/f32");
    dot_ = get_grain<grains::BatchGrain>("vector.dot/f32");
    co_return;
  }

  Task<float> update(std::uint64_t tick) {
    // A deterministic reading in [-1, 1) from (sensor, tick).
    std::uint64_t x = static_cast<std::uint64_t>(id().key().hash()) * 6364136223846793005ull + tick * 1442695040888963407ull;
    for (auto& r : reading_) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      r = static_cast<float>(static_cast<double>(x >> 40) / static_cast<double>(1ull << 23) - 1.0);
    }
    grains::BatchCall blend;
    blend.inputs[0] = compute::TensorView(reading_);
    blend.inputs[1] = compute::TensorView(state_);
    blend.input_count = 2;
    blend.scalars[0] = kAlpha;
    blend.output = next_.data();
    blend.output_capacity = next_.size();
    co_await axpy_.call<&grains::BatchGrain::run>(blend);

    float norm2 = 0;
    grains::BatchCall dot;
    dot.inputs[0] = compute::TensorView(next_);
    dot.inputs[1] = compute::TensorView(next_);
    dot.input_count = 2;
    dot.output = &norm2;
    dot.output_capacity = 1;
    co_await dot_.call<&grains::BatchGrain::run>(dot);

    if (++updates_ % kCheckEvery == 0) check(norm2);
    state_.swap(next_);
    co_return norm2;
  }

 private:
  // Host recomputation of this update (state_ still holds the previous state).
  void check(float norm2) {
    double expected_norm2 = 0;
    bool ok = true;
    for (std::size_t i = 0; i < kFeatures; ++i) {
      const float v = kAlpha * reading_[i] + state_[i];
      ok = ok && std::abs(v - next_[i]) <= 1e-5f * (1.0f + std::abs(v));
      expected_norm2 += static_cast<double>(next_[i]) * next_[i];
    }
    ok = ok && std::abs(expected_norm2 - norm2) <= 1e-4 * (1.0 + expected_norm2);
    counters_.checks.fetch_add(1);
    if (!ok) counters_.mismatches.fetch_add(1);
  }

  DemoCounters& counters_;
  runtime::GrainRef<grains::BatchGrain> axpy_;
  runtime::GrainRef<grains::BatchGrain> dot_;
  std::vector<float> state_ = std::vector<float>(kFeatures, 0.f);
  std::vector<float> next_ = std::vector<float>(kFeatures, 0.f);
  std::vector<float> reading_ = std::vector<float>(kFeatures, 0.f);
  std::uint64_t updates_ = 0;
};

struct Caller {
  LatencyHistogram latency;
};

Task<void> drive(runtime::Runtime& rt, Caller& me, std::size_t first_sensor, std::size_t sensors, std::size_t stride,
                 Clock::time_point end, DemoCounters& counters, std::atomic<std::size_t>& running) {
  std::uint64_t tick = 0;
  for (std::size_t s = first_sensor; Clock::now() < end; s = (s + stride) % sensors, ++tick) {
    auto sensor = rt.get<SensorGrain>(static_cast<std::int64_t>(s));
    const auto t0 = Clock::now();
    try {
      co_await sensor.call<&SensorGrain::update>(tick);
      me.latency.record(Clock::now() - t0);
      counters.updates.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception& e) {
      if (counters.failures.fetch_add(1) == 0) {
        std::lock_guard lock(counters.error_mutex);
        counters.first_error = e.what();
      }
    }
  }
  running.fetch_sub(1);
}

struct DemoArgs {
  double duration_s = 10;
  std::size_t sensors = 4096;
  std::size_t callers = 512;
  std::string config;
  std::vector<std::string> overrides;
  bool demo = false;
};

// The devices that completed calls (a device other than the planned one means a fallback).
std::string device_summary(Silo& silo) {
  std::string out;
  for (const auto& d : silo.executor().stats().devices) {
    if (d.calls == 0) continue;
    out += (out.empty() ? "" : ", ") + d.device_id;
  }
  return out;
}

int run_demo(const DemoArgs& args) {
  if (!args.demo) {
    std::cerr << "gpubridge run: only the demo workload exists so far; pass --demo\n";
    return 2;
  }
  if (args.duration_s <= 0 || args.sensors == 0 || args.callers == 0) {
    std::cerr << "gpubridge run: --duration, --sensors and --callers must be positive\n";
    return 2;
  }
  auto config = load_silo_config(args.config, args.overrides);
  if (!config) {
    std::cerr << "gpubridge run: " << config.error().message() << "\n";
    return 2;
  }
  auto started = Silo::start(*config);
  if (!started) {
    std::cerr << "gpubridge run: " << started.error().to_string() << "\n";
    return 1;
  }
  Silo& silo = **started;
  DemoCounters counters;
  if (Status s = silo.runtime().register_grain<SensorGrain>({}, [&counters] { return std::make_unique<SensorGrain>(counters); });
      !s) {
    std::cerr << "gpubridge run: " << s.error().to_string() << "\n";
    return 1;
  }
  // Where the batch grains' kernels run (before any fallback).
  for (const char* k : {"vector.axpy", "vector.dot"}) {
    auto b = silo.gpu().batcher(k, compute::DType::f32);
    if (!b) {
      std::cerr << "gpubridge run: " << b.error().to_string() << "\n";
      return 1;
    }
  }
  const std::string device = [&] {
    auto b = silo.gpu().batcher("vector.axpy", compute::DType::f32);
    return (*b)->device().id + " (" + (*b)->device().name + ")";
  }();
  std::cout << "silo '" << config->name << "': " << silo.runtime().worker_count() << " grain workers; batched kernels on "
            << device << "\n"
            << "demo: " << args.callers << " callers driving " << args.sensors << " sensor grains for " << args.duration_s
            << " s (2 kernel requests through batch grains per update"
            << ((*silo.gpu().batcher("vector.axpy", compute::DType::f32))->device().backend == compute::BackendKind::cpu
                    ? "; on the CPU they run inline on the calling worker)\n"
                    : ")\n");
  if (auto url = silo.http_url()) std::cout << "http: listening on " << *url << "\n";
  std::cout << std::flush;

  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(args.duration_s));
  std::vector<Caller> callers(args.callers);
  std::atomic<std::size_t> running{args.callers};
  for (std::size_t i = 0; i < args.callers; ++i) {
    const std::size_t stride = args.callers % args.sensors == 0 ? 1 : args.callers;
    if (!silo.runtime().spawn(drive(silo.runtime(), callers[i], i % args.sensors, args.sensors, stride, end, counters, running))) {
      running.fetch_sub(1);
    }
  }

  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::uint64_t last_updates = 0;
  auto last = start;
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the progress display's refresh period
    const auto now = Clock::now();
    if (now - last < std::chrono::seconds(1) && running.load() > 0) continue;
    const std::uint64_t updates = counters.updates.load();
    const double dt = std::chrono::duration<double>(now - last).count();
    std::uint64_t batches = 0, batched = 0, ran_inline = 0;
    for (const auto& [key, st] : silo.gpu().batcher_stats()) {
      batches += st.batches;
      batched += st.batched_requests;
      ran_inline += st.ran_inline;
    }
    const auto& fb = silo.executor().stats().fallbacks;
    std::uint64_t fallbacks = 0;
    for (auto f : fb) fallbacks += f;
    char line[256];
    std::snprintf(line, sizeof line,
                  "[%5.1fs] %9.0f updates/s  %9.0f kernel requests/s  avg batch %6.1f  inline %5.1f%%  fallbacks %llu  failures %llu",
                  std::chrono::duration<double>(now - start).count(), static_cast<double>(updates - last_updates) / dt,
                  2.0 * static_cast<double>(updates - last_updates) / dt,
                  batches ? static_cast<double>(batched) / static_cast<double>(batches) : 0.0,
                  batched + ran_inline ? 100.0 * static_cast<double>(ran_inline) / static_cast<double>(batched + ran_inline) : 0.0,
                  static_cast<unsigned long long>(fallbacks), static_cast<unsigned long long>(counters.failures.load()));
    std::cout << (tty ? "\r" : "") << line << (tty ? "" : "\n") << std::flush;
    last_updates = updates;
    last = now;
  }
  if (tty) std::cout << "\n";
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  LatencyHistogram all;
  for (const auto& c : callers) all.merge(c.latency);
  std::uint64_t batches = 0, batched = 0, ran_inline = 0, expired = 0, rejected = 0;
  std::size_t max_batch = 0;
  for (const auto& [key, st] : silo.gpu().batcher_stats()) {
    batches += st.batches;
    batched += st.batched_requests;
    ran_inline += st.ran_inline;
    expired += st.expired;
    rejected += st.rejected_queue_full;
    max_batch = std::max(max_batch, st.current_max_batch);
  }
  const compute::ExecutorStats es = silo.executor().stats();
  const std::string ran_on = device_summary(silo);
  silo.stop();

  const std::uint64_t updates = counters.updates.load();
  std::printf("\nsummary\n");
  std::printf("  updates            %llu in %.2f s: %.0f updates/s, %.0f kernel requests/s through batch grains\n",
              static_cast<unsigned long long>(updates), elapsed, static_cast<double>(updates) / elapsed,
              2.0 * static_cast<double>(updates) / elapsed);
  std::printf("  update latency     p50 %.3f ms  p95 %.3f ms  p99 %.3f ms (grain call round trip, 2 kernel requests)\n",
              all.quantile(0.50) * 1e3, all.quantile(0.95) * 1e3, all.quantile(0.99) * 1e3);
  std::printf("  batches            %llu, average %.1f requests, batch size limit %zu\n",
              static_cast<unsigned long long>(batches),
              batches ? static_cast<double>(batched) / static_cast<double>(batches) : 0.0, max_batch);
  std::printf("  inline             %llu requests ran at once on their calling worker, not in a batch (small requests on the CPU)\n",
              static_cast<unsigned long long>(ran_inline));
  std::printf("  devices            batches planned on %s; ran on %s\n", device.c_str(), ran_on.c_str());
  std::string fallbacks;
  for (std::size_t r = 1; r < compute::kFallbackReasonCount; ++r) {
    fallbacks += (fallbacks.empty() ? "" : ", ") + std::string(compute::to_string(static_cast<compute::FallbackReason>(r))) +
                 " " + std::to_string(es.fallbacks[r]);
  }
  std::printf("  fallbacks          %s\n", fallbacks.c_str());
  std::uint64_t breakers_opened = 0;
  for (const auto& b : es.breakers) breakers_opened += b.opened;
  std::printf("  resilience         breakers opened %llu, retries %llu, faults injected %llu, deadlines missed %llu\n",
              static_cast<unsigned long long>(breakers_opened), static_cast<unsigned long long>(es.retries),
              static_cast<unsigned long long>(es.faults_injected), static_cast<unsigned long long>(es.deadline_exceeded));
  std::printf("  checks             %llu host recomputations, %llu mismatches\n",
              static_cast<unsigned long long>(counters.checks.load()),
              static_cast<unsigned long long>(counters.mismatches.load()));
  std::printf("  failures           %llu calls failed, %llu requests expired, %llu rejected (queue full)\n",
              static_cast<unsigned long long>(counters.failures.load()), static_cast<unsigned long long>(expired),
              static_cast<unsigned long long>(rejected));
  if (counters.failures.load() > 0) std::printf("  first failure      %s\n", counters.first_error.c_str());
  const bool ok = updates > 0 && counters.failures.load() == 0 && counters.mismatches.load() == 0;
  std::printf("%s\n", ok ? "demo: OK" : "demo: FAILED");
  return ok ? 0 : 1;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("run", "Start a silo and run a workload");
  auto args = std::make_shared<DemoArgs>();
  cmd->add_flag("--demo", args->demo, "Run the built-in digital-twin demo workload");
  cmd->add_option("--duration", args->duration_s, "Seconds to run (default 10)");
  cmd->add_option("--sensors", args->sensors, "Sensor grains (default 4096)");
  cmd->add_option("--callers", args->callers, "Concurrent callers (default 512)");
  cmd->add_option("--config", args->config, "Silo configuration file (JSON)");
  cmd->add_option("--set", args->overrides, "Configuration override key=value (repeatable), e.g. batching.max_batch=4096");
  cmd->callback([args, &exit_code] { exit_code = run_demo(*args); });
}

}  // namespace gpubridge::server

#include "server/observability.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/core/thread_name.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/resilience/fault_injection.hpp"
#include "gpubridge/runtime/frame_pool.hpp"
#include "gpubridge/runtime/runtime.hpp"
#include "gpubridge/telemetry/metrics.hpp"
#include "gpubridge/telemetry/nvml.hpp"
#include "gpubridge/telemetry/tracing.hpp"
#include "server/compute_metrics.hpp"
#include "server/health.hpp"
#include "server/http/http_server.hpp"
#include "server/metric_cache.hpp"

#ifndef GPUBRIDGE_VERSION
#define GPUBRIDGE_VERSION "unknown"
#endif

namespace gpubridge::server {

extern const char* const kDashboardHtml;  // dashboard_page.cpp (generated from dashboard/dashboard.html)

namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kSamplePeriod = std::chrono::seconds(1);
constexpr auto kHealthPeriod = std::chrono::seconds(5);
constexpr std::size_t kHistorySamples = 120;  // two minutes of one-second samples
constexpr std::size_t kLatencyWindow = 10;     // samples the dashboard's percentiles cover

// Grain call counts (every call) and durations (the calls the runtime timed: see
// runtime::CallContext::timed) by grain type and method, recorded in after(). The labels come
// from the method's name ("Class::method": grain_type is the class that declares the method). The
// name lives in static storage, so its address identifies the method: a per-thread table keyed by
// that address finds the three children with one pointer comparison (a miss takes the family's
// lock once per thread and method).
class GrainMetricsFilter final : public runtime::CallFilter {
 public:
  GrainMetricsFilter(telemetry::CounterFamily& calls, telemetry::HistogramFamily& durations)
      : calls_(calls), durations_(durations), id_(next_filter_id().fetch_add(1, std::memory_order_relaxed)) {}
  void before(runtime::CallContext&) override {}
  void after(runtime::CallContext& context) override {
    Children* c = children(context.method);
    if (c == nullptr) return;
    (context.exception ? c->failed : c->ok)->inc();
    if (context.timed) c->duration->observe(std::chrono::duration<double>(context.duration).count());
  }
  std::uint64_t errors() const noexcept { return errors_.load(std::memory_order_relaxed); }

 private:
  struct Children {
    telemetry::Counter* ok = nullptr;
    telemetry::Counter* failed = nullptr;
    telemetry::Histogram* duration = nullptr;
  };
  struct Entry {
    std::uint64_t owner = 0;
    const char* method = nullptr;
    Children children;
  };
  static std::atomic<std::uint64_t>& next_filter_id() {
    static std::atomic<std::uint64_t> id{1};
    return id;
  }

  Children* children(std::string_view method) {
    thread_local std::array<Entry, 64> table;
    Entry& e = table[(reinterpret_cast<std::uintptr_t>(method.data()) >> 3) % table.size()];
    if (e.owner == id_ && e.method == method.data()) return &e.children;
    std::string_view type, name = method;
    if (const auto colons = method.rfind("::"); colons != std::string_view::npos) {
      type = method.substr(0, colons);
      name = method.substr(colons + 2);
    }
    auto ok = calls_.with({type, name, "ok"});
    auto failed = calls_.with({type, name, "error"});
    auto duration = durations_.with({type, name});
    if (!ok || !failed || !duration) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    e = Entry{id_, method.data(), Children{*ok, *failed, *duration}};
    return &e.children;
  }

  telemetry::CounterFamily& calls_;
  telemetry::HistogramFamily& durations_;
  const std::uint64_t id_;
  std::atomic<std::uint64_t> errors_{0};
};

struct Sample {
  std::chrono::system_clock::time_point at;
  SteadyClock::time_point steady;
  std::uint64_t grain_calls = 0;
  std::uint64_t batched_requests = 0;
  std::uint64_t kernel_executions = 0;
  std::optional<telemetry::HistogramSnapshot> call_latency;  // cumulative, all grain types merged
};

json to_json_check(const HealthCheck& c) {
  return json{{"name", c.name},
              {"status", to_string(c.status)},
              {"duration_seconds", std::chrono::duration<double>(c.duration).count()},
              {"detail", c.detail},
              {"checked_at", std::chrono::duration<double>(c.checked_at.time_since_epoch()).count()}};
}

double unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

HttpResponse json_response(int status, const json& body) {
  return {status, "application/json", body.dump()};
}

}  // namespace

struct SiloObservability::Impl {
  SiloConfig config;
  std::unique_ptr<telemetry::Registry> registry = std::make_unique<telemetry::Registry>();
  std::unique_ptr<telemetry::Tracer> tracer;
  std::shared_ptr<resilience::FaultInjector> faults = std::make_shared<resilience::FaultInjector>();
  MetricCache cache;
  std::shared_ptr<ComputeMetrics> compute_metrics;  // null when telemetry is off
  telemetry::CounterFamily* grain_calls = nullptr;
  telemetry::HistogramFamily* grain_durations = nullptr;
  std::shared_ptr<GrainMetricsFilter> grain_filter;
  std::unique_ptr<telemetry::NvmlMonitor> nvml;
  std::string nvml_absent;

  compute::Executor* executor = nullptr;
  grains::GpuServices* gpu = nullptr;
  runtime::Runtime* runtime = nullptr;
  std::unique_ptr<HealthMonitor> health;
  std::atomic<bool> attached{false};
  std::atomic<bool> stopped{false};
  SteadyClock::time_point started = SteadyClock::now();

  std::mutex sampler_mutex;
  std::condition_variable sampler_cv;
  bool sampler_stop = false;
  std::thread sampler;
  mutable std::mutex samples_mutex;
  std::deque<Sample> samples;

  Sample take_sample() const;
  void sampler_loop();
  void collect(telemetry::MetricSink& sink) const;
};

Sample SiloObservability::Impl::take_sample() const {
  Sample s;
  s.at = std::chrono::system_clock::now();
  s.steady = SteadyClock::now();
  const auto rs = runtime->stats();
  s.grain_calls = rs.calls_completed + rs.calls_failed;
  for (const auto& [key, st] : gpu->batcher_stats()) s.batched_requests += st.completed + st.failed;
  for (const auto& d : executor->stats().devices) s.kernel_executions += d.calls;
  if (grain_durations != nullptr) {
    for (const auto& family : registry->snapshot()) {
      if (family.name != "gpubridge_grain_call_duration_seconds") continue;
      for (const auto& child : family.children) {
        const auto& h = std::get<telemetry::HistogramSnapshot>(child.value);
        if (!s.call_latency) {
          s.call_latency = h;
          continue;
        }
        for (std::size_t i = 0; i < h.cumulative_counts.size(); ++i) s.call_latency->cumulative_counts[i] += h.cumulative_counts[i];
        s.call_latency->count += h.count;
        s.call_latency->sum += h.sum;
      }
    }
  }
  return s;
}

void SiloObservability::Impl::sampler_loop() {
  auto next_health = SteadyClock::now() + kHealthPeriod;
  std::unique_lock lock(sampler_mutex);
  while (!sampler_cv.wait_for(lock, kSamplePeriod, [&] { return sampler_stop; })) {
    lock.unlock();
    Sample s = take_sample();
    {
      std::lock_guard samples_lock(samples_mutex);
      samples.push_back(std::move(s));
      while (samples.size() > kHistorySamples) samples.pop_front();
    }
    if (SteadyClock::now() >= next_health) {
      health->evaluate();
      next_health = SteadyClock::now() + kHealthPeriod;
    }
    lock.lock();
  }
}

// Values that live elsewhere, read at scrape time.
void SiloObservability::Impl::collect(telemetry::MetricSink& sink) const {
  sink.gauge("gpubridge_build_info", "GpuBridge build; the value is always 1", {"version"}, {GPUBRIDGE_VERSION}, 1);
  sink.gauge("gpubridge_silo_uptime_seconds", "Seconds since the silo started", {}, {},
             std::chrono::duration<double>(SteadyClock::now() - started).count());
  if (!attached.load()) return;

  const HealthReport last = health->last();
  for (const auto& c : last.checks) {
    sink.gauge("gpubridge_health_check_status", "1 when the health check passes (warn counts as passing), else 0",
               {"check"}, {c.name}, c.status == HealthStatus::fail ? 0 : 1);
  }
  for (const auto& b : executor->backends()) {
    for (const auto& d : b.devices) {
      // Up = discovered and its last kernel smoke test did not fail.
      double up = 1;
      for (const auto& c : last.checks) {
        if (c.name == "kernel_smoke:" + d.id && c.status == HealthStatus::fail) up = 0;
      }
      const std::string backend(compute::to_string(d.backend));
      sink.gauge("gpubridge_device_up", "1 when the device is available and its kernel smoke test passes",
                 {"device", "backend"}, {d.id, backend}, up);
      if (d.memory_total_bytes > 0) {
        sink.gauge("gpubridge_device_memory_total_bytes", "Memory of the device", {"device", "backend"}, {d.id, backend},
                   static_cast<double>(d.memory_total_bytes));
      }
    }
  }
  const compute::ExecutorStats es = executor->stats();
  for (std::size_t r = 1; r < compute::kFallbackReasonCount; ++r) {
    const auto reason = static_cast<compute::FallbackReason>(r);
    sink.counter("gpubridge_fallbacks_total", "Calls and batched requests that ran somewhere other than asked, by reason",
                 {"reason"}, {std::string(compute::to_string(reason))}, static_cast<double>(es.fallbacks[r]));
  }
  for (const auto& d : es.devices) {
    if (d.device_id.rfind("cpu:", 0) == 0) continue;  // the CPU has no pools of its own
    const std::pair<const char*, const compute::PoolStats*> pools[] = {{"device", &d.device_pool}, {"staging", &d.staging_pool}};
    for (const auto& [pool, stats] : pools) {
      sink.gauge("gpubridge_memory_pool_bytes", "Bytes held by a memory pool", {"device", "pool", "state"},
                 {d.device_id, pool, "in_use"}, static_cast<double>(stats->bytes_in_use));
      sink.gauge("gpubridge_memory_pool_bytes", "Bytes held by a memory pool", {"device", "pool", "state"},
                 {d.device_id, pool, "reserved"}, static_cast<double>(stats->bytes_reserved));
    }
  }
  compute_metrics_collect(es, sink);
  for (const auto& [key, st] : gpu->batcher_stats()) {
    const auto slash = key.find('/');
    const std::string kernel = key.substr(0, slash), dtype = slash == std::string::npos ? "" : key.substr(slash + 1);
    auto batcher = gpu->batcher(kernel, *compute::parse_dtype(dtype));
    if (!batcher) continue;
    const std::string device = (*batcher)->device().id;
    sink.gauge("gpubridge_batch_queue_depth", "Requests waiting in a batcher queue", {"kernel", "dtype", "device"},
               {kernel, dtype, device}, static_cast<double>(st.queue_depth));
    sink.gauge("gpubridge_batch_queue_capacity", "Bound of a batcher queue", {"kernel", "dtype", "device"},
               {kernel, dtype, device}, static_cast<double>(gpu->policy().queue_capacity));
    sink.counter("gpubridge_batch_inline_requests_total",
                 "Batched requests run at once on the calling thread instead of in a batch (small requests on the CPU)",
                 {"kernel", "dtype", "device"}, {kernel, dtype, device}, static_cast<double>(st.ran_inline));
  }
  const auto rs = runtime->stats();
  sink.gauge("gpubridge_grain_activations", "Grain activations alive now", {}, {}, static_cast<double>(rs.activations_current));
  sink.counter("gpubridge_grain_activations_created_total", "Grain activations created", {}, {},
               static_cast<double>(rs.activations_created));
  sink.counter("gpubridge_grain_deactivations_total", "Grain activations deactivated or collected", {}, {},
               static_cast<double>(rs.deactivations));
  sink.counter("gpubridge_grain_replies_in_place_total",
               "Answers that continued the calling grain's turn on the completing worker, without the scheduler", {}, {},
               static_cast<double>(rs.replies_resumed_in_place));
  sink.gauge("gpubridge_grain_frame_region_bytes",
             "Bytes of the coroutine frame region handed to the frame pool (kept for the life of the process)", {}, {},
             static_cast<double>(runtime::FramePool::region_bytes()));
  if (tracer && tracer->enabled()) {
    sink.counter("gpubridge_trace_spans_exported_total", "Spans sent to the OTLP endpoint", {}, {},
                 static_cast<double>(tracer->exported()));
    sink.counter("gpubridge_trace_spans_dropped_total", "Spans dropped: export queue full or export failed", {}, {},
                 static_cast<double>(tracer->dropped() + tracer->failed_spans()));
  }
  sink.counter("gpubridge_telemetry_errors_total", "Metric samples that could not be recorded (invalid labels or collector errors)",
               {}, {},
               static_cast<double>(cache.errors() + registry->collector_errors() + (grain_filter ? grain_filter->errors() : 0)));
}

SiloObservability::SiloObservability(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SiloObservability::~SiloObservability() { stop(); }

Result<std::unique_ptr<SiloObservability>> SiloObservability::create(const SiloConfig& config) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  auto faults = resilience::parse_fault_specs(config.faults);
  if (!faults) return faults.error().with_context("resilience.faults");
  impl->faults->set(std::move(faults).value());

  telemetry::TracerOptions to;
  to.enabled = config.tracing_enabled;
  to.service_name = config.name;
  to.otlp_endpoint = config.tracing_endpoint;
  to.sample_ratio = config.tracing_sample_ratio;
  auto tracer = telemetry::Tracer::create(to);
  if (!tracer) return tracer.error().with_context("tracing");
  impl->tracer = std::move(tracer).value();

  if (config.telemetry_enabled) {
    auto& reg = *impl->registry;
    auto calls = reg.counter("gpubridge_grain_calls_total", "Grain calls completed, by grain type, method and status",
                             {"grain_type", "method", "status"});
    auto durations = reg.histogram("gpubridge_grain_call_duration_seconds",
                                   "Grain call duration inside the callee, filters included",
                                   telemetry::default_latency_buckets_seconds(), {"grain_type", "method"});
    if (!calls) return calls.error();
    if (!durations) return durations.error();
    impl->grain_calls = *calls;
    impl->grain_durations = *durations;
    auto cm = ComputeMetrics::create(reg, impl->cache, impl->tracer.get());
    if (!cm) return cm.error();
    impl->compute_metrics = std::move(cm).value();
  }
  auto nvml = telemetry::NvmlMonitor::open();
  if (nvml) {
    impl->nvml = std::move(nvml).value();  // its gauges are registered by attach(), which knows the devices
  } else {
    impl->nvml_absent = nvml.error().message();
  }
  Impl* raw = impl.get();
  impl->registry->add_collector([raw](telemetry::MetricSink& sink) { raw->collect(sink); });
  return std::unique_ptr<SiloObservability>(new SiloObservability(std::move(impl)));
}

std::shared_ptr<compute::ComputeObserver> SiloObservability::compute_observer() const { return impl_->compute_metrics; }
std::shared_ptr<resilience::FaultInjector> SiloObservability::faults() const { return impl_->faults; }
telemetry::Registry& SiloObservability::registry() { return *impl_->registry; }
telemetry::Tracer& SiloObservability::tracer() { return *impl_->tracer; }

Status SiloObservability::attach(compute::Executor& executor, grains::GpuServices& gpu, runtime::Runtime& runtime) {
  Impl& m = *impl_;
  m.executor = &executor;
  m.gpu = &gpu;
  m.runtime = &runtime;
  if (m.nvml != nullptr) {
    std::map<std::string, std::string> device_ids;  // PCI address -> compute device id
    for (const compute::Device& d : executor.devices()) {
      if (!d.pci_bus_id.empty()) device_ids.emplace(d.pci_bus_id, d.id);
    }
    m.nvml->register_collector(*m.registry, std::move(device_ids));
  }
  HealthOptions ho;
  ho.requested_backend = m.config.backend;
  ho.smoke_cache = std::chrono::seconds(m.config.health_smoke_cache_s);
  ho.device_pool_limit_bytes = m.config.device_pool_limit_bytes;
  m.health = std::make_unique<HealthMonitor>(executor, ho);
  if (m.grain_calls != nullptr) {
    m.grain_filter = std::make_shared<GrainMetricsFilter>(*m.grain_calls, *m.grain_durations);
    runtime.add_call_filter(m.grain_filter);
  }
  if (m.tracer->enabled()) runtime.add_call_filter(std::make_shared<telemetry::TracingCallFilter>(*m.tracer));
  m.health->evaluate();
  {
    std::lock_guard lock(m.samples_mutex);
    m.samples.push_back(m.take_sample());
  }
  m.attached.store(true);
  m.sampler = named_thread("gb-sampler", [&m] { m.sampler_loop(); });
  return {};
}

Status SiloObservability::add_health_check(std::string name, HealthCheckFn check) {
  if (!impl_->health) return Error(ErrorCode::failed_precondition, "health checks can be added only after attach()");
  impl_->health->add_check(std::move(name), std::move(check));
  return {};
}

void SiloObservability::stop() {
  Impl& m = *impl_;
  if (m.stopped.exchange(true)) return;
  {
    std::lock_guard lock(m.sampler_mutex);
    m.sampler_stop = true;
  }
  m.sampler_cv.notify_all();
  if (m.sampler.joinable()) m.sampler.join();
  m.faults->shutdown();  // releases injected hangs so that device work can finish
}

HttpResponse SiloObservability::metrics() {
  return {200, "text/plain; version=0.0.4; charset=utf-8", impl_->registry->prometheus_text()};
}

HttpResponse SiloObservability::live() { return json_response(200, json{{"status", "pass"}}); }

HttpResponse SiloObservability::ready() {
  Impl& m = *impl_;
  if (!m.attached.load() || m.stopped.load()) {
    return json_response(503, json{{"status", "fail"}, {"detail", m.stopped.load() ? "silo stopping" : "silo starting"}});
  }
  const HealthReport r = m.health->last();
  return json_response(r.status == HealthStatus::fail ? 503 : 200, json{{"status", to_string(r.status)}});
}

HttpResponse SiloObservability::health() {
  Impl& m = *impl_;
  if (!m.attached.load()) return json_response(503, json{{"status", "fail"}, {"detail", "silo starting"}});
  const HealthReport r = m.health->evaluate();
  json checks = json::array();
  for (const auto& c : r.checks) checks.push_back(to_json_check(c));
  json body{{"status", to_string(r.status)}, {"silo", m.config.name}, {"checks", checks}};
  if (!m.nvml_absent.empty()) body["nvml"] = "absent: " + m.nvml_absent;
  return json_response(r.status == HealthStatus::fail ? 503 : 200, body);
}

HttpResponse SiloObservability::status_json() {
  Impl& m = *impl_;
  json body{{"silo", m.config.name},
            {"version", GPUBRIDGE_VERSION},
            {"uptime_seconds", std::chrono::duration<double>(SteadyClock::now() - m.started).count()}};
  if (!m.attached.load()) return json_response(503, body);

  const HealthReport last = m.health->last();
  json checks = json::array();
  for (const auto& c : last.checks) checks.push_back(to_json_check(c));
  body["health"] = {{"status", to_string(last.status)}, {"checks", checks}};
  json history = json::array();
  for (const auto& r : m.health->history()) history.push_back({{"at", unix_seconds(r.at)}, {"status", to_string(r.status)}});
  body["health_history"] = history;

  std::deque<Sample> samples;
  {
    std::lock_guard lock(m.samples_mutex);
    samples = m.samples;
  }
  auto rate = [](const Sample& a, const Sample& b, std::uint64_t Sample::*field) {
    const double dt = std::chrono::duration<double>(b.steady - a.steady).count();
    return dt > 0 ? static_cast<double>(b.*field - a.*field) / dt : 0.0;
  };
  json throughput_history = json::array();
  for (std::size_t i = 1; i < samples.size(); ++i) {
    throughput_history.push_back({{"at", unix_seconds(samples[i].at)},
                                  {"grain_calls_per_second", rate(samples[i - 1], samples[i], &Sample::grain_calls)},
                                  {"batched_requests_per_second", rate(samples[i - 1], samples[i], &Sample::batched_requests)},
                                  {"kernel_executions_per_second", rate(samples[i - 1], samples[i], &Sample::kernel_executions)}});
  }
  body["throughput_history"] = throughput_history;
  body["throughput"] = throughput_history.empty()
                           ? json{{"grain_calls_per_second", nullptr},
                                  {"batched_requests_per_second", nullptr},
                                  {"kernel_executions_per_second", nullptr}}
                           : throughput_history.back();
  const Sample& newest = samples.back();
  const Sample now = m.take_sample();  // totals are live, rates come from the sampler
  body["totals"] = {{"grain_calls", now.grain_calls},
                    {"batched_requests", now.batched_requests},
                    {"kernel_executions", now.kernel_executions}};

  // Percentiles over the last kLatencyWindow seconds: the difference of two cumulative histograms.
  json latency{{"p50", nullptr}, {"p95", nullptr}, {"p99", nullptr}, {"window_seconds", nullptr}};
  const Sample& oldest = samples[samples.size() > kLatencyWindow ? samples.size() - 1 - kLatencyWindow : 0];
  if (newest.call_latency) {
    telemetry::HistogramSnapshot window = *newest.call_latency;
    if (oldest.call_latency && &oldest != &newest) {
      for (std::size_t i = 0; i < window.cumulative_counts.size(); ++i) {
        window.cumulative_counts[i] -= oldest.call_latency->cumulative_counts[i];
      }
      window.count -= oldest.call_latency->count;
      window.sum -= oldest.call_latency->sum;
    }
    if (window.count > 0) {
      latency = {{"p50", window.quantile(0.50)},
                 {"p95", window.quantile(0.95)},
                 {"p99", window.quantile(0.99)},
                 {"window_seconds", std::chrono::duration<double>(newest.steady - oldest.steady).count()}};
    }
  }
  body["latency_seconds"] = latency;

  const compute::ExecutorStats es = m.executor->stats();
  json devices = json::array();
  for (const auto& d : m.executor->devices()) {
    std::uint64_t executions = 0;
    for (const auto& s : es.devices) {
      if (s.device_id == d.id) executions = s.calls;
    }
    bool up = true;
    for (const auto& c : last.checks) {
      if (c.name == "kernel_smoke:" + d.id && c.status == HealthStatus::fail) up = false;
    }
    devices.push_back({{"id", d.id},
                       {"backend", compute::to_string(d.backend)},
                       {"name", d.name},
                       {"gpu", d.is_gpu},
                       {"memory_total_bytes", d.memory_total_bytes},
                       {"up", up},
                       {"executions", executions}});
  }
  body["devices"] = devices;
  json fallbacks = json::object();
  for (std::size_t r = 1; r < compute::kFallbackReasonCount; ++r) {
    fallbacks[std::string(compute::to_string(static_cast<compute::FallbackReason>(r)))] = es.fallbacks[r];
  }
  body["fallbacks"] = fallbacks;
  body["breakers"] = breakers_json(es);
  json faults = json::array();
  for (const auto& [spec, hits] : m.faults->snapshot()) faults.push_back({{"spec", resilience::to_string(spec)}, {"injected", hits}});
  body["faults"] = faults;
  return json_response(200, body);
}

HttpResponse SiloObservability::dashboard() { return {200, "text/html; charset=utf-8", kDashboardHtml}; }

}  // namespace gpubridge::server

#include "gpubridge/server/silo.hpp"

#include "gpubridge/grains/batch_grain.hpp"
#include "gpubridge/grains/kernel_grain.hpp"
#include "gpubridge/grains/resident_grain.hpp"
#include "gpubridge/grains/stream_grain.hpp"
#include "server/http/http_server.hpp"
#include "server/observability.hpp"

namespace gpubridge::server {

Status register_gpu_grains(runtime::Runtime& runtime, grains::GpuServices& gpu) {
  // Batch and stream grains interleave their calls while requests wait for their batches.
  runtime::GrainOptions reentrant;
  reentrant.reentrant = true;
  // A batch grain holds no state of its own (the batcher lives in GpuServices): as a stateless
  // worker it has one activation per scheduler worker, so callers are not funnelled through one.
  runtime::GrainOptions batch_options = reentrant;
  batch_options.stateless_worker = true;
  if (Status s = runtime.register_grain<grains::BatchGrain>(batch_options,
                                                            [&gpu] { return std::make_unique<grains::BatchGrain>(gpu); });
      !s) {
    return s;
  }
  if (Status s = runtime.register_grain<grains::StreamGrain>(
          reentrant, [&gpu] { return std::make_unique<grains::StreamGrain>(gpu); });
      !s) {
    return s;
  }
  // Whole-array kernel calls: no state, so as many activations as workers, interleaving freely.
  if (Status s = runtime.register_grain<grains::KernelGrain>(
          batch_options, [&gpu] { return std::make_unique<grains::KernelGrain>(gpu.executor()); });
      !s) {
    return s;
  }
  // Resident grains run one operation at a time: their state is replaced by each apply().
  return runtime.register_grain<grains::ResidentGrain>({}, [&gpu] { return std::make_unique<grains::ResidentGrain>(gpu); });
}

Silo::Silo(SiloConfig config) : config_(std::move(config)) {}

Result<std::unique_ptr<Silo>> Silo::start(SiloConfig config) {
  auto backend = compute::parse_backend_choice(config.backend);
  if (!backend) return Error(ErrorCode::invalid_argument, "compute.backend: unknown backend '" + config.backend + "'");
  std::unique_ptr<Silo> silo(new Silo(std::move(config)));
  const SiloConfig& c = silo->config_;

  auto observability = SiloObservability::create(c);
  if (!observability) return observability.error().with_context("starting the silo's telemetry");
  silo->observability_ = std::move(observability).value();

  compute::ExecutorOptions eo;
  eo.enable_cuda = c.enable_cuda;
  eo.enable_opencl = c.enable_opencl;
  eo.cpu_threads = c.cpu_threads;
  eo.device_pool_limit_bytes = c.device_pool_limit_bytes;
  eo.observer = silo->observability_->compute_observer();
  eo.faults = silo->observability_->faults();
  eo.resilience.enable_breakers = c.breakers_enabled;
  eo.resilience.breaker.failure_threshold = c.breaker_failure_threshold;
  eo.resilience.breaker.open_interval = std::chrono::milliseconds(c.breaker_open_interval_ms);
  eo.resilience.bulkhead_max_concurrent = c.bulkhead_max_concurrent;
  eo.resilience.enable_retry = c.retry_max_attempts > 1;
  eo.resilience.retry.max_attempts = c.retry_max_attempts;
  auto executor = compute::Executor::create(eo);
  if (!executor) return executor.error().with_context("starting the compute executor");
  silo->executor_ = std::move(executor).value();

  compute::BatchPolicy policy;
  policy.max_batch = c.max_batch;
  policy.max_delay = std::chrono::microseconds(c.max_delay_us);
  policy.queue_capacity = c.queue_capacity;
  policy.adaptive = c.adaptive;
  policy.latency_target = std::chrono::microseconds(c.latency_target_us);
  compute::CallOptions placement;
  placement.backend = *backend;
  placement.allow_fallback = c.allow_fallback;
  silo->gpu_ = std::make_unique<grains::GpuServices>(*silo->executor_, policy, placement);

  runtime::RuntimeOptions ro;
  ro.worker_threads = c.workers;
  ro.collection_age = std::chrono::seconds(c.collection_age_s);
  ro.collection_period = std::chrono::seconds(c.collection_period_s);
  auto rt = runtime::Runtime::create(ro);
  if (!rt) return rt.error().with_context("starting the grain runtime");
  silo->runtime_ = std::move(rt).value();
  if (Status s = register_gpu_grains(*silo->runtime_, *silo->gpu_); !s) return s.error();
  if (Status s = silo->observability_->attach(*silo->executor_, *silo->gpu_, *silo->runtime_); !s) return s.error();

  if (c.http_enabled) {
    SiloObservability* o = silo->observability_.get();
    std::map<std::string, HttpHandler> routes{
        {"/metrics", [o](const HttpRequest&) { return o->metrics(); }},
        {"/health", [o](const HttpRequest&) { return o->health(); }},
        {"/health/live", [o](const HttpRequest&) { return o->live(); }},
        {"/health/ready", [o](const HttpRequest&) { return o->ready(); }},
        {"/api/status", [o](const HttpRequest&) { return o->status_json(); }},
        {"/", [](const HttpRequest&) { return SiloObservability::dashboard(); }},
    };
    auto http = HttpServer::start(c.http_address, c.http_port, std::move(routes));
    if (!http) return http.error().with_context("http.address / http.port");
    silo->http_ = std::move(http).value();
  }
  return silo;
}

void Silo::stop() {
  std::lock_guard lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  if (http_) http_->stop();
  if (observability_) observability_->stop();
  if (runtime_) runtime_->stop();
  if (gpu_) gpu_->stop();
}

telemetry::Registry& Silo::metrics() { return observability_->registry(); }
resilience::FaultInjector& Silo::faults() { return *observability_->faults(); }
std::optional<std::string> Silo::http_url() const {
  if (!http_) return std::nullopt;
  return http_->url();
}

Silo::~Silo() {
  stop();
  http_.reset();
  runtime_.reset();
  gpu_.reset();
  executor_.reset();
  observability_.reset();
}

}  // namespace gpubridge::server

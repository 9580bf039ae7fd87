#include "gpubridge/server/silo.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "gpubridge/grains/batch_grain.hpp"
#include "gpubridge/grains/kernel_grain.hpp"
#include "gpubridge/grains/resident_grain.hpp"
#include "gpubridge/grains/stream_grain.hpp"
#include "gpubridge/telemetry/metrics.hpp"
#include "server/http/http_server.hpp"
#include "server/observability.hpp"
#include "server/ring_library_loader.hpp"

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

Status RingPrograms::add(std::string name, grains::RingProgram program) {
  if (name.empty()) return Error(ErrorCode::invalid_argument, "a ring program's name must not be empty");
  if (Status s = grains::validate_ring_program(program); !s) return s.error().with_context("ring program '" + name + "'");
  if (programs_.count(name) != 0) {
    return Error(ErrorCode::already_exists, "ring program '" + name + "' is already registered");
  }
  programs_.emplace(std::move(name), std::move(program));
  return {};
}

const grains::RingProgram* RingPrograms::find(std::string_view name) const {
  auto it = programs_.find(name);
  return it == programs_.end() ? nullptr : &it->second;
}

std::vector<std::string> RingPrograms::names() const {
  std::vector<std::string> out;
  for (const auto& [name, program] : programs_) out.push_back(name);
  return out;
}

namespace {

std::string join_or_none(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

// One configured ring, checked against the registered programs: what RingHost::create gets.
struct PlannedRing {
  grains::RingHostOptions options;
  grains::RingProgram program;
};

Result<std::vector<PlannedRing>> plan_rings(const SiloConfig& c, const RingPrograms& programs) {
  std::vector<PlannedRing> planned;
  for (std::size_t i = 0; i < c.rings.size(); ++i) {
    const RingHostConfig& r = c.rings[i];
    const std::string where = "rings[" + std::to_string(i) + "] ('" + r.name + "')";
    const grains::RingProgram* program = programs.find(r.program);
    if (program == nullptr) {
      return Error(ErrorCode::invalid_argument,
                   where + ": unknown program '" + r.program + "' (registered programs: " + join_or_none(programs.names()) + ")");
    }
    const auto placement = grains::parse_ring_placement(r.placement);
    if (!placement) {
      return Error(ErrorCode::invalid_argument, where + ".placement: '" + r.placement + "' is not one of auto, cpu, cuda");
    }
    PlannedRing p;
    p.program = *program;
    for (const auto& [type, count] : r.actors) {
      auto t = std::find_if(p.program.actor_types.begin(), p.program.actor_types.end(),
                            [&](const grains::RingActorType& a) { return a.name == type; });
      if (t == p.program.actor_types.end()) {
        std::vector<std::string> known;
        for (const auto& a : p.program.actor_types) known.push_back(a.name);
        return Error(ErrorCode::invalid_argument, where + ".actors: program '" + r.program + "' has no actor type '" +
                                                      type + "' (its types: " + join_or_none(known) + ")");
      }
      t->max_actors = count;
    }
    grains::RingHostOptions& o = p.options;
    o.name = r.name;
    o.placement = *placement;
    o.cuda_enabled = c.enable_cuda;
    o.ring.shards = r.shards;
    o.ring.request_slots = r.request_slots;
    o.ring.completion_slots = r.completion_slots;
    o.ring.pool_chunk_bytes = r.pool_chunk_bytes;
    o.ring.pool_chunks = r.pool_chunks;
    o.cuda_server.device = static_cast<int>(r.cuda_device);
    o.client.dead_after = std::chrono::milliseconds(r.dead_after_ms);
    o.client.dispatcher_threads = r.dispatcher_threads;
    o.cpu_server.internal_queue_slots = r.internal_queue_slots;
    o.cpu_server.max_hops = r.max_hops;
    o.cuda_server.internal_queue_slots = r.internal_queue_slots;
    o.cuda_server.max_hops = r.max_hops;
    planned.push_back(std::move(p));
  }
  return planned;
}

// Scrape-time families of the hosted rings (see docs/metrics.md).
void collect_ring_metrics(const std::vector<std::unique_ptr<grains::RingHost>>& rings, telemetry::MetricSink& sink) {
  for (const auto& ring : rings) {
    const grains::RingHostPlacement& placed = ring->placement();
    sink.gauge("gpubridge_ring_hosts", "Rings of resident actors the silo hosts, by the backend their server runs on",
               {"ring", "backend"}, {ring->name(), std::string(grains::to_string(placed.backend))}, 1);
    if (placed.fell_back()) {
      sink.counter("gpubridge_ring_fallbacks_total",
                   "Rings placed somewhere other than asked, or on the CPU when auto could not use CUDA, by reason",
                   {"ring", "reason"}, {ring->name(), placed.fallback_reason}, 1);
    }
    sink.counter("gpubridge_ring_messages_total", "Host messages a ring server has finished (completed, failed or cancelled)",
                 {"ring"}, {ring->name()}, static_cast<double>(ring->messages_served()));
  }
}

}  // namespace

Silo::Silo(SiloConfig config) : config_(std::move(config)) {}

Result<std::unique_ptr<Silo>> Silo::start(SiloConfig config, RingPrograms programs) {
  auto backend = compute::parse_backend_choice(config.backend);
  if (!backend) return Error(ErrorCode::invalid_argument, "compute.backend: unknown backend '" + config.backend + "'");
  // Ring libraries are loaded and every ring is checked against the programs before anything
  // starts. Declaration order keeps the libraries loaded while anything below may hold their code
  // (planned programs, the silo's rings if start fails); on success the silo takes them.
  auto loaded = load_ring_programs(config.ring_libraries, std::move(programs));
  if (!loaded) return loaded.error();
  auto planned = plan_rings(config, loaded->programs);
  if (!planned) return planned.error();
  if (config.enable_cuda) {
    for (const PlannedRing& p : *planned) {
      if (p.options.placement == grains::RingPlacement::cpu || !p.program.cuda_handlers) continue;
      // A resident ring kernel and lazily loaded modules of the executor's kernels would wait on
      // each other (see gpubridge/compute/cuda_ring.hpp): load modules eagerly unless the user
      // chose otherwise. Only effective before CUDA is first used in the process.
      setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);
      break;
    }
  }
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
  policy.max_inflight_batches = c.max_inflight_batches;
  policy.adaptive = c.adaptive;
  policy.latency_target = std::chrono::microseconds(c.latency_target_us);
  compute::CallOptions placement;
  placement.backend = *backend;
  placement.allow_fallback = c.allow_fallback;
  silo->gpu_ = std::make_unique<grains::GpuServices>(*silo->executor_, policy, placement);

  for (PlannedRing& p : *planned) {
    const std::string name = p.options.name;
    auto host = grains::RingHost::create(std::move(p.options), std::move(p.program));
    if (!host) return host.error().with_context("starting ring '" + name + "'");
    silo->rings_.push_back(std::move(host).value());
  }
  if (!silo->rings_.empty()) {
    const auto* rings = &silo->rings_;  // a member: outlives the registry (emptied first, see ~Silo)
    silo->metrics().add_collector([rings](telemetry::MetricSink& sink) { collect_ring_metrics(*rings, sink); });
  }

  runtime::RuntimeOptions ro;
  ro.worker_threads = c.workers;
  ro.collection_age = std::chrono::seconds(c.collection_age_s);
  ro.collection_period = std::chrono::seconds(c.collection_period_s);
  auto rt = runtime::Runtime::create(ro);
  if (!rt) return rt.error().with_context("starting the grain runtime");
  silo->runtime_ = std::move(rt).value();
  if (Status s = register_gpu_grains(*silo->runtime_, *silo->gpu_); !s) return s.error();
  if (Status s = silo->observability_->attach(*silo->executor_, *silo->gpu_, *silo->runtime_); !s) return s.error();
  for (std::size_t i = 0; i < silo->rings_.size(); ++i) {
    const grains::RingHost& ring = *silo->rings_[i];
    const auto window = std::chrono::milliseconds(c.rings[i].dead_after_ms);
    if (Status s = silo->observability_->add_health_check("ring:" + ring.name(), ring_health_check(ring, window)); !s) {
      return s.error();
    }
  }

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
  silo->ring_libraries_ = std::move(loaded->libraries);
  return silo;
}

void Silo::stop() {
  std::lock_guard lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  if (http_) http_->stop();
  if (observability_) observability_->stop();
  if (runtime_) runtime_->stop();  // ring grains park their states while their rings still serve
  for (const auto& ring : rings_) {
    if (Status s = ring->drain(); !s) {
      std::fprintf(stderr, "gpubridge: silo '%s': %s\n", config_.name.c_str(), s.error().to_string().c_str());
    }
  }
  if (gpu_) gpu_->stop();
}

Result<grains::RingHost*> Silo::ring_host(std::string_view name) const {
  std::vector<std::string> names;
  for (const auto& ring : rings_) {
    if (ring->name() == name) return ring.get();
    names.push_back(ring->name());
  }
  return Error(ErrorCode::not_found, "no ring named '" + std::string(name) + "' (hosted rings: " + join_or_none(names) + ")");
}

std::vector<grains::RingHost*> Silo::ring_hosts() const {
  std::vector<grains::RingHost*> out;
  for (const auto& ring : rings_) out.push_back(ring.get());
  return out;
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
  // A ring client's dispatcher threads resume ring-grain calls on the runtime's scheduler (and
  // fail what is still pending when the host goes): the hosts, and with them those threads, go
  // before the runtime. The registry's ring collector then finds no host.
  rings_.clear();
  runtime_.reset();
  gpu_.reset();
  executor_.reset();
  observability_.reset();
}

}  // namespace gpubridge::server

#pragma once
// Everything a silo exposes about itself: the metrics registry and what feeds it (a grain call
// filter, the compute observer, scrape-time collectors, NVML), tracing, health checks, and a
// sampler that keeps one-second throughput and latency history for the dashboard.
//
// Life cycle (driven by Silo): create() before the executor (the executor takes the compute
// observer and the fault injector), attach() once executor, GPU services and runtime exist,
// stop() before they are stopped. Rendering functions are thread-safe (HTTP threads call them).
#include <memory>
#include <string>

#include "gpubridge/core/result.hpp"
#include "gpubridge/server/silo_config.hpp"
#include "server/health.hpp"

namespace gpubridge::compute {
class Executor;
class ComputeObserver;
}  // namespace gpubridge::compute
namespace gpubridge::grains {
class GpuServices;
}
namespace gpubridge::resilience {
class FaultInjector;
}
namespace gpubridge::runtime {
class Runtime;
}
namespace gpubridge::telemetry {
class Registry;
class Tracer;
}  // namespace gpubridge::telemetry

namespace gpubridge::server {

struct HttpResponse;

class SiloObservability {
 public:
  static Result<std::unique_ptr<SiloObservability>> create(const SiloConfig& config);
  ~SiloObservability();
  SiloObservability(const SiloObservability&) = delete;
  SiloObservability& operator=(const SiloObservability&) = delete;

  // Null when telemetry is disabled (the hot paths then record nothing).
  std::shared_ptr<compute::ComputeObserver> compute_observer() const;
  // The silo's fault switch, loaded with config.faults (empty: no faults).
  std::shared_ptr<resilience::FaultInjector> faults() const;

  Status attach(compute::Executor& executor, grains::GpuServices& gpu, runtime::Runtime& runtime);
  void stop();  // stops the sampler; rendering keeps working on the last data
  // Adds a check to /health and readiness (after attach; failed_precondition before).
  Status add_health_check(std::string name, HealthCheckFn check);

  telemetry::Registry& registry();
  telemetry::Tracer& tracer();

  HttpResponse metrics();       // GET /metrics
  HttpResponse health();        // GET /health (JSON detail; 503 when a check fails)
  HttpResponse live();          // GET /health/live
  HttpResponse ready();         // GET /health/ready (503 until attached, after stop, or when a check fails)
  HttpResponse status_json();   // GET /api/status (the dashboard's data)
  static HttpResponse dashboard();  // GET /

 private:
  struct Impl;
  explicit SiloObservability(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpubridge::server

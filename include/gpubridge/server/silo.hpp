#pragma once
// Silo: one process's host for grains. It owns the compute executor (devices, kernel catalog),
// the grain runtime and the GPU services (dynamic batchers) that GPU grains use, all built from
// one SiloConfig, and registers the GPU grain kinds (BatchGrain, StreamGrain, ResidentGrain).
// It also owns its observability (metrics registry, tracing, health checks, fault switch) and,
// when http.enabled, an HTTP server for /metrics, /health/live, /health/ready, /health, the
// dashboard (/) and its data (/api/status).
//
// stop() (also run by the destructor) shuts down in dependency order: the HTTP server, then the
// runtime (calls in flight finish — their batches still run — or fail with a clear error;
// activations deactivate), then the batchers (anything still queued fails with `cancelled`), then
// the executor (waits for device work in flight). Thread-safe; idempotent.
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/runtime/runtime.hpp"
#include "gpubridge/server/silo_config.hpp"

namespace gpubridge::resilience {
class FaultInjector;
}
namespace gpubridge::telemetry {
class Registry;
}

namespace gpubridge::server {

class SiloObservability;  // internal (src/server/observability.hpp)
class HttpServer;         // internal (src/server/http/http_server.hpp)

class Silo {
 public:
  // Errors: invalid configuration (invalid_argument), or a component that cannot start.
  static Result<std::unique_ptr<Silo>> start(SiloConfig config);
  ~Silo();
  Silo(const Silo&) = delete;
  Silo& operator=(const Silo&) = delete;

  const SiloConfig& config() const noexcept { return config_; }
  compute::Executor& executor() noexcept { return *executor_; }
  runtime::Runtime& runtime() noexcept { return *runtime_; }
  grains::GpuServices& gpu() noexcept { return *gpu_; }
  telemetry::Registry& metrics();
  resilience::FaultInjector& faults();
  // "http://address:port" when the HTTP server runs.
  std::optional<std::string> http_url() const;
  void stop();

 private:
  explicit Silo(SiloConfig config);
  SiloConfig config_;
  std::unique_ptr<SiloObservability> observability_;
  std::unique_ptr<compute::Executor> executor_;
  std::unique_ptr<grains::GpuServices> gpu_;
  std::unique_ptr<runtime::Runtime> runtime_;
  std::unique_ptr<HttpServer> http_;
  std::mutex stop_mutex_;
  bool stopped_ = false;
};

// Registers BatchGrain, StreamGrain, KernelGrain and ResidentGrain with `runtime`, made with `gpu`.
Status register_gpu_grains(runtime::Runtime& runtime, grains::GpuServices& gpu);

}  // namespace gpubridge::server

#pragma once
// Silo: one process's host for grains. It owns the compute executor (devices, kernel catalog),
// the grain runtime and the GPU services (dynamic batchers) that GPU grains use, all built from
// one SiloConfig, and registers the GPU grain kinds (BatchGrain, StreamGrain, ResidentGrain).
// It also owns its observability (metrics registry, tracing, health checks, fault switch) and,
// when http.enabled, an HTTP server for /metrics, /health/live, /health/ready, /health, the
// dashboard (/) and its data (/api/status).
//
// Rings of resident actors: ring programs are registered by name, in code by the embedder
// (RingPrograms) and by the shared libraries the configuration's "ring_libraries" name
// (gpubridge/server/ring_library.hpp); the configuration's "rings" say which rings to host with
// which program, where (auto, cpu, cuda) and how large. start() checks every ring against the programs before anything starts,
// then creates one grains::RingHost per ring; ring_host(name) gives grains their host (register a
// RingGrain subclass with runtime() after start, its factory holding the host). Each host's
// placement (backend, device, fallback reason) is exported as metrics (gpubridge_ring_hosts,
// gpubridge_ring_fallbacks_total, gpubridge_ring_messages_total). When a ring may run on CUDA,
// start() sets CUDA_MODULE_LOADING=EAGER in the environment unless it is set already (a resident
// ring kernel and lazily loaded executor modules would wait on each other; see cuda_ring.hpp).
//
// Ring libraries are loaded by start() before anything starts and stay loaded until the silo is
// destroyed; the destructor closes them last, after the rings (their handlers' code lives there).
//
// stop() (also run by the destructor) shuts down in dependency order: the HTTP server, then the
// runtime (calls in flight finish — their batches still run — or fail with a clear error;
// activations deactivate, so ring grains park their states in their hosts), then the rings
// (drained: queued messages finish, then the servers stop), then the batchers (anything still
// queued fails with `cancelled`), then the executor (waits for device work in flight).
// Thread-safe; idempotent.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/grains/ring_grain.hpp"
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
class RingLibrary;        // internal (src/server/ring_library_loader.hpp)
class HttpServer;         // internal (src/server/http/http_server.hpp)

// Ring programs by name, for the configuration's rings ("program": name). Filled on one thread
// before Silo::start (by the embedder, or by a ring library's entry point), which copies the
// programs its rings use.
class RingPrograms {
 public:
  // invalid_argument: an empty name, or an invalid program (grains::validate_ring_program);
  // already_exists: the name is taken.
  Status add(std::string name, grains::RingProgram program);
  const grains::RingProgram* find(std::string_view name) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, grains::RingProgram, std::less<>> programs_;
};

class Silo {
 public:
  // `programs` and the programs of config.ring_libraries (loaded first, in order) are merged.
  // Errors, all before anything starts unless said otherwise: a ring library that cannot be used,
  // naming its key and path ("ring_libraries[1] ('/p/libx.so')": not_found for a missing file,
  // invalid_argument for a file that is not a loadable shared library, a missing entry symbol (named)
  // or an ABI mismatch, the library's own error code and message); a program name registered twice
  // (already_exists naming both sources); invalid configuration (invalid_argument), including a ring
  // that names an unknown program or actor type; a ring that cannot be placed as asked (placement
  // cuda without a CUDA device: unavailable); or a component that cannot start (as it starts).
  static Result<std::unique_ptr<Silo>> start(SiloConfig config, RingPrograms programs = {});
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
  // The ring hosted as `name` (configuration "rings"); not_found naming the hosted rings. The
  // host lives as long as the silo (stopped, not destroyed, by stop()).
  Result<grains::RingHost*> ring_host(std::string_view name) const;
  // Every hosted ring, in configuration order.
  std::vector<grains::RingHost*> ring_hosts() const;
  void stop();

 private:
  explicit Silo(SiloConfig config);
  // Declared first, so destroyed last: after the rings and everything else that may run their code.
  std::vector<std::unique_ptr<RingLibrary>> ring_libraries_;
  SiloConfig config_;
  std::unique_ptr<SiloObservability> observability_;
  std::unique_ptr<compute::Executor> executor_;
  std::unique_ptr<grains::GpuServices> gpu_;
  std::vector<std::unique_ptr<grains::RingHost>> rings_;  // configuration order; outlive runtime_
  std::unique_ptr<runtime::Runtime> runtime_;
  std::unique_ptr<HttpServer> http_;
  std::mutex stop_mutex_;
  bool stopped_ = false;
};

// Registers BatchGrain, StreamGrain, KernelGrain and ResidentGrain with `runtime`, made with `gpu`.
Status register_gpu_grains(runtime::Runtime& runtime, grains::GpuServices& gpu);

}  // namespace gpubridge::server

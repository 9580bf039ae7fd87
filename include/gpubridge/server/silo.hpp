#pragma once
// Silo: one process's host for grains. It owns the compute executor (devices, kernel catalog),
// the grain runtime and the GPU services (dynamic batchers) that GPU grains use, all built from
// one SiloConfig, and registers the GPU grain kinds (BatchGrain, StreamGrain, ResidentGrain).
//
// stop() (also run by the destructor) shuts down in dependency order: the runtime first (calls
// in flight finish — their batches still run — or fail with a clear error; activations
// deactivate), then the batchers (anything still queued fails with `cancelled`), then the
// executor (waits for device work in flight). Thread-safe; idempotent.
#include <memory>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/runtime/runtime.hpp"
#include "gpubridge/server/silo_config.hpp"

namespace gpubridge::server {

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
  void stop();

 private:
  explicit Silo(SiloConfig config) : config_(std::move(config)) {}
  SiloConfig config_;
  std::unique_ptr<compute::Executor> executor_;
  std::unique_ptr<grains::GpuServices> gpu_;
  std::unique_ptr<runtime::Runtime> runtime_;
  std::mutex stop_mutex_;
  bool stopped_ = false;
};

// Registers BatchGrain, StreamGrain and ResidentGrain with `runtime`, made with `gpu`.
Status register_gpu_grains(runtime::Runtime& runtime, grains::GpuServices& gpu);

}  // namespace gpubridge::server

#pragma once
// The Executor runs catalog kernels asynchronously on the best (or requested) device.
//
// Contract:
// - submit() validates the call at the boundary; an invalid call completes with an error and
//   runs nothing. Input views must stay valid until completion. A call with a timeout
//   (CallOptions::timeout > 0) may complete (deadline_exceeded) while a device still works on it;
//   for such calls the executor copies the inputs into memory of its own before anything runs,
//   so the caller may free its inputs once the call completed, whatever the device does later.
//   A late device result is dropped; it never reaches the caller.
// - The fallback policy picks the device per call. When the call runs anywhere other than asked
//   (or than the best device for `auto`), the report names the reason and it is counted.
//   With allow_fallback = false such a call fails instead (code unavailable / resource_exhausted).
// - Completion happens exactly once: the future becomes ready, or the callback runs on an
//   executor thread (never on a driver callback thread), possibly before submit() returns.
// - Resilience (ExecutorOptions::resilience, off by default): before a call or batch runs on a
//   non-CPU device, that device's bulkhead and the (device, kernel) circuit breaker are asked;
//   a refusal sends the call to the CPU (reasons bulkhead_full / breaker_open) or, with
//   allow_fallback = false, fails it (resource_exhausted / unavailable). Retryable device errors
//   (resilience::is_retryable) are retried on the same device after a backoff, run from the
//   executor's timer thread (nothing sleeps), then the call falls back to the CPU.
// - Faults (ExecutorOptions::faults): every backend is wrapped in a decorator that consults the
//   injector per call, batch and resident operation.
// - Thread-safe: any thread may submit. The destructor releases injected hangs (those calls
//   complete with cancelled) and waits for every call in flight, device work included.
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpubridge/compute/device.hpp"
#include "gpubridge/compute/kernel_catalog.hpp"
#include "gpubridge/compute/observer.hpp"
#include "gpubridge/compute/pipeline.hpp"
#include "gpubridge/compute/tensor.hpp"
#include "gpubridge/core/result.hpp"
#include "gpubridge/resilience/breaker.hpp"
#include "gpubridge/resilience/retry.hpp"

namespace gpubridge::resilience {
class FaultInjector;
}

namespace gpubridge::compute {

class Backend;  // internal (src/compute/backend.hpp)
namespace detail {
struct ExecutorAccess;  // internal (src/compute/executor_access.hpp): the batcher's view of an Executor
}

enum class BackendChoice { automatic, cpu, cuda, opencl };
std::string_view to_string(BackendChoice c) noexcept;
std::optional<BackendChoice> parse_backend_choice(std::string_view s) noexcept;  // "auto", "cpu", ...

// Why a call ran somewhere other than asked.
enum class FallbackReason : std::uint8_t {
  none = 0,
  no_device,       // the requested backend or device is absent
  kernel_missing,  // the kernel (or its dtype) has no implementation on that device
  device_error,    // the device failed while running the call
  out_of_memory,   // the device (or its pool) could not hold the call's buffers
  breaker_open,    // the (device, kernel) circuit breaker is open after repeated device failures
  bulkhead_full,   // the device already runs its maximum of concurrent calls
};
inline constexpr std::size_t kFallbackReasonCount = 7;
std::string_view to_string(FallbackReason r) noexcept;

struct CallOptions {
  BackendChoice backend = BackendChoice::automatic;
  std::string device_id;      // optional exact device ("cuda:1"); overrides `backend`
  bool allow_fallback = true; // fall back to the CPU when the chosen device cannot run the call
  // 0: none. Otherwise the call completes with deadline_exceeded once this much time passed
  // since submit, even if the device never answers (see the contract above for inputs).
  std::chrono::nanoseconds timeout{0};
};

struct ExecutionReport {
  std::string device_id;  // the device that produced the outputs
  BackendKind backend = BackendKind::cpu;
  std::string requested;  // what the caller asked for: "auto", "cuda", "cuda:0", ...
  FallbackReason fallback = FallbackReason::none;
  std::string fallback_detail;  // the underlying error or absence reason
  std::chrono::nanoseconds elapsed{0};  // submit to completion
};

struct KernelResult {
  std::vector<Tensor> outputs;
  ExecutionReport report;
};

using Completion = std::function<void(Result<KernelResult>)>;

// The outcome of a pipeline (Executor::run_pipeline).
struct PipelineResult {
  Tensor output;                      // the last stage's output
  std::vector<Tensor> stage_outputs;  // one per stage: the outputs of stages with keep_output,
                                      // an empty Tensor for the others (and for the last stage)
  ExecutionReport report;             // device, fallback and reason as for a single call
  PipelineLaunch launch = PipelineLaunch::per_stage;
  std::string launch_detail;          // why `stream` rather than a CUDA graph; empty otherwise
};
using PipelineCompletion = std::function<void(Result<PipelineResult>)>;

// Bytes held by a memory pool and how often requests were served without a new allocation.
struct PoolStats {
  std::uint64_t bytes_in_use = 0;
  std::uint64_t peak_bytes_in_use = 0;
  std::uint64_t bytes_reserved = 0;  // held by the pool, in use or cached
  std::uint64_t hits = 0;            // served from cached memory
  std::uint64_t misses = 0;          // needed a new allocation from the driver / OS
};

struct DeviceStats {
  std::string device_id;
  std::uint64_t calls = 0;   // calls completed on this device (success or error); a batch counts
                             // once, as does a batched request run inline (DynamicBatcher::run_inline)
  std::uint64_t errors = 0;  // calls (batches) that failed on this device
  PoolStats device_pool;     // device memory (absent for the CPU: all zeros)
  PoolStats staging_pool;    // page-locked host staging memory
};

// One circuit breaker, as ExecutorStats reports it.
struct BreakerStatus {
  std::string device_id;
  std::string kernel;
  resilience::BreakerState state = resilience::BreakerState::closed;
  std::uint64_t opened = 0;  // times it opened
};

struct ExecutorStats {
  // Calls (batched requests included, one each) that ran somewhere other than asked, indexed by
  // FallbackReason.
  std::array<std::uint64_t, kFallbackReasonCount> fallbacks{};
  std::vector<DeviceStats> devices;
  std::vector<BreakerStatus> breakers;   // every (device, kernel) breaker used so far
  std::uint64_t retries = 0;             // device retries started (Executor calls)
  std::uint64_t deadline_exceeded = 0;   // calls that completed with deadline_exceeded
  std::uint64_t bulkhead_rejections = 0; // calls or batches a full bulkhead turned away
  std::uint64_t faults_injected = 0;     // by the injector of ExecutorOptions::faults
  std::uint64_t fallback_count(FallbackReason r) const { return fallbacks[static_cast<std::size_t>(r)]; }
};

// The resilience of the hot path; everything off by default.
struct ResilienceOptions {
  bool enable_breakers = false;  // a breaker per (non-CPU device, kernel)
  resilience::BreakerOptions breaker;
  // Calls (a batch counts once) running at once per non-CPU device; 0 = unlimited (no bulkhead).
  std::size_t bulkhead_max_concurrent = 0;
  bool enable_retry = false;  // retry retryable device errors on the same device
  resilience::RetryOptions retry;
  // Time source of the breakers (tests inject one); empty = steady_clock.
  resilience::BreakerClock clock;
};

struct ExecutorOptions {
  // Backends to discover. The CPU backend is always present.
  bool enable_cuda = true;
  bool enable_opencl = true;
  unsigned cpu_threads = 0;  // 0: hardware concurrency
  // Cap on device memory each GPU pool may hold (0: no cap beyond the device's own memory).
  // A call that would exceed it fails on that device with out_of_memory.
  std::uint64_t device_pool_limit_bytes = 0;
  // CUDA pipelines are captured as CUDA graphs and replayed (true), or always launched stage by
  // stage on a stream (false: PipelineResult::launch is stream, launch_detail says so).
  bool cuda_graphs = true;
  // Receives compute events (metrics, traces); null: none.
  std::shared_ptr<ComputeObserver> observer;
  ResilienceOptions resilience;
  // Fault injection, switchable at run time through the injector; null: no decorators at all.
  std::shared_ptr<resilience::FaultInjector> faults;
};

class Executor {
 public:
  static Result<std::unique_ptr<Executor>> create(ExecutorOptions options = {},
                                                  KernelCatalog catalog = KernelCatalog::with_builtin_kernels());
  // For tests and embedders that supply their own backends (a CPU backend is added when missing).
  static Result<std::unique_ptr<Executor>> create_with_backends(
      std::vector<std::unique_ptr<Backend>> backends, KernelCatalog catalog, ExecutorOptions options = {});
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  std::future<Result<KernelResult>> submit(KernelCall call, CallOptions options = {});
  void submit(KernelCall call, CallOptions options, Completion done);
  Result<KernelResult> run(KernelCall call, CallOptions options = {});  // submit and wait

  // Pipelines (see pipeline.hpp): validated whole before anything runs (an invalid pipeline
  // completes with the validation error). The device must run every stage, else the whole
  // pipeline runs on the CPU (reason kernel_missing, or no_device) or, with allow_fallback =
  // false, fails. A device error sends the whole pipeline to the CPU (reasons as for calls).
  // Not supported: CallOptions::timeout (invalid_argument), breakers, bulkheads and retries
  // (a pipeline is not one (device, kernel) call). Completion as for submit().
  std::future<Result<PipelineResult>> submit_pipeline(Pipeline pipeline, CallOptions options = {});
  void submit_pipeline(Pipeline pipeline, CallOptions options, PipelineCompletion done);
  Result<PipelineResult> run_pipeline(Pipeline pipeline, CallOptions options = {});  // submit and wait

  const KernelCatalog& catalog() const noexcept;
  std::vector<BackendStatus> backends() const;
  std::vector<Device> devices() const;  // every available device, best first
  ExecutorStats stats() const;

 private:
  friend struct detail::ExecutorAccess;
  struct Impl;
  explicit Executor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpubridge::compute

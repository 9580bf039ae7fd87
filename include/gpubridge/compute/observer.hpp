#pragma once
// Observer hooks: how the compute layer reports what it does (for metrics and traces) without
// depending on telemetry. The silo implements ComputeObserver and sets it in
// ExecutorOptions::observer; the executor, the dynamic batcher and the backends call it.
//
// Contract for implementers: every hook is noexcept, may be called on any thread (executor,
// batcher, backend completion or timer threads, concurrently), must be cheap and must never
// block or call back into the executor. string_views and spans are valid only during the call.
// The default implementations do nothing, so an observer overrides only what it needs. With no
// observer set, the compute layer pays one null check per event.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "gpubridge/compute/device.hpp"
#include "gpubridge/core/error.hpp"
#include "gpubridge/resilience/breaker.hpp"
#include "gpubridge/resilience/fault_injection.hpp"

namespace gpubridge::compute {

enum class FallbackReason : std::uint8_t;

// One execution on one device finished: a plain call (requests = 1) or a whole batch.
struct KernelExecution {
  std::string_view kernel;  // catalog id
  std::string_view device;  // device id, e.g. "opencl:0"
  BackendKind backend = BackendKind::cpu;
  std::uint32_t requests = 1;
  std::chrono::steady_clock::time_point start{};
  std::chrono::nanoseconds duration{0};
  ErrorCode code = ErrorCode::ok;  // ok, or the error the device returned
};

// One stage of a multi-kernel pipeline (Executor::run_pipeline) finished, with its time where it
// is known: always on the CPU (measured on the host); on CUDA and OpenCL only when
// ComputeObserver::wants_stage_timing() (device events / profiling; a replayed or captured CUDA
// graph reports none, its nodes are not timed one by one). Reported after the whole pipeline
// completed successfully, in stage order, from the thread that completes it.
struct PipelineStageExecution {
  std::string_view kernel;  // catalog id of the stage
  std::string_view device;  // device id, e.g. "opencl:0"
  BackendKind backend = BackendKind::cpu;
  std::uint32_t stage = 0;   // index in the pipeline
  std::uint32_t stages = 0;  // stages in the pipeline
  std::chrono::steady_clock::time_point start{};  // device times anchored as for TransferTiming
  std::chrono::nanoseconds duration{0};
};

enum class TransferDirection : std::uint8_t { host_to_device, device_to_host };
std::string_view to_string(TransferDirection d) noexcept;  // "host_to_device", "device_to_host"

// One completed copy between host and device memory with the time the device measured for it
// (OpenCL event profiling, CUDA events). `start` is on the host's steady_clock: the device
// timestamps of one call or batch are anchored so that its last timed device command ends at
// the host time its completion was observed; relative positions and durations are the
// device's own, the absolute offset errs late by the completion thread's wake-up latency.
struct TransferTiming {
  std::string_view device;  // device id, e.g. "opencl:0"
  TransferDirection direction = TransferDirection::host_to_device;
  std::uint64_t bytes = 0;  // as on_bytes_moved reports the same copy
  std::chrono::steady_clock::time_point start{};
  std::chrono::nanoseconds duration{0};
};

// What happened to one batched request (exactly one event per accepted or rejected request).
enum class BatchOutcome : std::uint8_t {
  ok,
  error,                // failed on the device, bad data, or cancelled
  rejected_queue_full,  // refused by submit(): the queue was full
  expired,              // its deadline passed (before running, or while its batch was late)
};
std::string_view to_string(BatchOutcome o) noexcept;  // "ok", "error", ...

class ComputeObserver {
 public:
  virtual ~ComputeObserver() = default;

  virtual void on_kernel_executed(const KernelExecution& /*execution*/) noexcept {}
  // A batch closed and was dispatched; queued[i] is request i's time from submit to dispatch.
  virtual void on_batch_dispatched(std::string_view /*kernel*/, std::string_view /*device*/,
                                   std::span<const std::chrono::nanoseconds> /*queued*/) noexcept {}
  // `count` batched requests of `kernel` finished with `outcome` (a batch reports its successes
  // and failures once each, so the hot path makes no call per request).
  virtual void on_batch_requests_done(std::string_view /*kernel*/, BatchOutcome /*outcome*/,
                                      std::uint64_t /*count*/) noexcept {}
  // A batched request ran inline on the submitting thread (DynamicBatcher::run_inline): one
  // execution of one request that never queued; `execution.code` is its outcome. Comes instead
  // of on_batch_dispatched / on_kernel_executed / on_batch_requests_done, once per request on
  // the caller's hot path (a few hundred nanoseconds of work): keep it cheap.
  virtual void on_request_ran_inline(const KernelExecution& /*execution*/) noexcept {}
  // A real copy between host and device memory was issued (CUDA and OpenCL backends).
  virtual void on_bytes_moved(std::string_view /*device*/, TransferDirection /*direction*/,
                              std::uint64_t /*bytes*/) noexcept {}
  // Whether on_transfer_timed is wanted. Asked once, when a GPU backend is constructed (with
  // the Executor): only then do the backends time their copies (OpenCL profiling queues, CUDA
  // timing events); otherwise the hot path is unchanged and on_transfer_timed never comes.
  virtual bool wants_transfer_timing() const noexcept { return false; }
  // A copy reported by on_bytes_moved completed (successfully, with every command of its call or
  // batch) and the device measured it; called from the backend's completion thread before the
  // call's or batch's completion runs. A call or batch whose device commands failed reports none.
  virtual void on_transfer_timed(const TransferTiming& /*timing*/) noexcept {}
  // Whether GPU backends should time pipeline stages (OpenCL profiling queues, CUDA events).
  // Asked once, when a GPU backend is constructed, like wants_transfer_timing().
  virtual bool wants_stage_timing() const noexcept { return false; }
  virtual void on_pipeline_stage(const PipelineStageExecution& /*stage*/) noexcept {}
  // A call (or `requests` batched requests) ran on `to` instead of `from` (the requested or
  // best device; empty when absent) for `reason`.
  virtual void on_fallback(FallbackReason /*reason*/, std::string_view /*kernel*/, std::string_view /*from*/,
                           std::string_view /*to*/, std::uint32_t /*requests*/) noexcept {}
  virtual void on_breaker_transition(std::string_view /*device*/, std::string_view /*kernel*/,
                                     resilience::BreakerState /*from*/, resilience::BreakerState /*to*/) noexcept {}
  virtual void on_bulkhead_rejected(std::string_view /*device*/) noexcept {}
  // Retry number `attempt` (2 = the second try) of a call is about to start after a backoff.
  virtual void on_retry(std::string_view /*kernel*/, std::uint32_t /*attempt*/) noexcept {}
  virtual void on_fault_injected(std::string_view /*backend*/, std::string_view /*kernel*/,
                                 resilience::FaultMode /*mode*/) noexcept {}
  // A call or batched request completed with deadline_exceeded on `device` (empty: before it
  // reached one).
  virtual void on_deadline_exceeded(std::string_view /*kernel*/, std::string_view /*device*/) noexcept {}
};

}  // namespace gpubridge::compute

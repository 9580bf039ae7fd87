#pragma once
// The silo's compute observer: turns compute events into metrics (and, when tracing is on, into
// "kernel launch", "batch", "memory transfer" and "pipeline stage" spans), and the scrape-time metrics read from
// ExecutorStats. Transfer timings are asked for only when the tracer is enabled, so a silo
// without tracing pays nothing for them. Thread-safe (hooks run on any thread, concurrently).
#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/compute/observer.hpp"
#include "gpubridge/telemetry/metrics.hpp"
#include "server/metric_cache.hpp"

namespace gpubridge::telemetry {
class Tracer;
}

namespace gpubridge::server {

class ComputeMetrics final : public compute::ComputeObserver {
 public:
  // Registers the families in `registry`; `cache` and `tracer` (null: no spans) must outlive it.
  static Result<std::shared_ptr<ComputeMetrics>> create(telemetry::Registry& registry, MetricCache& cache,
                                                        telemetry::Tracer* tracer);

  void on_kernel_executed(const compute::KernelExecution& e) noexcept override;
  void on_batch_dispatched(std::string_view kernel, std::string_view device,
                           std::span<const std::chrono::nanoseconds> queued) noexcept override;
  void on_batch_requests_done(std::string_view kernel, compute::BatchOutcome outcome, std::uint64_t count) noexcept override;
  // One execution (gpubridge_kernel_executions_total, _duration_seconds) and one finished request
  // (gpubridge_batch_requests_total); not a batch: no batch size, no queueing time, no span.
  void on_request_ran_inline(const compute::KernelExecution& e) noexcept override;
  void on_bytes_moved(std::string_view device, compute::TransferDirection direction, std::uint64_t bytes) noexcept override;
  // True when the tracer is enabled: each timed transfer becomes a "memory transfer" span.
  bool wants_transfer_timing() const noexcept override;
  void on_transfer_timed(const compute::TransferTiming& t) noexcept override;
  // True when the tracer is enabled: each pipeline stage becomes a "pipeline stage" span.
  bool wants_stage_timing() const noexcept override;
  void on_pipeline_stage(const compute::PipelineStageExecution& s) noexcept override;
  void on_breaker_transition(std::string_view device, std::string_view kernel, resilience::BreakerState from,
                             resilience::BreakerState to) noexcept override;
  void on_bulkhead_rejected(std::string_view device) noexcept override;
  void on_retry(std::string_view kernel, std::uint32_t attempt) noexcept override;
  void on_fault_injected(std::string_view backend, std::string_view kernel, resilience::FaultMode mode) noexcept override;
  void on_deadline_exceeded(std::string_view kernel, std::string_view device) noexcept override;

 private:
  ComputeMetrics(MetricCache& cache, telemetry::Tracer* tracer) : cache_(cache), tracer_(tracer) {}

  // gpubridge_kernel_executions_total and _duration_seconds of one execution.
  void count_execution(const compute::KernelExecution& e, std::string_view backend) noexcept;
  struct InlineChildren;
  // This thread's memo entry for e's (kernel, device), filled on first use; null without memory.
  InlineChildren* inline_children(const compute::KernelExecution& e, std::string_view backend) noexcept;

  const std::uint64_t id_ = next_id();  // tells this object's entries in per-thread memos apart
  static std::uint64_t next_id() noexcept;
  MetricCache& cache_;
  telemetry::Tracer* tracer_;
  telemetry::CounterFamily* executions_ = nullptr;
  telemetry::HistogramFamily* durations_ = nullptr;
  telemetry::HistogramFamily* batch_sizes_ = nullptr;
  telemetry::HistogramFamily* queue_seconds_ = nullptr;
  telemetry::CounterFamily* batch_requests_ = nullptr;
  telemetry::CounterFamily* transfer_bytes_ = nullptr;
  telemetry::CounterFamily* breaker_transitions_ = nullptr;
  telemetry::CounterFamily* bulkhead_rejections_ = nullptr;
  telemetry::CounterFamily* retries_ = nullptr;
  telemetry::CounterFamily* faults_ = nullptr;
  telemetry::CounterFamily* deadlines_ = nullptr;
};

// Scrape-time metrics from executor statistics (breaker states).
void compute_metrics_collect(const compute::ExecutorStats& stats, telemetry::MetricSink& sink);
// The breakers as the dashboard shows them: [{device, kernel, state, opened}].
nlohmann::json breakers_json(const compute::ExecutorStats& stats);

}  // namespace gpubridge::server

#include "server/compute_metrics.hpp"

#include <array>
#include <atomic>
#include <new>
#include <string>

#include <nlohmann/json.hpp>

#include "gpubridge/telemetry/tracing.hpp"

namespace gpubridge::server {

namespace {

template <typename T>
Status take(Result<T*> r, T*& out) {
  if (!r) return r.error();
  out = *r;
  return {};
}

// A steady_clock time as wall-clock time, for spans measured after the fact.
std::chrono::system_clock::time_point to_system(std::chrono::steady_clock::time_point t) {
  const auto now_steady = std::chrono::steady_clock::now();
  const auto now_system = std::chrono::system_clock::now();
  return now_system - std::chrono::duration_cast<std::chrono::system_clock::duration>(now_steady - t);
}

}  // namespace

// The children a successful inline request updates, for one (metrics object, kernel, device),
// remembered per thread: resolving each through the MetricCache hashes every label's bytes, which
// would cost a third of a small request's work.
struct ComputeMetrics::InlineChildren {
  std::uint64_t owner = 0;  // ComputeMetrics id; 0: empty
  std::string kernel, device;
  telemetry::Counter* executions = nullptr;  // status "ok"
  telemetry::Counter* requests = nullptr;    // status "ok"
  telemetry::Histogram* duration = nullptr;
};

std::uint64_t ComputeMetrics::next_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

Result<std::shared_ptr<ComputeMetrics>> ComputeMetrics::create(telemetry::Registry& r, MetricCache& cache,
                                                               telemetry::Tracer* tracer) {
  std::shared_ptr<ComputeMetrics> m(new ComputeMetrics(cache, tracer));
  auto batch_buckets = telemetry::exponential_buckets(1, 2, 14);  // 1 .. 8192 requests
  if (!batch_buckets) return batch_buckets.error();
  const auto latency = telemetry::default_latency_buckets_seconds();
  for (Status s : {
           take(r.counter("gpubridge_kernel_executions_total",
                          "Device executions (a plain call or a whole batch), by kernel, backend, device and status",
                          {"kernel", "backend", "device", "status"}),
                m->executions_),
           take(r.histogram("gpubridge_kernel_duration_seconds", "Device execution time of a call or a batch", latency,
                            {"kernel", "backend"}),
                m->durations_),
           take(r.histogram("gpubridge_batch_size", "Requests per batch", *batch_buckets, {"kernel", "device"}),
                m->batch_sizes_),
           take(r.histogram("gpubridge_batch_queue_seconds", "Time a batched request waited before its batch started",
                            latency, {"kernel"}),
                m->queue_seconds_),
           take(r.counter("gpubridge_batch_requests_total", "Batched requests finished, by kernel and status",
                          {"kernel", "status"}),
                m->batch_requests_),
           take(r.counter("gpubridge_transfer_bytes_total", "Bytes copied between host and device memory",
                          {"device", "direction"}),
                m->transfer_bytes_),
           take(r.counter("gpubridge_breaker_transitions_total", "Circuit breaker state changes, by the state entered",
                          {"device", "kernel", "to"}),
                m->breaker_transitions_),
           take(r.counter("gpubridge_bulkhead_rejections_total", "Calls or batches a full bulkhead turned away",
                          {"device"}),
                m->bulkhead_rejections_),
           take(r.counter("gpubridge_retries_total", "Device executions retried after a retryable error", {"kernel"}),
                m->retries_),
           take(r.counter("gpubridge_faults_injected_total", "Faults injected by the fault switch",
                          {"backend", "kernel", "mode"}),
                m->faults_),
           take(r.counter("gpubridge_deadline_exceeded_total", "Calls and batched requests that missed their deadline",
                          {"kernel"}),
                m->deadlines_),
       }) {
    if (!s) return s.error();
  }
  return m;
}

void ComputeMetrics::count_execution(const compute::KernelExecution& e, std::string_view backend) noexcept {
  const std::string_view status = e.code == ErrorCode::ok ? "ok" : "error";
  if (auto* c = cache_.child(*executions_, {e.kernel, backend, e.device, status})) c->inc();
  if (auto* h = cache_.child(*durations_, {e.kernel, backend})) h->observe(std::chrono::duration<double>(e.duration).count());
}

void ComputeMetrics::on_kernel_executed(const compute::KernelExecution& e) noexcept {
  const std::string_view backend = compute::to_string(e.backend);
  count_execution(e, backend);
  if (tracer_ != nullptr && tracer_->enabled()) {
    try {
      const auto start = to_system(e.start);
      std::optional<std::string> error;
      if (e.code != ErrorCode::ok) error = std::string(to_string(e.code));
      tracer_->record_span(e.requests > 1 ? "batch" : "kernel launch", telemetry::SpanKind::internal, std::nullopt, start,
                           start + std::chrono::duration_cast<std::chrono::system_clock::duration>(e.duration),
                           {{"kernel", std::string(e.kernel)},
                            {"device", std::string(e.device)},
                            {"backend", std::string(backend)},
                            {"batch.size", static_cast<std::int64_t>(e.requests)}},
                           error);
    } catch (...) {
      // Out of memory while building the span: the span is lost, the execution is not.
    }
  }
}

void ComputeMetrics::on_request_ran_inline(const compute::KernelExecution& e) noexcept {
  const std::string_view backend = compute::to_string(e.backend);
  InlineChildren* c = e.code == ErrorCode::ok ? inline_children(e, backend) : nullptr;
  if (c == nullptr) {  // an error (rare), or no memo entry to be had: through the cache
    count_execution(e, backend);
    on_batch_requests_done(e.kernel, e.code == ErrorCode::ok ? compute::BatchOutcome::ok : compute::BatchOutcome::error, 1);
    return;
  }
  if (c->executions != nullptr) c->executions->inc();
  if (c->requests != nullptr) c->requests->inc();
  if (c->duration != nullptr) c->duration->observe(std::chrono::duration<double>(e.duration).count());
}

ComputeMetrics::InlineChildren* ComputeMetrics::inline_children(const compute::KernelExecution& e, std::string_view backend) noexcept {
  thread_local std::array<InlineChildren, 4> memo;
  thread_local std::size_t next = 0;
  for (InlineChildren& m : memo) {
    if (m.owner == id_ && m.kernel == e.kernel && m.device == e.device) return &m;
  }
  InlineChildren& c = memo[next++ % memo.size()];
  c.owner = 0;
  try {
    c.kernel.assign(e.kernel);
    c.device.assign(e.device);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
  c.executions = cache_.child(*executions_, {e.kernel, backend, e.device, "ok"});
  c.requests = cache_.child(*batch_requests_, {e.kernel, "ok"});
  c.duration = cache_.child(*durations_, {e.kernel, backend});
  c.owner = id_;
  return &c;
}

void ComputeMetrics::on_batch_dispatched(std::string_view kernel, std::string_view device,
                                         std::span<const std::chrono::nanoseconds> queued) noexcept {
  if (auto* h = cache_.child(*batch_sizes_, {kernel, device})) h->observe(static_cast<double>(queued.size()));
  if (auto* h = cache_.child(*queue_seconds_, {kernel})) {
    for (auto q : queued) h->observe(std::chrono::duration<double>(q).count());
  }
}

void ComputeMetrics::on_batch_requests_done(std::string_view kernel, compute::BatchOutcome outcome,
                                            std::uint64_t count) noexcept {
  // Statuses as docs/metrics.md names them: ok, error, rejected, expired.
  std::string_view status = "error";
  switch (outcome) {
    case compute::BatchOutcome::ok: status = "ok"; break;
    case compute::BatchOutcome::error: status = "error"; break;
    case compute::BatchOutcome::rejected_queue_full: status = "rejected"; break;
    case compute::BatchOutcome::expired: status = "expired"; break;
  }
  if (auto* c = cache_.child(*batch_requests_, {kernel, status})) c->inc(count);
}

void ComputeMetrics::on_bytes_moved(std::string_view device, compute::TransferDirection direction,
                                    std::uint64_t bytes) noexcept {
  if (auto* c = cache_.child(*transfer_bytes_, {device, compute::to_string(direction)})) c->inc(bytes);
}

bool ComputeMetrics::wants_transfer_timing() const noexcept { return tracer_ != nullptr && tracer_->enabled(); }

void ComputeMetrics::on_transfer_timed(const compute::TransferTiming& t) noexcept {
  if (tracer_ == nullptr || !tracer_->enabled()) return;
  try {
    const auto start = to_system(t.start);
    tracer_->record_span("memory transfer", telemetry::SpanKind::internal, std::nullopt, start,
                         start + std::chrono::duration_cast<std::chrono::system_clock::duration>(t.duration),
                         {{"device", std::string(t.device)},
                          {"direction", std::string(compute::to_string(t.direction))},
                          {"bytes", static_cast<std::int64_t>(t.bytes)}});
  } catch (...) {
    // Out of memory while building the span: the span is lost, the transfer is not.
  }
}

bool ComputeMetrics::wants_stage_timing() const noexcept { return tracer_ != nullptr && tracer_->enabled(); }

void ComputeMetrics::on_pipeline_stage(const compute::PipelineStageExecution& s) noexcept {
  if (tracer_ == nullptr || !tracer_->enabled()) return;
  try {
    const auto start = to_system(s.start);
    tracer_->record_span("pipeline stage", telemetry::SpanKind::internal, std::nullopt, start,
                         start + std::chrono::duration_cast<std::chrono::system_clock::duration>(s.duration),
                         {{"kernel", std::string(s.kernel)},
                          {"device", std::string(s.device)},
                          {"backend", std::string(compute::to_string(s.backend))},
                          {"pipeline.stage", static_cast<std::int64_t>(s.stage)},
                          {"pipeline.stages", static_cast<std::int64_t>(s.stages)}});
  } catch (...) {
    // Out of memory while building the span: the span is lost, the stage is not.
  }
}

void ComputeMetrics::on_breaker_transition(std::string_view device, std::string_view kernel, resilience::BreakerState,
                                           resilience::BreakerState to) noexcept {
  if (auto* c = cache_.child(*breaker_transitions_, {device, kernel, resilience::to_string(to)})) c->inc();
}

void ComputeMetrics::on_bulkhead_rejected(std::string_view device) noexcept {
  if (auto* c = cache_.child(*bulkhead_rejections_, {device})) c->inc();
}

void ComputeMetrics::on_retry(std::string_view kernel, std::uint32_t) noexcept {
  if (auto* c = cache_.child(*retries_, {kernel})) c->inc();
}

void ComputeMetrics::on_fault_injected(std::string_view backend, std::string_view kernel,
                                       resilience::FaultMode mode) noexcept {
  if (auto* c = cache_.child(*faults_, {backend, kernel, resilience::to_string(mode)})) c->inc();
}

void ComputeMetrics::on_deadline_exceeded(std::string_view kernel, std::string_view) noexcept {
  if (auto* c = cache_.child(*deadlines_, {kernel})) c->inc();
}

void compute_metrics_collect(const compute::ExecutorStats& stats, telemetry::MetricSink& sink) {
  for (const auto& b : stats.breakers) {
    sink.gauge("gpubridge_breaker_state", "Circuit breaker state per (device, kernel): 0 closed, 1 half-open, 2 open",
               {"device", "kernel"}, {b.device_id, b.kernel}, static_cast<double>(static_cast<int>(b.state)));
  }
}

nlohmann::json breakers_json(const compute::ExecutorStats& stats) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& b : stats.breakers) {
    out.push_back({{"device", b.device_id}, {"kernel", b.kernel}, {"state", resilience::to_string(b.state)}, {"opened", b.opened}});
  }
  return out;
}

}  // namespace gpubridge::server

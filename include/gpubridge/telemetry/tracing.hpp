#pragma once
// Tracing: W3C trace context, spans, and their export as OTLP/HTTP JSON.
//
//   auto tracer = Tracer::create({.enabled = true, .service_name = "silo-1"}).value();
//   {
//     Span span = tracer->start_span("batch", SpanKind::internal, &parent);
//     span.set_attribute("batch.size", std::int64_t{128});
//   }  // ends here; a background thread exports it with others in one POST
//
// Contract:
// - A disabled tracer (the default) does nothing: start_span returns a non-recording span with
//   an invalid context, record_span returns an invalid context; nothing allocates or locks.
// - Sampling is parent-based: a span with a parent follows the parent's sampled flag; a root
//   span is sampled with probability sample_ratio (decided from its trace id). A span that is not
//   sampled still has a context (flags 00), so the decision propagates, but is never exported.
// - Finished spans go to a bounded queue (max_queue_spans); when it is full the span is dropped
//   and counted (dropped()). A background thread posts batches of up to max_export_batch spans
//   every export_interval (sooner when a batch is full). A failed POST (no connection, timeout,
//   non-2xx answer) drops its batch: counted in export_errors() (requests) and failed_spans().
//   Nothing is retried.
// - flush() and the destructor are bounded in time, also when the endpoint is down.
//
// Thread-safety: Tracer is thread-safe. A Span belongs to one thread at a time (move it to hand
// it over) and must end before its Tracer is destroyed. TraceContext is a plain value.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gpubridge/core/result.hpp"
#include "gpubridge/runtime/filters/call_filter.hpp"

namespace gpubridge::telemetry {

// A W3C trace context (https://www.w3.org/TR/trace-context/), the part a traceparent carries.
struct TraceContext {
  static constexpr std::size_t kTraceparentSize = 55;

  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> span_id{};
  std::uint8_t flags = 0;

  // Parses "00-<32 hex>-<16 hex>-<2 hex>" (lowercase hex). Rejects (invalid_argument, naming the
  // part) bad lengths, other characters, all-zero ids and version ff; a version above 00 is read
  // as version 00 when its first 55 characters follow that format and what follows starts with
  // '-' (the specification's forward-compatibility rule).
  static Result<TraceContext> parse_traceparent(std::string_view text);
  // "00-<trace id>-<span id>-<flags>", lowercase.
  std::string traceparent() const;
  // The same text written to `out` (exactly kTraceparentSize characters); allocates nothing.
  void write_traceparent(char* out) const noexcept;

  bool sampled() const noexcept { return (flags & 0x01) != 0; }
  // Both ids non-zero.
  bool valid() const noexcept;
  std::string trace_id_hex() const;
  std::string span_id_hex() const;
};

// OTLP span kinds (the enum numbers of opentelemetry.proto.trace.v1.Span.SpanKind).
enum class SpanKind : std::uint8_t { internal = 1, server = 2, client = 3, producer = 4, consumer = 5 };

using AttributeValue = std::variant<std::string, std::int64_t, double, bool>;
struct Attribute {
  std::string key;
  AttributeValue value;
};

struct TracerOptions {
  bool enabled = false;
  std::string service_name = "gpubridge";
  // OTLP/HTTP traces endpoint: http://host[:port]/path (https is not supported).
  std::string otlp_endpoint = "http://127.0.0.1:4318/v1/traces";
  std::size_t max_queue_spans = 4096;   // finished spans waiting for export; more are dropped
  std::size_t max_export_batch = 512;   // spans per POST
  std::chrono::milliseconds export_interval{1000};
  std::chrono::milliseconds export_timeout{2000};    // one POST: connect + send + answer
  std::chrono::milliseconds shutdown_timeout{3000};  // the destructor's last export, in total
  double sample_ratio = 1.0;                         // root spans: 0 (none) to 1 (all)
};

class Tracer;
namespace internal {
struct SpanRecord;
}

// A span being measured; ends (and is queued for export) on end() or destruction. Move-only.
class Span {
 public:
  Span() noexcept;  // non-recording, invalid context
  Span(Span&& other) noexcept;
  Span& operator=(Span&& other) noexcept;  // ends the span it held
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;
  ~Span();

  // Its context (the one children and outgoing calls use). Invalid for a disabled tracer.
  const TraceContext& context() const noexcept { return context_; }
  // Sampled and not yet ended: attributes and errors are kept.
  bool recording() const noexcept { return record_ != nullptr; }

  // No effect on a span that is not recording. A key set twice keeps the last value.
  void set_attribute(std::string_view key, std::string_view value);
  void set_attribute(std::string_view key, const char* value) { set_attribute(key, std::string_view(value)); }
  void set_attribute(std::string_view key, std::int64_t value);
  void set_attribute(std::string_view key, double value);
  void set_attribute(std::string_view key, bool value);
  // Marks the span failed (OTLP status ERROR with this message).
  void set_error(std::string_view message);
  // Ends the span now (idempotent).
  void end() noexcept;

 private:
  friend class Tracer;
  Span(Tracer* tracer, std::unique_ptr<internal::SpanRecord> record, const TraceContext& context) noexcept;
  Tracer* tracer_ = nullptr;
  std::unique_ptr<internal::SpanRecord> record_;
  TraceContext context_;
};

class Tracer {
 public:
  // invalid_argument naming the option: endpoint not an http URL, a zero queue or batch size,
  // a non-positive interval or timeout, a ratio outside [0, 1]. Starts the export thread when
  // enabled.
  static Result<std::unique_ptr<Tracer>> create(TracerOptions options = {});
  // Exports what is queued, for at most options.shutdown_timeout, then drops the rest (counted
  // in dropped()). Every Span must have ended.
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  bool enabled() const noexcept { return options_.enabled; }
  const TracerOptions& options() const noexcept { return options_; }

  // A new span starting now; a child of `parent` when given and valid, else a new trace.
  Span start_span(std::string_view name, SpanKind kind, const TraceContext* parent = nullptr);

  // A span measured after the fact (start and end given), queued at once. Returns its context
  // (for children), invalid when the tracer is disabled.
  TraceContext record_span(std::string_view name, SpanKind kind, const std::optional<TraceContext>& parent,
                           std::chrono::system_clock::time_point start, std::chrono::system_clock::time_point end,
                           std::vector<Attribute> attributes = {},
                           const std::optional<std::string>& error = std::nullopt);

  // Waits until every span queued before the call has been exported or failed, at most
  // `timeout`. False on timeout (or when disabled with nothing to do: true).
  bool flush(std::chrono::milliseconds timeout);

  std::uint64_t exported() const noexcept { return exported_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }
  std::uint64_t export_errors() const noexcept { return export_errors_.load(std::memory_order_relaxed); }
  std::uint64_t failed_spans() const noexcept { return failed_spans_.load(std::memory_order_relaxed); }

  struct Exporter;  // the queue and the export thread; defined in the implementation

 private:
  explicit Tracer(TracerOptions options);
  friend class Span;
  // Builds a context for a new span and decides sampling.
  TraceContext new_context(const TraceContext* parent) const noexcept;
  void finish(std::unique_ptr<internal::SpanRecord> record) noexcept;

  TracerOptions options_;
  std::unique_ptr<Exporter> exporter_;  // null when disabled
  std::atomic<std::uint64_t> exported_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> export_errors_{0};
  std::atomic<std::uint64_t> failed_spans_{0};
};

// A call filter that traces every grain call: a span "grain call" (kind server; attributes
// grain.type, grain.key, grain.method), a child of the caller's context (RequestContext's
// traceparent). While the method runs the turn's context is this span, so calls it makes are its
// children. The span ends in after(), with error status when the call failed. Add it with
// Runtime::add_call_filter; the tracer must outlive the runtime. When the tracer is disabled it
// does nothing and allocates nothing. Calls abandoned by Runtime::stop() never reach after():
// their spans are not exported.
class TracingCallFilter final : public runtime::CallFilter {
 public:
  explicit TracingCallFilter(Tracer& tracer) noexcept : tracer_(tracer) {}
  void before(runtime::CallContext& context) override;
  void after(runtime::CallContext& context) override;

 private:
  Tracer& tracer_;
};

}  // namespace gpubridge::telemetry

// TracingCallFilter: one server span per grain call, propagated through RequestContext.
#include <exception>
#include <memory>

#include "gpubridge/runtime/request_context.hpp"
#include "gpubridge/telemetry/tracing.hpp"

namespace gpubridge::telemetry {

namespace {
std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-standard exception";
  }
}
}  // namespace

void TracingCallFilter::before(runtime::CallContext& call) {
  if (!tracer_.enabled()) return;
  runtime::RequestContext& request = runtime::RequestContext::current();
  std::optional<TraceContext> parent;
  if (!request.empty()) {
    auto parsed = TraceContext::parse_traceparent(request.traceparent());
    if (parsed.ok()) parent = *parsed;  // a malformed incoming traceparent starts a new trace
  }
  Span span = tracer_.start_span("grain call", SpanKind::server, parent ? &*parent : nullptr);
  char text[TraceContext::kTraceparentSize];
  span.context().write_traceparent(text);
  request.set_traceparent(std::string_view(text, sizeof text));
  if (!span.recording()) return;  // not sampled: the decision propagates, nothing to end
  span.set_attribute("grain.type", std::string_view(call.grain.type()));
  span.set_attribute("grain.key", call.grain.key().to_string());
  span.set_attribute("grain.method", call.method);
  call.state = new Span(std::move(span));
}

void TracingCallFilter::after(runtime::CallContext& call) {
  if (call.state == nullptr) return;
  std::unique_ptr<Span> span(static_cast<Span*>(call.state));
  call.state = nullptr;
  if (call.exception) span->set_error(describe(call.exception));
  span->end();
}

}  // namespace gpubridge::telemetry

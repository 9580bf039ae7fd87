// OTLP/HTTP JSON encoding of spans (the protobuf JSON mapping of ExportTraceServiceRequest:
// ids as lowercase hex, enums as numbers, 64-bit integers as decimal strings).
#include <nlohmann/json.hpp>

#include "span_record.hpp"

namespace gpubridge::telemetry::internal {

namespace {

constexpr int kStatusUnset = 0;
constexpr int kStatusError = 2;

nlohmann::json any_value(const AttributeValue& value) {
  nlohmann::json v = nlohmann::json::object();
  if (const auto* s = std::get_if<std::string>(&value)) {
    v["stringValue"] = *s;
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    v["intValue"] = std::to_string(*i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    v["doubleValue"] = *d;
  } else {
    v["boolValue"] = std::get<bool>(value);
  }
  return v;
}

nlohmann::json key_values(const std::vector<Attribute>& attributes) {
  nlohmann::json list = nlohmann::json::array();
  for (const Attribute& a : attributes) list.push_back({{"key", a.key}, {"value", any_value(a.value)}});
  return list;
}

std::string hex(const std::array<std::uint8_t, 8>& bytes) {
  TraceContext c;
  c.span_id = bytes;
  return c.span_id_hex();
}

}  // namespace

std::string encode_otlp_json(const std::string& service_name, const std::vector<const SpanRecord*>& spans) {
  nlohmann::json encoded = nlohmann::json::array();
  for (const SpanRecord* s : spans) {
    nlohmann::json span = {
        {"traceId", s->context.trace_id_hex()},
        {"spanId", s->context.span_id_hex()},
        {"name", s->name},
        {"kind", static_cast<int>(s->kind)},
        {"startTimeUnixNano", std::to_string(s->start_unix_ns)},
        {"endTimeUnixNano", std::to_string(s->end_unix_ns)},
        {"attributes", key_values(s->attributes)},
    };
    const bool has_parent = s->parent_span_id != std::array<std::uint8_t, 8>{};
    if (has_parent) span["parentSpanId"] = hex(s->parent_span_id);
    if (s->error) {
      span["status"] = {{"code", kStatusError}, {"message", s->error_message}};
    } else {
      span["status"] = {{"code", kStatusUnset}};
    }
    encoded.push_back(std::move(span));
  }
  nlohmann::json body = {
      {"resourceSpans",
       nlohmann::json::array({{
           {"resource", {{"attributes", key_values({{"service.name", service_name}})}}},
           {"scopeSpans", nlohmann::json::array({{{"scope", {{"name", "gpubridge"}}}, {"spans", std::move(encoded)}}})},
       }})},
  };
  // Invalid UTF-8 in a name or attribute is replaced rather than failing the whole batch.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace gpubridge::telemetry::internal

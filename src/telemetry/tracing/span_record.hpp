#pragma once
// SpanRecord: one span's data from start to export (internal to the tracing library).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "gpubridge/telemetry/tracing.hpp"

namespace gpubridge::telemetry::internal {

struct SpanRecord {
  std::string name;
  SpanKind kind = SpanKind::internal;
  TraceContext context;
  std::array<std::uint8_t, 8> parent_span_id{};  // all zero: a root span
  std::uint64_t start_unix_ns = 0;
  std::uint64_t end_unix_ns = 0;
  std::vector<Attribute> attributes;
  bool error = false;
  std::string error_message;
};

// Unix time in nanoseconds.
std::uint64_t unix_nanos(std::chrono::system_clock::time_point t) noexcept;

// The OTLP/HTTP JSON body (an ExportTraceServiceRequest) for `spans` of one service.
std::string encode_otlp_json(const std::string& service_name, const std::vector<const SpanRecord*>& spans);

// Random non-zero 64-bit values from a per-thread generator (not cryptographic).
std::uint64_t random_nonzero_u64() noexcept;

}  // namespace gpubridge::telemetry::internal

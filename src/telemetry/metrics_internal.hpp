#pragma once
// Shared by the registry, the scrape-time sink and the text formatter: name validation and the
// number/escape formatting of the Prometheus text format. Private to gpubridge_telemetry.
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/core/result.hpp"
#include "gpubridge/telemetry/metrics.hpp"

namespace gpubridge::telemetry::internal {

bool is_valid_utf8(std::string_view text) noexcept;

// invalid_argument naming the problem, or ok. `what` prefixes messages ("metric", "collector sample").
Status validate_metric_name(std::string_view name, MetricType type);
Status validate_label_names(std::string_view metric_name, const std::vector<std::string>& label_names);
Status validate_help(std::string_view metric_name, std::string_view help);
Status validate_bounds(std::string_view metric_name, const std::vector<double>& bounds);

// Shortest text that parses back to exactly `value`; "+Inf", "-Inf", "NaN" for the specials.
void append_double(std::string& out, double value);
void append_uint(std::string& out, std::uint64_t value);
// HELP text: backslash and newline escaped.
void append_escaped_help(std::string& out, std::string_view help);
// Label value: backslash, double quote and newline escaped.
void append_escaped_label_value(std::string& out, std::string_view value);

}  // namespace gpubridge::telemetry::internal

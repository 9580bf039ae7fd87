// Prometheus text exposition format 0.0.4: number formatting, escaping and the family layout.
#include <charconv>
#include <cmath>
#include <string>
#include <type_traits>
#include <variant>

#include "metrics_internal.hpp"

namespace gpubridge::telemetry {
namespace internal {

void append_double(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buffer[32];
  // Shortest representation that round-trips (Go's ParseFloat reads it back exactly).
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, ec == std::errc{} ? end : buffer);
}

void append_uint(std::string& out, std::uint64_t value) {
  char buffer[24];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, ec == std::errc{} ? end : buffer);
}

void append_escaped_help(std::string& out, std::string_view help) {
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_escaped_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

}  // namespace internal

namespace {

// `{a="x",b="y"` without the closing brace (so "le" can follow), or "" when there are no labels.
void append_label_prefix(std::string& out, const std::vector<std::string>& names,
                         const std::vector<std::string>& values) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    out += i == 0 ? '{' : ',';
    out += names[i];
    out += "=\"";
    internal::append_escaped_label_value(out, i < values.size() ? values[i] : std::string_view{});
    out += '"';
  }
}

void append_sample_start(std::string& out, std::string_view name, std::string_view suffix,
                         const std::vector<std::string>& names, const std::vector<std::string>& values) {
  out += name;
  out += suffix;
  append_label_prefix(out, names, values);
  if (!names.empty()) out += '}';
  out += ' ';
}

void append_histogram(std::string& out, const FamilySnapshot& family, const ChildSnapshot& child,
                      const HistogramSnapshot& h) {
  for (std::size_t b = 0; b < h.cumulative_counts.size(); ++b) {
    out += family.name;
    out += "_bucket";
    append_label_prefix(out, family.label_names, child.label_values);
    out += family.label_names.empty() ? "{le=\"" : ",le=\"";
    if (b < h.upper_bounds.size()) {
      internal::append_double(out, h.upper_bounds[b]);
    } else {
      out += "+Inf";
    }
    out += "\"} ";
    internal::append_uint(out, h.cumulative_counts[b]);
    out += '\n';
  }
  append_sample_start(out, family.name, "_sum", family.label_names, child.label_values);
  internal::append_double(out, h.sum);
  out += '\n';
  append_sample_start(out, family.name, "_count", family.label_names, child.label_values);
  internal::append_uint(out, h.count);
  out += '\n';
}

}  // namespace

std::string to_prometheus_text(std::span<const FamilySnapshot> families) {
  std::string out;
  for (const FamilySnapshot& family : families) {
    out += "# HELP ";
    out += family.name;
    out += ' ';
    internal::append_escaped_help(out, family.help);
    out += "\n# TYPE ";
    out += family.name;
    out += ' ';
    out += to_string(family.type);
    out += '\n';
    for (const ChildSnapshot& child : family.children) {
      std::visit(
          [&](const auto& value) {
            using V = std::decay_t<decltype(value)>;
            if constexpr (std::is_same_v<V, HistogramSnapshot>) {
              append_histogram(out, family, child, value);
            } else {
              append_sample_start(out, family.name, "", family.label_names, child.label_values);
              if constexpr (std::is_same_v<V, std::uint64_t>) {
                internal::append_uint(out, value);
              } else {
                internal::append_double(out, value);
              }
              out += '\n';
            }
          },
          child.value);
    }
  }
  return out;
}

}  // namespace gpubridge::telemetry

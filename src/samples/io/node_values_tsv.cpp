// Per-node results as TSV: `node_id<TAB>value`, sorted by node id.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <unordered_set>

#include "gpubridge/samples/io.hpp"
#include "text_io.hpp"

namespace gpubridge::samples {
namespace {

// Node order sorted by id; an error when ids repeat or the sizes differ.
Result<std::vector<std::size_t>> sorted_order(const std::filesystem::path& path,
                                              std::span<const std::int64_t> node_ids, std::size_t value_count) {
  if (node_ids.size() != value_count) {
    return Error(ErrorCode::invalid_argument, "cannot write " + path.string() + ": " +
                                                  std::to_string(node_ids.size()) + " node ids but " +
                                                  std::to_string(value_count) + " values");
  }
  std::vector<std::size_t> order(node_ids.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return node_ids[a] < node_ids[b]; });
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (node_ids[order[i]] == node_ids[order[i - 1]]) {
      return Error(ErrorCode::invalid_argument, "cannot write " + path.string() + ": node id " +
                                                    std::to_string(node_ids[order[i]]) + " appears twice");
    }
  }
  return order;
}

}  // namespace

Status write_node_values_tsv(const std::filesystem::path& path, std::span<const std::int64_t> node_ids,
                             std::span<const double> values) {
  auto order = sorted_order(path, node_ids, values.size());
  if (!order) return order.error();
  std::string out;
  for (std::size_t i : *order) {
    const double v = values[i];
    if (std::isnan(v)) {
      return Error(ErrorCode::invalid_argument,
                   "cannot write " + path.string() + ": the value of node " + std::to_string(node_ids[i]) + " is NaN");
    }
    out += std::to_string(node_ids[i]);
    out += '\t';
    out += std::isinf(v) ? (v > 0 ? "inf" : "-inf") : internal::format_double(v);
    out += '\n';
  }
  return internal::write_file_atomically(path, out);
}

Status write_node_values_tsv(const std::filesystem::path& path, std::span<const std::int64_t> node_ids,
                             std::span<const std::int64_t> values) {
  auto order = sorted_order(path, node_ids, values.size());
  if (!order) return order.error();
  std::string out;
  for (std::size_t i : *order) {
    out += std::to_string(node_ids[i]);
    out += '\t';
    out += std::to_string(values[i]);
    out += '\n';
  }
  return internal::write_file_atomically(path, out);
}

Result<std::vector<NodeValue>> read_node_values_tsv(const std::filesystem::path& path) {
  auto text = internal::read_whole_file(path);
  if (!text) return text.error();
  const std::string source = path.string();
  internal::LineReader lines(*text);
  std::vector<NodeValue> values;
  std::unordered_set<std::int64_t> seen;
  while (auto line = lines.next()) {
    const std::size_t n = lines.line_number();
    if (internal::trim(*line).empty()) continue;
    const std::size_t tab = line->find('\t');
    if (tab == std::string_view::npos) return internal::input_error(source, n, "expected 'node_id<TAB>value'");
    const auto id = internal::parse_int64(internal::trim(line->substr(0, tab)));
    if (!id) return internal::input_error(source, n, "node id " + internal::quote(line->substr(0, tab)) + " is not an integer");
    const std::string_view value_text = internal::trim(line->substr(tab + 1));
    const auto value = internal::parse_double(value_text);
    if (!value || std::isnan(*value)) {
      return internal::input_error(source, n, "value " + internal::quote(value_text) + " is not a number or inf");
    }
    if (!seen.insert(*id).second) return internal::input_error(source, n, "node id " + std::to_string(*id) + " appears twice");
    values.push_back(NodeValue{*id, *value});
  }
  if (values.empty()) return internal::input_error(source, 0, "no node values");
  return values;
}

}  // namespace gpubridge::samples

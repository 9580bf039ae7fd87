// Whitespace edge-list reader: `u v [w]` per line, '#' comments, directedness declared by a
// `# directed` / `# undirected` comment before the first edge (see io.hpp).
#include <cmath>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "graph_builder.hpp"
#include "text_io.hpp"

namespace gpubridge::samples {
namespace {

using internal::input_error;
using internal::quote;

struct RawEdge {
  std::int64_t source;
  std::int64_t target;
  double weight;
};

}  // namespace

Result<Graph> parse_edge_list(std::string_view text, std::string_view source, const EdgeListOptions& options) {
  internal::LineReader lines(text);
  std::optional<bool> declared;
  std::size_t declared_line = 0;
  std::optional<bool> weighted;
  std::size_t first_edge_line = 0;
  std::vector<RawEdge> edges;
  while (auto line = lines.next()) {
    const std::size_t n = lines.line_number();
    const std::string_view content = internal::trim(internal::strip_comment(*line, '#'));
    if (content.empty()) {
      const std::size_t hash = line->find('#');
      if (hash == std::string_view::npos) continue;
      const std::string word = internal::to_lower(internal::trim(line->substr(hash + 1)));
      if (word != "directed" && word != "undirected") continue;  // an ordinary comment
      if (!edges.empty()) {
        return input_error(source, n, "'# " + word + "' must come before the first edge (line " +
                                          std::to_string(first_edge_line) + ")");
      }
      const bool is_directed = word == "directed";
      if (declared && *declared != is_directed) {
        return input_error(source, n, "contradicts the declaration on line " + std::to_string(declared_line));
      }
      declared = is_directed;
      declared_line = n;
      continue;
    }
    const auto tokens = internal::split_whitespace(content);
    if (tokens.size() != 2 && tokens.size() != 3) {
      return input_error(source, n, "expected 'u v' or 'u v weight', found " + std::to_string(tokens.size()) +
                                        " fields");
    }
    const auto u = internal::parse_int64(tokens[0]);
    const auto v = internal::parse_int64(tokens[1]);
    if (!u) return input_error(source, n, "node id " + quote(tokens[0]) + " is not a 64-bit integer");
    if (!v) return input_error(source, n, "node id " + quote(tokens[1]) + " is not a 64-bit integer");
    const bool has_weight = tokens.size() == 3;
    if (!weighted) {
      weighted = has_weight;
      first_edge_line = n;
    } else if (*weighted != has_weight) {
      return input_error(source, n, std::string(has_weight ? "has a weight" : "has no weight") +
                                        " but the first edge (line " + std::to_string(first_edge_line) + ") " +
                                        (*weighted ? "has one" : "has none") +
                                        "; either every edge has a weight or none does");
    }
    double weight = 1.0;
    if (has_weight) {
      const auto w = internal::parse_double(tokens[2]);
      if (!w) return input_error(source, n, "weight " + quote(tokens[2]) + " is not a number");
      if (!std::isfinite(*w)) return input_error(source, n, "weight " + quote(tokens[2]) + " is not finite");
      weight = *w;
    }
    edges.push_back(RawEdge{*u, *v, weight});
  }
  if (edges.empty()) return input_error(source, 0, "no edges: an edge list needs at least one 'u v [w]' line");
  if (declared && options.directed && *declared != *options.directed) {
    return input_error(source, declared_line,
                       std::string("the file declares the graph ") + (*declared ? "directed" : "undirected") +
                           " but the caller asked for " + (*options.directed ? "directed" : "undirected"));
  }
  internal::GraphBuilder builder(declared.value_or(options.directed.value_or(true)));
  for (const auto& edge : edges) {
    const std::size_t from = builder.node_index(edge.source);
    const std::size_t to = builder.node_index(edge.target);
    builder.add_edge(from, to, edge.weight);
  }
  builder.set_has_weights(weighted.value_or(false));
  return builder.take();
}

Result<Graph> read_edge_list(const std::filesystem::path& path, const EdgeListOptions& options) {
  auto text = internal::read_whole_file(path);
  if (!text) return text.error();
  return parse_edge_list(*text, path.string(), options);
}

}  // namespace gpubridge::samples

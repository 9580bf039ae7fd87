#pragma once
// Builds a samples::Graph from node declarations and edges as a reader meets them: node ids are
// unique, parallel edges merge with weights summed ((u, v) and (v, u) are one edge when the graph
// is undirected), self-loops stay. Not thread-safe (one builder per reader call).
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

#include "gpubridge/samples/io.hpp"

namespace gpubridge::samples::internal {

class GraphBuilder {
 public:
  explicit GraphBuilder(bool directed) { graph_.directed = directed; }

  // Adds a node; false when the id is already present.
  bool add_node(std::int64_t id, std::string label);
  // Index of the node, adding it (without a label) when new.
  std::size_t node_index(std::int64_t id);
  std::optional<std::size_t> find(std::int64_t id) const;
  void add_edge(std::size_t source, std::size_t target, double weight);
  void set_has_weights(bool has_weights) { graph_.has_weights = has_weights; }
  Graph take() { return std::move(graph_); }

 private:
  Graph graph_;
  std::unordered_map<std::int64_t, std::size_t> index_by_id_;
  std::map<std::pair<std::size_t, std::size_t>, std::size_t> edge_by_ends_;
};

}  // namespace gpubridge::samples::internal

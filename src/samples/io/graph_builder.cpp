#include "graph_builder.hpp"

#include <algorithm>

namespace gpubridge::samples {

std::optional<std::size_t> Graph::index_of(std::int64_t id) const {
  const auto it = std::find(node_ids.begin(), node_ids.end(), id);
  if (it == node_ids.end()) return std::nullopt;
  return static_cast<std::size_t>(it - node_ids.begin());
}

namespace internal {

bool GraphBuilder::add_node(std::int64_t id, std::string label) {
  const auto [it, inserted] = index_by_id_.emplace(id, graph_.node_ids.size());
  if (!inserted) return false;
  graph_.node_ids.push_back(id);
  graph_.node_labels.push_back(std::move(label));
  return true;
}

std::size_t GraphBuilder::node_index(std::int64_t id) {
  if (auto found = find(id)) return *found;
  add_node(id, {});
  return graph_.node_ids.size() - 1;
}

std::optional<std::size_t> GraphBuilder::find(std::int64_t id) const {
  const auto it = index_by_id_.find(id);
  if (it == index_by_id_.end()) return std::nullopt;
  return it->second;
}

void GraphBuilder::add_edge(std::size_t source, std::size_t target, double weight) {
  std::pair<std::size_t, std::size_t> key{source, target};
  if (!graph_.directed && target < source) key = {target, source};
  const auto [it, inserted] = edge_by_ends_.emplace(key, graph_.edges.size());
  if (inserted) {
    graph_.edges.push_back(GraphEdge{source, target, weight});
  } else {
    graph_.edges[it->second].weight += weight;
  }
}

}  // namespace internal
}  // namespace gpubridge::samples

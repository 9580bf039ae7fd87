// Graph samples on CSR graphs: construction, BFS levels, PageRank and Dijkstra SSSP
// (see algorithms.hpp for the contracts).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "parallel.hpp"

namespace gpubridge::samples {
namespace {

std::string edge_name(std::size_t source, std::size_t target) {
  return std::to_string(source) + " -> " + std::to_string(target);
}

// The structural invariants of a CsrGraph, so that a hand-built one cannot index out of range.
Status check_graph(const CsrGraph& graph, const std::string& what) {
  if (graph.node_count == 0) return detail::invalid(what + ": graph has no nodes");
  if (graph.row_offsets.size() != graph.node_count + 1 || graph.row_offsets.front() != 0 ||
      graph.row_offsets.back() != graph.neighbors.size() ||
      graph.weights.size() != graph.neighbors.size()) {
    return detail::invalid(what + ": malformed CSR graph (row_offsets must have node_count + 1 "
                           "entries from 0 to the number of edges, one weight per edge)");
  }
  for (std::size_t u = 0; u < graph.node_count; ++u) {
    if (graph.row_offsets[u] > graph.row_offsets[u + 1]) {
      return detail::invalid(what + ": malformed CSR graph (row_offsets decrease at node " +
                             std::to_string(u) + ")");
    }
  }
  for (std::size_t target : graph.neighbors) {
    if (target >= graph.node_count) {
      return detail::invalid(what + ": malformed CSR graph (neighbour " + std::to_string(target) +
                             " >= node count " + std::to_string(graph.node_count) + ")");
    }
  }
  return {};
}

Status check_source(const CsrGraph& graph, std::size_t source, const std::string& what) {
  if (source >= graph.node_count) {
    return detail::invalid(what + ": source node " + std::to_string(source) +
                           " is not in the graph (node ids 0.." +
                           std::to_string(graph.node_count - 1) + ")");
  }
  return {};
}

}  // namespace

Result<CsrGraph> build_csr(std::size_t node_count, std::span<const Edge> edges, bool directed) {
  if (node_count == 0) return detail::invalid("build_csr: graph has no nodes");
  for (std::size_t i = 0; i < edges.size(); ++i) {
    const Edge& edge = edges[i];
    if (edge.source >= node_count || edge.target >= node_count) {
      return detail::invalid("build_csr: edge " + std::to_string(i) + " (" +
                             edge_name(edge.source, edge.target) + ") names a node >= node count " +
                             std::to_string(node_count));
    }
    if (!std::isfinite(edge.weight)) {
      return detail::invalid("build_csr: edge " + std::to_string(i) + " (" +
                             edge_name(edge.source, edge.target) + ") has a non-finite weight");
    }
  }
  // Arcs grouped by source (counting sort keeps input order), then sorted by target per row and
  // parallel arcs merged, summing weights in input order.
  std::vector<std::size_t> counts(node_count + 1, 0);
  for (const Edge& edge : edges) {
    ++counts[edge.source + 1];
    if (!directed && edge.source != edge.target) ++counts[edge.target + 1];
  }
  for (std::size_t u = 0; u < node_count; ++u) counts[u + 1] += counts[u];
  std::vector<std::pair<std::size_t, double>> arcs(counts[node_count]);
  std::vector<std::size_t> fill(counts.begin(), counts.end() - 1);
  for (const Edge& edge : edges) {
    arcs[fill[edge.source]++] = {edge.target, edge.weight};
    if (!directed && edge.source != edge.target) arcs[fill[edge.target]++] = {edge.source, edge.weight};
  }
  CsrGraph graph;
  graph.node_count = node_count;
  graph.directed = directed;
  graph.row_offsets.assign(node_count + 1, 0);
  graph.neighbors.reserve(arcs.size());
  graph.weights.reserve(arcs.size());
  for (std::size_t u = 0; u < node_count; ++u) {
    auto first = arcs.begin() + static_cast<std::ptrdiff_t>(counts[u]);
    auto last = arcs.begin() + static_cast<std::ptrdiff_t>(counts[u + 1]);
    std::stable_sort(first, last, [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto it = first; it != last; ++it) {
      if (graph.neighbors.size() > graph.row_offsets[u] && graph.neighbors.back() == it->first) {
        graph.weights.back() += it->second;
      } else {
        graph.neighbors.push_back(it->first);
        graph.weights.push_back(it->second);
      }
    }
    graph.row_offsets[u + 1] = graph.neighbors.size();
  }
  return graph;
}

Result<std::vector<std::int64_t>> bfs_levels(const CsrGraph& graph, std::size_t source,
                                             Parallelism parallelism) {
  if (auto status = check_graph(graph, "bfs_levels"); !status) return status.error();
  if (auto status = check_source(graph, source, "bfs_levels"); !status) return status.error();
  const unsigned threads = detail::resolve_threads(parallelism);
  std::vector<std::int64_t> levels(graph.node_count, -1);
  levels[source] = 0;
  std::vector<std::size_t> frontier{source};
  std::int64_t level = 0;
  while (!frontier.empty()) {
    const std::int64_t next_level = level + 1;
    // Every node of the next level is claimed by exactly one thread (compare-exchange from -1),
    // so the levels do not depend on the thread count; only the frontier's order does.
    constexpr std::size_t kFrontierPerThread = 1024;
    const std::size_t parts = std::max<std::size_t>(
        1, std::min<std::size_t>(threads, frontier.size() / kFrontierPerThread));
    std::vector<std::vector<std::size_t>> discovered(parts);
    detail::parallel_for(parts, 1, threads, [&](std::size_t part_begin, std::size_t part_end) {
      for (std::size_t part = part_begin; part < part_end; ++part) {
        const std::size_t begin = frontier.size() * part / parts;
        const std::size_t end = frontier.size() * (part + 1) / parts;
        for (std::size_t f = begin; f < end; ++f) {
          const std::size_t u = frontier[f];
          for (std::size_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1]; ++e) {
            const std::size_t v = graph.neighbors[e];
            std::atomic_ref<std::int64_t> slot(levels[v]);
            std::int64_t unvisited = -1;
            if (slot.load(std::memory_order_relaxed) == -1 &&
                slot.compare_exchange_strong(unvisited, next_level, std::memory_order_relaxed)) {
              discovered[part].push_back(v);
            }
          }
        }
      }
    });
    frontier.clear();
    for (auto& nodes : discovered) frontier.insert(frontier.end(), nodes.begin(), nodes.end());
    level = next_level;
  }
  return levels;
}

Result<PageRankResult> pagerank(const CsrGraph& graph, const PageRankOptions& options) {
  if (auto status = check_graph(graph, "pagerank"); !status) return status.error();
  if (!(options.damping >= 0.0 && options.damping < 1.0)) {
    return detail::invalid("pagerank: damping must be in [0, 1), got " +
                           detail::format_number(options.damping));
  }
  if (!(options.tolerance > 0.0) || !std::isfinite(options.tolerance)) {
    return detail::invalid("pagerank: tolerance must be finite and > 0, got " +
                           detail::format_number(options.tolerance));
  }
  if (options.max_iterations == 0) return detail::invalid("pagerank: max_iterations must be >= 1");
  const std::size_t n = graph.node_count;
  std::vector<double> out_weight(n, 0.0);
  for (std::size_t u = 0; u < n; ++u) {
    for (std::size_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1]; ++e) {
      if (options.weighted && graph.weights[e] < 0.0) {
        return detail::invalid("pagerank: edge " + edge_name(u, graph.neighbors[e]) +
                               " has negative weight " + detail::format_number(graph.weights[e]));
      }
      out_weight[u] += options.weighted ? graph.weights[e] : 1.0;
    }
  }
  // Transition probabilities gathered per target (pull form, sources ascending), so each rank is
  // one thread's fixed-order sum.
  std::vector<std::size_t> in_offsets(n + 1, 0);
  for (std::size_t u = 0; u < n; ++u) {
    if (out_weight[u] == 0.0) continue;
    for (std::size_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1]; ++e) {
      ++in_offsets[graph.neighbors[e] + 1];
    }
  }
  for (std::size_t v = 0; v < n; ++v) in_offsets[v + 1] += in_offsets[v];
  std::vector<std::size_t> in_sources(in_offsets[n]);
  std::vector<double> in_probability(in_offsets[n]);
  std::vector<std::size_t> dangling;
  {
    std::vector<std::size_t> fill(in_offsets.begin(), in_offsets.end() - 1);
    for (std::size_t u = 0; u < n; ++u) {
      if (out_weight[u] == 0.0) {
        dangling.push_back(u);
        continue;
      }
      const double inverse = 1.0 / out_weight[u];
      for (std::size_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1]; ++e) {
        const std::size_t slot = fill[graph.neighbors[e]]++;
        in_sources[slot] = u;
        in_probability[slot] = (options.weighted ? graph.weights[e] : 1.0) * inverse;
      }
    }
  }

  const unsigned threads = detail::resolve_threads(options.parallelism);
  constexpr std::size_t kChunk = 4096;
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
  const double node_count = static_cast<double>(n);
  const double teleport = (1.0 - options.damping) / node_count;
  std::vector<double> ranks(n, 1.0 / node_count);
  std::vector<double> next(n);
  std::vector<double> change_per_chunk(chunks);
  double change = 0.0;
  for (std::size_t iteration = 1; iteration <= options.max_iterations; ++iteration) {
    double dangling_mass = 0.0;
    for (std::size_t u : dangling) dangling_mass += ranks[u];
    const double spread = dangling_mass / node_count;
    detail::parallel_for(chunks, 1, threads, [&](std::size_t first_chunk, std::size_t last_chunk) {
      for (std::size_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
        const std::size_t end = std::min(n, (chunk + 1) * kChunk);
        double chunk_change = 0.0;
        for (std::size_t v = chunk * kChunk; v < end; ++v) {
          double incoming = 0.0;
          for (std::size_t e = in_offsets[v]; e < in_offsets[v + 1]; ++e) {
            incoming += ranks[in_sources[e]] * in_probability[e];
          }
          next[v] = options.damping * (incoming + spread) + teleport;
          chunk_change += std::abs(next[v] - ranks[v]);
        }
        change_per_chunk[chunk] = chunk_change;
      }
    });
    change = 0.0;
    for (double value : change_per_chunk) change += value;
    ranks.swap(next);
    if (change < options.tolerance) return PageRankResult{std::move(ranks), iteration};
  }
  return Error(ErrorCode::aborted,
               "pagerank: no convergence in " + std::to_string(options.max_iterations) +
                   " iterations (last L1 change " + detail::format_number(change) +
                   ", tolerance " + detail::format_number(options.tolerance) + ")");
}

Result<std::vector<double>> sssp_dijkstra(const CsrGraph& graph, std::size_t source) {
  if (auto status = check_graph(graph, "sssp_dijkstra"); !status) return status.error();
  if (auto status = check_source(graph, source, "sssp_dijkstra"); !status) return status.error();
  for (std::size_t u = 0; u < graph.node_count; ++u) {
    for (std::size_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1]; ++e) {
      if (graph.weights[e] < 0.0) {
        return detail::invalid("sssp_dijkstra: edge " + edge_name(u, graph.neighbors[e]) +
                               " has negative weight " + detail::format_number(graph.weights[e]) +
                               " (Dijkstra needs non-negative weights)");
      }
    }
  }
  constexpr double kUnreachable = std::numeric_limits<double>::infinity();
  std::vector<double> distance(graph.node_count, kUnreachable);
  using Entry = std::pair<double, std::size_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;
  distance[source] = 0.0;
  queue.emplace(0.0, source);
  while (!queue.empty()) {
    const auto [d, u] = queue.top();
    queue.pop();
    if (d > distance[u]) continue;  // a stale entry: u was settled with a shorter distance
    for (std::size_t e = graph.row_offsets[u]; e < graph.row_offsets[u + 1]; ++e) {
      const std::size_t v = graph.neighbors[e];
      const double candidate = d + graph.weights[e];
      if (candidate < distance[v]) {
        distance[v] = candidate;
        queue.emplace(candidate, v);
      }
    }
  }
  return distance;
}

}  // namespace gpubridge::samples

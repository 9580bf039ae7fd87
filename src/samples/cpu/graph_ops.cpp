// Graph samples on CSR graphs: construction, BFS levels, PageRank and Dijkstra SSSP
// (see algorithms.hpp for the contracts).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
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

// A node index or offset as stored in a view. Doubles are checked to be whole numbers below
// 2^53 first, so the conversion through int64 is exact.
inline std::size_t to_index(std::size_t value) { return value; }
inline std::size_t to_index(double value) { return static_cast<std::size_t>(static_cast<std::int64_t>(value)); }

// True when `value` can be used as an index: always for size_t; for double a whole number in
// [0, 2^53] (NaN fails the first comparison, infinity the second; within the range, whole exactly
// when it survives the round trip through int64 - cheaper than std::floor, a libm call).
inline bool is_index(std::size_t) { return true; }
inline bool is_index(double value) {
  return value >= 0.0 && value <= 9007199254740992.0 &&
         static_cast<double>(static_cast<std::int64_t>(value)) == value;
}

std::string index_text(std::size_t value) { return std::to_string(value); }
std::string index_text(double value) { return detail::format_number(value); }

template <typename Index>
std::size_t node_count_of(const CsrView<Index>& graph) {
  return graph.row_offsets.size() - 1;
}

// The structural invariants of a CSR view, so that no algorithm can index out of range.
template <typename Index>
Status check_graph(const CsrView<Index>& graph, const std::string& what) {
  if (graph.row_offsets.size() < 2) return detail::invalid(what + ": graph has no nodes");
  const std::size_t n = node_count_of(graph);
  const std::size_t m = graph.neighbors.size();
  const bool weights_ok = graph.weights.empty() || graph.weights.size() == m;
  if (!is_index(graph.row_offsets.front()) || to_index(graph.row_offsets.front()) != 0 ||
      !is_index(graph.row_offsets.back()) || to_index(graph.row_offsets.back()) != m || !weights_ok) {
    return detail::invalid(what + ": malformed CSR graph (row_offsets must have node_count + 1 "
                           "entries from 0 to the number of edges, one weight per edge)");
  }
  for (std::size_t u = 0; u < n; ++u) {
    if (!is_index(graph.row_offsets[u + 1])) {
      return detail::invalid(what + ": malformed CSR graph (row_offsets[" + std::to_string(u + 1) + "] = " +
                             index_text(graph.row_offsets[u + 1]) + " is not a whole number in [0, 2^53])");
    }
    if (graph.row_offsets[u] > graph.row_offsets[u + 1]) {
      return detail::invalid(what + ": malformed CSR graph (row_offsets decrease at node " +
                             std::to_string(u) + ")");
    }
  }
  const auto node_bound = static_cast<Index>(n);
  for (const Index target : graph.neighbors) {
    if (!is_index(target)) {
      return detail::invalid(what + ": malformed CSR graph (neighbour " + index_text(target) +
                             " is not a whole number in [0, 2^53])");
    }
    if (!(target < node_bound)) {
      return detail::invalid(what + ": malformed CSR graph (neighbour " + index_text(target) +
                             " >= node count " + std::to_string(n) + ")");
    }
  }
  return {};
}

// A CsrGraph's own invariants (node_count matching the arrays, one weight per edge), then its view's.
Status check_graph(const CsrGraph& graph, const std::string& what) {
  if (graph.node_count == 0) return detail::invalid(what + ": graph has no nodes");
  if (graph.row_offsets.size() != graph.node_count + 1 || graph.weights.size() != graph.neighbors.size()) {
    return detail::invalid(what + ": malformed CSR graph (row_offsets must have node_count + 1 "
                           "entries from 0 to the number of edges, one weight per edge)");
  }
  return check_graph(as_view(graph), what);
}

Status check_source(std::size_t node_count, std::size_t source, const std::string& what) {
  if (source >= node_count) {
    return detail::invalid(what + ": source node " + std::to_string(source) +
                           " is not in the graph (node ids 0.." +
                           std::to_string(node_count - 1) + ")");
  }
  return {};
}

// Arc e's weight: weights[e], or 1 when the view has no weights.
template <typename Index>
double weight_at(const CsrView<Index>& graph, std::size_t e) {
  return graph.weights.empty() ? 1.0 : graph.weights[e];
}

// Level-synchronous BFS over a checked view into `levels` (node_count entries).
template <typename Index, typename Level>
void bfs_into(const CsrView<Index>& graph, std::size_t source, std::span<Level> levels, unsigned threads) {
  // Raw pointers in locals: the loops below allocate, after which members would be reloaded.
  const Index* const offsets = graph.row_offsets.data();
  const Index* const neighbors = graph.neighbors.data();
  Level* const level_of = levels.data();
  std::fill(levels.begin(), levels.end(), Level(-1));
  levels[source] = 0;
  std::vector<std::size_t> frontier{source};
  Level level = 0;
  while (!frontier.empty()) {
    const Level next_level = level + 1;
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
          const std::size_t arcs_end = to_index(offsets[u + 1]);
          for (std::size_t e = to_index(offsets[u]); e < arcs_end; ++e) {
            const std::size_t v = to_index(neighbors[e]);
            std::atomic_ref<Level> slot(level_of[v]);
            Level unvisited = -1;
            if (slot.load(std::memory_order_relaxed) == Level(-1) &&
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
}

template <typename Index, typename Level>
Status bfs_checked(const CsrView<Index>& graph, std::size_t source, std::span<Level> levels,
                   Parallelism parallelism) {
  if (auto status = check_graph(graph, "bfs_levels"); !status) return status;
  if (auto status = check_source(node_count_of(graph), source, "bfs_levels"); !status) return status;
  if (auto status = detail::check_output("bfs_levels", levels.size(), node_count_of(graph)); !status) return status;
  bfs_into(graph, source, levels, detail::resolve_threads(parallelism));
  return {};
}

// Power iteration over a checked view; the ranks end in `ranks` (node_count entries).
template <typename Index>
Result<std::size_t> pagerank_into(const CsrView<Index>& graph, const PageRankOptions& options,
                                  std::span<double> ranks_out) {
  if (!(options.damping >= 0.0 && options.damping < 1.0)) {
    return detail::invalid("pagerank: damping must be in [0, 1), got " +
                           detail::format_number(options.damping));
  }
  if (!(options.tolerance > 0.0) || !std::isfinite(options.tolerance)) {
    return detail::invalid("pagerank: tolerance must be finite and > 0, got " +
                           detail::format_number(options.tolerance));
  }
  if (options.max_iterations == 0) return detail::invalid("pagerank: max_iterations must be >= 1");
  const std::size_t n = node_count_of(graph);
  if (auto status = detail::check_output("pagerank", ranks_out.size(), n); !status) return status.error();
  auto arc_weight = [&](std::size_t e) { return options.weighted ? weight_at(graph, e) : 1.0; };
  std::vector<double> out_weight(n, 0.0);
  for (std::size_t u = 0; u < n; ++u) {
    const std::size_t arcs_end = to_index(graph.row_offsets[u + 1]);
    for (std::size_t e = to_index(graph.row_offsets[u]); e < arcs_end; ++e) {
      if (options.weighted && weight_at(graph, e) < 0.0) {
        return detail::invalid("pagerank: edge " + edge_name(u, to_index(graph.neighbors[e])) +
                               " has negative weight " + detail::format_number(weight_at(graph, e)));
      }
      out_weight[u] += arc_weight(e);
    }
  }
  // Transition probabilities gathered per target (pull form, sources ascending), so each rank is
  // one thread's fixed-order sum.
  std::vector<std::size_t> in_offsets(n + 1, 0);
  for (std::size_t u = 0; u < n; ++u) {
    if (out_weight[u] == 0.0) continue;
    const std::size_t arcs_end = to_index(graph.row_offsets[u + 1]);
    for (std::size_t e = to_index(graph.row_offsets[u]); e < arcs_end; ++e) {
      ++in_offsets[to_index(graph.neighbors[e]) + 1];
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
      const std::size_t arcs_end = to_index(graph.row_offsets[u + 1]);
      for (std::size_t e = to_index(graph.row_offsets[u]); e < arcs_end; ++e) {
        const std::size_t slot = fill[to_index(graph.neighbors[e])]++;
        in_sources[slot] = u;
        in_probability[slot] = arc_weight(e) * inverse;
      }
    }
  }

  const unsigned threads = detail::resolve_threads(options.parallelism);
  constexpr std::size_t kChunk = 4096;
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
  const double node_count = static_cast<double>(n);
  const double teleport = (1.0 - options.damping) / node_count;
  // Two buffers swapped every iteration: the caller's output and one scratch vector.
  std::vector<double> scratch(n);
  double* ranks = ranks_out.data();
  double* next = scratch.data();
  std::fill(ranks, ranks + n, 1.0 / node_count);
  std::vector<double> change_per_chunk(chunks);
  double change = 0.0;
  for (std::size_t iteration = 1; iteration <= options.max_iterations; ++iteration) {
    double dangling_mass = 0.0;
    for (std::size_t u : dangling) dangling_mass += ranks[u];
    const double spread = dangling_mass / node_count;
    const double* const current = ranks;
    double* const updated = next;
    detail::parallel_for(chunks, 1, threads, [&](std::size_t first_chunk, std::size_t last_chunk) {
      const std::size_t* const sources = in_sources.data();
      const double* const probability = in_probability.data();
      const std::size_t* const offsets = in_offsets.data();
      const double damping = options.damping;
      for (std::size_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
        const std::size_t end = std::min(n, (chunk + 1) * kChunk);
        double chunk_change = 0.0;
        for (std::size_t v = chunk * kChunk; v < end; ++v) {
          double incoming = 0.0;
          for (std::size_t e = offsets[v]; e < offsets[v + 1]; ++e) {
            incoming += current[sources[e]] * probability[e];
          }
          updated[v] = damping * (incoming + spread) + teleport;
          chunk_change += std::abs(updated[v] - current[v]);
        }
        change_per_chunk[chunk] = chunk_change;
      }
    });
    change = 0.0;
    for (double value : change_per_chunk) change += value;
    std::swap(ranks, next);
    if (change < options.tolerance) {
      if (ranks != ranks_out.data()) std::copy(ranks, ranks + n, ranks_out.data());
      return iteration;
    }
  }
  return Error(ErrorCode::aborted,
               "pagerank: no convergence in " + std::to_string(options.max_iterations) +
                   " iterations (last L1 change " + detail::format_number(change) +
                   ", tolerance " + detail::format_number(options.tolerance) + ")");
}

template <typename Index>
Result<std::size_t> pagerank_checked(const CsrView<Index>& graph, const PageRankOptions& options,
                                     std::span<double> ranks) {
  if (auto status = check_graph(graph, "pagerank"); !status) return status.error();
  return pagerank_into(graph, options, ranks);
}

// Dijkstra over a checked view into `distance` (node_count entries); weight_of(e) is arc e's
// weight (a template parameter, so that a view without weights costs no branch per arc).
template <typename Index, typename WeightOf>
void dijkstra(const CsrView<Index>& graph, std::size_t source, std::span<double> distance, WeightOf weight_of) {
  // Raw pointers in locals: the queue allocates, after which members would be reloaded.
  const Index* const offsets = graph.row_offsets.data();
  const Index* const neighbors = graph.neighbors.data();
  double* const best = distance.data();
  constexpr double kUnreachable = std::numeric_limits<double>::infinity();
  std::fill(distance.begin(), distance.end(), kUnreachable);
  using Entry = std::pair<double, std::size_t>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;
  best[source] = 0.0;
  queue.emplace(0.0, source);
  while (!queue.empty()) {
    const auto [d, u] = queue.top();
    queue.pop();
    if (d > best[u]) continue;  // a stale entry: u was settled with a shorter distance
    const std::size_t arcs_end = to_index(offsets[u + 1]);
    for (std::size_t e = to_index(offsets[u]); e < arcs_end; ++e) {
      const std::size_t v = to_index(neighbors[e]);
      const double candidate = d + weight_of(e);
      if (candidate < best[v]) {
        best[v] = candidate;
        queue.emplace(candidate, v);
      }
    }
  }
}

// Rejects negative weights, then runs Dijkstra over a checked view.
template <typename Index>
Status sssp_into(const CsrView<Index>& graph, std::size_t source, std::span<double> distance) {
  const std::size_t n = node_count_of(graph);
  for (std::size_t u = 0; u < n; ++u) {
    const std::size_t arcs_end = to_index(graph.row_offsets[u + 1]);
    for (std::size_t e = to_index(graph.row_offsets[u]); e < arcs_end; ++e) {
      if (weight_at(graph, e) < 0.0) {
        return detail::invalid("sssp_dijkstra: edge " + edge_name(u, to_index(graph.neighbors[e])) +
                               " has negative weight " + detail::format_number(weight_at(graph, e)) +
                               " (Dijkstra needs non-negative weights)");
      }
    }
  }
  if (graph.weights.empty()) {
    dijkstra(graph, source, distance, [](std::size_t) { return 1.0; });
  } else {
    const double* const weights = graph.weights.data();
    dijkstra(graph, source, distance, [weights](std::size_t e) { return weights[e]; });
  }
  return {};
}

template <typename Index>
Status sssp_checked(const CsrView<Index>& graph, std::size_t source, std::span<double> distance) {
  if (auto status = check_graph(graph, "sssp_dijkstra"); !status) return status;
  if (auto status = check_source(node_count_of(graph), source, "sssp_dijkstra"); !status) return status;
  if (auto status = detail::check_output("sssp_dijkstra", distance.size(), node_count_of(graph)); !status) {
    return status;
  }
  return sssp_into(graph, source, distance);
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

Status bfs_levels(const CsrGraphView& graph, std::size_t source, std::span<std::int64_t> levels,
                  Parallelism parallelism) {
  return bfs_checked(graph, source, levels, parallelism);
}

Status bfs_levels(const CsrGraphF64View& graph, std::size_t source, std::span<double> levels,
                  Parallelism parallelism) {
  return bfs_checked(graph, source, levels, parallelism);
}

Result<std::vector<std::int64_t>> bfs_levels(const CsrGraph& graph, std::size_t source,
                                             Parallelism parallelism) {
  if (auto status = check_graph(graph, "bfs_levels"); !status) return status.error();
  if (auto status = check_source(graph.node_count, source, "bfs_levels"); !status) return status.error();
  std::vector<std::int64_t> levels(graph.node_count);
  bfs_into(as_view(graph), source, std::span<std::int64_t>(levels), detail::resolve_threads(parallelism));
  return levels;
}

Result<std::size_t> pagerank(const CsrGraphView& graph, const PageRankOptions& options, std::span<double> ranks) {
  return pagerank_checked(graph, options, ranks);
}

Result<std::size_t> pagerank(const CsrGraphF64View& graph, const PageRankOptions& options,
                             std::span<double> ranks) {
  return pagerank_checked(graph, options, ranks);
}

Result<PageRankResult> pagerank(const CsrGraph& graph, const PageRankOptions& options) {
  if (auto status = check_graph(graph, "pagerank"); !status) return status.error();
  PageRankResult result{std::vector<double>(graph.node_count), 0};
  auto iterations = pagerank_into(as_view(graph), options, std::span<double>(result.ranks));
  if (!iterations) return iterations.error();
  result.iterations = *iterations;
  return result;
}

Status sssp_dijkstra(const CsrGraphView& graph, std::size_t source, std::span<double> distances) {
  return sssp_checked(graph, source, distances);
}

Status sssp_dijkstra(const CsrGraphF64View& graph, std::size_t source, std::span<double> distances) {
  return sssp_checked(graph, source, distances);
}

Result<std::vector<double>> sssp_dijkstra(const CsrGraph& graph, std::size_t source) {
  if (auto status = check_graph(graph, "sssp_dijkstra"); !status) return status.error();
  if (auto status = check_source(graph.node_count, source, "sssp_dijkstra"); !status) return status.error();
  std::vector<double> distance(graph.node_count);
  if (auto status = sssp_into(as_view(graph), source, std::span<double>(distance)); !status) return status.error();
  return distance;
}

}  // namespace gpubridge::samples

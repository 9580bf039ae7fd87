// Graph kernels over CSR arrays of float64. The shape functions check the arrays' lengths and the
// scalars; the CPU implementations check the contents (offsets, node indices) before running, the
// GPU recipes (gpu/graph_recipes.cpp) on the device before running.
#include "compute/kernels/graph_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <random>
#include <string>

#include "compute/gpu/graph_recipes.hpp"
#include "gpubridge/samples/algorithms.hpp"

namespace gpubridge::compute::detail {

namespace {

Error invalid(std::string_view kernel, const std::string& what) {
  return Error(ErrorCode::invalid_argument, std::string(kernel) + ": " + what);
}

// Node count from the offsets' length; neighbours (and weights) must have the same length m >= 1.
Result<std::size_t> csr_shape(std::string_view kernel, std::span<const std::size_t> counts) {
  if (counts[0] < 2) return invalid(kernel, "row_offsets needs n + 1 >= 2 entries");
  for (std::size_t i = 2; i < counts.size(); ++i) {
    if (counts[i] != counts[1]) {
      return invalid(kernel, "weights has " + std::to_string(counts[i]) + " entries, neighbors " + std::to_string(counts[1]));
    }
  }
  return counts[0] - 1;
}

Result<std::size_t> node_index(std::string_view kernel, std::string_view name, double value, std::size_t n) {
  if (!(std::isfinite(value) && value >= 0 && value == std::floor(value) && value < static_cast<double>(n))) {
    return invalid(kernel, std::string(name) + " = " + std::to_string(value) + " is not a node index below " + std::to_string(n));
  }
  return static_cast<std::size_t>(value);
}

Result<std::size_t> source_shape(std::string_view kernel, std::span<const std::size_t> counts,
                                 std::span<const double> scalars) {
  auto n = csr_shape(kernel, counts);
  if (!n) return n.error();
  if (auto s = node_index(kernel, "source", scalars[0], *n); !s) return s.error();
  return *n;
}

// Checks every offset and index of the call's CSR arrays, with the messages that the GPU recipes'
// device-side validation reproduces.
Status check_arrays(std::string_view kernel, const CpuKernelArgs& a) {
  const std::size_t n = a.input_counts[0] - 1, m = a.input_counts[1];
  const double* offsets = static_cast<const double*>(a.inputs[0]);
  const double* neighbors = static_cast<const double*>(a.inputs[1]);
  for (std::size_t i = 0; i <= n; ++i) {
    const double v = offsets[i];
    if (!(std::isfinite(v) && v >= 0 && v == std::floor(v) && v <= static_cast<double>(m))) {
      return invalid(kernel, "row_offsets[" + std::to_string(i) + "] = " + std::to_string(v) + " is not an offset in [0, m]");
    }
    if (i > 0 && v < offsets[i - 1]) return invalid(kernel, "row_offsets decrease at " + std::to_string(i));
  }
  if (offsets[0] != 0 || offsets[n] != static_cast<double>(m)) {
    return invalid(kernel, "row_offsets must start at 0 and end at m = " + std::to_string(m));
  }
  for (std::size_t e = 0; e < m; ++e) {
    if (auto idx = node_index(kernel, "neighbors[" + std::to_string(e) + "]", neighbors[e], n); !idx) {
      return idx.error();
    }
  }
  return {};
}

// Runs `run` (an algorithm's span form, returning a Status) over a view of the call's CSR arrays,
// read in place (float64 indices, no conversion), writing the call's output. The algorithms check
// the arrays themselves, accepting exactly what check_arrays accepts; so check_arrays runs only
// after a failure, to name a bad array as the GPU recipes do (one validation pass per call).
template <typename Run>
Status run_on_csr(std::string_view kernel, const CpuKernelArgs& a, bool with_weights, Run&& run) {
  const std::size_t n = a.input_counts[0] - 1, m = a.input_counts[1];
  samples::CsrGraphF64View graph{{static_cast<const double*>(a.inputs[0]), n + 1},
                                 {static_cast<const double*>(a.inputs[1]), m},
                                 {}};
  if (with_weights) graph.weights = {static_cast<const double*>(a.inputs[2]), m};
  const Status status = run(graph, std::span<double>(static_cast<double*>(a.output), a.output_count));
  if (status) return status;
  if (Status arrays = check_arrays(kernel, a); !arrays) return arrays;
  return Error(status.error().code(), std::string(kernel) + ": " + status.error().message());
}

// ---- graph.bfs: inputs row_offsets, neighbors; scalar source; output levels (-1 unreachable)

Status cpu_bfs(const CpuKernelArgs& a) {
  const auto source = static_cast<std::size_t>(a.scalars[0]);
  return run_on_csr("graph.bfs", a, false, [source](const samples::CsrGraphF64View& g, std::span<double> out) {
    return samples::bfs_levels(g, source, out);
  });
}

// ---- graph.pagerank: inputs row_offsets, neighbors, weights; scalars damping, tolerance, weighted

Result<std::size_t> pagerank_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "graph.pagerank";
  auto n = csr_shape(k, counts);
  if (!n) return n.error();
  if (!(scalars[0] >= 0 && scalars[0] < 1)) return invalid(k, "damping must be in [0, 1)");
  if (!(scalars[1] > 0 && std::isfinite(scalars[1]))) return invalid(k, "tolerance must be positive");
  if (scalars[2] != 0 && scalars[2] != 1) return invalid(k, "weighted must be 0 or 1");
  return *n;
}

Status cpu_pagerank(const CpuKernelArgs& a) {
  samples::PageRankOptions o;
  o.damping = a.scalars[0];
  o.tolerance = a.scalars[1];
  o.weighted = a.scalars[2] != 0;
  return run_on_csr("graph.pagerank", a, true,
                    [&o](const samples::CsrGraphF64View& g, std::span<double> out) -> Status {
                      if (auto iterations = samples::pagerank(g, o, out); !iterations) return iterations.error();
                      return {};
                    });
}

// ---- graph.sssp: inputs row_offsets, neighbors, weights; scalar source; output distances (inf unreachable)

Status cpu_sssp(const CpuKernelArgs& a) {
  const auto source = static_cast<std::size_t>(a.scalars[0]);
  return run_on_csr("graph.sssp", a, true, [source](const samples::CsrGraphF64View& g, std::span<double> out) {
    return samples::sssp_dijkstra(g, source, out);
  });
}

// ---- Verification examples: a random directed graph of `size` nodes with a path 0 -> 1 -> ...
// -> size-1 (every node reachable from 0), about 3 more arcs per node, a self-loop and a parallel
// arc; weights in [0.5, 2). Expected outputs come from plain reference loops (queue BFS,
// Bellman-Ford, push-form power iteration), independent of the sample algorithms.

struct ExampleGraph {
  std::size_t n = 0;
  std::vector<std::size_t> offsets;
  std::vector<std::size_t> targets;
  std::vector<double> weights;
};

ExampleGraph example_graph(std::size_t size, std::uint64_t seed) {
  const std::size_t n = std::max<std::size_t>(size, 1);
  std::mt19937_64 rng(seed ^ 0x67726170ULL ^ size);
  std::uniform_int_distribution<std::size_t> node(0, n - 1);
  std::uniform_real_distribution<double> weight(0.5, 2.0);
  std::vector<std::vector<std::pair<std::size_t, double>>> arcs(n);
  for (std::size_t u = 0; u + 1 < n; ++u) arcs[u].emplace_back(u + 1, weight(rng));
  for (std::size_t i = 0; i < 3 * n; ++i) arcs[node(rng)].emplace_back(node(rng), weight(rng));
  arcs[0].emplace_back(0, weight(rng));  // a self-loop
  if (n > 1) arcs[0].emplace_back(1, weight(rng));  // parallel to 0 -> 1
  ExampleGraph g;
  g.n = n;
  g.offsets.push_back(0);
  for (auto& row : arcs) {
    std::sort(row.begin(), row.end());
    for (const auto& [v, w] : row) {
      g.targets.push_back(v);
      g.weights.push_back(w);
    }
    g.offsets.push_back(g.targets.size());
  }
  return g;
}

std::vector<std::vector<double>> csr_inputs(const ExampleGraph& g, bool with_weights) {
  std::vector<std::vector<double>> inputs{std::vector<double>(g.offsets.begin(), g.offsets.end()),
                                          std::vector<double>(g.targets.begin(), g.targets.end())};
  if (with_weights) inputs.push_back(g.weights);
  return inputs;
}

KernelExample bfs_example(std::size_t size, DType, std::uint64_t seed) {
  const ExampleGraph g = example_graph(size, seed);
  KernelExample e;
  e.inputs = csr_inputs(g, false);
  e.scalars = {0};
  e.expected.assign(g.n, -1);
  std::deque<std::size_t> queue{0};
  e.expected[0] = 0;
  while (!queue.empty()) {
    const std::size_t u = queue.front();
    queue.pop_front();
    for (std::size_t a = g.offsets[u]; a < g.offsets[u + 1]; ++a) {
      if (e.expected[g.targets[a]] < 0) {
        e.expected[g.targets[a]] = e.expected[u] + 1;
        queue.push_back(g.targets[a]);
      }
    }
  }
  return e;
}

KernelExample sssp_example(std::size_t size, DType, std::uint64_t seed) {
  const ExampleGraph g = example_graph(size, seed);
  KernelExample e;
  e.inputs = csr_inputs(g, true);
  e.scalars = {0};
  e.expected.assign(g.n, std::numeric_limits<double>::infinity());
  e.expected[0] = 0;
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t u = 0; u < g.n; ++u) {
      for (std::size_t a = g.offsets[u]; a < g.offsets[u + 1]; ++a) {
        if (e.expected[u] + g.weights[a] < e.expected[g.targets[a]]) {
          e.expected[g.targets[a]] = e.expected[u] + g.weights[a];
          changed = true;
        }
      }
    }
  }
  e.tolerance = 1e-12 * 2.0 * static_cast<double>(g.n);  // relative 1e-12 of the longest distance bound
  return e;
}

// Odd sizes run weighted.
KernelExample pagerank_example(std::size_t size, DType, std::uint64_t seed) {
  const ExampleGraph g = example_graph(size, seed);
  const bool weighted = size % 2 == 1;
  constexpr double kDamping = 0.85, kTolerance = 1e-11;
  KernelExample e;
  e.inputs = csr_inputs(g, true);
  e.scalars = {kDamping, kTolerance, weighted ? 1.0 : 0.0};
  const double n = static_cast<double>(g.n);
  std::vector<double> out_weight(g.n, 0);
  for (std::size_t u = 0; u < g.n; ++u) {
    for (std::size_t a = g.offsets[u]; a < g.offsets[u + 1]; ++a) out_weight[u] += weighted ? g.weights[a] : 1;
  }
  std::vector<double> rank(g.n, 1 / n), next(g.n);
  for (int iteration = 0; iteration < 1000; ++iteration) {
    double dangling = 0;
    for (std::size_t u = 0; u < g.n; ++u) dangling += out_weight[u] == 0 ? rank[u] : 0;
    std::fill(next.begin(), next.end(), (1 - kDamping) / n + kDamping * dangling / n);
    for (std::size_t u = 0; u < g.n; ++u) {
      if (out_weight[u] == 0) continue;
      for (std::size_t a = g.offsets[u]; a < g.offsets[u + 1]; ++a) {
        next[g.targets[a]] += kDamping * rank[u] * (weighted ? g.weights[a] : 1) / out_weight[u];
      }
    }
    double change = 0;
    for (std::size_t v = 0; v < g.n; ++v) change += std::abs(next[v] - rank[v]);
    rank.swap(next);
    if (change < kTolerance) break;
  }
  e.expected = rank;
  e.tolerance = 1e-9;
  return e;
}

const std::vector<std::size_t> kExampleSizes{1, 17, 300, 2000};

}  // namespace

Status add_graph_kernels(KernelCatalog& c) {
  const std::vector<DType> f64{DType::f64};
  KernelDef bfs{"graph.bfs", "breadth-first levels from a source over CSR arrays; -1 where unreachable",
                {{"row_offsets", "neighbors"},
                 {"source"},
                 OutputShape::computed,
                 f64,
                 [](std::span<const std::size_t> counts, std::span<const double> scalars) {
                   return source_shape("graph.bfs", counts, scalars);
                 }},
                cpu_bfs,
                &kGraphBfsRecipe,
                bfs_example,
                kExampleSizes};
  KernelDef pagerank{"graph.pagerank",
                     "PageRank by power iteration (L1 change below tolerance; dangling nodes spread uniformly)",
                     {{"row_offsets", "neighbors", "weights"},
                      {"damping", "tolerance", "weighted"},
                      OutputShape::computed,
                      f64,
                      pagerank_shape},
                     cpu_pagerank,
                     &kGraphPagerankRecipe,
                     pagerank_example,
                     kExampleSizes};
  KernelDef sssp{"graph.sssp", "single-source shortest path distances (Dijkstra; non-negative weights); inf where unreachable",
                 {{"row_offsets", "neighbors", "weights"},
                  {"source"},
                  OutputShape::computed,
                  f64,
                  [](std::span<const std::size_t> counts, std::span<const double> scalars) {
                    return source_shape("graph.sssp", counts, scalars);
                  }},
                 cpu_sssp,
                 &kGraphSsspRecipe,
                 sssp_example,
                 kExampleSizes};
  for (KernelDef* def : {&bfs, &pagerank, &sssp}) {
    if (Status s = c.add(std::move(*def)); !s) return s;
  }
  return {};
}

}  // namespace gpubridge::compute::detail

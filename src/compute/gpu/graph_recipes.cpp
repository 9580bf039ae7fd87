// GPU recipes of the graph kernels (see gpu_recipe.hpp and graph_source.cpp for the kernels and
// the scratch layout). Every recipe first validates the CSR arrays on the device: a check kernel
// records the first bad offset / neighbour / negative weight with integer atomics, one work-item
// publishes the verdict (with the offending values) to aux, and the host reads it back and fails
// with the CPU implementation's messages before the algorithm runs.
//   graph.bfs       level-synchronous expansion over all nodes, claims by compare-and-swap
//   graph.sssp      Jacobi Bellman-Ford rounds over an in-edge CSR built on the device
//   graph.pagerank  pull-based power iteration over the same in-edge CSR (networkx semantics)
// Convergence is read back every few levels / rounds / iterations; the extra ones enqueued past
// convergence change nothing (see the kernels).
#include "graph_recipes.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace gpubridge::compute::detail {

namespace {

using A = LaunchArg;

// aux elements (written by gb_graph_check_publish, gb_graph_publish_settled, gb_graph_pagerank_finish).
constexpr std::size_t kAuxOffsetsOk = 0, kAuxNeighborsOk = 1, kAuxWeightsOk = 2, kAuxBadOffset = 3,
                      kAuxOffsetBefore = 4, kAuxOffsetValue = 5, kAuxBadNeighbor = 6, kAuxNeighborValue = 7,
                      kAuxWeightSource = 9, kAuxWeightTarget = 10, kAuxWeightValue = 11;
constexpr std::size_t kAuxCheckCount = 12;
constexpr std::size_t kAuxProgress = 12;  // settled flag (BFS, SSSP) / converged iteration (PageRank)
constexpr std::size_t kAuxElems = 14;     // + the last L1 change (PageRank)

// Levels / rounds / iterations enqueued between read-backs.
constexpr std::uint64_t kStepsPerRead = 4;
constexpr std::uint64_t kPagerankIterationsPerRead = 8;
constexpr std::size_t kPagerankMaxIterations = 1000;  // as samples::PageRankOptions

// The graph's sizes; the shape function has checked the counts (row_offsets n + 1 >= 2, m >= 1).
struct GraphSize {
  std::uint64_t n = 0, m = 0;
};
GraphSize graph_size(const ShapedArgs& s) { return {s.input_counts[0] - 1, s.input_counts[1]}; }

// The scratch layout of graph_source.cpp, in doubles (two u32 per element).
std::uint64_t half(std::uint64_t c) { return (c + 1) / 2; }
std::uint64_t fill_at(GraphSize g) { return half(4) + half(g.n + 1); }
std::uint64_t in_src_at(GraphSize g) { return fill_at(g) + half(g.n); }
std::uint64_t other_at(GraphSize g) { return in_src_at(g) + half(g.m) + g.m; }
std::uint64_t partials_at(GraphSize g) { return other_at(g) + 2 * g.n + 4; }

ShapedBuffers bfs_buffers(const ShapedArgs& s) { return {in_src_at(graph_size(s)), kAuxElems}; }
ShapedBuffers sssp_buffers(const ShapedArgs& s) {
  const GraphSize g = graph_size(s);
  return {other_at(g) + g.n, kAuxElems};
}
ShapedBuffers pagerank_buffers(const ShapedArgs& s) {
  const GraphSize g = graph_size(s);
  return {partials_at(g) + reduce_groups(g.n), kAuxElems};
}

Error invalid(std::string_view kernel, const std::string& what) {
  return Error(ErrorCode::invalid_argument, std::string(kernel) + ": " + what);
}

std::string number(double v) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%.6g", v);
  return buf.data();
}

// The device's 32-bit integer state bounds the graph.
Status check_limits(std::string_view kernel, GraphSize g) {
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 31;
  if (g.n + 1 >= kLimit || g.m >= kLimit) {
    return Error(ErrorCode::out_of_range, std::string(kernel) + ": the GPU implementation takes fewer than 2^31 nodes and arcs (" +
                                              std::to_string(g.n) + " nodes, " + std::to_string(g.m) + " arcs)");
  }
  return {};
}

// Runs the device-side validation and turns its verdict into the CPU implementation's errors.
// `negative_weight` names the algorithm's check ("sssp_dijkstra" / "pagerank") or is empty when
// weights are not checked; `suffix` ends that message.
Status validate_on_device(GpuLauncher& l, std::string_view kernel, GraphSize g, std::string_view negative_weight,
                          std::string_view suffix) {
  const bool check_weights = !negative_weight.empty();
  const Slot weights = check_weights ? Slot::input2 : Slot::input1;
  const std::array reset{A::buffer(Slot::scratch), A::size(g.n)};
  if (Status st = l.launch("gb_graph_reset", elementwise_groups(g.n), reset); !st) return st;
  const std::array check{A::buffer(Slot::input0), A::buffer(Slot::input1), A::buffer(weights), A::buffer(Slot::scratch),
                         A::size(g.n),            A::size(g.m),            A::size(check_weights ? 1 : 0)};
  if (Status st = l.launch("gb_graph_check", elementwise_groups(std::max(g.n + 1, g.m)), check); !st) return st;
  const std::array publish{A::buffer(Slot::input0), A::buffer(Slot::input1), A::buffer(weights),
                           A::buffer(Slot::scratch), A::buffer(Slot::aux),   A::size(g.n)};
  if (Status st = l.launch("gb_graph_check_publish", 1, publish); !st) return st;
  auto verdict = l.read(Slot::aux, 0, kAuxCheckCount);
  if (!verdict) return verdict.error();
  const std::vector<double>& v = *verdict;
  if (v[kAuxOffsetsOk] != 1) {
    const auto index = static_cast<std::uint64_t>(v[kAuxBadOffset]);
    if (index == g.n + 1) return invalid(kernel, "row_offsets must start at 0 and end at m = " + std::to_string(g.m));
    const double value = v[kAuxOffsetValue];
    if (!(std::isfinite(value) && value >= 0 && value == std::floor(value) && value <= static_cast<double>(g.m))) {
      return invalid(kernel, "row_offsets[" + std::to_string(index) + "] = " + std::to_string(value) +
                                 " is not an offset in [0, m]");
    }
    return invalid(kernel, "row_offsets decrease at " + std::to_string(index));
  }
  if (v[kAuxNeighborsOk] != 1) {
    return invalid(kernel, "neighbors[" + std::to_string(static_cast<std::uint64_t>(v[kAuxBadNeighbor])) + "] = " +
                               std::to_string(v[kAuxNeighborValue]) + " is not a node index below " +
                               std::to_string(g.n));
  }
  if (check_weights && v[kAuxWeightsOk] != 1) {
    return invalid(kernel, std::string(negative_weight) + ": edge " +
                               std::to_string(static_cast<std::uint64_t>(v[kAuxWeightSource])) + " -> " +
                               std::to_string(static_cast<std::uint64_t>(v[kAuxWeightTarget])) +
                               " has negative weight " + number(v[kAuxWeightValue]) + std::string(suffix));
  }
  return {};
}

// Builds the in-edge CSR (in_off, in_src, in_val) from the validated arrays; `mode` as
// gb_graph_scatter_in. gb_graph_reset has zeroed the fill region.
Status build_in_edges(GpuLauncher& l, GraphSize g, std::uint64_t mode) {
  const std::array count{A::buffer(Slot::input1), A::buffer(Slot::scratch), A::size(g.n), A::size(g.m)};
  if (Status st = l.launch("gb_graph_count_in", elementwise_groups(g.m), count); !st) return st;
  const std::array scan{A::buffer(Slot::scratch), A::size(g.n)};
  if (Status st = l.launch("gb_graph_scan_in", 1, scan); !st) return st;
  const std::array scatter{A::buffer(Slot::input0),  A::buffer(Slot::input1), A::buffer(Slot::input2),
                           A::buffer(Slot::scratch), A::size(g.n),            A::size(g.m),
                           A::size(mode)};
  return l.launch("gb_graph_scatter_in", elementwise_groups(g.n), scatter);
}

// Publishes and reads the changed flag: true when nothing changed since the last read.
Result<bool> settled(GpuLauncher& l) {
  const std::array publish{A::buffer(Slot::scratch), A::buffer(Slot::aux), A::size(kAuxProgress)};
  if (Status st = l.launch("gb_graph_publish_settled", 1, publish); !st) return st.error();
  auto flag = l.read(Slot::aux, kAuxProgress, 1);
  if (!flag) return flag.error();
  return (*flag)[0] == 1;
}

Error no_end(std::string_view kernel, std::uint64_t steps) {
  return Error(ErrorCode::internal, std::string(kernel) + ": the GPU implementation did not settle after " +
                                        std::to_string(steps) + " steps");
}

// ---- graph.bfs: scalars source

Status enqueue_bfs(GpuLauncher& l, const ShapedArgs& s) {
  constexpr std::string_view k = "graph.bfs";
  const GraphSize g = graph_size(s);
  if (Status st = check_limits(k, g); !st) return st;
  if (Status st = validate_on_device(l, k, g, {}, {}); !st) return st;
  const auto source = static_cast<std::uint64_t>(s.scalars[0]);
  const std::array init{A::buffer(Slot::scratch), A::size(g.n), A::size(source)};
  if (Status st = l.launch("gb_graph_bfs_init", elementwise_groups(g.n), init); !st) return st;
  // Levels are at most n - 1: a batch that claims nothing ends it (see gb_graph_bfs_expand).
  std::uint64_t depth = 0;
  for (;;) {
    for (std::uint64_t i = 0; i < kStepsPerRead; ++i, ++depth) {
      const std::array expand{A::buffer(Slot::input0), A::buffer(Slot::input1), A::buffer(Slot::scratch),
                              A::size(g.n), A::size(depth)};
      if (Status st = l.launch("gb_graph_bfs_expand", elementwise_groups(g.n), expand); !st) return st;
    }
    auto done = settled(l);
    if (!done) return done.error();
    if (*done) break;
    if (depth > g.n + kStepsPerRead) return no_end(k, depth);
  }
  const std::array out{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(g.n)};
  return l.launch("gb_graph_bfs_levels_out", elementwise_groups(g.n), out);
}

// ---- graph.sssp: scalars source

Status enqueue_sssp(GpuLauncher& l, const ShapedArgs& s) {
  constexpr std::string_view k = "graph.sssp";
  const GraphSize g = graph_size(s);
  if (Status st = check_limits(k, g); !st) return st;
  if (Status st = validate_on_device(l, k, g, "sssp_dijkstra", " (Dijkstra needs non-negative weights)"); !st) {
    return st;
  }
  if (Status st = build_in_edges(l, g, 0); !st) return st;
  const auto source = static_cast<std::uint64_t>(s.scalars[0]);
  const std::array init{A::buffer(Slot::output), A::size(g.n), A::size(source),
                        A::value(std::numeric_limits<double>::infinity())};
  if (Status st = l.launch("gb_graph_sssp_init", elementwise_groups(g.n), init); !st) return st;
  // Rounds alternate output -> other -> output; a batch has an even number of rounds, so the
  // distances end in the output slot. With non-negative weights at most n - 1 rounds change
  // anything, so a batch without change follows within n - 1 + 2 * kStepsPerRead rounds.
  static_assert(kStepsPerRead % 2 == 0);
  std::uint64_t rounds = 0;
  for (;;) {
    for (std::uint64_t i = 0; i < kStepsPerRead; ++i, ++rounds) {
      const std::array relax{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(g.n), A::size(g.m),
                             A::size(i % 2)};
      if (Status st = l.launch("gb_graph_sssp_relax", elementwise_groups(g.n), relax); !st) return st;
    }
    auto done = settled(l);
    if (!done) return done.error();
    if (*done) return {};
    if (rounds > g.n + 2 * kStepsPerRead) return no_end(k, rounds);
  }
}

// ---- graph.pagerank: scalars damping, tolerance, weighted

Status enqueue_pagerank(GpuLauncher& l, const ShapedArgs& s) {
  constexpr std::string_view k = "graph.pagerank";
  const GraphSize g = graph_size(s);
  if (Status st = check_limits(k, g); !st) return st;
  const double damping = s.scalars[0], tolerance = s.scalars[1];
  const bool weighted = s.scalars[2] != 0;
  if (Status st = validate_on_device(l, k, g, weighted ? "pagerank" : "", ""); !st) return st;
  const std::array out_weight{A::buffer(Slot::input0), A::buffer(Slot::input2), A::buffer(Slot::scratch),
                              A::size(g.n),            A::size(g.m),            A::size(weighted ? 1 : 0)};
  if (Status st = l.launch("gb_graph_out_weight", elementwise_groups(g.n), out_weight); !st) return st;
  if (Status st = build_in_edges(l, g, weighted ? 2 : 1); !st) return st;
  const double node_count = static_cast<double>(g.n);
  const std::array init{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(g.n), A::size(g.m),
                        A::value(1.0 / node_count)};
  if (Status st = l.launch("gb_graph_pagerank_init", elementwise_groups(g.n), init); !st) return st;
  const double teleport = (1.0 - damping) / node_count;
  const std::uint64_t groups = reduce_groups(g.n);
  double last_change = 0;
  for (std::uint64_t iteration = 1; iteration <= kPagerankMaxIterations; ++iteration) {
    // Iteration i reads the buffer of parity (i - 1) % 2 (0: output slot) and writes the other.
    const std::uint64_t parity = (iteration - 1) % 2;
    const std::array dangling{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(g.n), A::size(g.m),
                              A::size(parity)};
    if (Status st = l.launch("gb_graph_dangling_partial", groups, dangling); !st) return st;
    const std::array total{A::buffer(Slot::scratch), A::size(g.n), A::size(g.m), A::size(groups)};
    if (Status st = l.launch("gb_graph_dangling_total", 1, total); !st) return st;
    const std::array step{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(g.n), A::size(g.m),
                          A::size(parity),          A::value(damping),       A::value(teleport)};
    if (Status st = l.launch("gb_graph_pagerank_step", groups, step); !st) return st;
    const std::array finish{A::buffer(Slot::scratch), A::buffer(Slot::aux), A::size(g.n),     A::size(g.m),
                            A::size(groups),          A::size(kAuxProgress), A::size(iteration), A::value(tolerance)};
    if (Status st = l.launch("gb_graph_pagerank_finish", 1, finish); !st) return st;
    if (iteration % kPagerankIterationsPerRead != 0 && iteration != kPagerankMaxIterations) continue;
    auto progress = l.read(Slot::aux, kAuxProgress, 2);
    if (!progress) return progress.error();
    last_change = (*progress)[1];
    if ((*progress)[0] >= 1) {
      // Converged at iteration j: odd j wrote the other buffer, even j the output slot.
      const auto converged = static_cast<std::uint64_t>((*progress)[0]);
      if (converged % 2 == 0) return {};
      const std::array copy{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(g.n), A::size(g.m)};
      return l.launch("gb_graph_copy_other", elementwise_groups(g.n), copy);
    }
  }
  return Error(ErrorCode::aborted, std::string(k) + ": pagerank: no convergence in " +
                                       std::to_string(kPagerankMaxIterations) + " iterations (last L1 change " +
                                       number(last_change) + ", tolerance " + number(tolerance) + ")");
}

}  // namespace

const GpuRecipe kGraphBfsRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_bfs, bfs_buffers, false};
const GpuRecipe kGraphSsspRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_sssp, sssp_buffers, false};
const GpuRecipe kGraphPagerankRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_pagerank, pagerank_buffers, false};

}  // namespace gpubridge::compute::detail

// The graph kernels' GPU recipes (graph.bfs, graph.sssp, graph.pagerank) on OpenCL against the
// CPU implementation: paths, stars, disconnected components, self-loops, parallel arcs, a random
// directed graph of 10k nodes and 100k arcs, and karate; and the device-side validation, whose
// errors must be the CPU implementation's.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "compute/backend_conformance.hpp"

namespace gpubridge::compute {
namespace {

using testing::strictly_on;

// A graph as the kernels take it: CSR arrays of float64.
struct Csr {
  std::string name;
  std::vector<double> offsets, neighbors, weights;
  std::size_t nodes() const { return offsets.size() - 1; }
};

// Arcs (u, v, w) grouped by source in the given order (parallel arcs and self-loops kept).
Csr csr_of(std::string name, std::size_t n, const std::vector<std::tuple<std::size_t, std::size_t, double>>& arcs) {
  std::vector<std::vector<std::pair<std::size_t, double>>> rows(n);
  for (const auto& [u, v, w] : arcs) rows[u].emplace_back(v, w);
  Csr g{std::move(name), {0}, {}, {}};
  for (const auto& row : rows) {
    for (const auto& [v, w] : row) {
      g.neighbors.push_back(static_cast<double>(v));
      g.weights.push_back(w);
    }
    g.offsets.push_back(static_cast<double>(g.neighbors.size()));
  }
  return g;
}

std::vector<std::tuple<std::size_t, std::size_t, double>> both_ways(
    const std::vector<std::tuple<std::size_t, std::size_t, double>>& edges) {
  std::vector<std::tuple<std::size_t, std::size_t, double>> arcs;
  for (const auto& [u, v, w] : edges) {
    arcs.emplace_back(u, v, w);
    if (u != v) arcs.emplace_back(v, u, w);
  }
  return arcs;
}

Csr path_graph(std::size_t n) {
  std::vector<std::tuple<std::size_t, std::size_t, double>> edges;
  for (std::size_t u = 0; u + 1 < n; ++u) edges.emplace_back(u, u + 1, 0.5 + static_cast<double>(u % 7) * 0.25);
  return csr_of("path", n, both_ways(edges));
}

Csr star_graph(std::size_t leaves) {
  std::vector<std::tuple<std::size_t, std::size_t, double>> edges;
  for (std::size_t v = 1; v <= leaves; ++v) edges.emplace_back(0, v, 1.0 + static_cast<double>(v % 3));
  return csr_of("star", leaves + 1, both_ways(edges));
}

// Two cycles and an isolated node (9), with a directed tail 10 -> 11.
Csr components_graph() {
  auto arcs = both_ways({{0, 1, 1}, {1, 2, 2}, {2, 3, 1}, {3, 0, 5}, {4, 5, 1}, {5, 6, 1}, {6, 7, 3}, {7, 8, 1}, {8, 4, 1}});
  arcs.emplace_back(10, 11, 2.0);
  return csr_of("components", 12, arcs);
}

Csr self_loop_graph() {
  return csr_of("self-loops", 5, {{0, 0, 1}, {0, 1, 2}, {1, 1, 0.5}, {1, 2, 1}, {2, 2, 3}, {2, 3, 1}, {3, 3, 1}, {4, 4, 1}});
}

// Parallel arcs stay separate arcs in the CSR (with different weights).
Csr parallel_arc_graph() {
  return csr_of("parallel arcs", 4,
                {{0, 1, 5}, {0, 1, 1}, {0, 1, 3}, {1, 2, 2}, {1, 2, 0.25}, {0, 2, 4}, {2, 3, 1}, {2, 3, 1}, {3, 0, 2}});
}

Csr random_graph(std::size_t n, std::size_t m, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> node(0, n - 1);
  std::uniform_real_distribution<double> weight(0.0, 10.0);
  std::vector<std::tuple<std::size_t, std::size_t, double>> arcs;
  for (std::size_t i = 0; i < m; ++i) arcs.emplace_back(node(rng), node(rng), weight(rng));
  return csr_of("random directed", n, arcs);
}

// karate.gml (1-based ids, undirected, unweighted): both directions, weight 1.
Csr karate_graph() {
  std::ifstream in(testing::shared_data_dir(GB_SHARED_DATA_DIR) + "/graphs/karate.gml");
  EXPECT_TRUE(in.good()) << "cannot open karate.gml";
  std::vector<std::tuple<std::size_t, std::size_t, double>> edges;
  std::string word;
  std::size_t source = 0, nodes = 0;
  while (in >> word) {
    std::size_t value = 0;
    if (word == "id" && in >> value) nodes = std::max(nodes, value);
    if (word == "source" && in >> value) source = value;
    if (word == "target" && in >> value) edges.emplace_back(source - 1, value - 1, 1.0);
  }
  EXPECT_EQ(nodes, 34u);
  EXPECT_EQ(edges.size(), 78u);
  return csr_of("karate", nodes, both_ways(edges));
}

std::vector<Csr> test_graphs() {
  return {path_graph(300), star_graph(500), components_graph(), self_loop_graph(), parallel_arc_graph(),
          random_graph(10000, 100000, 7), karate_graph()};
}

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> out(t.count());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = t.at(i);
  return out;
}

KernelCall call_of(const std::string& kernel, const Csr& g, std::vector<double> scalars, bool with_weights) {
  KernelCall call{kernel, DType::f64, {TensorView(g.offsets), TensorView(g.neighbors)}, std::move(scalars)};
  if (with_weights) call.inputs.emplace_back(g.weights);
  return call;
}

// Runs the call on the CPU and on OpenCL; both must succeed, OpenCL without fallback.
std::pair<std::vector<double>, std::vector<double>> run_both(Executor& ex, const KernelCall& call) {
  auto cpu = ex.run(call, strictly_on(BackendChoice::cpu));
  EXPECT_TRUE(cpu.ok()) << cpu.error().to_string();
  auto gpu = ex.run(call, strictly_on(BackendChoice::opencl));
  EXPECT_TRUE(gpu.ok()) << gpu.error().to_string();
  if (!cpu.ok() || !gpu.ok()) return {};
  EXPECT_EQ(gpu->report.backend, BackendKind::opencl);
  EXPECT_EQ(gpu->report.fallback, FallbackReason::none);
  return {to_doubles(cpu->outputs.at(0)), to_doubles(gpu->outputs.at(0))};
}

class GraphKernelsOpenCl : public ::testing::Test {
 protected:
  void SetUp() override { GB_REQUIRE_BACKEND(ex, BackendKind::opencl); }
  std::unique_ptr<Executor> ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
};

TEST_F(GraphKernelsOpenCl, BfsLevelsEqualTheCpu) {
  for (const Csr& g : test_graphs()) {
    for (std::size_t source : {std::size_t{0}, g.nodes() / 2, g.nodes() - 1}) {
      SCOPED_TRACE(g.name + " from " + std::to_string(source));
      const auto [cpu, gpu] = run_both(*ex, call_of("graph.bfs", g, {double(source)}, false));
      ASSERT_EQ(gpu.size(), g.nodes());
      EXPECT_EQ(gpu, cpu);
    }
  }
}

TEST_F(GraphKernelsOpenCl, SsspDistancesEqualDijkstra) {
  for (const Csr& g : test_graphs()) {
    for (std::size_t source : {std::size_t{0}, g.nodes() / 2, g.nodes() - 1}) {
      SCOPED_TRACE(g.name + " from " + std::to_string(source));
      const auto [cpu, gpu] = run_both(*ex, call_of("graph.sssp", g, {double(source)}, true));
      ASSERT_EQ(gpu.size(), g.nodes());
      std::size_t reachable = 0;
      for (std::size_t v = 0; v < gpu.size(); ++v) {
        if (std::isinf(cpu[v])) {
          EXPECT_TRUE(std::isinf(gpu[v]) && gpu[v] > 0) << "node " << v << ": " << gpu[v];
        } else {
          ++reachable;
          ASSERT_LE(std::abs(gpu[v] - cpu[v]), 1e-12 * std::abs(cpu[v])) << "node " << v;
        }
      }
      EXPECT_GE(reachable, 1u);
    }
  }
}

TEST_F(GraphKernelsOpenCl, PagerankMatchesTheCpu) {
  for (const Csr& g : test_graphs()) {
    for (double weighted : {0.0, 1.0}) {
      SCOPED_TRACE(g.name + (weighted != 0 ? " weighted" : " unweighted"));
      const double tolerance = 1e-6 * static_cast<double>(g.nodes());  // networkx's default tol * n
      const auto [cpu, gpu] = run_both(*ex, call_of("graph.pagerank", g, {0.85, tolerance, weighted}, true));
      ASSERT_EQ(gpu.size(), g.nodes());
      double sum = 0;
      for (std::size_t v = 0; v < gpu.size(); ++v) {
        ASSERT_NEAR(gpu[v], cpu[v], 1e-9) << "node " << v;
        sum += gpu[v];
      }
      EXPECT_NEAR(sum, 1.0, 1e-9);
    }
  }
}

TEST_F(GraphKernelsOpenCl, DampingZeroAndTinyToleranceStillMatch) {
  const Csr g = random_graph(500, 3000, 11);
  for (const auto& [damping, tolerance] : {std::pair{0.0, 1e-3}, std::pair{0.5, 1e-14}, std::pair{0.99, 1e-10}}) {
    SCOPED_TRACE("damping " + std::to_string(damping));
    const auto [cpu, gpu] = run_both(*ex, call_of("graph.pagerank", g, {damping, tolerance, 1.0}, true));
    ASSERT_EQ(gpu.size(), cpu.size());
    for (std::size_t v = 0; v < gpu.size(); ++v) ASSERT_NEAR(gpu[v], cpu[v], 1e-9) << "node " << v;
  }
}

// The device-side validation fails as the CPU does, with the same message.
TEST_F(GraphKernelsOpenCl, InvalidArraysGiveTheCpuError) {
  struct Case {
    std::string what, kernel;
    Csr graph;
    std::vector<double> scalars;
  };
  const Csr good = parallel_arc_graph();
  auto with = [&](auto change) {
    Csr g = good;
    change(g);
    return g;
  };
  const std::vector<Case> cases{
      {"decreasing offsets", "graph.bfs", with([](Csr& g) { g.offsets[2] = 1; }), {0}},
      {"fractional offset", "graph.sssp", with([](Csr& g) { g.offsets[1] = 2.5; }), {0}},
      {"offset beyond m", "graph.pagerank", with([](Csr& g) { g.offsets[3] = 100; }), {0.85, 1e-6, 0}},
      {"NaN offset", "graph.bfs", with([](Csr& g) { g.offsets[1] = std::nan(""); }), {0}},
      {"offsets not starting at 0", "graph.bfs", with([](Csr& g) { g.offsets[0] = 1; }), {0}},
      {"offsets not ending at m", "graph.sssp", with([](Csr& g) { g.offsets[4] = 8; }), {0}},
      {"neighbour out of range", "graph.sssp", with([](Csr& g) { g.neighbors[5] = 4; }), {0}},
      {"negative neighbour", "graph.bfs", with([](Csr& g) { g.neighbors[0] = -1; }), {0}},
      {"fractional neighbour", "graph.pagerank", with([](Csr& g) { g.neighbors[2] = 0.5; }), {0.85, 1e-6, 1}},
      {"negative weight (sssp)", "graph.sssp", with([](Csr& g) { g.weights[4] = -0.25; }), {0}},
      {"negative weight (weighted pagerank)", "graph.pagerank", with([](Csr& g) { g.weights[7] = -2; }),
       {0.85, 1e-6, 1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const KernelCall call = call_of(c.kernel, c.graph, c.scalars, c.kernel != "graph.bfs");
    auto cpu = ex->run(call, strictly_on(BackendChoice::cpu));
    auto gpu = ex->run(call, strictly_on(BackendChoice::opencl));
    ASSERT_FALSE(cpu.ok());
    ASSERT_FALSE(gpu.ok());
    EXPECT_EQ(gpu.error().code(), ErrorCode::invalid_argument);
    EXPECT_EQ(gpu.error().message(), cpu.error().message());
  }
  // Unweighted PageRank ignores the weights, negative ones included (as the CPU).
  const Csr negative = with([](Csr& g) { g.weights[0] = -1; });
  const auto [cpu, gpu] = run_both(*ex, call_of("graph.pagerank", negative, {0.85, 1e-8, 0}, true));
  ASSERT_EQ(gpu.size(), cpu.size());
  for (std::size_t v = 0; v < gpu.size(); ++v) EXPECT_NEAR(gpu[v], cpu[v], 1e-9);
}

TEST_F(GraphKernelsOpenCl, PagerankThatDoesNotConvergeIsAborted) {
  // 0 <-> 1 with 2 -> 0: the start is not stationary and the deviation alternates in sign,
  // shrinking by the damping 0.999999 per iteration: far from 1e-9 after 1000 iterations.
  const Csr g = csr_of("oscillating", 3, {{0, 1, 1}, {1, 0, 1}, {2, 0, 1}});
  const KernelCall call = call_of("graph.pagerank", g, {0.999999, 1e-9, 0}, true);
  auto cpu = ex->run(call, strictly_on(BackendChoice::cpu));
  auto gpu = ex->run(call, strictly_on(BackendChoice::opencl));
  ASSERT_FALSE(cpu.ok());
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(cpu.error().code(), ErrorCode::aborted);
  EXPECT_EQ(gpu.error().code(), ErrorCode::aborted) << gpu.error().to_string();
  EXPECT_NE(gpu.error().message().find("no convergence in 1000 iterations"), std::string::npos) << gpu.error().message();
}

// The CPU implementation on its own (no OpenCL needed): the arrays are read in place, and a bad
// array is named exactly (the GPU recipes reproduce these messages, see above).
TEST(GraphKernelsCpu, InvalidArraysAreNamed) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  ASSERT_NE(ex, nullptr);
  const Csr good = parallel_arc_graph();
  auto with = [&](auto change) {
    Csr g = good;
    change(g);
    return g;
  };
  const std::vector<std::tuple<std::string, Csr, std::vector<double>, std::string>> cases{
      {"graph.bfs", with([](Csr& g) { g.offsets[2] = 1; }), {0}, "graph.bfs: row_offsets decrease at 2"},
      {"graph.sssp", with([](Csr& g) { g.offsets[1] = 2.5; }), {0},
       "graph.sssp: row_offsets[1] = 2.500000 is not an offset in [0, m]"},
      {"graph.bfs", with([](Csr& g) { g.offsets[0] = 1; }), {0},
       "graph.bfs: row_offsets must start at 0 and end at m = 9"},
      {"graph.bfs", with([](Csr& g) { g.offsets[3] = std::nan(""); }), {0},
       "graph.bfs: row_offsets[3] = nan is not an offset in [0, m]"},
      {"graph.pagerank", with([](Csr& g) { g.offsets[4] = 8; }), {0.85, 1e-6, 0},
       "graph.pagerank: row_offsets must start at 0 and end at m = 9"},
      {"graph.sssp", with([](Csr& g) { g.neighbors[5] = 4; }), {0},
       "graph.sssp: neighbors[5] = 4.000000 is not a node index below 4"},
      {"graph.pagerank", with([](Csr& g) { g.neighbors[2] = 0.5; }), {0.85, 1e-6, 1},
       "graph.pagerank: neighbors[2] = 0.500000 is not a node index below 4"},
      {"graph.sssp", with([](Csr& g) { g.weights[4] = -0.25; }), {0},
       "graph.sssp: sssp_dijkstra: edge 1 -> 2 has negative weight -0.25 (Dijkstra needs non-negative weights)"},
  };
  for (const auto& [kernel, graph, scalars, message] : cases) {
    SCOPED_TRACE(message);
    auto r = ex->run(call_of(kernel, graph, scalars, kernel != "graph.bfs"), strictly_on(BackendChoice::cpu));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
    EXPECT_EQ(r.error().message(), message);
  }
}

// The catalog's CPU results are the sample algorithms' on the same arrays.
TEST(GraphKernelsCpu, ResultsAreTheSampleAlgorithms) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  ASSERT_NE(ex, nullptr);
  const Csr g = random_graph(3000, 20000, 5);
  auto levels = ex->run(call_of("graph.bfs", g, {7}, false), strictly_on(BackendChoice::cpu));
  ASSERT_TRUE(levels.ok()) << levels.error().to_string();
  auto distances = ex->run(call_of("graph.sssp", g, {7}, true), strictly_on(BackendChoice::cpu));
  ASSERT_TRUE(distances.ok()) << distances.error().to_string();
  // Reference: Bellman-Ford relaxation and a queue BFS over the same arrays.
  std::vector<double> level(g.nodes(), -1), distance(g.nodes(), INFINITY);
  level[7] = 0;
  distance[7] = 0;
  std::vector<std::size_t> queue{7};
  for (std::size_t head = 0; head < queue.size(); ++head) {
    const std::size_t u = queue[head];
    for (auto e = static_cast<std::size_t>(g.offsets[u]); e < static_cast<std::size_t>(g.offsets[u + 1]); ++e) {
      const auto v = static_cast<std::size_t>(g.neighbors[e]);
      if (level[v] < 0) {
        level[v] = level[u] + 1;
        queue.push_back(v);
      }
    }
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t u = 0; u < g.nodes(); ++u) {
      for (auto e = static_cast<std::size_t>(g.offsets[u]); e < static_cast<std::size_t>(g.offsets[u + 1]); ++e) {
        const auto v = static_cast<std::size_t>(g.neighbors[e]);
        if (distance[u] + g.weights[e] < distance[v]) {
          distance[v] = distance[u] + g.weights[e];
          changed = true;
        }
      }
    }
  }
  EXPECT_EQ(to_doubles(levels->outputs.at(0)), level);
  const auto got = to_doubles(distances->outputs.at(0));
  ASSERT_EQ(got.size(), distance.size());
  for (std::size_t v = 0; v < got.size(); ++v) {
    if (std::isinf(distance[v])) {
      EXPECT_TRUE(std::isinf(got[v])) << v;
    } else {
      EXPECT_NEAR(got[v], distance[v], 1e-9 * std::max(1.0, distance[v])) << v;
    }
  }
}

}  // namespace
}  // namespace gpubridge::compute

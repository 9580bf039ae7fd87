// Graph samples on GML files and whitespace edge lists:
//
//   gpubridge sample bfs      --graph g.gml --source ID      --out levels.tsv [--backend B]
//   gpubridge sample pagerank --graph g.gml [--weighted]     --out ranks.tsv  [--backend B]
//   gpubridge sample sssp     --graph g.gml --source ID      --out dist.tsv   [--backend B]
//
// The graph is directed or undirected as the file says (GML `directed`; an edge list's
// `# directed` / `# undirected` line, else directed); parallel edges are merged with their weights
// summed; weights come from the `weight` or `value` attribute (1 when absent). The kernels run on
// a CSR form built on the host (row offsets, neighbours, weights as float64 arrays: node indices
// are exact integers below 2^53). Outputs are TSV `node_id<TAB>value` for every node, sorted by
// node id: BFS levels (-1 unreachable), PageRank (damping 0.85, L1 tolerance 1e-10, dangling
// nodes spread uniformly), shortest distances (`inf` unreachable; negative weights are an error).
// Each result is checked against the CPU algorithm on the host.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "gpubridge/samples/algorithms.hpp"
#include "gpubridge/samples/io.hpp"
#include "gpubridge/server/silo.hpp"
#include "samples/programs/sample_list.hpp"

namespace gpubridge::samples {

namespace {

using Clock = std::chrono::steady_clock;

enum class GraphOp { bfs, pagerank, sssp };

struct GraphOptions {
  std::string graph, out;
  std::int64_t source = 0;
  bool source_given = false;
  bool weighted = false;
};

Result<Graph> read_graph(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".gml") return read_gml(path);
  return read_edge_list(path);
}

Result<SampleResult> run_graph(GraphOp op, const GraphOptions& o, server::Silo& silo, const SampleRun& run) {
  if (o.graph.empty()) return Error(ErrorCode::invalid_argument, "--graph is required (.gml or an edge list)");
  if (run.write_output) {
    if (o.out.empty()) return Error(ErrorCode::invalid_argument, "--out is required (.tsv)");
    if (std::filesystem::path(o.out).extension() != ".tsv") {
      return Error(ErrorCode::invalid_argument, "--out must end in .tsv (got '" + o.out + "')");
    }
  }
  if (op != GraphOp::pagerank && !o.source_given) return Error(ErrorCode::invalid_argument, "--source is required");
  auto graph = read_graph(o.graph);
  if (!graph) return graph.error();
  const std::size_t n = graph->node_ids.size();
  std::size_t source = 0;
  if (op != GraphOp::pagerank) {
    auto index = graph->index_of(o.source);
    if (!index) {
      return Error(ErrorCode::invalid_argument, "--source " + std::to_string(o.source) + " is not a node of " + o.graph);
    }
    source = *index;
  }
  if (op == GraphOp::sssp) {
    for (const auto& e : graph->edges) {
      if (e.weight < 0) {
        return Error(ErrorCode::invalid_argument,
                     "sssp needs non-negative weights: edge " + std::to_string(graph->node_ids[e.source]) + " -> " +
                         std::to_string(graph->node_ids[e.target]) + " has weight " + format_number(e.weight));
      }
    }
  }
  std::vector<Edge> edges;
  edges.reserve(graph->edges.size());
  for (const auto& e : graph->edges) edges.push_back({e.source, e.target, e.weight});
  auto csr = build_csr(n, edges, graph->directed);
  if (!csr) return csr.error();
  if (csr->neighbors.empty()) return Error(ErrorCode::invalid_argument, o.graph + ": the graph has no edges");
  const std::vector<double> offsets(csr->row_offsets.begin(), csr->row_offsets.end());
  const std::vector<double> neighbors(csr->neighbors.begin(), csr->neighbors.end());

  compute::KernelCall call;
  call.dtype = compute::DType::f64;
  switch (op) {
    case GraphOp::bfs:
      call.kernel = "graph.bfs";
      call.inputs = {compute::TensorView(offsets), compute::TensorView(neighbors)};
      call.scalars = {static_cast<double>(source)};
      break;
    case GraphOp::pagerank:
      call.kernel = "graph.pagerank";
      call.inputs = {compute::TensorView(offsets), compute::TensorView(neighbors), compute::TensorView(csr->weights)};
      call.scalars = {0.85, 1e-10, o.weighted ? 1.0 : 0.0};
      break;
    case GraphOp::sssp:
      call.kernel = "graph.sssp";
      call.inputs = {compute::TensorView(offsets), compute::TensorView(neighbors), compute::TensorView(csr->weights)};
      call.scalars = {static_cast<double>(source)};
      break;
  }
  SampleResult result;
  const auto t0 = Clock::now();
  auto r = run_kernel(silo, std::move(call), run.placement, result);
  result.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!r) return r.error();
  const auto out = r->outputs.at(0).as<double>();
  result.values.assign(out.begin(), out.end());

  // The host's CPU algorithm on the same CSR.
  double max_error = 0;
  switch (op) {
    case GraphOp::bfs: {
      auto levels = bfs_levels(*csr, source);
      if (!levels) return levels.error();
      for (std::size_t i = 0; i < n; ++i) max_error = std::max(max_error, std::abs(out[i] - double((*levels)[i])));
      result.check = "levels differ from the host BFS by at most " + format_number(max_error) + " (exact expected)";
      if (max_error != 0) return Error(ErrorCode::data_loss, "bfs: " + result.check);
      break;
    }
    case GraphOp::pagerank: {
      PageRankOptions po;
      po.weighted = o.weighted;
      auto ranks = pagerank(*csr, po);
      if (!ranks) return ranks.error();
      double sum = 0;
      for (std::size_t i = 0; i < n; ++i) {
        max_error = std::max(max_error, std::abs(out[i] - ranks->ranks[i]));
        sum += out[i];
      }
      result.check = "max |difference| from the host PageRank " + format_number(max_error) + " <= 1e-9; ranks sum to " +
                     format_number(sum);
      if (!(max_error <= 1e-9)) return Error(ErrorCode::data_loss, "pagerank: " + result.check);
      break;
    }
    case GraphOp::sssp: {
      auto dist = sssp_dijkstra(*csr, source);
      if (!dist) return dist.error();
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double e = (*dist)[i];
        const bool same = std::isinf(e) ? std::isinf(out[i]) : std::abs(out[i] - e) <= 1e-12 * std::max(1.0, std::abs(e));
        if (!same) ++wrong;
      }
      result.check = std::to_string(wrong) + " of " + std::to_string(n) + " distances differ from the host Dijkstra";
      if (wrong != 0) return Error(ErrorCode::data_loss, "sssp: " + result.check);
      break;
    }
  }
  if (run.write_output) {
    Status written = Status{};
    if (op == GraphOp::bfs) {
      std::vector<std::int64_t> levels(out.begin(), out.end());
      written = write_node_values_tsv(o.out, graph->node_ids, levels);
    } else {
      written = write_node_values_tsv(o.out, graph->node_ids, std::span<const double>(out.data(), out.size()));
    }
    if (!written) return written.error();
    result.output = o.out;
  }
  return result;
}

std::shared_ptr<SampleDef> graph_sample(std::string name, std::string help, GraphOp op) {
  auto options = std::make_shared<GraphOptions>();
  auto def = std::make_shared<SampleDef>();
  def->name = std::move(name);
  def->help = std::move(help);
  def->add_options = [options, op](CLI::App& app) {
    app.add_option("--graph", options->graph, "Graph: .gml, or a whitespace edge list (u v [w] per line)");
    app.add_option("--out", options->out, "Result: TSV node_id<TAB>value, sorted by node id");
    if (op == GraphOp::pagerank) {
      app.add_flag("--weighted", options->weighted, "Use edge weights (weight or value attribute)");
    } else {
      app.add_option("--source", options->source, "Source node id (as in the input)")
          ->each([options](const std::string&) { options->source_given = true; });
    }
  };
  def->run = [options, op](server::Silo& silo, const SampleRun& run) { return run_graph(op, *options, silo, run); };
  return def;
}

}  // namespace

std::vector<std::shared_ptr<SampleDef>> graph_samples() {
  return {graph_sample("bfs", "breadth-first levels from a source node", GraphOp::bfs),
          graph_sample("pagerank", "PageRank (damping 0.85, tolerance 1e-10)", GraphOp::pagerank),
          graph_sample("sssp", "single-source shortest paths (non-negative weights)", GraphOp::sssp)};
}

}  // namespace gpubridge::samples

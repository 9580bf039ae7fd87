#pragma once
// The graph kernels of the built-in catalog (float64): graph.bfs, graph.pagerank, graph.sssp over
// a graph in CSR form - row offsets (n + 1), neighbours (m) and, for pagerank and sssp, weights
// (m) - with node indices held exactly as float64 whole numbers (below 2^53). An undirected graph
// lists each edge in both directions. CPU implementations are the sample algorithms' span forms,
// reading the float64 arrays in place and writing the output tensor directly; GPU recipes
// (CUDA and OpenCL, gpu/graph_recipes.cpp) need fp64 and take fewer than 2^31 nodes and arcs.
#include "gpubridge/compute/kernel_catalog.hpp"

namespace gpubridge::compute::detail {

Status add_graph_kernels(KernelCatalog& catalog);

}  // namespace gpubridge::compute::detail

#pragma once
// GPU recipes of the graph kernels (graph_recipes.cpp; entry points in graph_source.cpp):
// graph.bfs, graph.sssp and graph.pagerank over CSR arrays of float64. The recipes validate the
// arrays on the device (a check kernel, its verdict read back) before running the algorithm and
// take graphs with n + 1 and m below 2^31. Immutable, safe to share between threads.
#include "gpu_recipe.hpp"

namespace gpubridge::compute::detail {

extern const GpuRecipe kGraphBfsRecipe;
extern const GpuRecipe kGraphSsspRecipe;
extern const GpuRecipe kGraphPagerankRecipe;

}  // namespace gpubridge::compute::detail

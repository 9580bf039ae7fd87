#pragma once
// Multi-kernel pipelines: an ordered list of catalog kernel calls ("stages") in which a stage
// reads external inputs (host data) or the outputs of earlier stages. Executor::run_pipeline
// runs a whole pipeline on one device with its intermediates kept there: one upload of the
// external inputs, the stages' launches back to back on one queue, one download per returned
// output. On CUDA the launches are captured into a CUDA graph the first time a pipeline of the
// same shape key runs and replayed afterwards (see PipelineLaunch).
//
// Contract:
// - validate_pipeline() checks every stage with the catalog's shape rules before anything runs:
//   each stage's input lengths are known from the external inputs and the earlier stages'
//   output counts. A stage may only read external inputs and strictly earlier stages.
// - External input views must stay valid until the pipeline completes.
// - Placement: the pipeline runs on one device that can run every stage; otherwise the whole
//   pipeline runs on the CPU and the report says why (never a partial run on a device).
// Types here are plain values; thread-safety is that of the Executor that runs them.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/compute/dtype.hpp"
#include "gpubridge/compute/kernel_catalog.hpp"
#include "gpubridge/compute/tensor.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute {

// Where a stage input comes from.
struct StageInput {
  enum class Source : std::uint8_t { external, stage };
  Source source = Source::external;
  std::size_t index = 0;  // into Pipeline::inputs (external) or Pipeline::stages (stage)

  static StageInput external(std::size_t i) { return {Source::external, i}; }
  static StageInput stage(std::size_t i) { return {Source::stage, i}; }
};

struct PipelineStage {
  std::string kernel;               // catalog id
  std::vector<StageInput> inputs;   // one per signature input
  std::vector<double> scalars;      // as for KernelCall::scalars
  bool keep_output = false;         // also return this stage's output (the last stage's always is)
};

struct Pipeline {
  DType dtype = DType::f32;          // every stage, input and output has this element type
  std::vector<TensorView> inputs;    // external inputs; memory valid until completion
  std::vector<PipelineStage> stages; // run in order; at least one
};

// The validated shape of one stage.
struct StageShape {
  std::vector<std::size_t> input_counts;  // each input's length
  std::size_t n = 0;                      // the first input's length
  std::size_t output_count = 0;
};

// Checks the whole pipeline and returns each stage's shape. Errors name the stage:
// invalid_argument (no stages, an input index out of range, a stage input from the same or a
// later stage, an external input of another dtype or without data, what the catalog's shape
// rules reject), not_found (unknown kernel), out_of_range (too many elements).
Result<std::vector<StageShape>> validate_pipeline(const KernelCatalog& catalog, const Pipeline& pipeline);

// How a device ran the pipeline's launches.
enum class PipelineLaunch : std::uint8_t {
  per_stage,       // each stage as its own call (the CPU, or a backend without device pipelines)
  stream,          // launches back to back on one queue/stream, intermediates on the device
  graph_captured,  // CUDA: captured into a graph on this run (then launched and cached)
  graph_replayed,  // CUDA: a cached graph of the same shape key was launched
};
std::string_view to_string(PipelineLaunch l) noexcept;  // "per_stage", "stream", ...

}  // namespace gpubridge::compute

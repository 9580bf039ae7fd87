// Pipeline validation and the default (stage by stage) backend implementation.
#include "gpubridge/compute/pipeline.hpp"

#include <algorithm>
#include <array>
#include <new>

#include "compute/backend.hpp"

namespace gpubridge::compute {

std::string_view to_string(PipelineLaunch l) noexcept {
  switch (l) {
    case PipelineLaunch::per_stage: return "per_stage";
    case PipelineLaunch::stream: return "stream";
    case PipelineLaunch::graph_captured: return "graph_captured";
    case PipelineLaunch::graph_replayed: return "graph_replayed";
  }
  return "unknown";
}

namespace {

std::string stage_name(std::size_t i, std::string_view kernel) {
  return "stage " + std::to_string(i) + " (" + std::string(kernel) + ")";
}

}  // namespace

Result<std::vector<StageShape>> validate_pipeline(const KernelCatalog& catalog, const Pipeline& pipeline) {
  if (pipeline.stages.empty()) return Error(ErrorCode::invalid_argument, "a pipeline needs at least one stage");
  for (std::size_t i = 0; i < pipeline.inputs.size(); ++i) {
    const TensorView& in = pipeline.inputs[i];
    const std::string name = "pipeline input " + std::to_string(i);
    if (in.dtype != pipeline.dtype) {
      return Error(ErrorCode::invalid_argument, name + " has element type " + std::string(to_string(in.dtype)) +
                                                    ", the pipeline is " + std::string(to_string(pipeline.dtype)));
    }
    if (in.count == 0) return Error(ErrorCode::invalid_argument, name + " is empty");
    if (in.data == nullptr) return Error(ErrorCode::invalid_argument, name + " has no data");
  }
  std::vector<StageShape> shapes;
  shapes.reserve(pipeline.stages.size());
  for (std::size_t s = 0; s < pipeline.stages.size(); ++s) {
    const PipelineStage& stage = pipeline.stages[s];
    const std::string where = stage_name(s, stage.kernel);
    // Stage inputs are checked by length: earlier stages' outputs have no data yet (external
    // inputs' types and addresses were checked above).
    std::vector<std::size_t> counts;
    counts.reserve(stage.inputs.size());
    for (std::size_t k = 0; k < stage.inputs.size(); ++k) {
      const StageInput& from = stage.inputs[k];
      if (from.source == StageInput::Source::external) {
        if (from.index >= pipeline.inputs.size()) {
          return Error(ErrorCode::invalid_argument,
                       where + ": input " + std::to_string(k) + " names pipeline input " + std::to_string(from.index) +
                           ", the pipeline has " + std::to_string(pipeline.inputs.size()));
        }
        counts.push_back(pipeline.inputs[from.index].count);
      } else {
        if (from.index >= s) {
          return Error(ErrorCode::invalid_argument,
                       where + ": input " + std::to_string(k) + " reads stage " + std::to_string(from.index) +
                           ", which does not run before it (a stage reads only earlier stages)");
        }
        counts.push_back(shapes[from.index].output_count);
      }
    }
    auto shape = catalog.validate_shape(stage.kernel, pipeline.dtype, counts, stage.scalars);
    if (!shape) return shape.error().with_context(where);
    StageShape out;
    out.input_counts = std::move(counts);
    out.n = shape->n;
    out.output_count = shape->output_count;
    shapes.push_back(std::move(out));
  }
  return shapes;
}

namespace {

// One pipeline run stage by stage through Backend::execute; stage i starts when stage i-1
// completed, so the members are touched by one thread at a time (each completion happens after
// the previous stage's).
struct StageByStage {
  Backend* backend = nullptr;
  int ordinal = 0;
  std::shared_ptr<const PreparedPipeline> pipeline;
  PipelineDone done;
  std::vector<Tensor> outputs;
  std::vector<StageTiming> timings;
};

void run_stage(const std::shared_ptr<StageByStage>& run, std::size_t i) {
  const PreparedPipeline& p = *run->pipeline;
  if (i == p.stages.size()) {
    PipelineOutput out;
    for (std::size_t s = 0; s < p.stages.size(); ++s) {
      if (!p.stages[s].returned) run->outputs[s] = Tensor();
    }
    out.outputs = std::move(run->outputs);
    out.launch = PipelineLaunch::per_stage;
    out.timings = std::move(run->timings);
    PipelineDone done = std::move(run->done);
    done(std::move(out));
    return;
  }
  const PreparedStage& stage = p.stages[i];
  std::shared_ptr<PreparedCall> call;
  try {
    call = std::make_shared<PreparedCall>();
    call->def = stage.def;
    call->dtype = p.dtype;
    call->n = stage.shape.n;
    call->output_count = stage.shape.output_count;
    call->scalars = stage.scalars;
    for (const StageInput& from : stage.inputs) {
      call->inputs.push_back(from.source == StageInput::Source::external ? p.inputs[from.index]
                                                                          : run->outputs[from.index].view());
    }
  } catch (const std::bad_alloc&) {
    PipelineDone done = std::move(run->done);
    done(Error(ErrorCode::resource_exhausted, "out of host memory preparing " + stage_name(i, stage.def->id)));
    return;
  }
  const auto started = std::chrono::steady_clock::now();
  run->backend->execute(run->ordinal, std::move(call), [run, i, started](Result<Tensor> r) {
    const PreparedStage& st = run->pipeline->stages[i];
    if (!r) {
      PipelineDone done = std::move(run->done);
      done(r.error().with_context(stage_name(i, st.def->id)));
      return;
    }
    run->timings.push_back({i, started, std::chrono::steady_clock::now() - started});
    run->outputs[i] = std::move(r).value();
    run_stage(run, i + 1);
  });
}

}  // namespace

void Backend::execute_pipeline(int ordinal, std::shared_ptr<const PreparedPipeline> pipeline, PipelineDone done) {
  std::shared_ptr<StageByStage> run;
  try {
    run = std::make_shared<StageByStage>();
    run->outputs.resize(pipeline->stages.size());
    run->timings.reserve(pipeline->stages.size());
  } catch (const std::bad_alloc&) {
    done(Error(ErrorCode::resource_exhausted, "out of host memory starting a pipeline"));
    return;
  }
  run->backend = this;
  run->ordinal = ordinal;
  run->pipeline = std::move(pipeline);
  run->done = std::move(done);
  run_stage(run, 0);
}

}  // namespace gpubridge::compute

// A 10-kernel pipeline run as one pipeline (intermediates on the device; on CUDA a CUDA graph
// captured once and replayed) against the same 10 kernels called one by one through the executor
// (each result back on the host and uploaded again), measured in the same run.
//
//   pipeline/<b>/<n>/pipeline         Executor::run_pipeline of y_{i+1} = 1.0001 * y_i + x (vector.axpy,
//                                     10 stages), pinned to backend b (no fallback); the label says
//                                     how the device ran it (graph_replayed, stream, per_stage)
//   pipeline/<b>/<n>/kernel_by_kernel the same 10 vector.axpy calls with Executor::run, each on the
//                                     previous call's output
// Arg n = elements per vector (256 and 65536). Ratio: pipeline / kernel_by_kernel (< 1: the
// pipeline is faster by that factor). Issue 4 asks for graph replay against launches kernel by kernel.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "common/ratio_report.hpp"
#include "compute/compute_fixture.hpp"
#include "gpubridge/compute/pipeline.hpp"

namespace gpubridge::bench {
namespace {

using compute::BackendKind;
constexpr int kStages = 10;
constexpr double kAlpha = 1.0001;

compute::Pipeline make_pipeline(const std::vector<float>& x, const std::vector<float>& y0) {
  compute::Pipeline p;
  p.dtype = compute::DType::f32;
  p.inputs = {compute::TensorView(x), compute::TensorView(y0)};
  for (int s = 0; s < kStages; ++s) {
    p.stages.push_back({"vector.axpy",
                        {compute::StageInput::external(0),
                         s == 0 ? compute::StageInput::external(1) : compute::StageInput::stage(s - 1)},
                        {kAlpha},
                        false});
  }
  return p;
}

void pipeline_run(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> x(n, 0.5f), y0(n, 1.0f);
  auto warm = ex->run_pipeline(make_pipeline(x, y0), pinned_to(backend));
  if (!warm) return skip(state, "run_pipeline", warm.error().to_string());
  std::string launch;
  for (auto _ : state) {
    auto r = ex->run_pipeline(make_pipeline(x, y0), pinned_to(backend));
    if (!r) return skip(state, "run_pipeline", r.error().to_string());
    launch = std::string(compute::to_string(r->launch));
  }
  state.SetLabel(device_label(warm->report.device_id) + ", " + launch);
}

void kernel_by_kernel_run(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> x(n, 0.5f), y0(n, 1.0f);
  for (auto _ : state) {
    compute::Tensor y;
    for (int s = 0; s < kStages; ++s) {
      const compute::TensorView in = s == 0 ? compute::TensorView(y0) : y.view();
      auto r = ex->run({"vector.axpy", compute::DType::f32, {compute::TensorView(x), in}, {kAlpha}}, pinned_to(backend));
      if (!r) return skip(state, "run", r.error().to_string());
      y = std::move(r->outputs[0]);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(backend_label(backend));
}

void register_all() {
  for (BackendKind backend : {BackendKind::cpu, BackendKind::cuda, BackendKind::opencl}) {
    const std::string b(compute::to_string(backend));
    const std::string prefix = "pipeline/" + b + "/";
    benchmark::RegisterBenchmark((prefix + "pipeline").c_str(), pipeline_run, backend)
        ->Arg(256)->Arg(65536)->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((prefix + "kernel_by_kernel").c_str(), kernel_by_kernel_run, backend)
        ->Arg(256)->Arg(65536)->UseRealTime()->Unit(benchmark::kMicrosecond);
    register_pair({"pipeline10", b, prefix + "pipeline", prefix + "kernel_by_kernel"});
  }
}

}  // namespace
}  // namespace gpubridge::bench

int main(int argc, char** argv) {
  gpubridge::bench::register_all();
  return gpubridge::bench::run_with_ratio_report(
      argc, argv,
      {.help = "bench_pipeline: a 10-kernel pipeline (CUDA graph replay on CUDA) against the same kernels called one by one.\n\n"});
}

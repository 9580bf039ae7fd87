// A 10-kernel pipeline run as one pipeline (intermediates on the device; on CUDA a CUDA graph
// captured once and replayed) against the same 10 kernels launched one by one, measured in the
// same run.
//
//   pipeline/<b>/<n>/pipeline         Executor::run_pipeline of y_{i+1} = 1.0001 * x + y_i (vector.axpy,
//                                     10 stages), pinned to backend b (no fallback); the label says
//                                     how the device ran it (graph_replayed, stream, per_stage)
//   pipeline/cuda/<n>/stream          the same pipeline on an executor with cuda_graphs = false: the
//                                     10 kernels launched one by one on the stream, intermediates on
//                                     the device, one upload and one download (as the graph's run)
//   pipeline/<b>/<n>/kernel_by_kernel the same 10 vector.axpy calls with Executor::run, each on the
//                                     previous call's output (each result back on the host and
//                                     uploaded again)
// Arg n = elements per vector (256 and 65536). Ratios (< 1: the subject is faster by that factor):
// pipeline / kernel_by_kernel on every backend; on CUDA also pipeline / stream, graph replay
// against the same launches kernel by kernel (what issue 4 asks for). The warm-up's and the last
// iteration's outputs are checked against the recurrence computed on the host.
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
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

// y_10 of the recurrence from y_0 = 1, x = 0.5, in double: every element of every run's output.
double expected_y10() {
  double y = 1.0;
  for (int s = 0; s < kStages; ++s) y = kAlpha * 0.5 + y;
  return y;
}

// Empty when every element of `out` is y_10 (to f32 rounding of ten steps).
std::string check_y10(const compute::Tensor& out, std::size_t n) {
  if (out.count() != n) return "output has " + std::to_string(out.count()) + " elements, expected " + std::to_string(n);
  const float* v = static_cast<const float*>(out.data());
  const double want = expected_y10();
  for (std::size_t i = 0; i < n; ++i) {
    if (std::abs(v[i] - want) > 1e-5 * want) {
      return "element " + std::to_string(i) + " is " + std::to_string(v[i]) + ", expected " + std::to_string(want);
    }
  }
  return "";
}

// An executor whose CUDA pipelines never use graphs (the stream reference); skips when it has no
// CUDA device.
compute::Executor* stream_executor(benchmark::State& state) {
  static std::unique_ptr<compute::Executor>* held = nullptr;
  if (held == nullptr) {
    held = new std::unique_ptr<compute::Executor>;
    on_shutdown([] {
      delete held;
      held = nullptr;
    });
    auto created = compute::Executor::create({.enable_cuda = true, .enable_opencl = false, .cuda_graphs = false});
    if (created) *held = std::move(created).value();
  }
  if (*held == nullptr || !first_device(BackendKind::cuda)) {
    skip(state, "executor with cuda_graphs = false", "no cuda device");
    return nullptr;
  }
  return held->get();
}

void run_pipelines(benchmark::State& state, compute::Executor& ex, BackendKind backend) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> x(n, 0.5f), y0(n, 1.0f);
  auto warm = ex.run_pipeline(make_pipeline(x, y0), pinned_to(backend));
  if (!warm) return skip(state, "run_pipeline", warm.error().to_string());
  if (std::string bad = check_y10(warm->output, n); !bad.empty()) return skip(state, "run_pipeline", bad);
  std::string launch;
  compute::Tensor last;
  for (auto _ : state) {
    auto r = ex.run_pipeline(make_pipeline(x, y0), pinned_to(backend));
    if (!r) return skip(state, "run_pipeline", r.error().to_string());
    launch = std::string(compute::to_string(r->launch));
    last = std::move(r->output);
  }
  if (std::string bad = check_y10(last, n); !bad.empty()) return skip(state, "run_pipeline", bad);
  state.SetLabel(device_label(warm->report.device_id) + ", " + launch);
}

void pipeline_run(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  run_pipelines(state, *ex, backend);
}

void stream_run(benchmark::State& state) {
  compute::Executor* ex = stream_executor(state);
  if (ex == nullptr) return;
  run_pipelines(state, *ex, BackendKind::cuda);
}

void kernel_by_kernel_run(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<float> x(n, 0.5f), y0(n, 1.0f);
  compute::Tensor y;
  for (auto _ : state) {
    for (int s = 0; s < kStages; ++s) {
      const compute::TensorView in = s == 0 ? compute::TensorView(y0) : y.view();
      auto r = ex->run({"vector.axpy", compute::DType::f32, {compute::TensorView(x), in}, {kAlpha}}, pinned_to(backend));
      if (!r) return skip(state, "run", r.error().to_string());
      y = std::move(r->outputs[0]);
    }
  }
  if (std::string bad = check_y10(y, n); !bad.empty()) return skip(state, "run", bad);
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
    if (backend == BackendKind::cuda) {
      benchmark::RegisterBenchmark((prefix + "stream").c_str(), stream_run)
          ->Arg(256)->Arg(65536)->UseRealTime()->Unit(benchmark::kMicrosecond);
      register_pair({"graph_vs_stream", b, prefix + "pipeline", prefix + "stream"});
    }
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

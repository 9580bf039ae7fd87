#pragma once
// Shared state of the compute benchmarks, created on first use and never measured:
// - one Executor for every catalog benchmark (backend discovery, contexts, kernel builds) and one
//   raw CUDA / OpenCL context for every reference benchmark, released through the ratio report's
//   shutdown hooks (raw contexts first);
// - deterministic f32 inputs per length, whose sums are exact, so that every benchmark can check
//   its output once before it measures.
// Single-threaded: benchmarks run one at a time on the main thread.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "compute/raw_cuda.hpp"
#include "compute/raw_opencl.hpp"
#include "gpubridge/compute/executor.hpp"

namespace gpubridge::bench {

// The shared Executor (all backends enabled, default options); nullptr plus a SkipWithError
// ("no <backend> device: <reason from Executor::backends()>") when `backend` has no device.
compute::Executor* executor_for(benchmark::State& state, compute::BackendKind backend);

// The raw contexts on the device the catalog uses for that backend (CUDA device 0; the OpenCL
// device of the same name). nullptr plus a SkipWithError when the backend has no device (same
// message as executor_for) or the raw setup failed (the failing call and its error name).
RawCuda* raw_cuda_for(benchmark::State& state);
RawOpenCl* raw_opencl_for(benchmark::State& state);

// The device a call on `backend` is placed on (the best one of that backend), when there is one.
std::optional<compute::Device> first_device(compute::BackendKind backend);

compute::BackendChoice to_choice(compute::BackendKind backend);

// "cuda:0 NVIDIA H100 80GB HBM3" for "cuda:0": what benchmarks pass to state.SetLabel().
std::string device_label(const std::string& device_id);
// The label of the device a call on `backend` is placed on ("" when there is none).
std::string backend_label(compute::BackendKind backend);

struct HostInputs {
  std::vector<float> a, b;  // a[i] + b[i] is exact in f32
};
// Cached per length for the rest of the run.
const HostInputs& host_inputs(std::size_t n);
float expected_sum(std::size_t i);

// Empty when out[i] == a[i] + b[i] for all i < n; otherwise says where it first differs.
std::optional<std::string> check_sum(const float* out, std::size_t n);

// vector.add f32 of in.a and in.b.
compute::KernelCall add_call(const HostInputs& in);
compute::CallOptions pinned_to(compute::BackendKind backend);  // that backend, no fallback

// One catalog call before measuring (kernel build, pool warm-up): checks that it ran on `backend`
// and returned a + b, and labels the benchmark with the device. false after a SkipWithError.
bool catalog_warm_up(benchmark::State& state, compute::Executor& executor, const HostInputs& in,
                     compute::BackendKind backend);

// Skips the benchmark with "<what>: <message>" (Google Benchmark copies the text).
void skip(benchmark::State& state, const std::string& what, const std::string& message);

}  // namespace gpubridge::bench

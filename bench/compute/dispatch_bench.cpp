// Dispatch overhead: what one small call costs end to end, against the raw backend API doing the
// same work in the same run.
//
// Measured (per backend cpu, cuda, opencl; vector.add f32, n = Arg, 256 by default):
//   dispatch/<b>/catalog            Executor::run (submit + wait), {backend, no device id,
//                                   allow_fallback = false}: host inputs in, a fresh host output out.
//   dispatch/<b>/raw                the same add with the backend's own API, buffers preallocated:
//     cpu     the plain loop on the calling thread, into a preallocated output;
//     cuda    memcpy a, b into page-locked memory, one cudaMemcpyAsync H2D of [a | b],
//             cudaLaunchKernel (own NVRTC kernel), cudaMemcpyAsync D2H, cudaStreamSynchronize,
//             memcpy out of page-locked memory into the host output;
//     opencl  two clEnqueueWriteBuffer (non-blocking), clEnqueueNDRangeKernel (own kernel),
//             blocking clEnqueueReadBuffer into the host output.
//   dispatch_pipelined/<b>/catalog  64 Executor::submit futures, then all waited: throughput with
//                                   overlap (one iteration = 64 calls).
//   dispatch_pipelined/<b>/raw      64 round trips into 64 slots, then one wait: cpu 64 loops, cuda
//                                   64 round trips on one stream then one sync, opencl 64 enqueued
//                                   round trips then clFinish.
// Counters: items_per_second = calls per second; us_per_call = wall-clock microseconds per call.
// Ratio (printed after the run): catalog time / raw time per call, > 1 = the catalog's overhead.
// Every benchmark checks its output once before measuring; a backend without a device is skipped
// with the reason Executor::backends() gives.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "common/ratio_report.hpp"
#include "compute/compute_benchmarks.hpp"
#include "compute/compute_fixture.hpp"

namespace gpubridge::bench {

namespace {

using compute::BackendKind;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kDispatchN = 256;
constexpr std::size_t kBurst = 64;

std::size_t arg_n(const benchmark::State& state) { return static_cast<std::size_t>(state.range(0)); }

void set_call_counters(benchmark::State& state, Clock::duration elapsed, std::size_t calls_per_iteration) {
  if (state.error_occurred()) return;
  const double calls = static_cast<double>(state.iterations()) * static_cast<double>(calls_per_iteration);
  state.SetItemsProcessed(static_cast<std::int64_t>(calls));
  if (calls > 0) state.counters["us_per_call"] = std::chrono::duration<double, std::micro>(elapsed).count() / calls;
}

// ---- catalog ----

void catalog_single(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  const HostInputs& in = host_inputs(arg_n(state));
  if (!catalog_warm_up(state, *ex, in, backend)) return;
  const compute::CallOptions options = pinned_to(backend);
  const auto start = Clock::now();
  for (auto _ : state) {
    auto r = ex->run(add_call(in), options);
    if (!r) {
      skip(state, "Executor::run", r.error().to_string());
      break;
    }
    benchmark::DoNotOptimize(r->outputs.front().data());
  }
  set_call_counters(state, Clock::now() - start, 1);
}

void catalog_burst(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  const HostInputs& in = host_inputs(arg_n(state));
  if (!catalog_warm_up(state, *ex, in, backend)) return;
  const compute::CallOptions options = pinned_to(backend);
  std::vector<std::future<Result<compute::KernelResult>>> futures;
  futures.reserve(kBurst);
  const auto start = Clock::now();
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBurst; ++i) futures.push_back(ex->submit(add_call(in), options));
    std::optional<Error> failure;
    for (auto& f : futures) {  // wait for all: the inputs must outlive every call
      auto r = f.get();
      if (!r) {
        if (!failure) failure = r.error();
        continue;
      }
      benchmark::DoNotOptimize(r->outputs.front().data());
    }
    futures.clear();
    if (failure) {
      skip(state, "Executor::submit", failure->to_string());
      break;
    }
  }
  set_call_counters(state, Clock::now() - start, kBurst);
}

// ---- raw CPU ----

void add_loop(const float* a, const float* b, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void cpu_raw(benchmark::State& state, std::size_t slots) {
  if (executor_for(state, BackendKind::cpu) == nullptr) return;
  state.SetLabel(backend_label(BackendKind::cpu).c_str());
  const std::size_t n = arg_n(state);
  const HostInputs& in = host_inputs(n);
  std::vector<std::vector<float>> out(slots, std::vector<float>(n));
  add_loop(in.a.data(), in.b.data(), out[0].data(), n);
  if (auto bad = check_sum(out[0].data(), n)) return skip(state, "raw CPU loop", *bad);
  const auto start = Clock::now();
  for (auto _ : state) {
    for (auto& o : out) {
      add_loop(in.a.data(), in.b.data(), o.data(), n);
      benchmark::DoNotOptimize(o.data());
    }
    benchmark::ClobberMemory();
  }
  set_call_counters(state, Clock::now() - start, slots);
}

// ---- raw CUDA ----

// Enqueues one host-to-host round trip of slot `s`: stage, upload, add, download.
Status cuda_enqueue_round_trip(RawCudaBuffers& b, std::size_t s, const HostInputs& in) {
  b.stage_inputs(s, in.a.data(), in.b.data());
  if (Status st = b.upload(s); !st) return st;
  if (Status st = b.add(s, RawCudaKernel::reference_add); !st) return st;
  return b.download(s);
}

Status cuda_round_trips(RawCudaBuffers& b, std::size_t slots, const HostInputs& in,
                        std::vector<std::vector<float>>& out) {
  for (std::size_t s = 0; s < slots; ++s) {
    if (Status st = cuda_enqueue_round_trip(b, s, in); !st) return st;
  }
  if (Status st = b.synchronize(); !st) return st;
  for (std::size_t s = 0; s < slots; ++s) std::memcpy(out[s].data(), b.staged_output(s), out[s].size() * sizeof(float));
  return {};
}

void cuda_raw(benchmark::State& state, std::size_t slots) {
  RawCuda* cuda = raw_cuda_for(state);
  if (cuda == nullptr) return;
  state.SetLabel(backend_label(BackendKind::cuda).c_str());
  const std::size_t n = arg_n(state);
  const HostInputs& in = host_inputs(n);
  auto buffers = RawCudaBuffers::create(*cuda, n, slots);
  if (!buffers) return skip(state, "raw CUDA buffers", buffers.error().message());
  RawCudaBuffers& b = **buffers;
  std::vector<std::vector<float>> out(slots, std::vector<float>(n));
  if (Status st = cuda_round_trips(b, slots, in, out); !st) return skip(state, "raw CUDA", st.error().message());
  if (auto bad = check_sum(out[slots - 1].data(), n)) return skip(state, "raw CUDA", *bad);
  const auto start = Clock::now();
  for (auto _ : state) {
    if (Status st = cuda_round_trips(b, slots, in, out); !st) {
      skip(state, "raw CUDA", st.error().message());
      break;
    }
    benchmark::DoNotOptimize(out.back().data());
  }
  set_call_counters(state, Clock::now() - start, slots);
}

// ---- raw OpenCL ----

Status opencl_round_trips(RawOpenClBuffers& b, std::size_t slots, const HostInputs& in,
                          std::vector<std::vector<float>>& out) {
  for (std::size_t s = 0; s < slots; ++s) {
    if (Status st = b.write_inputs(s, in.a.data(), in.b.data()); !st) return st;
    if (Status st = b.add(s); !st) return st;
    // One slot: a blocking read ends the round trip; a burst waits once with clFinish.
    if (Status st = b.read_output(s, out[s].data(), slots == 1); !st) return st;
  }
  return slots == 1 ? Status{} : b.finish();
}

void opencl_raw(benchmark::State& state, std::size_t slots) {
  RawOpenCl* cl = raw_opencl_for(state);
  if (cl == nullptr) return;
  state.SetLabel(backend_label(BackendKind::opencl).c_str());
  const std::size_t n = arg_n(state);
  const HostInputs& in = host_inputs(n);
  auto buffers = RawOpenClBuffers::create(*cl, n, slots);
  if (!buffers) return skip(state, "raw OpenCL buffers", buffers.error().message());
  RawOpenClBuffers& b = **buffers;
  std::vector<std::vector<float>> out(slots, std::vector<float>(n));
  if (Status st = opencl_round_trips(b, slots, in, out); !st) return skip(state, "raw OpenCL", st.error().message());
  if (auto bad = check_sum(out[slots - 1].data(), n)) return skip(state, "raw OpenCL", *bad);
  const auto start = Clock::now();
  for (auto _ : state) {
    if (Status st = opencl_round_trips(b, slots, in, out); !st) {
      skip(state, "raw OpenCL", st.error().message());
      break;
    }
    benchmark::DoNotOptimize(out.back().data());
  }
  set_call_counters(state, Clock::now() - start, slots);
}

void raw(benchmark::State& state, BackendKind backend, std::size_t slots) {
  switch (backend) {
    case BackendKind::cpu: return cpu_raw(state, slots);
    case BackendKind::cuda: return cuda_raw(state, slots);
    case BackendKind::opencl: return opencl_raw(state, slots);
  }
}

}  // namespace

void register_dispatch_benchmarks() {
  for (BackendKind backend : {BackendKind::cpu, BackendKind::cuda, BackendKind::opencl}) {
    const std::string b(compute::to_string(backend));
    const std::string single = "dispatch/" + b + "/";
    benchmark::RegisterBenchmark((single + "catalog").c_str(), catalog_single, backend)
        ->Arg(kDispatchN)->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((single + "raw").c_str(), raw, backend, std::size_t{1})
        ->Arg(kDispatchN)->UseRealTime()->Unit(benchmark::kMicrosecond);
    register_pair({"dispatch", b, single + "catalog", single + "raw", 1});

    const std::string burst = "dispatch_pipelined/" + b + "/";
    benchmark::RegisterBenchmark((burst + "catalog").c_str(), catalog_burst, backend)
        ->Arg(kDispatchN)->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((burst + "raw").c_str(), raw, backend, kBurst)
        ->Arg(kDispatchN)->UseRealTime()->Unit(benchmark::kMicrosecond);
    register_pair({"dispatch_pipelined", b, burst + "catalog", burst + "raw", static_cast<double>(kBurst)});
  }
}

}  // namespace gpubridge::bench

// Bandwidth: large vector.add calls end to end through the catalog, against a plain copy of the
// same number of bytes with the backend's own API, in the same run.
//
// Bytes counted (SetBytesProcessed, reported as bytes_per_second) are those of one n-element f32
// add, 12n: the two inputs (8n) and the output (4n). Each reference moves exactly that much:
//   bandwidth/<b>/catalog   Executor::run of vector.add, n = Arg (host inputs in, fresh host output
//                           out; for GPUs the inputs cross to the device and the output back).
//   bandwidth/cpu/copy      memcpy of 6n bytes (reads 6n, writes 6n = 12n of memory traffic), split
//                           over as many threads as the catalog's CPU pool (persistent threads).
//   bandwidth/cuda/copy     cudaMemcpyAsync H2D of [a | b] (8n) from page-locked memory and D2H of
//                           the output (4n) into page-locked memory, then cudaStreamSynchronize:
//                           the PCIe transfers of the call without the kernel or host-side packing.
//   bandwidth/cuda/copy_pageable  the same transfers from / to pageable host vectors (as the
//                           catalog's inputs and outputs are), staged by the driver itself.
//   bandwidth/opencl/copy   clEnqueueWriteBuffer of a and b (8n, from the same host vectors as the
//                           catalog) and a blocking clEnqueueReadBuffer of the output (4n).
// Kernel-only pair on CUDA (device memory only, no PCIe), 8 back-to-back operations per iteration
// and one cudaStreamSynchronize, so the sync is amortised; each operation reads + writes 12n bytes:
//   kernel_bandwidth/cuda/raw_kernel       own NVRTC add kernel, one element per thread;
//   kernel_bandwidth/cuda/portable_kernel  the catalog's gb_add with the catalog's grid;
//   kernel_bandwidth/cuda/d2d_copy         cudaMemcpyAsync device-to-device of 6n bytes.
// Ratio (printed after the run): subject time / reference time for the same bytes, i.e. reference
// GB/s over subject GB/s; > 1 = the subject moves the bytes slower than the plain copy.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <barrier>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/ratio_report.hpp"
#include "compute/compute_benchmarks.hpp"
#include "compute/compute_fixture.hpp"

namespace gpubridge::bench {

namespace {

using compute::BackendKind;

constexpr int kKernelRepeats = 8;

std::size_t arg_n(const benchmark::State& state) { return static_cast<std::size_t>(state.range(0)); }

std::int64_t add_bytes(std::size_t n) { return static_cast<std::int64_t>(12 * n); }

void set_bytes(benchmark::State& state, std::int64_t bytes_per_iteration) {
  if (!state.error_occurred()) state.SetBytesProcessed(state.iterations() * bytes_per_iteration);
}

// memcpy split into one contiguous chunk per thread; the caller copies chunk 0. Workers wait on a
// barrier between copies, so a copy costs no thread start.
class ParallelCopy {
 public:
  explicit ParallelCopy(unsigned threads)
      : threads_(std::max(1u, threads)), start_(threads_), done_(threads_) {
    for (unsigned i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { work(i); });
  }
  ~ParallelCopy() {
    stop_ = true;  // published to the workers by the barrier
    start_.arrive_and_wait();
    for (auto& t : workers_) t.join();
  }
  ParallelCopy(const ParallelCopy&) = delete;
  ParallelCopy& operator=(const ParallelCopy&) = delete;

  void copy(void* dst, const void* src, std::size_t bytes) {
    dst_ = static_cast<std::byte*>(dst);
    src_ = static_cast<const std::byte*>(src);
    bytes_ = bytes;
    start_.arrive_and_wait();
    chunk(0);
    done_.arrive_and_wait();
  }

 private:
  void work(unsigned index) {
    for (;;) {
      start_.arrive_and_wait();
      if (stop_) return;
      chunk(index);
      done_.arrive_and_wait();
    }
  }
  void chunk(unsigned index) {
    const std::size_t per = (bytes_ / threads_ + 63) / 64 * 64;
    const std::size_t begin = std::min(bytes_, per * index);
    const std::size_t end = index + 1 == threads_ ? bytes_ : std::min(bytes_, begin + per);
    if (end > begin) std::memcpy(dst_ + begin, src_ + begin, end - begin);
  }

  unsigned threads_;
  std::barrier<> start_;
  std::barrier<> done_;
  std::byte* dst_ = nullptr;
  const std::byte* src_ = nullptr;
  std::size_t bytes_ = 0;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// ---- catalog ----

void catalog_bandwidth(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  const HostInputs& in = host_inputs(arg_n(state));
  if (!catalog_warm_up(state, *ex, in, backend)) return;
  const compute::CallOptions options = pinned_to(backend);
  for (auto _ : state) {
    auto r = ex->run(add_call(in), options);
    if (!r) {
      skip(state, "Executor::run", r.error().to_string());
      break;
    }
    benchmark::DoNotOptimize(r->outputs.front().data());
  }
  set_bytes(state, add_bytes(arg_n(state)));
}

// ---- copies ----

void cpu_copy(benchmark::State& state) {
  if (executor_for(state, BackendKind::cpu) == nullptr) return;
  state.SetLabel(backend_label(BackendKind::cpu).c_str());
  const std::size_t n = arg_n(state);
  const auto cpu = first_device(BackendKind::cpu);
  ParallelCopy copier(cpu ? cpu->compute_units : 1);
  const std::size_t bytes = 6 * n;
  std::vector<std::byte> src(bytes, std::byte{1});
  std::vector<std::byte> dst(bytes);
  copier.copy(dst.data(), src.data(), bytes);
  if (dst != src) return skip(state, "parallel memcpy", "destination differs from source");
  for (auto _ : state) {
    copier.copy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, add_bytes(n));
}

void cuda_copy(benchmark::State& state) {
  RawCuda* cuda = raw_cuda_for(state);
  if (cuda == nullptr) return;
  state.SetLabel(backend_label(BackendKind::cuda).c_str());
  const std::size_t n = arg_n(state);
  const HostInputs& in = host_inputs(n);
  auto buffers = RawCudaBuffers::create(*cuda, n, 1);
  if (!buffers) return skip(state, "raw CUDA buffers", buffers.error().message());
  RawCudaBuffers& b = **buffers;
  b.stage_inputs(0, in.a.data(), in.b.data());  // once: the copy measures transfers only
  for (auto _ : state) {
    Status st = b.upload(0);
    if (st) st = b.download(0);
    if (st) st = b.synchronize();
    if (!st) {
      skip(state, "raw CUDA copy", st.error().message());
      break;
    }
  }
  set_bytes(state, add_bytes(n));
}

void cuda_copy_pageable(benchmark::State& state) {
  RawCuda* cuda = raw_cuda_for(state);
  if (cuda == nullptr) return;
  state.SetLabel(backend_label(BackendKind::cuda).c_str());
  const std::size_t n = arg_n(state);
  const HostInputs& in = host_inputs(n);
  auto buffers = RawCudaBuffers::create(*cuda, n, 1);
  if (!buffers) return skip(state, "raw CUDA buffers", buffers.error().message());
  std::vector<float> out(n);
  for (auto _ : state) {
    if (Status st = (*buffers)->copy_pageable(in.a.data(), in.b.data(), out.data()); !st) {
      skip(state, "raw CUDA pageable copy", st.error().message());
      break;
    }
  }
  set_bytes(state, add_bytes(n));
}

void opencl_copy(benchmark::State& state) {
  RawOpenCl* cl = raw_opencl_for(state);
  if (cl == nullptr) return;
  state.SetLabel(backend_label(BackendKind::opencl).c_str());
  const std::size_t n = arg_n(state);
  const HostInputs& in = host_inputs(n);
  auto buffers = RawOpenClBuffers::create(*cl, n, 1);
  if (!buffers) return skip(state, "raw OpenCL buffers", buffers.error().message());
  RawOpenClBuffers& b = **buffers;
  std::vector<float> out(n);
  for (auto _ : state) {
    Status st = b.write_inputs(0, in.a.data(), in.b.data());
    if (st) st = b.read_output(0, out.data(), true);
    if (!st) {
      skip(state, "raw OpenCL copy", st.error().message());
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  set_bytes(state, add_bytes(n));
}

// ---- CUDA kernel-only pair ----

enum class DeviceOp { raw_kernel, portable_kernel, d2d_copy };

void cuda_device_op(benchmark::State& state, DeviceOp op) {
  RawCuda* cuda = raw_cuda_for(state);
  if (cuda == nullptr) return;
  state.SetLabel(backend_label(BackendKind::cuda).c_str());
  const std::size_t n = arg_n(state);
  const HostInputs& in = host_inputs(n);
  auto buffers = RawCudaBuffers::create(*cuda, n, 1, /*with_copy_target=*/true);
  if (!buffers) return skip(state, "raw CUDA buffers", buffers.error().message());
  RawCudaBuffers& b = **buffers;
  const auto kernel = op == DeviceOp::raw_kernel ? RawCudaKernel::reference_add : RawCudaKernel::portable_add;
  auto enqueue = [&]() -> Status { return op == DeviceOp::d2d_copy ? b.device_copy() : b.add(0, kernel); };

  // Inputs uploaded once; a kernel's output is checked once, before measuring.
  b.stage_inputs(0, in.a.data(), in.b.data());
  Status st = b.upload(0);
  if (st) st = enqueue();
  if (st && op != DeviceOp::d2d_copy) st = b.download(0);
  if (st) st = b.synchronize();
  if (!st) return skip(state, "raw CUDA", st.error().message());
  if (op != DeviceOp::d2d_copy) {
    if (auto bad = check_sum(b.staged_output(0), n)) return skip(state, "raw CUDA kernel", *bad);
  }
  for (auto _ : state) {
    for (int i = 0; i < kKernelRepeats && st; ++i) st = enqueue();
    if (st) st = b.synchronize();
    if (!st) {
      skip(state, "raw CUDA", st.error().message());
      break;
    }
  }
  set_bytes(state, kKernelRepeats * add_bytes(n));
}

template <typename Fn, typename... Extra>
void add_sizes(const std::string& name, const std::vector<std::size_t>& sizes, Fn fn, Extra... extra) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), fn, extra...);
  for (std::size_t n : sizes) b->Arg(static_cast<std::int64_t>(n));
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

void register_bandwidth_benchmarks(const BandwidthSizes& sizes) {
  add_sizes("bandwidth/cpu/catalog", sizes.cpu, catalog_bandwidth, BackendKind::cpu);
  add_sizes("bandwidth/cpu/copy", sizes.cpu, cpu_copy);
  register_pair({"bandwidth", "cpu", "bandwidth/cpu/catalog", "bandwidth/cpu/copy", 1});

  add_sizes("bandwidth/cuda/catalog", sizes.cuda, catalog_bandwidth, BackendKind::cuda);
  add_sizes("bandwidth/cuda/copy", sizes.cuda, cuda_copy);
  register_pair({"bandwidth", "cuda", "bandwidth/cuda/catalog", "bandwidth/cuda/copy", 1});
  add_sizes("bandwidth/cuda/copy_pageable", sizes.cuda, cuda_copy_pageable);
  register_pair({"bandwidth", "cuda", "bandwidth/cuda/catalog", "bandwidth/cuda/copy_pageable", 1});

  add_sizes("kernel_bandwidth/cuda/raw_kernel", sizes.cuda, cuda_device_op, DeviceOp::raw_kernel);
  add_sizes("kernel_bandwidth/cuda/portable_kernel", sizes.cuda, cuda_device_op, DeviceOp::portable_kernel);
  add_sizes("kernel_bandwidth/cuda/d2d_copy", sizes.cuda, cuda_device_op, DeviceOp::d2d_copy);
  register_pair({"kernel_bandwidth", "cuda", "kernel_bandwidth/cuda/raw_kernel", "kernel_bandwidth/cuda/d2d_copy",
                 kKernelRepeats});
  register_pair({"kernel_bandwidth", "cuda", "kernel_bandwidth/cuda/portable_kernel",
                 "kernel_bandwidth/cuda/d2d_copy", kKernelRepeats});

  add_sizes("bandwidth/opencl/catalog", sizes.opencl, catalog_bandwidth, BackendKind::opencl);
  add_sizes("bandwidth/opencl/copy", sizes.opencl, opencl_copy);
  register_pair({"bandwidth", "opencl", "bandwidth/opencl/catalog", "bandwidth/opencl/copy", 1});
}

}  // namespace gpubridge::bench

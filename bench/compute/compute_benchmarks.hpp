#pragma once
// Registration of the compute benchmarks and their ratio pairs (bench_main.cpp calls these).
#include <cstddef>
#include <vector>

namespace gpubridge::bench {

// dispatch/<backend>/{catalog,raw} and dispatch_pipelined/<backend>/{catalog,raw}.
void register_dispatch_benchmarks();

// batch/<backend>/{batcher,raw,per_request}: many 256-element vector.add requests through the
// dynamic batcher, the raw backend API in the same batch sizes, and one launch per request.
void register_batch_benchmarks();

// Element counts of the bandwidth benchmarks per backend (each count is one Arg).
struct BandwidthSizes {
  std::vector<std::size_t> cpu;
  std::vector<std::size_t> cuda;
  std::vector<std::size_t> opencl;
};
// bandwidth/<backend>/{catalog,copy} and kernel_bandwidth/cuda/{raw_kernel,portable_kernel,d2d_copy}
// (the kernel pair uses the cuda sizes).
void register_bandwidth_benchmarks(const BandwidthSizes& sizes);

}  // namespace gpubridge::bench

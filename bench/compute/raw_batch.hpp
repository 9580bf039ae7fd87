#pragma once
// The raw batched reference shared by the batching benchmarks (bench_compute's batch/<b>/raw and
// bench_grains' grain_batch/<b>/raw): many 256-element f32 adds, each request with its own input
// and output memory, done with the backend's own API in batches of B, one batch at a time:
//   cpu     the add loop per request on the calling thread;
//   cuda    pack every request's a and b into one page-locked buffer, one H2D, one launch over
//           B * 256 elements (own NVRTC kernel), one D2H, synchronize, copy each request's
//           output out of page-locked memory;
//   opencl  pack a and b into two host arrays, two clEnqueueWriteBuffer, one launch over
//           B * 256 elements (own kernel), blocking clEnqueueReadBuffer, copy outputs out.
// Outputs are checked once before measuring. Sets items_per_second (requests per second).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/core/cache_line.hpp"

namespace gpubridge::bench {

inline constexpr std::size_t kRawBatchElements = 256;  // elements per request

// One request's own input and output memory (kRawBatchElements floats each, cache-line aligned).
struct RawRequest {
  std::span<float> a, b, out;  // out = a + b once run
};

// The memory of `count` requests, made once per count and kept for the rest of the run; shared by
// every benchmark that asks (one runs at a time), so that a subject and its raw reference run on
// the same memory. Readers must not rely on outputs written before they ran. One allocation,
// request after request ([a | b | out], each array on whole cache lines): with a heap allocation
// per array, the raw CPU loop ran at 0.29-0.47 us per request depending on the process; on one
// aligned block it runs at one speed (0.27-0.28 us, 2-core VM).
std::vector<RawRequest>& raw_requests(std::size_t count);

// A benchmark checks a few requests' outputs after its warm-up (first, middle, last):
// clear_checked() zeroes them before (the memory is shared: an earlier benchmark wrote them),
// check_requests() is empty when every checked one holds a + b, else says which and where not.
void clear_checked(std::vector<RawRequest>& requests);
std::optional<std::string> check_requests(const std::vector<RawRequest>& requests);

// One iteration = `requests` requests (a multiple of `batch` on cuda and opencl), in batches
// of `batch`. Skips (SkipWithError) when the backend has no device or the raw setup fails.
void raw_batch_run(benchmark::State& state, compute::BackendKind backend, std::size_t batch, std::size_t requests);

}  // namespace gpubridge::bench

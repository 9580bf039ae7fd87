#pragma once
// Prefetching of batched requests' memory, for the loops that walk a batch's requests (the CPU
// backend running segments, the GPU backends packing inputs into staging and scattering outputs).
//
// A batch's requests come from anywhere in memory in arrival order, so the hardware prefetchers,
// which follow one stream at a time, start cold at every request; and each BatchRequest was
// written on its submitting core. A loop over requests s = begin..end-1 therefore asks, at each
// step, for the request struct kRequestsAhead ahead (its views and output pointer) and for the
// data of the next request (up to kPrefetchBytes of each range), so their misses overlap with
// the current request's work.
#include <algorithm>
#include <cstddef>

#include "compute/backend.hpp"
#include "gpubridge/core/cache_line.hpp"

namespace gpubridge::compute::detail {

inline constexpr std::size_t kPrefetchBytes = 4096;  // of each input or output range
inline constexpr std::size_t kRequestsAhead = 4;     // request structs fetched ahead

[[gnu::always_inline]] inline void prefetch_range(const void* data, std::size_t bytes, bool for_write) noexcept {
  prefetch_lines(data, std::min(bytes, kPrefetchBytes), for_write);
}

// The inputs a segment reads.
[[gnu::always_inline]] inline void prefetch_inputs(const KernelDef& def, const BatchRequest& r) noexcept {
  const std::size_t inputs = def.signature.inputs.size();
  for (std::size_t i = 0; i < inputs; ++i) prefetch_range(r.inputs[i].data, r.inputs[i].bytes(), false);
}

// The output a segment writes.
[[gnu::always_inline]] inline void prefetch_output(const KernelDef& def, DType dtype, const BatchRequest& r) noexcept {
  prefetch_range(r.output, KernelCatalog::output_count(def, r.inputs[0].count) * size_of(dtype), true);
}

// The lines of a request that a segment reads (its input views and output pointer).
[[gnu::always_inline]] inline void prefetch_request(const BatchRequest& r) noexcept {
  const auto* first = reinterpret_cast<const char*>(&r.inputs);
  const auto* end = reinterpret_cast<const char*>(&r.output_capacity + 1);
  prefetch_lines(first, static_cast<std::size_t>(end - first));
}

// Runs body(s) for s in [begin, end), with the prefetches described above; `data(r)` prefetches
// what body will touch of request r's memory.
template <typename Data, typename Body>
[[gnu::always_inline]] inline void for_requests_prefetched(const BatchCall& call, std::size_t begin, std::size_t end,
                                                           const Data& data, const Body& body) {
  for (std::size_t s = begin; s < end && s < begin + kRequestsAhead; ++s) prefetch_request(*call.requests[s]);
  if (begin < end) data(*call.requests[begin]);
  for (std::size_t s = begin; s < end; ++s) {
    if (s + kRequestsAhead < end) prefetch_request(*call.requests[s + kRequestsAhead]);
    if (s + 1 < end) data(*call.requests[s + 1]);
    body(s);
  }
}

}  // namespace gpubridge::compute::detail

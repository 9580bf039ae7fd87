#include "compute/raw_batch.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "compute/compute_fixture.hpp"

namespace gpubridge::bench {

namespace {

using compute::BackendKind;

constexpr std::size_t kN = kRawBatchElements;

void set_request_counters(benchmark::State& state, std::size_t requests) {
  if (state.error_occurred()) return;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * requests));
}

// The requests clear_checked() and check_requests() look at: first, middle, last.
std::array<std::size_t, 3> checked_requests(std::size_t count) { return {0, count / 2, count - 1}; }

void add_loop(const float* a, const float* b, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void cpu_raw(benchmark::State& state, std::vector<RawRequest>& slots) {
  state.SetLabel(backend_label(BackendKind::cpu).c_str());
  for (auto& s : slots) add_loop(s.a.data(), s.b.data(), s.out.data(), kN);
  if (auto bad = check_requests(slots)) return skip(state, "raw CPU loop", *bad);
  for (auto _ : state) {
    for (auto& s : slots) {
      add_loop(s.a.data(), s.b.data(), s.out.data(), kN);
      benchmark::DoNotOptimize(s.out.data());
    }
    benchmark::ClobberMemory();
  }
  set_request_counters(state, slots.size());
}

// One batch of B requests starting at `first`: pack, H2D, launch, D2H, sync, unpack.
Status cuda_batch(RawCudaBuffers& buf, std::vector<RawRequest>& slots, std::size_t first, std::size_t batch) {
  float* in = buf.staged_input(0);
  for (std::size_t r = 0; r < batch; ++r) {
    std::memcpy(in + r * kN, slots[first + r].a.data(), kN * sizeof(float));
    std::memcpy(in + (batch + r) * kN, slots[first + r].b.data(), kN * sizeof(float));
  }
  if (Status s = buf.upload(0); !s) return s;
  if (Status s = buf.add(0, RawCudaKernel::reference_add); !s) return s;
  if (Status s = buf.download(0); !s) return s;
  if (Status s = buf.synchronize(); !s) return s;
  const float* out = buf.staged_output(0);
  for (std::size_t r = 0; r < batch; ++r) std::memcpy(slots[first + r].out.data(), out + r * kN, kN * sizeof(float));
  return {};
}

void cuda_raw(benchmark::State& state, std::vector<RawRequest>& slots, std::size_t batch) {
  RawCuda* cuda = raw_cuda_for(state);
  if (cuda == nullptr) return;
  state.SetLabel(backend_label(BackendKind::cuda).c_str());
  auto buffers = RawCudaBuffers::create(*cuda, batch * kN, 1);
  if (!buffers) return skip(state, "raw CUDA buffers", buffers.error().message());
  const auto iteration = [&]() -> Status {
    for (std::size_t first = 0; first < slots.size(); first += batch) {
      if (Status s = cuda_batch(**buffers, slots, first, batch); !s) return s;
    }
    return {};
  };
  if (Status s = iteration(); !s) return skip(state, "raw CUDA", s.error().message());
  if (auto bad = check_requests(slots)) return skip(state, "raw CUDA", *bad);
  for (auto _ : state) {
    if (Status s = iteration(); !s) {
      skip(state, "raw CUDA", s.error().message());
      return;
    }
  }
  set_request_counters(state, slots.size());
}

void opencl_raw(benchmark::State& state, std::vector<RawRequest>& slots, std::size_t batch) {
  RawOpenCl* cl = raw_opencl_for(state);
  if (cl == nullptr) return;
  state.SetLabel(backend_label(BackendKind::opencl).c_str());
  auto buffers = RawOpenClBuffers::create(*cl, batch * kN, 1);
  if (!buffers) return skip(state, "raw OpenCL buffers", buffers.error().message());
  std::vector<float> a(batch * kN), b(batch * kN), out(batch * kN);
  const auto iteration = [&]() -> Status {
    for (std::size_t first = 0; first < slots.size(); first += batch) {
      for (std::size_t r = 0; r < batch; ++r) {
        std::memcpy(a.data() + r * kN, slots[first + r].a.data(), kN * sizeof(float));
        std::memcpy(b.data() + r * kN, slots[first + r].b.data(), kN * sizeof(float));
      }
      if (Status s = (*buffers)->write_inputs(0, a.data(), b.data()); !s) return s;
      if (Status s = (*buffers)->add(0); !s) return s;
      if (Status s = (*buffers)->read_output(0, out.data(), true); !s) return s;
      for (std::size_t r = 0; r < batch; ++r) {
        std::memcpy(slots[first + r].out.data(), out.data() + r * kN, kN * sizeof(float));
      }
    }
    return {};
  };
  if (Status s = iteration(); !s) return skip(state, "raw OpenCL", s.error().message());
  if (auto bad = check_requests(slots)) return skip(state, "raw OpenCL", *bad);
  for (auto _ : state) {
    if (Status s = iteration(); !s) {
      skip(state, "raw OpenCL", s.error().message());
      return;
    }
  }
  set_request_counters(state, slots.size());
}

}  // namespace

std::vector<RawRequest>& raw_requests(std::size_t count) {
  struct Set {
    std::vector<float, CacheLineAllocator<float>> memory;  // [a | b | out] per request, out zeroed
    std::vector<RawRequest> requests;
  };
  static std::map<std::size_t, Set>* sets = new std::map<std::size_t, Set>;
  Set& set = (*sets)[count];
  if (set.requests.empty() && count > 0) {
    static_assert(kN * sizeof(float) % kCacheLine == 0, "each array fills whole cache lines");
    set.memory.resize(count * 3 * kN);
    const HostInputs& in = host_inputs(kN);
    set.requests.resize(count);
    float* next = set.memory.data();
    for (auto& r : set.requests) {
      r.a = {next, kN};
      r.b = {next + kN, kN};
      r.out = {next + 2 * kN, kN};
      next += 3 * kN;
      std::copy(in.a.begin(), in.a.end(), r.a.begin());
      std::copy(in.b.begin(), in.b.end(), r.b.begin());
    }
  }
  return set.requests;
}

void clear_checked(std::vector<RawRequest>& requests) {
  for (std::size_t i : checked_requests(requests.size())) {
    std::fill(requests[i].out.begin(), requests[i].out.end(), 0.f);
  }
}

std::optional<std::string> check_requests(const std::vector<RawRequest>& requests) {
  for (std::size_t i : checked_requests(requests.size())) {
    if (auto bad = check_sum(requests[i].out.data(), kN)) return "request " + std::to_string(i) + ": " + *bad;
  }
  return std::nullopt;
}

void raw_batch_run(benchmark::State& state, BackendKind backend, std::size_t batch, std::size_t requests) {
  if (executor_for(state, backend) == nullptr) return;
  if (batch == 0 || requests == 0 || (backend != BackendKind::cpu && requests % batch != 0)) {
    return skip(state, "raw batch", "requests per iteration must be a positive multiple of the batch size");
  }
  std::vector<RawRequest>& slots = raw_requests(requests);
  clear_checked(slots);
  switch (backend) {
    case BackendKind::cpu: return cpu_raw(state, slots);
    case BackendKind::cuda: return cuda_raw(state, slots, batch);
    case BackendKind::opencl: return opencl_raw(state, slots, batch);
  }
}

}  // namespace gpubridge::bench

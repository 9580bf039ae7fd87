#pragma once
// BatchGrain: the grain face of a catalog kernel. Keyed by "kernel/dtype" ("vector.add/f32"),
// it feeds every caller's request into that kernel's dynamic batcher, so many small calls from
// many grains become few launches; each caller gets its own result and report (device, batch
// size, queueing and execution time).
//
// Reentrant: calls interleave while they wait for their batch, so one activation serves any
// number of concurrent callers. run() allocates nothing (the request lives in the call's frame
// and results are written into the caller's output); compute() allocates the output for you.
#include <array>
#include <cstddef>
#include <vector>

#include "gpubridge/compute/batcher.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/runtime/grain.hpp"
#include "gpubridge/runtime/runtime.hpp"

namespace gpubridge::grains {

// One request to a BatchGrain: views into the caller's memory, valid until the call completes.
struct BatchCall {
  std::array<compute::TensorView, compute::BatchRequest::kMaxInputs> inputs{};
  std::size_t input_count = 0;
  std::array<double, compute::BatchRequest::kMaxScalars> scalars{};
  void* output = nullptr;  // output elements of the kernel's dtype
  std::size_t output_capacity = 0;
  compute::Priority priority = compute::Priority::normal;
  compute::SteadyTime deadline = compute::SteadyTime::max();
};

class BatchGrain : public runtime::Grain {
 public:
  explicit BatchGrain(GpuServices& services) : services_(services) {}

  // Fails (invalid_argument / not_found) when the key does not name a catalog kernel and dtype.
  runtime::Task<void> on_activate() override;

  // Runs one request batched; throws ErrorException on queue full, deadline, device or data errors.
  runtime::Task<compute::BatchReport> run(const BatchCall& call);
  // Same, with the output allocated (n or 1 elements, per the kernel's signature).
  runtime::Task<compute::KernelResult> compute(std::vector<compute::TensorView> inputs, std::vector<double> scalars);

 private:
  GpuServices& services_;
  compute::DynamicBatcher* batcher_ = nullptr;
  const compute::KernelDef* def_ = nullptr;
  compute::DType dtype_ = compute::DType::f32;
};

}  // namespace gpubridge::grains

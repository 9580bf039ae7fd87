#pragma once
// KernelGrain: runs one catalog kernel call on whole arrays (not batched) where the caller asks,
// through the executor and its fallback policy. For large single calls - a matrix product, an
// image filter, a graph algorithm - where batching many small requests is not the point.
//
// A reentrant stateless worker (one activation per scheduler worker): calls never queue behind
// each other in a grain. The call's input views must stay valid until the call completes (the
// caller co_awaits it, so its own memory does). Errors (invalid call, device failure with
// fallback off) are thrown to the caller as ErrorException.
#include "gpubridge/compute/executor.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/runtime/grain.hpp"

namespace gpubridge::grains {

class KernelGrain : public runtime::Grain {
 public:
  explicit KernelGrain(compute::Executor& executor) : executor_(executor) {}

  runtime::Task<compute::KernelResult> run(compute::KernelCall call, compute::CallOptions options);

 private:
  compute::Executor& executor_;
};

}  // namespace gpubridge::grains

#pragma once
// ResidentGrain: a grain whose state — one vector — lives in device memory between calls.
// load() uploads it once; apply() runs catalog kernels on it where it lives (the state takes one
// input slot, per-call operands are uploaded next to it) and keeps the result as the new state;
// reduce() runs a scalar kernel over it; read() downloads it. A failed kernel leaves the state as
// it was. On a machine without a GPU (or when the silo runs on the CPU) the state is host memory.
//
// Deactivation downloads the state and parks it in the silo's GpuServices (process memory, not
// durable storage: that arrives with the storage providers); the next activation of the same key
// uploads it again. Not reentrant: one operation at a time per grain.
#include <string>
#include <vector>

#include "gpubridge/compute/device_buffer.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/runtime/grain.hpp"

namespace gpubridge::grains {

struct ResidentOp {
  std::string kernel;                     // e.g. "vector.axpy", "vector.normalize", "vector.dot"
  std::vector<double> scalars;            // the kernel's scalar parameters
  std::vector<compute::Tensor> operands;  // the other inputs, in signature order without the state
  std::size_t state_input = 0;            // which input slot the state fills
};

class ResidentGrain : public runtime::Grain {
 public:
  explicit ResidentGrain(GpuServices& services) : services_(services) {}

  runtime::Task<void> on_activate() override;    // restores a parked state, if any
  runtime::Task<void> on_deactivate() override;  // downloads and parks the state

  runtime::Task<void> load(compute::Tensor initial);
  // Elementwise kernels: state := kernel(...). failed_precondition when no state is loaded.
  runtime::Task<void> apply(ResidentOp op);
  // Scalar kernels (vector.dot, reduce.sum): the value; the state is unchanged.
  runtime::Task<double> reduce(ResidentOp op);
  runtime::Task<compute::Tensor> read();
  // Deactivates the grain once this call returns: the state is downloaded and parked until the
  // next call re-activates it (frees the device memory of an idle grain).
  runtime::Task<void> evict();
  // The state's device id ("" when none is loaded) and, when it fell back, why.
  runtime::Task<std::string> placement();

 private:
  runtime::Task<compute::DeviceBuffer> run(ResidentOp op, bool scalar);

  GpuServices& services_;
  compute::DeviceBuffer state_;
};

}  // namespace gpubridge::grains

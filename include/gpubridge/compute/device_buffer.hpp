#pragma once
// Resident data: a DeviceBuffer keeps a one-dimensional array on one device between calls
// (plain host memory on the CPU device), so many kernels can run on it without copies.
//
//   upload()        host -> a new buffer on the device `where` asks for (GPU first for auto);
//                   when it lands elsewhere (no such device, no memory, no resident support),
//                   placement() says why, and the fallback is counted in ExecutorStats.
//   run_resident()  a catalog kernel over buffers of one device into a NEW buffer on that device;
//                   inputs are never modified, so a failed kernel (e.g. zero-norm normalize)
//                   leaves every existing buffer as it was.
//   download()      buffer -> a host Tensor.
//
// Completions are called exactly once, from any thread (possibly inline); they must not block.
// A DeviceBuffer is a cheap shared handle (copies share the memory); the memory returns to its
// device when the last handle and the last operation using it are gone. Buffers must not outlive
// their Executor. Operations on buffers of one device complete in the order they were issued.
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "gpubridge/compute/executor.hpp"

namespace gpubridge::compute {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  bool valid() const noexcept { return static_cast<bool>(state_); }
  const std::string& device_id() const;  // empty when !valid()
  DType dtype() const;
  std::size_t count() const;
  FallbackReason placement() const;       // none when it sits where upload() was asked to put it
  const std::string& placement_detail() const;

  struct State;  // internal

 private:
  friend struct DeviceBufferAccess;
  std::shared_ptr<const State> state_;
};

using BufferCompletion = std::function<void(Result<DeviceBuffer>)>;

// `data` must stay valid until `done` ran.
void upload(Executor& executor, TensorView data, const CallOptions& where, BufferCompletion done);
void download(Executor& executor, const DeviceBuffer& buffer, std::function<void(Result<Tensor>)> done);
// Errors: not_found (kernel), invalid_argument (no/invalid buffers, buffers on different devices,
// dtype or length mismatch, wrong scalar count, or the data itself, e.g. a zero norm),
// failed_precondition (the kernel cannot run on the buffers' device, or it is a kernel with its
// own shapes, OutputShape::computed: "not batchable", run those with Executor::submit),
// resource_exhausted.
void run_resident(Executor& executor, std::string_view kernel, std::span<const DeviceBuffer> inputs,
                  std::span<const double> scalars, BufferCompletion done);

// Blocking forms, for code outside grains (tests, tools).
Result<DeviceBuffer> upload_now(Executor& executor, TensorView data, const CallOptions& where = {});
Result<Tensor> download_now(Executor& executor, const DeviceBuffer& buffer);
Result<DeviceBuffer> run_resident_now(Executor& executor, std::string_view kernel, std::span<const DeviceBuffer> inputs,
                                      std::span<const double> scalars = {});

}  // namespace gpubridge::compute

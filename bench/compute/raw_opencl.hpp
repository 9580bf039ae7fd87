#pragma once
// The raw OpenCL reference of the compute benchmarks: the OpenCL C API called directly, no
// GpuBridge code on the measured path (GpuBridge's cl_int naming only formats failures).
//
// RawOpenCl: one device (found by name, platforms and devices in ICD order, as the OpenCL backend
// enumerates them), one context, one in-order queue, one f32 add kernel built from its own
// source (one element per work-item, the runtime picks the work-group size).
// RawOpenClBuffers: `slots` independent n-element adds, preallocated: per slot device buffers a,
// b and out. Commands are enqueued non-blocking except read_output(blocking = true) and finish();
// host pointers given to a non-blocking command must stay valid until finish() (or a blocking read).
// Built without OpenCL, create() fails with `unavailable`.
// Not thread-safe; the RawOpenCl must outlive its buffers.
#include <cstddef>
#include <memory>
#include <string>

#include "gpubridge/core/result.hpp"

namespace gpubridge::bench {

class RawOpenCl {
 public:
  // The first device whose CL_DEVICE_NAME (trimmed) is `device_name`; builds the kernel (not measured).
  static Result<std::unique_ptr<RawOpenCl>> create(const std::string& device_name);
  ~RawOpenCl();
  RawOpenCl(const RawOpenCl&) = delete;
  RawOpenCl& operator=(const RawOpenCl&) = delete;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit RawOpenCl(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class RawOpenClBuffers {
 public:
  static Result<std::unique_ptr<RawOpenClBuffers>> create(RawOpenCl& cl, std::size_t n, std::size_t slots);
  ~RawOpenClBuffers();  // waits for the queue, then releases the buffers
  RawOpenClBuffers(const RawOpenClBuffers&) = delete;
  RawOpenClBuffers& operator=(const RawOpenClBuffers&) = delete;

  Status write_inputs(std::size_t slot, const float* a, const float* b);  // two clEnqueueWriteBuffer
  Status add(std::size_t slot);  // kernel arguments (when the slot changed) + clEnqueueNDRangeKernel
  Status read_output(std::size_t slot, float* out, bool blocking);  // clEnqueueReadBuffer of n floats
  Status finish();                                                   // clFinish

  struct Impl;

 private:
  explicit RawOpenClBuffers(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpubridge::bench

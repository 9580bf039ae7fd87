// Raw OpenCL reference (see raw_opencl.hpp): the OpenCL C API, nothing else on the measured path.
#include "compute/raw_opencl.hpp"

#if GPUBRIDGE_HAVE_OPENCL

// Configures the OpenCL headers as the backend does (target 1.2) and names cl_int codes.
#include "compute/opencl/opencl_error.hpp"

#include <vector>

namespace gpubridge::bench {

namespace {

using compute::opencl::cl_call_error;

constexpr const char* kSource = R"(
__kernel void raw_add(__global const float* a, __global const float* b, __global float* out, uint n) {
  const size_t i = get_global_id(0);
  if (i < n) out[i] = a[i] + b[i];
}
)";
constexpr std::size_t kRoundTo = 256;  // global size is n rounded up to this

#define RAW_CL_TRY(call, expr)                                   \
  do {                                                           \
    const cl_int raw_status_ = (expr);                           \
    if (raw_status_ != CL_SUCCESS) return cl_call_error(raw_status_, call); \
  } while (0)

std::string trimmed(std::string s) {
  const auto keep = [](char c) { return c != '\0' && c != ' ' && c != '\n' && c != '\r' && c != '\t'; };
  std::size_t first = 0;
  while (first < s.size() && !keep(s[first])) ++first;
  std::size_t last = s.size();
  while (last > first && !keep(s[last - 1])) --last;
  return s.substr(first, last - first);
}

Result<std::string> device_name(cl_device_id d) {
  std::size_t size = 0;
  RAW_CL_TRY("clGetDeviceInfo(CL_DEVICE_NAME)", clGetDeviceInfo(d, CL_DEVICE_NAME, 0, nullptr, &size));
  std::string name(size, '\0');
  RAW_CL_TRY("clGetDeviceInfo(CL_DEVICE_NAME)", clGetDeviceInfo(d, CL_DEVICE_NAME, size, name.data(), nullptr));
  return trimmed(std::move(name));
}

Result<cl_device_id> find_device(const std::string& wanted) {
  cl_uint platform_count = 0;
  RAW_CL_TRY("clGetPlatformIDs", clGetPlatformIDs(0, nullptr, &platform_count));
  std::vector<cl_platform_id> platforms(platform_count);
  RAW_CL_TRY("clGetPlatformIDs", clGetPlatformIDs(platform_count, platforms.data(), nullptr));
  for (cl_platform_id p : platforms) {
    cl_uint count = 0;
    if (clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, nullptr, &count) != CL_SUCCESS || count == 0) continue;
    std::vector<cl_device_id> devices(count);
    RAW_CL_TRY("clGetDeviceIDs", clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, count, devices.data(), nullptr));
    for (cl_device_id d : devices) {
      auto name = device_name(d);
      if (!name) return name.error();
      if (*name == wanted) return d;
    }
  }
  return Error(ErrorCode::not_found, "no OpenCL device named '" + wanted + "'");
}

}  // namespace

struct RawOpenCl::Impl {
  cl_device_id device = nullptr;
  cl_context context = nullptr;
  cl_command_queue queue = nullptr;
  cl_program program = nullptr;
  cl_kernel kernel = nullptr;
  const void* bound = nullptr;  // the slot whose buffers are set as kernel arguments

  ~Impl() {
    // Release errors at teardown cannot be acted on and are ignored on purpose.
    if (queue != nullptr) clFinish(queue);
    if (kernel != nullptr) clReleaseKernel(kernel);
    if (program != nullptr) clReleaseProgram(program);
    if (queue != nullptr) clReleaseCommandQueue(queue);
    if (context != nullptr) clReleaseContext(context);
  }

  Status init(const std::string& name) {
    auto d = find_device(name);
    if (!d) return d.error();
    device = *d;
    cl_int err = CL_SUCCESS;
    context = clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
    RAW_CL_TRY("clCreateContext", err);
    queue = clCreateCommandQueue(context, device, 0, &err);
    RAW_CL_TRY("clCreateCommandQueue", err);
    const char* source = kSource;
    program = clCreateProgramWithSource(context, 1, &source, nullptr, &err);
    RAW_CL_TRY("clCreateProgramWithSource", err);
    if (err = clBuildProgram(program, 1, &device, "", nullptr, nullptr); err != CL_SUCCESS) {
      std::size_t size = 0;
      std::string log;
      if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size) == CL_SUCCESS) {
        log.resize(size);
        if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr) != CL_SUCCESS) {
          log.clear();
        }
      }
      Error e = cl_call_error(err, "clBuildProgram");
      return Error(e.code(), e.message() + ": " + trimmed(log).substr(0, 2000));
    }
    kernel = clCreateKernel(program, "raw_add", &err);
    RAW_CL_TRY("clCreateKernel", err);
    return {};
  }
};

RawOpenCl::RawOpenCl(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawOpenCl::~RawOpenCl() = default;

Result<std::unique_ptr<RawOpenCl>> RawOpenCl::create(const std::string& device_name) {
  auto impl = std::make_unique<Impl>();
  if (Status s = impl->init(device_name); !s) return s.error();
  return std::unique_ptr<RawOpenCl>(new RawOpenCl(std::move(impl)));
}

struct RawOpenClBuffers::Impl {
  struct Slot {
    cl_mem a = nullptr, b = nullptr, out = nullptr;
  };
  RawOpenCl::Impl* cl = nullptr;
  std::size_t n = 0;
  std::vector<Slot> slots;

  ~Impl() {
    // Release errors at teardown cannot be acted on and are ignored on purpose.
    clFinish(cl->queue);
    cl->bound = nullptr;
    for (Slot& s : slots) {
      for (cl_mem m : {s.a, s.b, s.out}) {
        if (m != nullptr) clReleaseMemObject(m);
      }
    }
  }
};

RawOpenClBuffers::RawOpenClBuffers(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawOpenClBuffers::~RawOpenClBuffers() = default;

Result<std::unique_ptr<RawOpenClBuffers>> RawOpenClBuffers::create(RawOpenCl& cl, std::size_t n, std::size_t slots) {
  auto impl = std::make_unique<Impl>();
  impl->cl = &cl.impl();
  impl->n = n;
  impl->slots.resize(slots);
  const std::size_t bytes = n * sizeof(float);
  for (auto& s : impl->slots) {
    for (cl_mem* m : {&s.a, &s.b, &s.out}) {
      cl_int err = CL_SUCCESS;
      *m = clCreateBuffer(impl->cl->context, m == &s.out ? CL_MEM_WRITE_ONLY : CL_MEM_READ_ONLY, bytes, nullptr, &err);
      RAW_CL_TRY("clCreateBuffer", err);
    }
  }
  return std::unique_ptr<RawOpenClBuffers>(new RawOpenClBuffers(std::move(impl)));
}

Status RawOpenClBuffers::write_inputs(std::size_t slot, const float* a, const float* b) {
  const auto& s = impl_->slots[slot];
  const std::size_t bytes = impl_->n * sizeof(float);
  cl_command_queue q = impl_->cl->queue;
  RAW_CL_TRY("clEnqueueWriteBuffer", clEnqueueWriteBuffer(q, s.a, CL_FALSE, 0, bytes, a, 0, nullptr, nullptr));
  RAW_CL_TRY("clEnqueueWriteBuffer", clEnqueueWriteBuffer(q, s.b, CL_FALSE, 0, bytes, b, 0, nullptr, nullptr));
  return {};
}

Status RawOpenClBuffers::add(std::size_t slot) {
  auto& cl = *impl_->cl;
  const auto& s = impl_->slots[slot];
  if (cl.bound != &s) {
    const cl_uint n = static_cast<cl_uint>(impl_->n);
    RAW_CL_TRY("clSetKernelArg", clSetKernelArg(cl.kernel, 0, sizeof(cl_mem), &s.a));
    RAW_CL_TRY("clSetKernelArg", clSetKernelArg(cl.kernel, 1, sizeof(cl_mem), &s.b));
    RAW_CL_TRY("clSetKernelArg", clSetKernelArg(cl.kernel, 2, sizeof(cl_mem), &s.out));
    RAW_CL_TRY("clSetKernelArg", clSetKernelArg(cl.kernel, 3, sizeof(cl_uint), &n));
    cl.bound = &s;
  }
  const std::size_t global = (impl_->n + kRoundTo - 1) / kRoundTo * kRoundTo;
  RAW_CL_TRY("clEnqueueNDRangeKernel",
             clEnqueueNDRangeKernel(cl.queue, cl.kernel, 1, nullptr, &global, nullptr, 0, nullptr, nullptr));
  return {};
}

Status RawOpenClBuffers::read_output(std::size_t slot, float* out, bool blocking) {
  RAW_CL_TRY("clEnqueueReadBuffer",
             clEnqueueReadBuffer(impl_->cl->queue, impl_->slots[slot].out, blocking ? CL_TRUE : CL_FALSE, 0,
                                 impl_->n * sizeof(float), out, 0, nullptr, nullptr));
  return {};
}

Status RawOpenClBuffers::finish() {
  RAW_CL_TRY("clFinish", clFinish(impl_->cl->queue));
  return {};
}

}  // namespace gpubridge::bench

#else  // built without OpenCL: nothing can be created, so the other members are never reached.

namespace gpubridge::bench {

namespace {
Error unavailable() { return Error(ErrorCode::unavailable, "built without the OpenCL backend"); }
}  // namespace

struct RawOpenCl::Impl {};
RawOpenCl::RawOpenCl(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawOpenCl::~RawOpenCl() = default;
Result<std::unique_ptr<RawOpenCl>> RawOpenCl::create(const std::string&) { return unavailable(); }

struct RawOpenClBuffers::Impl {};
RawOpenClBuffers::RawOpenClBuffers(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawOpenClBuffers::~RawOpenClBuffers() = default;
Result<std::unique_ptr<RawOpenClBuffers>> RawOpenClBuffers::create(RawOpenCl&, std::size_t, std::size_t) {
  return unavailable();
}
Status RawOpenClBuffers::write_inputs(std::size_t, const float*, const float*) { return unavailable(); }
Status RawOpenClBuffers::add(std::size_t) { return unavailable(); }
Status RawOpenClBuffers::read_output(std::size_t, float*, bool) { return unavailable(); }
Status RawOpenClBuffers::finish() { return unavailable(); }

}  // namespace gpubridge::bench

#endif

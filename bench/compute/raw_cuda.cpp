// Raw CUDA reference (see raw_cuda.hpp): cudart + NVRTC, nothing else on the measured path.
#include "compute/raw_cuda.hpp"

#if GPUBRIDGE_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <nvrtc.h>

#include <array>
#include <cstring>
#include <vector>

#include "compute/cuda/cublas_library.hpp"
#include "compute/cuda/cuda_error.hpp"
#include "compute/gpu/gpu_recipe.hpp"

namespace gpubridge::bench {

namespace {

using compute::cuda::to_error;

constexpr std::string_view kReferenceSource = R"(
extern "C" __global__ void raw_add(const float* a, const float* b, float* out, unsigned long long n) {
  const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}
)";
constexpr unsigned kBlock = 256;

#define RAW_CUDA_TRY(expr)                               \
  do {                                                   \
    const cudaError_t raw_status_ = (expr);              \
    if (raw_status_ != cudaSuccess) return to_error(raw_status_, #expr); \
  } while (0)

// Highest architecture NVRTC supports that the device runs: a cubin on an exact match, else PTX.
Result<std::string> nvrtc_target(int cc) {
  int count = 0;
  if (nvrtcResult r = nvrtcGetNumSupportedArchs(&count); r != NVRTC_SUCCESS) return to_error(r, "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(static_cast<std::size_t>(count));
  if (nvrtcResult r = nvrtcGetSupportedArchs(archs.data()); r != NVRTC_SUCCESS) return to_error(r, "nvrtcGetSupportedArchs");
  int best = -1;
  for (int a : archs) {
    if (a <= cc && a > best) best = a;
  }
  if (best < 0) return Error(ErrorCode::failed_precondition, "NVRTC cannot target compute capability " + std::to_string(cc));
  return (best == cc ? "sm_" : "compute_") + std::to_string(best);
}

Result<std::vector<char>> nvrtc_compile(std::string_view source, const std::string& target,
                                        const std::vector<std::string>& defines) {
  nvrtcProgram prog = nullptr;
  const std::string src(source);
  if (nvrtcResult r = nvrtcCreateProgram(&prog, src.c_str(), "raw_reference.cu", 0, nullptr, nullptr); r != NVRTC_SUCCESS) {
    return to_error(r, "nvrtcCreateProgram");
  }
  std::vector<std::string> options{"--gpu-architecture=" + target, "--std=c++17"};
  options.insert(options.end(), defines.begin(), defines.end());
  std::vector<const char*> opts;
  for (const auto& o : options) opts.push_back(o.c_str());
  if (nvrtcResult r = nvrtcCompileProgram(prog, static_cast<int>(opts.size()), opts.data()); r != NVRTC_SUCCESS) {
    std::size_t log_size = 0;
    std::string log;
    if (nvrtcGetProgramLogSize(prog, &log_size) == NVRTC_SUCCESS && log_size > 0) {
      log.resize(log_size);
      if (nvrtcGetProgramLog(prog, log.data()) != NVRTC_SUCCESS) log.clear();
    }
    nvrtcDestroyProgram(&prog);
    Error e = to_error(r, "nvrtcCompileProgram");
    return Error(e.code(), e.message() + ": " + log.substr(0, 2000));
  }
  const bool cubin = target.rfind("sm_", 0) == 0;
  std::size_t size = 0;
  nvrtcResult r = cubin ? nvrtcGetCUBINSize(prog, &size) : nvrtcGetPTXSize(prog, &size);
  std::vector<char> image(size);
  if (r == NVRTC_SUCCESS) r = cubin ? nvrtcGetCUBIN(prog, image.data()) : nvrtcGetPTX(prog, image.data());
  nvrtcDestroyProgram(&prog);
  if (r != NVRTC_SUCCESS) return to_error(r, cubin ? "nvrtcGetCUBIN" : "nvrtcGetPTX");
  if (!cubin) image.push_back('\0');
  return image;
}

}  // namespace

struct RawCuda::Impl {
  int ordinal = 0;
  std::string name;
  cudaStream_t stream = nullptr;
  std::array<cudaLibrary_t, 2> libraries{};
  cudaKernel_t reference_add = nullptr;
  cudaKernel_t portable_add = nullptr;

  ~Impl() {
    // Teardown errors (e.g. a device already lost) cannot be acted on here and are ignored.
    if (stream != nullptr) cudaStreamDestroy(stream);
    for (cudaLibrary_t lib : libraries) {
      if (lib != nullptr) cudaLibraryUnload(lib);
    }
  }

  Result<cudaKernel_t> load(std::size_t index, const std::vector<char>& image, const char* entry) {
    RAW_CUDA_TRY(cudaLibraryLoadData(&libraries[index], image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0));
    cudaKernel_t k = nullptr;
    RAW_CUDA_TRY(cudaLibraryGetKernel(&k, libraries[index], entry));
    return k;
  }

  Status init(int device) {
    ordinal = device;
    RAW_CUDA_TRY(cudaSetDevice(device));
    cudaDeviceProp prop{};
    RAW_CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    name = prop.name;
    auto target = nvrtc_target(prop.major * 10 + prop.minor);
    if (!target) return target.error();

    auto reference = nvrtc_compile(kReferenceSource, *target, {});
    if (!reference) return reference.error();
    std::vector<std::string> defines;
    const std::string all = compute::detail::portable_defines(compute::DType::f32, "-D");
    for (std::size_t pos = 0; pos < all.size();) {
      const std::size_t space = all.find(' ', pos);
      const std::size_t end = space == std::string::npos ? all.size() : space;
      if (end > pos) defines.push_back(all.substr(pos, end - pos));
      pos = end + 1;
    }
    auto portable = nvrtc_compile(compute::detail::portable_kernel_source(), *target, defines);
    if (!portable) return portable.error();

    auto k0 = load(0, *reference, "raw_add");
    if (!k0) return k0.error();
    reference_add = *k0;
    auto k1 = load(1, *portable, "gb_add");
    if (!k1) return k1.error();
    portable_add = *k1;
    RAW_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    return {};
  }
};

RawCuda::RawCuda(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawCuda::~RawCuda() = default;

Result<std::unique_ptr<RawCuda>> RawCuda::create(int ordinal) {
  auto impl = std::make_unique<Impl>();
  if (Status s = impl->init(ordinal); !s) return s.error();
  return std::unique_ptr<RawCuda>(new RawCuda(std::move(impl)));
}

const std::string& RawCuda::device_name() const { return impl_->name; }

struct RawCudaBuffers::Impl {
  RawCuda::Impl* cuda = nullptr;
  std::size_t n = 0;
  std::size_t slots = 0;
  float* host_in = nullptr;    // slots x [a | b], page-locked
  float* host_out = nullptr;   // slots x n, page-locked
  float* dev_in = nullptr;     // slots x [a | b]
  float* dev_out = nullptr;    // slots x n
  void* dev_copy = nullptr;    // 6n bytes, optional

  ~Impl() {
    // Frees cannot fail in a way the benchmark could handle; errors are ignored on purpose.
    if (cuda != nullptr && cuda->stream != nullptr) cudaStreamSynchronize(cuda->stream);
    if (host_in != nullptr) cudaFreeHost(host_in);
    if (host_out != nullptr) cudaFreeHost(host_out);
    if (dev_in != nullptr) cudaFree(dev_in);
    if (dev_out != nullptr) cudaFree(dev_out);
    if (dev_copy != nullptr) cudaFree(dev_copy);
  }

  float* in(float* base, std::size_t slot) const { return base + slot * 2 * n; }
  float* out(float* base, std::size_t slot) const { return base + slot * n; }
};

RawCudaBuffers::RawCudaBuffers(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawCudaBuffers::~RawCudaBuffers() = default;

Result<std::unique_ptr<RawCudaBuffers>> RawCudaBuffers::create(RawCuda& cuda, std::size_t n, std::size_t slots,
                                                               bool with_copy_target) {
  auto impl = std::make_unique<Impl>();
  impl->cuda = &cuda.impl();
  impl->n = n;
  impl->slots = slots;
  const std::size_t in_bytes = slots * 2 * n * sizeof(float);
  const std::size_t out_bytes = slots * n * sizeof(float);
  RAW_CUDA_TRY(cudaSetDevice(impl->cuda->ordinal));
  RAW_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&impl->host_in), in_bytes));
  RAW_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&impl->host_out), out_bytes));
  RAW_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&impl->dev_in), in_bytes));
  RAW_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&impl->dev_out), out_bytes));
  if (with_copy_target) RAW_CUDA_TRY(cudaMalloc(&impl->dev_copy, 6 * n));
  return std::unique_ptr<RawCudaBuffers>(new RawCudaBuffers(std::move(impl)));
}

void RawCudaBuffers::stage_inputs(std::size_t slot, const float* a, const float* b) {
  float* dst = impl_->in(impl_->host_in, slot);
  std::memcpy(dst, a, impl_->n * sizeof(float));
  std::memcpy(dst + impl_->n, b, impl_->n * sizeof(float));
}

Status RawCudaBuffers::upload(std::size_t slot) {
  RAW_CUDA_TRY(cudaMemcpyAsync(impl_->in(impl_->dev_in, slot), impl_->in(impl_->host_in, slot),
                               2 * impl_->n * sizeof(float), cudaMemcpyHostToDevice, impl_->cuda->stream));
  return {};
}

Status RawCudaBuffers::copy_pageable(const float* a, const float* b, float* out) {
  const std::size_t bytes = impl_->n * sizeof(float);
  float* dev = impl_->in(impl_->dev_in, 0);
  RAW_CUDA_TRY(cudaMemcpyAsync(dev, a, bytes, cudaMemcpyHostToDevice, impl_->cuda->stream));
  RAW_CUDA_TRY(cudaMemcpyAsync(dev + impl_->n, b, bytes, cudaMemcpyHostToDevice, impl_->cuda->stream));
  RAW_CUDA_TRY(cudaMemcpyAsync(out, impl_->out(impl_->dev_out, 0), bytes, cudaMemcpyDeviceToHost, impl_->cuda->stream));
  RAW_CUDA_TRY(cudaStreamSynchronize(impl_->cuda->stream));
  return {};
}

Status RawCudaBuffers::add(std::size_t slot, RawCudaKernel kernel) {
  const float* a = impl_->in(impl_->dev_in, slot);
  const float* b = a + impl_->n;
  float* out = impl_->out(impl_->dev_out, slot);
  unsigned long long count = impl_->n;
  void* args[] = {&a, &b, &out, &count};
  const bool reference = kernel == RawCudaKernel::reference_add;
  const std::uint64_t blocks =
      reference ? (impl_->n + kBlock - 1) / kBlock : compute::detail::elementwise_groups(impl_->n);
  const unsigned block = reference ? kBlock : compute::detail::kGroupSize;
  const cudaKernel_t k = reference ? impl_->cuda->reference_add : impl_->cuda->portable_add;
  RAW_CUDA_TRY(cudaLaunchKernel(reinterpret_cast<const void*>(k), dim3(static_cast<unsigned>(blocks)), dim3(block),
                                args, 0, impl_->cuda->stream));
  return {};
}

Status RawCudaBuffers::download(std::size_t slot) {
  RAW_CUDA_TRY(cudaMemcpyAsync(impl_->out(impl_->host_out, slot), impl_->out(impl_->dev_out, slot),
                               impl_->n * sizeof(float), cudaMemcpyDeviceToHost, impl_->cuda->stream));
  return {};
}

Status RawCudaBuffers::device_copy() {
  if (impl_->dev_copy == nullptr) return Error(ErrorCode::failed_precondition, "no copy target allocated");
  RAW_CUDA_TRY(cudaMemcpyAsync(impl_->dev_copy, impl_->dev_in, 6 * impl_->n, cudaMemcpyDeviceToDevice,
                               impl_->cuda->stream));
  return {};
}

Status RawCudaBuffers::synchronize() {
  RAW_CUDA_TRY(cudaStreamSynchronize(impl_->cuda->stream));
  return {};
}

const float* RawCudaBuffers::staged_output(std::size_t slot) const { return impl_->out(impl_->host_out, slot); }

float* RawCudaBuffers::staged_input(std::size_t slot) { return impl_->in(impl_->host_in, slot); }

struct RawCublasGemm::Impl {
  RawCuda::Impl* cuda = nullptr;
  std::size_t m = 0, k = 0, n = 0;
  float* a = nullptr;
  float* b = nullptr;
  float* c = nullptr;
  void* handle = nullptr;

  ~Impl() {
    // Teardown errors cannot be acted on here and are ignored.
    if (handle != nullptr) compute::cuda::CublasLibrary::instance().destroy_handle(handle);
    for (float* p : {a, b, c}) {
      if (p != nullptr) cudaFree(p);
    }
  }
};

RawCublasGemm::RawCublasGemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawCublasGemm::~RawCublasGemm() = default;

Result<std::unique_ptr<RawCublasGemm>> RawCublasGemm::create(RawCuda& cuda, std::size_t m, std::size_t k,
                                                             std::size_t n) {
  const compute::cuda::CublasLibrary& cublas = compute::cuda::CublasLibrary::instance();
  if (!cublas.available()) return Error(ErrorCode::failed_precondition, cublas.unavailable_reason());
  auto impl = std::make_unique<Impl>();
  impl->cuda = &cuda.impl();
  impl->m = m;
  impl->k = k;
  impl->n = n;
  RAW_CUDA_TRY(cudaSetDevice(impl->cuda->ordinal));
  RAW_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&impl->a), m * k * sizeof(float)));
  RAW_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&impl->b), k * n * sizeof(float)));
  RAW_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&impl->c), m * n * sizeof(float)));
  auto handle = cublas.create_handle();
  if (!handle) return handle.error();
  impl->handle = *handle;
  return std::unique_ptr<RawCublasGemm>(new RawCublasGemm(std::move(impl)));
}

Status RawCublasGemm::run(const float* a, const float* b, float* c) {
  Impl& g = *impl_;
  cudaStream_t stream = g.cuda->stream;
  RAW_CUDA_TRY(cudaMemcpyAsync(g.a, a, g.m * g.k * sizeof(float), cudaMemcpyHostToDevice, stream));
  RAW_CUDA_TRY(cudaMemcpyAsync(g.b, b, g.k * g.n * sizeof(float), cudaMemcpyHostToDevice, stream));
  if (Status s = compute::cuda::CublasLibrary::instance().gemm(g.handle, stream, compute::DType::f32, g.m, g.k, g.n,
                                                               g.a, g.b, g.c);
      !s) {
    return s;
  }
  RAW_CUDA_TRY(cudaMemcpyAsync(c, g.c, g.m * g.n * sizeof(float), cudaMemcpyDeviceToHost, stream));
  RAW_CUDA_TRY(cudaStreamSynchronize(stream));
  return {};
}

}  // namespace gpubridge::bench

#else  // built without CUDA: nothing can be created, so the other members are never reached.

namespace gpubridge::bench {

namespace {
Error unavailable() { return Error(ErrorCode::unavailable, "built without the CUDA backend"); }
}  // namespace

struct RawCuda::Impl {
  std::string name;
};
RawCuda::RawCuda(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawCuda::~RawCuda() = default;
Result<std::unique_ptr<RawCuda>> RawCuda::create(int) { return unavailable(); }
const std::string& RawCuda::device_name() const { return impl_->name; }

struct RawCudaBuffers::Impl {};
RawCudaBuffers::RawCudaBuffers(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawCudaBuffers::~RawCudaBuffers() = default;
Result<std::unique_ptr<RawCudaBuffers>> RawCudaBuffers::create(RawCuda&, std::size_t, std::size_t, bool) {
  return unavailable();
}
void RawCudaBuffers::stage_inputs(std::size_t, const float*, const float*) {}
Status RawCudaBuffers::upload(std::size_t) { return unavailable(); }
Status RawCudaBuffers::add(std::size_t, RawCudaKernel) { return unavailable(); }
Status RawCudaBuffers::download(std::size_t) { return unavailable(); }
Status RawCudaBuffers::copy_pageable(const float*, const float*, float*) { return unavailable(); }
Status RawCudaBuffers::device_copy() { return unavailable(); }
Status RawCudaBuffers::synchronize() { return unavailable(); }
const float* RawCudaBuffers::staged_output(std::size_t) const { return nullptr; }
float* RawCudaBuffers::staged_input(std::size_t) { return nullptr; }

struct RawCublasGemm::Impl {};
RawCublasGemm::RawCublasGemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawCublasGemm::~RawCublasGemm() = default;
Result<std::unique_ptr<RawCublasGemm>> RawCublasGemm::create(RawCuda&, std::size_t, std::size_t, std::size_t) {
  return unavailable();
}
Status RawCublasGemm::run(const float*, const float*, float*) { return unavailable(); }

}  // namespace gpubridge::bench

#endif

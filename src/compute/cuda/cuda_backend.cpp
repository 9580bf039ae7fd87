// The CUDA backend: cudart + NVRTC only (libcuda is never linked).
//
// Per device: a stream-ordered memory pool (cudaMemPool) whose release threshold keeps freed
// memory reserved, so warm calls allocate without the driver; a page-locked staging pool; and
// kLanes lanes. A lane is a non-blocking stream plus one completion thread: a call packs its
// inputs into staging (in chunks, each copied to the device as soon as it is packed, so packing
// overlaps the transfer), runs its recipe, copies output and aux back into staging, frees its
// device memory in stream order and records an event; the lane's completion thread waits for the
// event, unpacks the result and completes the call. Lanes spread calls over streams so copies of
// one call overlap kernels of another.
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

#include "compute/backend.hpp"
#include "compute/cuda/cuda_error.hpp"
#include "compute/cuda/nvrtc_program.hpp"
#include "compute/cuda/pinned_pool.hpp"
#include "compute/gpu/gpu_recipe.hpp"

namespace gpubridge::compute {

namespace {

using cuda::to_error;

constexpr unsigned kLanes = 4;
constexpr std::size_t kSlotAlign = 256;
constexpr std::size_t kUploadChunk = std::size_t{8} << 20;
constexpr std::size_t kMaxCachedStaging = std::size_t{1} << 30;

std::size_t align_up(std::size_t v) { return (v + kSlotAlign - 1) / kSlotAlign * kSlotAlign; }

// Byte offsets of a call's slots in one device allocation, mirrored in its staging buffer:
// [inputs][output][aux] are staged (inputs up, output+aux down); scratch lives on the device only.
struct Layout {
  std::array<std::size_t, 4> input{};
  std::size_t output = 0, aux = 0, scratch = 0, staged_bytes = 0, device_bytes = 0;
  std::size_t inputs_bytes = 0, download_bytes = 0;

  Layout(const PreparedCall& c, const detail::GpuRecipe& r) {
    const std::size_t t = size_of(c.dtype);
    std::size_t off = 0;
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      input[i] = off;
      off += align_up(c.n * t);
    }
    inputs_bytes = off;
    output = off;
    off += align_up(c.output_count * t);
    aux = off;
    off += align_up(r.aux_elems * t);
    staged_bytes = off;
    download_bytes = staged_bytes - output;
    scratch = off;
    off += align_up(r.scratch_elems * t);
    device_bytes = off;
  }
  std::size_t offset(detail::Slot s) const {
    switch (s) {
      case detail::Slot::input0: return input[0];
      case detail::Slot::input1: return input[1];
      case detail::Slot::input2: return input[2];
      case detail::Slot::input3: return input[3];
      case detail::Slot::output: return output;
      case detail::Slot::aux: return aux;
      case detail::Slot::scratch: return scratch;
    }
    return 0;
  }
};

struct Pending {
  std::shared_ptr<const PreparedCall> call;
  BackendCompletion done;
  cuda::PinnedBuffer staging;
  cudaEvent_t event = nullptr;
  std::size_t device_bytes = 0;
};

struct DeviceState;

struct Lane {
  cudaStream_t stream = nullptr;
  std::mutex submit_mutex;  // one call enqueues at a time on this stream
  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<Pending> queue;
  std::vector<cudaEvent_t> free_events;  // guarded by queue_mutex
  bool stopping = false;
  std::thread completer;
};

struct DeviceState {
  Device device;
  int cuda_ordinal = 0;
  int compute_capability = 0;
  int max_threads_per_block = 0;
  cudaMemPool_t pool = nullptr;
  std::uint64_t pool_limit = 0;  // 0: none
  cuda::PinnedPool staging{kMaxCachedStaging};
  std::array<std::unique_ptr<Lane>, kLanes> lanes;
  std::atomic<unsigned> next_lane{0};

  std::mutex program_mutex;
  std::array<std::optional<Result<std::shared_ptr<cuda::NvrtcProgram>>>, 2> programs;  // by dtype

  std::mutex pool_mutex;  // pool statistics
  PoolStats pool_stats;
};

// Executes recipe launches on one stream against one device allocation.
class CudaLauncher final : public detail::GpuLauncher {
 public:
  CudaLauncher(cuda::NvrtcProgram& program, cudaStream_t stream, std::byte* base, const Layout& layout, DType dtype)
      : program_(program), stream_(stream), base_(base), layout_(layout), dtype_(dtype) {}

  Status launch(std::string_view entry, std::uint64_t groups, std::span<const detail::LaunchArg> args) override {
    auto kernel = program_.kernel(std::string(entry));
    if (!kernel) return kernel.error();
    constexpr std::size_t kMaxArgs = 8;
    if (args.size() > kMaxArgs) return Error(ErrorCode::internal, "too many kernel arguments");
    std::array<void*, kMaxArgs> ptrs{};
    std::array<std::uint64_t, kMaxArgs> counts{};
    std::array<double, kMaxArgs> doubles{};
    std::array<float, kMaxArgs> floats{};
    std::array<void*, kMaxArgs> buffers{};
    for (std::size_t i = 0; i < args.size(); ++i) {
      const auto& a = args[i];
      switch (a.kind) {
        case detail::LaunchArg::Kind::buffer:
          buffers[i] = base_ + layout_.offset(a.slot);
          ptrs[i] = &buffers[i];
          break;
        case detail::LaunchArg::Kind::count:
          counts[i] = a.count;
          ptrs[i] = &counts[i];
          break;
        case detail::LaunchArg::Kind::scalar:
          if (dtype_ == DType::f32) {
            floats[i] = static_cast<float>(a.scalar);
            ptrs[i] = &floats[i];
          } else {
            doubles[i] = a.scalar;
            ptrs[i] = &doubles[i];
          }
          break;
      }
    }
    GB_CUDA_TRY(cudaLaunchKernel(reinterpret_cast<const void*>(*kernel), dim3(static_cast<unsigned>(groups)),
                                 dim3(detail::kGroupSize), ptrs.data(), 0, stream_));
    return {};
  }

 private:
  cuda::NvrtcProgram& program_;
  cudaStream_t stream_;
  std::byte* base_;
  const Layout& layout_;
  DType dtype_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& options) {
    int count = 0;
    if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
      cudaGetLastError();
      reason_ = "cudaGetDeviceCount: " + cuda::describe(e);
      return;
    }
    if (count == 0) {
      reason_ = "cudaGetDeviceCount: no CUDA device";
      return;
    }
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    std::string problems;
    for (int i = 0; i < count; ++i) {
      auto state = std::make_unique<DeviceState>();
      if (Status s = init_device(*state, i, count, driver, runtime, options); !s) {
        problems += (problems.empty() ? "" : "; ") + ("cuda device " + std::to_string(i) + ": " + s.error().message());
        continue;
      }
      state->device.ordinal = static_cast<int>(devices_.size());
      state->device.id = "cuda:" + std::to_string(state->device.ordinal);
      devices_.push_back(std::move(state));
    }
    for (auto& d : devices_) start_lanes(*d);
    if (devices_.empty()) reason_ = problems;
  }

  ~CudaBackend() override {
    for (auto& d : devices_) {
      for (auto& lane : d->lanes) {
        if (!lane) continue;
        {
          std::lock_guard lock(lane->queue_mutex);
          lane->stopping = true;
        }
        lane->queue_cv.notify_all();
        if (lane->completer.joinable()) lane->completer.join();
        cudaSetDevice(d->cuda_ordinal);
        for (cudaEvent_t e : lane->free_events) cudaEventDestroy(e);
        cudaStreamDestroy(lane->stream);
      }
      if (d->pool != nullptr) cudaMemPoolDestroy(d->pool);
    }
  }

  BackendKind kind() const override { return BackendKind::cuda; }

  BackendStatus status() const override {
    BackendStatus st{BackendKind::cuda, !devices_.empty(), reason_, {}};
    for (const auto& d : devices_) {
      Device dev = d->device;
      std::size_t free = 0, total = 0;
      if (cudaSetDevice(d->cuda_ordinal) == cudaSuccess && cudaMemGetInfo(&free, &total) == cudaSuccess) {
        dev.memory_free_bytes = free;
      } else {
        cudaGetLastError();
      }
      st.devices.push_back(std::move(dev));
    }
    return st;
  }

  Status can_run(int ordinal, const KernelDef& def, DType dtype) const override {
    if (ordinal < 0 || static_cast<std::size_t>(ordinal) >= devices_.size()) {
      return Error(ErrorCode::failed_precondition, "no CUDA device " + std::to_string(ordinal));
    }
    if (def.gpu == nullptr) {
      return Error(ErrorCode::failed_precondition, "kernel '" + def.id + "' has no GPU implementation");
    }
    if (devices_[static_cast<std::size_t>(ordinal)]->max_threads_per_block < static_cast<int>(detail::kGroupSize)) {
      return Error(ErrorCode::failed_precondition, "device allows fewer than 256 threads per block");
    }
    // Compiles the dtype's program on first use; a build failure makes the kernel missing here.
    auto program = program_for(*devices_[static_cast<std::size_t>(ordinal)], dtype);
    if (!program) return Error(ErrorCode::failed_precondition, program.error().message());
    return {};
  }

  void execute(int ordinal, std::shared_ptr<const PreparedCall> call, BackendCompletion done) override {
    DeviceState& d = *devices_.at(static_cast<std::size_t>(ordinal));
    auto program = program_for(d, call->dtype);
    if (!program) {
      done(Error(ErrorCode::failed_precondition, program.error().message()));
      return;
    }
    Lane& lane = *d.lanes[d.next_lane.fetch_add(1) % kLanes];
    std::unique_lock submit(lane.submit_mutex);
    Pending p{call, std::move(done), {}, nullptr, 0};
    if (Status s = enqueue(d, lane, **program, p); !s) {
      submit.unlock();
      d.staging.release(p.staging);
      if (p.event != nullptr) recycle_event(lane, p.event);
      p.done(s.error());
      return;
    }
    {
      std::lock_guard lock(lane.queue_mutex);
      lane.queue.push_back(std::move(p));
    }
    lane.queue_cv.notify_one();
  }

  PoolStats device_pool_stats(int ordinal) const override {
    DeviceState& d = *devices_.at(static_cast<std::size_t>(ordinal));
    std::lock_guard lock(d.pool_mutex);
    PoolStats s = d.pool_stats;
    std::uint64_t reserved = 0;
    if (cudaMemPoolGetAttribute(d.pool, cudaMemPoolAttrReservedMemCurrent, &reserved) == cudaSuccess) {
      s.bytes_reserved = reserved;
    }
    return s;
  }

  PoolStats staging_pool_stats(int ordinal) const override {
    return devices_.at(static_cast<std::size_t>(ordinal))->staging.stats();
  }

 private:
  static Status init_device(DeviceState& d, int i, int count, int driver, int runtime, const BackendOptions& options) {
    cudaDeviceProp prop{};
    GB_CUDA_TRY(cudaGetDeviceProperties(&prop, i));
    int native_atomics = 0;
    GB_CUDA_TRY(cudaDeviceGetAttribute(&native_atomics, cudaDevAttrHostNativeAtomicSupported, i));
    bool peer = false;
    for (int j = 0; j < count; ++j) {
      int can = 0;
      if (j != i && cudaDeviceCanAccessPeer(&can, i, j) == cudaSuccess && can) peer = true;
    }
    d.cuda_ordinal = i;
    d.compute_capability = prop.major * 10 + prop.minor;
    d.max_threads_per_block = prop.maxThreadsPerBlock;
    d.device.backend = BackendKind::cuda;
    d.device.name = prop.name;
    d.device.vendor = "NVIDIA";
    d.device.driver = "CUDA driver " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) +
                      ", runtime " + std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10) +
                      ", sm_" + std::to_string(d.compute_capability);
    d.device.memory_total_bytes = prop.totalGlobalMem;
    d.device.compute_units = static_cast<std::uint32_t>(prop.multiProcessorCount);
    d.device.is_gpu = true;
    d.device.caps = {.fp64 = true,
                     .host_mapped_memory = prop.canMapHostMemory != 0,
                     .host_native_atomics = native_atomics != 0,
                     .peer_access = peer};

    GB_CUDA_TRY(cudaSetDevice(i));
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = i;
    GB_CUDA_TRY(cudaMemPoolCreate(&d.pool, &props));
    // Keep freed memory reserved up to the limit (or a quarter of the device) so warm calls
    // never go back to the driver.
    std::uint64_t threshold = options.device_pool_limit_bytes ? options.device_pool_limit_bytes
                                                              : prop.totalGlobalMem / 4;
    GB_CUDA_TRY(cudaMemPoolSetAttribute(d.pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    d.pool_limit = options.device_pool_limit_bytes;
    for (auto& lane : d.lanes) {
      lane = std::make_unique<Lane>();
      GB_CUDA_TRY(cudaStreamCreateWithFlags(&lane->stream, cudaStreamNonBlocking));
    }
    return {};
  }

  void start_lanes(DeviceState& d) {
    for (auto& lane : d.lanes) {
      Lane* l = lane.get();
      l->completer = std::thread([this, &d, l] { complete_loop(d, *l); });
    }
  }

  static Result<std::shared_ptr<cuda::NvrtcProgram>> program_for(DeviceState& d, DType dtype) {
    std::lock_guard lock(d.program_mutex);
    auto& slot = d.programs[dtype == DType::f32 ? 0 : 1];
    if (!slot) {
      if (cudaError_t e = cudaSetDevice(d.cuda_ordinal); e != cudaSuccess) return to_error(e, "cudaSetDevice");
      slot = cuda::NvrtcProgram::build(detail::portable_kernel_source(), dtype, d.compute_capability);
    }
    return *slot;
  }

  cudaEvent_t take_event(Lane& lane) {
    std::lock_guard lock(lane.queue_mutex);
    if (lane.free_events.empty()) return nullptr;
    cudaEvent_t e = lane.free_events.back();
    lane.free_events.pop_back();
    return e;
  }
  void recycle_event(Lane& lane, cudaEvent_t e) {
    std::lock_guard lock(lane.queue_mutex);
    lane.free_events.push_back(e);
  }

  // Enqueues the whole call on the lane's stream. On error, what was taken is left in `p` for
  // the caller to release; device memory is always freed in stream order here.
  Status enqueue(DeviceState& d, Lane& lane, cuda::NvrtcProgram& program, Pending& p) {
    const PreparedCall& c = *p.call;
    const detail::GpuRecipe& recipe = *c.def->gpu;
    const Layout layout(c, recipe);
    GB_CUDA_TRY(cudaSetDevice(d.cuda_ordinal));

    if (d.pool_limit != 0) {
      std::lock_guard lock(d.pool_mutex);
      if (d.pool_stats.bytes_in_use + layout.device_bytes > d.pool_limit) {
        return Error(ErrorCode::resource_exhausted,
                     "call needs " + std::to_string(layout.device_bytes) + " bytes of device memory; pool limit " +
                         std::to_string(d.pool_limit) + " bytes with " + std::to_string(d.pool_stats.bytes_in_use) +
                         " in use");
      }
    }
    auto staging = d.staging.acquire(layout.staged_bytes);
    if (!staging) return staging.error();
    p.staging = *staging;

    std::uint64_t reserved_before = 0, reserved_after = 0;
    cudaMemPoolGetAttribute(d.pool, cudaMemPoolAttrReservedMemCurrent, &reserved_before);
    void* base_ptr = nullptr;
    GB_CUDA_TRY(cudaMallocFromPoolAsync(&base_ptr, layout.device_bytes, d.pool, lane.stream));
    cudaMemPoolGetAttribute(d.pool, cudaMemPoolAttrReservedMemCurrent, &reserved_after);
    {
      std::lock_guard lock(d.pool_mutex);
      (reserved_after > reserved_before ? d.pool_stats.misses : d.pool_stats.hits) += 1;
      d.pool_stats.bytes_in_use += layout.device_bytes;
      d.pool_stats.peak_bytes_in_use = std::max(d.pool_stats.peak_bytes_in_use, d.pool_stats.bytes_in_use);
    }
    p.device_bytes = layout.device_bytes;
    auto* base = static_cast<std::byte*>(base_ptr);
    Status s = enqueue_work(lane, program, c, recipe, layout, base, p.staging.data);
    // Freed in stream order: after the work above, whether or not it was all enqueued.
    const cudaError_t freed = cudaFreeAsync(base, lane.stream);
    if (s && freed != cudaSuccess) s = to_error(freed, "cudaFreeAsync");
    if (s) {
      p.event = take_event(lane);
      if (p.event == nullptr) {
        if (cudaError_t e = cudaEventCreateWithFlags(&p.event, cudaEventDisableTiming); e != cudaSuccess) {
          p.event = nullptr;
          s = to_error(e, "cudaEventCreate");
        }
      }
      if (s) {
        if (cudaError_t e = cudaEventRecord(p.event, lane.stream); e != cudaSuccess) s = to_error(e, "cudaEventRecord");
      }
    }
    if (!s) {
      // The stream may still be using the staging buffer: wait before it is reused.
      cudaStreamSynchronize(lane.stream);
      cudaGetLastError();
      release_device_bytes(d, p.device_bytes);
    }
    return s;
  }

  static Status enqueue_work(Lane& lane, cuda::NvrtcProgram& program, const PreparedCall& c,
                             const detail::GpuRecipe& recipe, const Layout& layout, std::byte* base,
                             std::byte* staging) {
    // Pack inputs chunk by chunk; each chunk's copy starts while the next one is packed.
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      const auto* src = static_cast<const std::byte*>(c.inputs[i].data);
      const std::size_t bytes = c.inputs[i].bytes();
      for (std::size_t off = 0; off < bytes; off += kUploadChunk) {
        const std::size_t len = std::min(kUploadChunk, bytes - off);
        std::memcpy(staging + layout.input[i] + off, src + off, len);
        GB_CUDA_TRY(cudaMemcpyAsync(base + layout.input[i] + off, staging + layout.input[i] + off, len,
                                    cudaMemcpyHostToDevice, lane.stream));
      }
    }
    CudaLauncher launcher(program, lane.stream, base, layout, c.dtype);
    if (Status s = recipe.enqueue(launcher, c.n, c.scalars); !s) return s;
    GB_CUDA_TRY(cudaMemcpyAsync(staging + layout.output, base + layout.output, layout.download_bytes,
                                cudaMemcpyDeviceToHost, lane.stream));
    return {};
  }

  static void release_device_bytes(DeviceState& d, std::size_t bytes) {
    std::lock_guard lock(d.pool_mutex);
    d.pool_stats.bytes_in_use -= bytes;
  }

  void complete_loop(DeviceState& d, Lane& lane) {
    for (;;) {
      Pending p;
      {
        std::unique_lock lock(lane.queue_mutex);
        lane.queue_cv.wait(lock, [&] { return lane.stopping || !lane.queue.empty(); });
        if (lane.queue.empty()) return;
        p = std::move(lane.queue.front());
        lane.queue.pop_front();
      }
      const cudaError_t e = cudaEventSynchronize(p.event);
      release_device_bytes(d, p.device_bytes);
      Result<Tensor> out = e == cudaSuccess ? unpack(p) : Result<Tensor>(to_error(e, "running " + p.call->def->id));
      d.staging.release(p.staging);
      recycle_event(lane, p.event);
      p.done(std::move(out));
    }
  }

  static Result<Tensor> unpack(const Pending& p) {
    const PreparedCall& c = *p.call;
    const detail::GpuRecipe& recipe = *c.def->gpu;
    const Layout layout(c, recipe);
    if (recipe.check != nullptr) {
      std::vector<double> aux(recipe.aux_elems);
      for (std::size_t i = 0; i < aux.size(); ++i) {
        const std::byte* src = p.staging.data + layout.aux + i * size_of(c.dtype);
        if (c.dtype == DType::f32) {
          float v;
          std::memcpy(&v, src, sizeof v);
          aux[i] = v;
        } else {
          std::memcpy(&aux[i], src, sizeof(double));
        }
      }
      if (Status s = recipe.check(aux); !s) return s.error();
    }
    try {
      Tensor out(c.dtype, c.output_count);
      std::memcpy(out.data(), p.staging.data + layout.output, out.bytes());
      return out;
    } catch (const std::bad_alloc&) {
      return Error(ErrorCode::resource_exhausted, "out of host memory for the output of " + c.def->id);
    }
  }

  std::vector<std::unique_ptr<DeviceState>> devices_;
  std::string reason_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options) {
  return std::make_unique<CudaBackend>(options);
}

}  // namespace gpubridge::compute

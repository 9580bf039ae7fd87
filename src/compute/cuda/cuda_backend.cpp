// The CUDA backend: cudart + NVRTC only (libcuda is never linked).
//
// Per device: a stream-ordered memory pool (cudaMemPool) whose release threshold keeps freed
// memory reserved, so warm calls allocate without the driver; a page-locked staging pool; and
// kLanes lanes. A lane is a non-blocking work stream, a download stream and one completion
// thread. Lanes spread calls over streams so copies of one call overlap kernels of another.
//
// Two transfer paths, both through reused page-locked memory (inputs are pageable user memory):
// - packed (calls up to kPackedMaxBytes): inputs are packed into one staging buffer, uploaded,
//   the recipe runs, output and aux come back into the same buffer, device memory is freed in
//   stream order and an event is recorded; the completion thread waits for it and unpacks.
// - streamed (larger calls): inputs go through two kChunkBytes buffers in turn (packing chunk
//   k+1 overlaps the upload of chunk k), so staging memory does not grow with the call; the
//   completion thread downloads the output the same way on the download stream, then frees the
//   device memory.
//
// Batches of the dynamic batcher take the packed path in one piece: the offsets table, the
// per-segment scalars and every segment's inputs are packed into one pinned staging buffer
// (large batches are packed by the copy pool), uploaded with one copy, run by the segmented
// recipe, and output + per-segment aux come back with one copy; the completion thread checks
// each segment's aux and scatters each request's output straight from staging into its memory.
// Device memory comes from the stream-ordered pool, staging from the pinned pool: warm batches
// allocate nothing from the driver or the heap per request.
//
// Transfer timing (only when the observer wants it, asked once at construction): a pair of
// timing events from the lane's pool is recorded around each call's upload and download, each
// batch's upload and download and each resident copy; after completion cudaEventElapsedTime
// gives each copy's device time, anchored so that the last timed copy ends at the host time it
// was seen complete (see TransferTiming). A chunked upload or streamed download is one timed
// copy from its first chunk's start to its last chunk's end, gaps where the stream waited for
// the host to stage the next chunk included. The aux read-back of streamed and resident calls is
// not timed (nor counted by on_bytes_moved). Without timing no event is created or recorded.
//
// Pipelines (execute_pipeline): one device allocation holds the external inputs, every stage's
// output, scratch and aux; one pinned staging buffer mirrors [inputs][returned outputs + aux].
// One upload, the stages' launches back to back on the lane's stream, one download. The launches
// only (never the copies) are captured into a CUDA graph the first time a pipeline of a shape
// key (device, dtype, kernels, wiring, lengths, scalars, returned stages) runs; the graph is
// instantiated and cached (LRU, kGraphCacheEntries per device) together with the device
// allocation its launches point at, so a replay uploads into that same memory, launches the
// graph and downloads. An entry serves one run at a time; a run that finds it busy, a shape
// whose capture failed (the reason is kept) and recipes that read back mid-way (GpuLauncher::read
// cannot be captured) run as plain stream launches, and the report says why. Stage timing (when
// the observer wants it) records events between the stages of stream launches only; graph runs
// report no stage times.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <unordered_map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

#include "compute/backend.hpp"
#include "compute/cpu/thread_pool.hpp"
#include "compute/cuda/cublas_library.hpp"
#include "compute/cuda/cuda_error.hpp"
#include "compute/cuda/device_idle.hpp"
#include "compute/cuda/nvrtc_program.hpp"
#include "compute/cuda/pinned_pool.hpp"
#include "compute/gpu/batch_staging.hpp"
#include "compute/gpu/gpu_recipe.hpp"
#include "gpubridge/core/pci_address.hpp"
#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::compute {

namespace {

using cuda::to_error;

constexpr unsigned kLanes = 4;
constexpr std::size_t kSlotAlign = 256;
constexpr std::size_t kPackedMaxBytes = std::size_t{32} << 20;
constexpr std::size_t kChunkBytes = std::size_t{8} << 20;
constexpr std::size_t kMaxCachedStaging = std::size_t{1} << 30;
constexpr unsigned kCopyThreads = 4;

std::size_t align_up(std::size_t v) { return (v + kSlotAlign - 1) / kSlotAlign * kSlotAlign; }

// Device address of each buffer slot of one launch sequence (nullptr: the call has no such slot).
using SlotPointers = std::array<std::byte*, detail::kSlotCount>;
constexpr std::size_t slot_index(detail::Slot s) { return static_cast<std::size_t>(s); }

// Byte offsets of a call's slots in one device allocation, mirrored in its staging buffer:
// [inputs][output][aux] are staged (inputs up, output+aux down); scratch lives on the device only.
// Each input has its own length (inputs[i].count); scratch and aux sizes come from the recipe,
// for the call's shape.
struct Layout {
  std::array<std::size_t, 4> input{};
  std::array<std::size_t, 4> input_counts{};
  std::size_t output = 0, aux = 0, scratch = 0, staged_bytes = 0, device_bytes = 0;
  std::size_t inputs_bytes = 0, download_bytes = 0;
  std::size_t aux_elems = 0;

  Layout(const PreparedCall& c, const detail::GpuRecipe& r) {
    const std::size_t t = size_of(c.dtype);
    std::size_t off = 0;
    for (std::size_t i = 0; i < c.inputs.size() && i < input.size(); ++i) {
      input[i] = off;
      input_counts[i] = c.inputs[i].count;
      off += align_up(c.inputs[i].count * t);
    }
    const detail::ShapedBuffers temporaries = detail::buffers_for(r, shape(c));
    aux_elems = temporaries.aux_elems;
    inputs_bytes = off;
    output = off;
    off += align_up(c.output_count * t);
    aux = off;
    off += align_up(temporaries.aux_elems * t);
    staged_bytes = off;
    download_bytes = staged_bytes - output;
    scratch = off;
    off += align_up(temporaries.scratch_elems * t);
    device_bytes = off;
  }
  detail::ShapedArgs shape(const PreparedCall& c) const {
    return {std::span<const std::size_t>(input_counts.data(), std::min(c.inputs.size(), input_counts.size())),
            c.output_count, c.scalars};
  }
  // Device address of every slot the call has (nullptr for the batch-only slots).
  SlotPointers pointers(std::byte* base, std::size_t inputs) const {
    SlotPointers p{};
    for (std::size_t i = 0; i < inputs; ++i) p[i] = base + input[i];
    p[slot_index(detail::Slot::output)] = base + output;
    p[slot_index(detail::Slot::aux)] = base + aux;
    p[slot_index(detail::Slot::scratch)] = base + scratch;
    return p;
  }
};

// A copy timed on the device: events recorded around it on its stream (complete: end recorded).
struct TimedCopy {
  cudaEvent_t begin = nullptr;
  cudaEvent_t end = nullptr;
  bool complete = false;
  TransferDirection direction = TransferDirection::host_to_device;
  std::uint64_t bytes = 0;
};

// A captured pipeline graph, instantiated, with the device memory its launches use (or, with
// exec == nullptr, a shape that cannot be captured and why). Freed synchronously by the last
// owner (the cache or a run in flight); the backend clears its caches before its pools go.
struct GraphEntry {
  int cuda_ordinal = 0;
  cudaGraphExec_t exec = nullptr;
  std::byte* device = nullptr;
  std::size_t bytes = 0;
  std::mutex* pool_mutex = nullptr;  // the device's pool statistics
  PoolStats* pool_stats = nullptr;
  std::string uncapturable;          // exec == nullptr: why
  std::atomic<bool> in_use{false};   // a run uses exec and device now

  ~GraphEntry() {
    // Teardown errors cannot be reported from here; they are cleared and ignored on purpose.
    if (exec == nullptr && device == nullptr) return;
    cuda::DeviceIdle::run(cuda_ordinal, [&] {  // cudaFree may wait for the device to go idle
      cudaSetDevice(cuda_ordinal);
      if (exec != nullptr) cudaGraphExecDestroy(exec);
      if (device != nullptr) cudaFree(device);
      cudaGetLastError();
    });
    if (device != nullptr) {
      std::lock_guard lock(*pool_mutex);
      pool_stats->bytes_in_use -= bytes;
    }
  }
};

struct Pending {
  std::shared_ptr<const PreparedCall> call;  // a single call, or
  const BatchCall* batch = nullptr;           // a batch (owned by the batcher until batch_done)
  BackendCompletion done;
  BatchCompletion batch_done;
  cudaEvent_t event = nullptr;  // packed: everything done; streamed: upload and kernels done
  std::size_t device_bytes = 0;
  cuda::PinnedBuffer staging;                // packed: the staged layout
  std::array<cuda::PinnedBuffer, 2> chunks;  // streamed: the two chunk buffers
  std::byte* device = nullptr;               // streamed: downloaded and freed by the completion thread
  // Resident work: run after the event (copy out of staging, check aux), then resident_done.
  std::function<Status(const Pending&)> resident_finish;
  ResidentDone resident_done;
  // Timed copies (only when the backend times transfers): upload, then download.
  std::array<TimedCopy, 2> timed{};
  std::size_t timed_count = 0;
  // A pipeline: its graph entry (replayed or just captured; in_use held until completion),
  // how it was launched, and the events between its stages (stream launches with stage timing).
  std::shared_ptr<const PreparedPipeline> pipeline;
  PipelineDone pipeline_done;
  std::shared_ptr<GraphEntry> graph;
  PipelineLaunch launch = PipelineLaunch::stream;
  std::string launch_detail;
  std::vector<cudaEvent_t> stage_events;
};

struct DeviceState;

struct Lane {
  cudaStream_t stream = nullptr;           // uploads, kernels, packed downloads
  cudaStream_t download_stream = nullptr;  // streamed downloads (completion thread only)
  std::array<cudaEvent_t, 2> upload_events{};    // streamed uploads (under submit_mutex)
  std::array<cudaEvent_t, 2> download_events{};  // streamed downloads (completion thread only)
  std::mutex submit_mutex;  // one call enqueues at a time on this stream
  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<Pending> queue;
  std::vector<cudaEvent_t> free_events;    // guarded by queue_mutex
  std::vector<cudaEvent_t> timing_events;  // guarded by queue_mutex; only when timing transfers
  bool stopping = false;
  std::thread completer;
  void* cublas = nullptr;  // this lane's cuBLAS handle, created on first GEMM (under submit_mutex)
  // GEMMs this handle ran outside a capture since the lane's last capture, by dtype, shape and
  // pointer alignment (what cuBLAS picks its kernel by): their kernels are loaded (under submit_mutex).
  std::set<std::array<std::uint64_t, 5>> gemms_run;
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

  // Pipeline graphs by shape key, most recently used first (see the header comment).
  std::mutex graph_mutex;
  std::list<std::string> graph_lru;  // guarded by graph_mutex
  std::unordered_map<std::string, std::pair<std::shared_ptr<GraphEntry>, std::list<std::string>::iterator>>
      graphs;  // guarded by graph_mutex
};

constexpr std::size_t kGraphCacheEntries = 64;
constexpr std::size_t kMaxRememberedGemms = 4096;  // per lane

// Executes recipe launches on one stream against one device allocation.
// read() and gemm() run with the lane's submit_mutex held, like every launch.
class CudaLauncher final : public detail::GpuLauncher {
 public:
  // `capturing`: the stream is being captured into a graph, so read() (which waits) fails.
  CudaLauncher(cuda::NvrtcProgram& program, Lane& lane, const SlotPointers& slots, DType dtype, bool capturing = false)
      : program_(program), lane_(lane), stream_(lane.stream), slots_(slots), dtype_(dtype), capturing_(capturing) {}

  // Copies the elements into host memory on the lane's stream and waits for the stream.
  Result<std::vector<double>> read(detail::Slot slot, std::size_t offset, std::size_t count) override {
    const std::byte* base = slots_[slot_index(slot)];
    if (base == nullptr) return Error(ErrorCode::internal, "read-back of a buffer slot this call has no buffer for");
    if (capturing_) {
      return Error(ErrorCode::failed_precondition,
                   "the recipe reads back to the host mid-way, which a CUDA graph cannot capture");
    }
    const std::size_t t = size_of(dtype_);
    std::vector<std::byte> bytes(count * t);
    GB_CUDA_TRY(cudaMemcpyAsync(bytes.data(), base + offset * t, bytes.size(), cudaMemcpyDeviceToHost, stream_));
    GB_CUDA_TRY(cudaStreamSynchronize(stream_));
    std::vector<double> out(count);
    for (std::size_t i = 0; i < count; ++i) {
      if (dtype_ == DType::f64) {
        std::memcpy(&out[i], bytes.data() + i * t, sizeof(double));
      } else {
        float v = 0;
        std::memcpy(&v, bytes.data() + i * t, sizeof v);
        out[i] = v;
      }
    }
    return out;
  }

  // CUDA runs GEMM with cuBLAS only: when it cannot be loaded gemm() fails (failed_precondition).
  bool provides_blas() const override { return true; }

  // cuBLAS may load a kernel on a call of a new shape, so beside a persistent kernel the first GEMM
  // of each shape on this lane is enqueued with it stepped aside (device_idle.hpp; under capture
  // they are aside already); a repeat runs the kernel already loaded.
  Status gemm(const detail::GemmArgs& g) override {
    const cuda::CublasLibrary& cublas = cuda::CublasLibrary::instance();
    if (!cublas.available()) return Error(ErrorCode::failed_precondition, cublas.unavailable_reason());
    const std::byte* a = slots_[slot_index(g.a)];
    const std::byte* b = slots_[slot_index(g.b)];
    std::byte* c = slots_[slot_index(g.c)];
    if (a == nullptr || b == nullptr || c == nullptr) {
      return Error(ErrorCode::internal, "gemm names a buffer slot this call has no buffer for");
    }
    const auto address = reinterpret_cast<std::uintptr_t>(a) | reinterpret_cast<std::uintptr_t>(b) |
                         reinterpret_cast<std::uintptr_t>(c);
    const std::array<std::uint64_t, 5> shape{static_cast<std::uint64_t>(dtype_), g.m, g.k, g.n,
                                             std::min<std::uint64_t>(address & (~address + 1), 256)};
    if (!capturing_ && lane_.cublas != nullptr && lane_.gemms_run.contains(shape)) {
      return cublas.gemm(lane_.cublas, stream_, dtype_, g.m, g.k, g.n, a, b, c);
    }
    const auto enqueue = [&]() -> Status {
      if (lane_.cublas == nullptr) {
        auto handle = cublas.create_handle();
        if (!handle) return handle.error();
        lane_.cublas = *handle;
      }
      return cublas.gemm(lane_.cublas, stream_, dtype_, g.m, g.k, g.n, a, b, c);
    };
    Status s = cuda::DeviceIdle::run(program_.device(), enqueue);
    if (s && !capturing_ && lane_.gemms_run.size() < kMaxRememberedGemms) {
      try {
        lane_.gemms_run.insert(shape);
      } catch (const std::bad_alloc&) {
        // Not remembered: the next GEMM of this shape steps the persistent kernels aside again.
      }
    }
    return s;
  }

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
          buffers[i] = slots_[slot_index(a.slot)];
          if (buffers[i] == nullptr) {
            return Error(ErrorCode::internal, std::string(entry) + ": argument " + std::to_string(i) +
                                                  " names a buffer slot this launch has no buffer for");
          }
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
  Lane& lane_;
  cudaStream_t stream_;
  const SlotPointers& slots_;
  DType dtype_;
  bool capturing_ = false;
};

// Byte offsets of a pipeline's buffers in one device allocation. [0, upload_bytes): the external
// inputs; [upload_bytes, staged_bytes): returned outputs and aux (downloaded in one copy); then
// the other outputs and the scratch buffers (device only). Staging mirrors [0, staged_bytes).
struct PipelineLayout {
  std::vector<std::size_t> input;
  std::vector<std::size_t> output, aux, scratch, aux_elems;
  std::size_t upload_bytes = 0, staged_bytes = 0, device_bytes = 0;

  explicit PipelineLayout(const PreparedPipeline& pl) {
    const std::size_t t = size_of(pl.dtype);
    const std::size_t stages = pl.stages.size();
    output.assign(stages, 0);
    aux.assign(stages, 0);
    scratch.assign(stages, 0);
    aux_elems.assign(stages, 0);
    std::vector<std::size_t> scratch_elems(stages, 0);
    std::size_t off = 0;
    for (const TensorView& in : pl.inputs) {
      input.push_back(off);
      off += align_up(in.bytes());
    }
    upload_bytes = off;
    for (std::size_t i = 0; i < stages; ++i) {
      const PreparedStage& st = pl.stages[i];
      const detail::ShapedBuffers b = detail::buffers_for(*st.def->gpu, shape(st));
      aux_elems[i] = b.aux_elems;
      scratch_elems[i] = b.scratch_elems;
      if (st.returned) {
        output[i] = off;
        off += align_up(st.shape.output_count * t);
      }
      aux[i] = off;
      off += align_up(b.aux_elems * t);
    }
    staged_bytes = off;
    for (std::size_t i = 0; i < stages; ++i) {
      if (!pl.stages[i].returned) {
        output[i] = off;
        off += align_up(pl.stages[i].shape.output_count * t);
      }
      scratch[i] = off;
      off += align_up(scratch_elems[i] * t);
    }
    device_bytes = std::max<std::size_t>(off, 1);
  }
  static detail::ShapedArgs shape(const PreparedStage& st) {
    return {st.shape.input_counts, st.shape.output_count, st.scalars};
  }
  SlotPointers pointers(std::byte* base, const PreparedStage& st, std::size_t i) const {
    SlotPointers p{};
    for (std::size_t k = 0; k < st.inputs.size() && k < 4; ++k) {
      const StageInput& from = st.inputs[k];
      p[k] = base + (from.source == StageInput::Source::external ? input[from.index] : output[from.index]);
    }
    p[slot_index(detail::Slot::output)] = base + output[i];
    if (aux_elems[i] > 0) p[slot_index(detail::Slot::aux)] = base + aux[i];
    p[slot_index(detail::Slot::scratch)] = base + scratch[i];
    return p;
  }
};

// The shape key of a pipeline on one device: everything its launches depend on.
std::string pipeline_key(const std::string& device_id, const PreparedPipeline& pl) {
  std::string key = device_id;
  key += '|';
  key += to_string(pl.dtype);
  for (const TensorView& in : pl.inputs) key += "|x" + std::to_string(in.count);
  for (const PreparedStage& st : pl.stages) {
    key += '|';
    key += st.def->id;
    key += st.returned ? "+" : "-";
    for (const StageInput& from : st.inputs) {
      key += (from.source == StageInput::Source::external ? 'x' : 's') + std::to_string(from.index) + ',';
    }
    for (const std::size_t c : st.shape.input_counts) key += std::to_string(c) + ',';
    for (const double v : st.scalars) {
      std::uint64_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      key += std::to_string(bits) + ',';
    }
  }
  return key;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& options)
      : observer_(options.observer),
        graphs_(options.cuda_graphs),
        time_transfers_(observer_ != nullptr && observer_->wants_transfer_timing()),
        time_stages_(observer_ != nullptr && observer_->wants_stage_timing()) {
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
    if (!devices_.empty()) copy_pool_ = std::make_unique<ThreadPool>(kCopyThreads, "gb-cuda-copy");
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
        for (cudaEvent_t e : lane->timing_events) cudaEventDestroy(e);
        for (cudaEvent_t e : lane->upload_events) cudaEventDestroy(e);
        for (cudaEvent_t e : lane->download_events) cudaEventDestroy(e);
        if (lane->cublas != nullptr) {
          cuda::DeviceIdle::run(d->cuda_ordinal, [&] { cuda::CublasLibrary::instance().destroy_handle(lane->cublas); });
        }
        cudaStreamDestroy(lane->stream);
        cudaStreamDestroy(lane->download_stream);
      }
      {
        std::lock_guard lock(d->graph_mutex);
        d->graphs.clear();  // entries free their memory and graphs while the pool still exists
        d->graph_lru.clear();
      }
      if (d->pool != nullptr) cuda::DeviceIdle::run(d->cuda_ordinal, [&] { cudaMemPoolDestroy(d->pool); });
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
    if (def.gpu->uses_blas && !cuda::CublasLibrary::instance().available()) {
      // Never silently another GEMM: the kernel is missing here (the executor may fall back).
      return Error(ErrorCode::failed_precondition,
                   "kernel '" + def.id + "' needs cuBLAS on CUDA: " + cuda::CublasLibrary::instance().unavailable_reason());
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
    const DType dtype = call->dtype;
    Pending p;
    p.call = std::move(call);
    p.done = std::move(done);
    submit(d, std::move(p), dtype,
           [&](Lane& lane, cuda::NvrtcProgram& program, Pending& pending) { return enqueue(d, lane, program, pending); });
  }

  void execute_batch(int ordinal, const BatchCall& call, BatchCompletion done) override {
    DeviceState& d = *devices_.at(static_cast<std::size_t>(ordinal));
    if (call.def->gpu == nullptr || call.def->gpu->batched == nullptr) {
      done(Error(ErrorCode::failed_precondition, "kernel '" + call.def->id + "' has no batched GPU implementation"));
      return;
    }
    Pending p;
    p.batch = &call;
    p.batch_done = std::move(done);
    submit(d, std::move(p), call.dtype, [&](Lane& lane, cuda::NvrtcProgram& program, Pending& pending) {
      return enqueue_batch(d, lane, program, pending);
    });
  }

  // See "Pipelines" in the header comment.
  void execute_pipeline(int ordinal, std::shared_ptr<const PreparedPipeline> pipeline, PipelineDone done) override {
    DeviceState& d = *devices_.at(static_cast<std::size_t>(ordinal));
    const DType dtype = pipeline->dtype;
    Pending p;
    p.pipeline = std::move(pipeline);
    p.pipeline_done = std::move(done);
    submit(d, std::move(p), dtype, [&](Lane& lane, cuda::NvrtcProgram& program, Pending& pending) -> Status {
      try {
        return enqueue_pipeline(d, lane, program, pending);
      } catch (const std::exception& e) {
        cudaStreamSynchronize(lane.stream);
        cudaGetLastError();
        return Error(ErrorCode::resource_exhausted, std::string("enqueueing a CUDA pipeline: ") + e.what());
      }
    });
  }

  // Completes work that never reached the completion thread with `error`.
  static void fail(Pending& p, const Error& error) {
    if (p.pipeline != nullptr) {
      if (p.graph) p.graph->in_use.store(false, std::memory_order_release);
      p.pipeline_done(error);
    } else if (p.batch != nullptr) {
      p.batch_done(error);
    } else {
      p.done(error);
    }
  }

  // Issues a call, batch or pipeline (`issue`, under the submit lock of the device's next lane) and
  // hands it to that lane's completion thread; on failure releases what it took and fails it.
  template <typename Issue>
  void submit(DeviceState& d, Pending p, DType dtype, Issue&& issue) {
    auto program = program_for(d, dtype);
    if (!program) {
      fail(p, Error(ErrorCode::failed_precondition, program.error().message()));
      return;
    }
    Lane& lane = *d.lanes[d.next_lane.fetch_add(1) % kLanes];
    std::unique_lock submit_lock(lane.submit_mutex);
    if (Status s = issue(lane, **program, p); !s) {
      submit_lock.unlock();
      release_host(d, lane, p);
      fail(p, s.error());
      return;
    }
    queue_for_completion(lane, std::move(p));
  }

  static void queue_for_completion(Lane& lane, Pending p) {
    {
      std::lock_guard lock(lane.queue_mutex);
      lane.queue.push_back(std::move(p));
    }
    lane.queue_cv.notify_one();
  }

  // Resident memory: blocks from the device's stream-ordered pool. Every resident operation of a
  // device runs on its first lane, so operations complete in the order they were issued.
  Result<std::unique_ptr<ResidentBlock>> allocate_resident(int ordinal, std::size_t bytes) override {
    DeviceState& d = *devices_.at(static_cast<std::size_t>(ordinal));
    Lane& lane = *d.lanes[0];
    std::lock_guard submit(lane.submit_mutex);
    if (cudaError_t e = cudaSetDevice(d.cuda_ordinal); e != cudaSuccess) return to_error(e, "cudaSetDevice");
    if (Status s = check_pool_limit(d, bytes); !s) return s.error();
    auto ptr = allocate_device(d, lane, std::max<std::size_t>(bytes, 1));
    if (!ptr) return ptr.error();
    return std::unique_ptr<ResidentBlock>(std::make_unique<CudaBlock>(d, *ptr, bytes));
  }

  void write_resident(int ordinal, ResidentBlock& block, const void* src, std::size_t bytes, ResidentDone done) override {
    auto& b = static_cast<CudaBlock&>(block);
    if (bytes > b.bytes()) return done(Error(ErrorCode::invalid_argument, "write larger than the resident block"));
    submit_resident(ordinal, std::move(done), bytes, [&](Lane& lane, Pending& p) -> Status {
      host_copy(p.staging.data, static_cast<const std::byte*>(src), bytes);
      if (Status s = begin_timed_copy(lane, p, lane.stream, TransferDirection::host_to_device, bytes); !s) return s;
      GB_CUDA_TRY(cudaMemcpyAsync(b.ptr, p.staging.data, bytes, cudaMemcpyHostToDevice, lane.stream));
      if (Status s = end_timed_copy(p, lane.stream); !s) return s;
      moved(*devices_.at(static_cast<std::size_t>(ordinal)), TransferDirection::host_to_device, bytes);
      return {};
    });
  }

  void read_resident(int ordinal, const ResidentBlock& block, void* dst, std::size_t bytes, ResidentDone done) override {
    const auto& b = static_cast<const CudaBlock&>(block);
    if (bytes > b.bytes()) return done(Error(ErrorCode::invalid_argument, "read larger than the resident block"));
    submit_resident(ordinal, std::move(done), bytes, [&](Lane& lane, Pending& p) -> Status {
      if (Status s = begin_timed_copy(lane, p, lane.stream, TransferDirection::device_to_host, bytes); !s) return s;
      GB_CUDA_TRY(cudaMemcpyAsync(p.staging.data, b.ptr, bytes, cudaMemcpyDeviceToHost, lane.stream));
      if (Status s = end_timed_copy(p, lane.stream); !s) return s;
      moved(*devices_.at(static_cast<std::size_t>(ordinal)), TransferDirection::device_to_host, bytes);
      p.resident_finish = [this, dst, bytes](const Pending& done_p) -> Status {
        host_copy(static_cast<std::byte*>(dst), done_p.staging.data, bytes);
        return {};
      };
      return {};
    });
  }

  void execute_resident(int ordinal, const ResidentCall& call, ResidentDone done) override {
    if (call.def->signature.output == OutputShape::computed) {
      return done(Error(ErrorCode::failed_precondition, "kernel '" + call.def->id + "' is not batchable: it has its own shapes"));
    }
    if (Status s = can_run(ordinal, *call.def, call.dtype); !s) return done(std::move(s));
    DeviceState& d = *devices_.at(static_cast<std::size_t>(ordinal));
    auto program = program_for(d, call.dtype);
    if (!program) return done(Error(ErrorCode::failed_precondition, program.error().message()));
    const detail::GpuRecipe& recipe = *call.def->gpu;
    const std::size_t t = size_of(call.dtype);
    const std::size_t aux_bytes = recipe.aux_elems * t;
    submit_resident(ordinal, std::move(done), std::max<std::size_t>(aux_bytes, 1), [&](Lane& lane, Pending& p) -> Status {
      // Scratch and aux: one temporary allocation, freed in stream order after the aux download.
      const std::size_t scratch_off = align_up(aux_bytes);
      const std::size_t temp_bytes = scratch_off + align_up(recipe.scratch_elems * t);
      std::byte* temp = nullptr;
      if (temp_bytes > 0) {
        if (Status s = check_pool_limit(d, temp_bytes); !s) return s;
        auto allocated = allocate_device(d, lane, temp_bytes);
        if (!allocated) return allocated.error();
        temp = *allocated;
        p.device_bytes = temp_bytes;
      }
      SlotPointers slots{};
      for (std::size_t i = 0; i < call.input_count; ++i) {
        slots[slot_index(detail::Slot::input0) + i] = static_cast<const CudaBlock*>(call.inputs[i])->ptr;
      }
      slots[slot_index(detail::Slot::output)] = static_cast<CudaBlock*>(call.output)->ptr;
      if (aux_bytes > 0) slots[slot_index(detail::Slot::aux)] = temp;
      if (recipe.scratch_elems > 0) slots[slot_index(detail::Slot::scratch)] = temp + scratch_off;
      CudaLauncher launcher(**program, lane, slots, call.dtype);
      Status s = recipe.enqueue(launcher, call.n, std::span<const double>(call.scalars.data(), call.scalar_count));
      if (s && aux_bytes > 0) {
        if (cudaError_t e = cudaMemcpyAsync(p.staging.data, temp, aux_bytes, cudaMemcpyDeviceToHost, lane.stream);
            e != cudaSuccess) {
          s = to_error(e, "cudaMemcpyAsync(aux)");
        }
      }
      if (temp != nullptr) {
        const cudaError_t freed = cudaFreeAsync(temp, lane.stream);
        if (s && freed != cudaSuccess) s = to_error(freed, "cudaFreeAsync");
      }
      if (s && recipe.check != nullptr) {
        const DType dtype = call.dtype;
        const std::size_t aux_elems = recipe.aux_elems;
        auto* check = recipe.check;
        p.resident_finish = [dtype, aux_elems, check](const Pending& done_p) -> Status {
          std::array<double, 4> aux{};
          for (std::size_t i = 0; i < std::min<std::size_t>(aux_elems, aux.size()); ++i) {
            if (dtype == DType::f32) {
              float v;
              std::memcpy(&v, done_p.staging.data + i * sizeof(float), sizeof v);
              aux[i] = v;
            } else {
              std::memcpy(&aux[i], done_p.staging.data + i * sizeof(double), sizeof(double));
            }
          }
          return check(std::span<const double>(aux.data(), std::min<std::size_t>(aux_elems, aux.size())));
        };
      }
      return s;
    });
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
  // A resident block: pool memory on one device, freed in stream order on the resident lane.
  class CudaBlock final : public ResidentBlock {
   public:
    CudaBlock(DeviceState& d, std::byte* p, std::size_t bytes) : d_(d), ptr(p), bytes_(bytes) {}
    ~CudaBlock() override {
      // Freeing cannot fail in a way a destructor could report; errors are ignored on purpose.
      // Under the lane's submit lock like every enqueue: a pipeline may be capturing this stream
      // into a graph, and a free enqueued meanwhile would join (and spoil) that capture.
      Lane& lane = *d_.lanes[0];
      std::lock_guard submit(lane.submit_mutex);
      cudaSetDevice(d_.cuda_ordinal);
      cudaFreeAsync(ptr, lane.stream);
      release_device_bytes(d_, std::max<std::size_t>(bytes_, 1));
    }
    std::size_t bytes() const override { return bytes_; }

   private:
    DeviceState& d_;

   public:
    std::byte* const ptr;

   private:
    std::size_t bytes_;
  };

  // Runs `enqueue` on the device's resident lane with `staging_bytes` of page-locked staging in
  // p.staging, then records an event; the lane's completion thread finishes it.
  template <typename Enqueue>
  void submit_resident(int ordinal, ResidentDone done, std::size_t staging_bytes, Enqueue&& enqueue) {
    DeviceState& d = *devices_.at(static_cast<std::size_t>(ordinal));
    Lane& lane = *d.lanes[0];
    std::unique_lock submit(lane.submit_mutex);
    Pending p;
    p.resident_done = std::move(done);
    Status s;
    if (cudaError_t e = cudaSetDevice(d.cuda_ordinal); e != cudaSuccess) s = to_error(e, "cudaSetDevice");
    if (s) {
      auto staging = d.staging.acquire(staging_bytes);
      if (staging) {
        p.staging = *staging;
      } else {
        s = staging.error();
      }
    }
    if (s) s = enqueue(lane, p);
    if (s) s = record_event(lane, p);
    if (!s) {
      cudaStreamSynchronize(lane.stream);  // the stream may still use the staging memory
      cudaGetLastError();
      release_device_bytes(d, p.device_bytes);
      submit.unlock();
      release_host(d, lane, p);
      p.resident_done(s);
      return;
    }
    queue_for_completion(lane, std::move(p));
  }

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
    d.device.pci_bus_id = pci_address(static_cast<unsigned>(prop.pciDomainID), static_cast<unsigned>(prop.pciBusID),
                                      static_cast<unsigned>(prop.pciDeviceID));

    GB_CUDA_TRY(cudaSetDevice(i));
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = i;
    GB_CUDA_TRY(cuda::DeviceIdle::run(i, [&] { return cudaMemPoolCreate(&d.pool, &props); }));
    // Keep freed memory reserved up to the limit (or a quarter of the device) so warm calls
    // never go back to the driver.
    std::uint64_t threshold = options.device_pool_limit_bytes ? options.device_pool_limit_bytes
                                                              : prop.totalGlobalMem / 4;
    GB_CUDA_TRY(cudaMemPoolSetAttribute(d.pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    d.pool_limit = options.device_pool_limit_bytes;
    for (auto& lane : d.lanes) {
      lane = std::make_unique<Lane>();
      GB_CUDA_TRY(cudaStreamCreateWithFlags(&lane->stream, cudaStreamNonBlocking));
      GB_CUDA_TRY(cudaStreamCreateWithFlags(&lane->download_stream, cudaStreamNonBlocking));
      for (auto* events : {&lane->upload_events, &lane->download_events}) {
        for (cudaEvent_t& e : *events) GB_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      }
    }
    return {};
  }

  void start_lanes(DeviceState& d) {
    for (auto& lane : d.lanes) {
      Lane* l = lane.get();
      l->completer = named_thread("gb-cuda-done", [this, &d, l] { complete_loop(d, *l); });
    }
  }

  static Result<std::shared_ptr<cuda::NvrtcProgram>> program_for(DeviceState& d, DType dtype) {
    std::lock_guard lock(d.program_mutex);
    auto& slot = d.programs[dtype == DType::f32 ? 0 : 1];
    if (!slot) {
      if (cudaError_t e = cudaSetDevice(d.cuda_ordinal); e != cudaSuccess) return to_error(e, "cudaSetDevice");
      slot = cuda::NvrtcProgram::build(detail::portable_kernel_source(), dtype, d.cuda_ordinal, d.compute_capability);
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

  // A timing event from the lane's pool, created (on the current device) when the pool is empty.
  static Status take_timing_event(Lane& lane, cudaEvent_t& out) {
    {
      std::lock_guard lock(lane.queue_mutex);
      if (!lane.timing_events.empty()) {
        out = lane.timing_events.back();
        lane.timing_events.pop_back();
        return {};
      }
    }
    GB_CUDA_TRY(cudaEventCreateWithFlags(&out, cudaEventDefault));
    return {};
  }
  static void recycle_timing_event(Lane& lane, cudaEvent_t e) {
    if (e == nullptr) return;
    std::lock_guard lock(lane.queue_mutex);
    try {
      lane.timing_events.push_back(e);
    } catch (...) {
      cudaEventDestroy(e);  // no room in the pool: the event goes (its error, if any, is moot)
    }
  }

  // Starts timing a copy of `bytes` on `stream` (nothing when the backend does not time
  // transfers). Its events belong to `p` from here on (release_host returns them).
  Status begin_timed_copy(Lane& lane, Pending& p, cudaStream_t stream, TransferDirection direction,
                          std::uint64_t bytes) {
    if (!time_transfers_ || p.timed_count == p.timed.size()) return {};
    TimedCopy& t = p.timed[p.timed_count];
    t = TimedCopy{};
    if (Status s = take_timing_event(lane, t.begin); !s) return s;
    if (Status s = take_timing_event(lane, t.end); !s) {
      recycle_timing_event(lane, std::exchange(t.begin, nullptr));
      return s;
    }
    t.direction = direction;
    t.bytes = bytes;
    ++p.timed_count;
    GB_CUDA_TRY(cudaEventRecord(t.begin, stream));
    return {};
  }

  // Ends the copy begun last, on the same `stream`.
  Status end_timed_copy(Pending& p, cudaStream_t stream) {
    if (!time_transfers_ || p.timed_count == 0) return {};
    TimedCopy& t = p.timed[p.timed_count - 1];
    GB_CUDA_TRY(cudaEventRecord(t.end, stream));
    t.complete = true;
    return {};
  }

  // Reports the complete timed copies of `p` to the observer. The last complete copy's end is
  // anchored at the host time it was seen complete; a copy whose times cannot be read is left out.
  void report_timed_copies(const DeviceState& d, const Pending& p) noexcept {
    if (!time_transfers_) return;
    const TimedCopy* anchor = nullptr;
    for (std::size_t i = 0; i < p.timed_count; ++i) {
      if (p.timed[i].complete) anchor = &p.timed[i];
    }
    if (anchor == nullptr) return;
    if (cudaEventSynchronize(anchor->end) != cudaSuccess) {
      cudaGetLastError();
      return;
    }
    const auto observed = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < p.timed_count; ++i) {
      const TimedCopy& t = p.timed[i];
      if (!t.complete) continue;
      float duration_ms = 0;
      float to_anchor_ms = 0;
      if (cudaEventElapsedTime(&duration_ms, t.begin, t.end) != cudaSuccess ||
          cudaEventElapsedTime(&to_anchor_ms, t.begin, anchor->end) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      const auto ns = [](float ms) {
        return std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(ms) * 1e6));
      };
      TransferTiming timing;
      timing.device = d.device.id;
      timing.direction = t.direction;
      timing.bytes = t.bytes;
      timing.start = observed - ns(to_anchor_ms);
      timing.duration = ns(duration_ms);
      observer_->on_transfer_timed(timing);
    }
  }

  // Enqueues the whole call on the lane's stream. On error, the stream has been drained, device
  // memory is freed and what is left in `p` (staging, event) is for the caller to release.
  Status enqueue(DeviceState& d, Lane& lane, cuda::NvrtcProgram& program, Pending& p) {
    const PreparedCall& c = *p.call;
    const detail::GpuRecipe& recipe = *c.def->gpu;
    const Layout layout(c, recipe);
    const bool packed = layout.staged_bytes <= kPackedMaxBytes;
    GB_CUDA_TRY(cudaSetDevice(d.cuda_ordinal));

    if (Status s = check_pool_limit(d, layout.device_bytes); !s) return s;
    if (packed) {
      auto staging = d.staging.acquire(layout.staged_bytes);
      if (!staging) return staging.error();
      p.staging = *staging;
    } else {
      for (auto& chunk : p.chunks) {
        auto buffer = d.staging.acquire(kChunkBytes);
        if (!buffer) return buffer.error();
        chunk = *buffer;
      }
    }

    auto allocated = allocate_device(d, lane, layout.device_bytes);
    if (!allocated) return allocated.error();
    p.device_bytes = layout.device_bytes;
    std::byte* base = *allocated;

    std::uint64_t uploaded = 0;
    for (const TensorView& in : c.inputs) uploaded += in.bytes();
    Status s = begin_timed_copy(lane, p, lane.stream, TransferDirection::host_to_device, uploaded);
    if (s) {
      s = packed ? upload_packed(lane, c, layout, base, p.staging.data)
                 : upload_streamed(lane, c, layout, base, p.chunks);
    }
    if (s) {
      moved(d, TransferDirection::host_to_device, uploaded);
      s = end_timed_copy(p, lane.stream);
    }
    if (s) {
      const SlotPointers slots = layout.pointers(base, c.inputs.size());
      CudaLauncher launcher(program, lane, slots, c.dtype);
      s = detail::enqueue_recipe(recipe, launcher, layout.shape(c));
    }
    if (s && packed) s = begin_timed_copy(lane, p, lane.stream, TransferDirection::device_to_host, layout.download_bytes);
    if (s && packed) {
      if (cudaError_t e = cudaMemcpyAsync(p.staging.data + layout.output, base + layout.output, layout.download_bytes,
                                          cudaMemcpyDeviceToHost, lane.stream);
          e != cudaSuccess) {
        s = to_error(e, "cudaMemcpyAsync(device to host)");
      } else {
        moved(d, TransferDirection::device_to_host, layout.download_bytes);
        s = end_timed_copy(p, lane.stream);
      }
    }
    // Packed calls free their device memory in stream order right away; streamed calls after the
    // completion thread downloaded the output. Failed calls free it here.
    if (packed || !s) {
      const cudaError_t freed = cudaFreeAsync(base, lane.stream);
      if (s && freed != cudaSuccess) s = to_error(freed, "cudaFreeAsync");
    } else {
      p.device = base;
    }
    if (s) s = record_event(lane, p);
    if (!s) {
      // The stream may still read the staging memory: drain it before the memory is reused.
      cudaStreamSynchronize(lane.stream);
      cudaGetLastError();
      p.device = nullptr;
      release_device_bytes(d, p.device_bytes);
    }
    return s;
  }

  // resource_exhausted when `bytes` more would pass the device's pool limit, after freeing cached
  // graphs that no run uses (least recently used first) as long as they stand in the way.
  static Status check_pool_limit(DeviceState& d, std::size_t bytes) {
    if (d.pool_limit == 0) return {};
    for (;;) {
      std::uint64_t in_use = 0;
      {
        std::lock_guard lock(d.pool_mutex);
        in_use = d.pool_stats.bytes_in_use;
      }
      if (in_use + bytes <= d.pool_limit) return {};
      std::shared_ptr<GraphEntry> idle;  // freed below, outside the lock
      {
        std::lock_guard lock(d.graph_mutex);
        for (auto key = d.graph_lru.rbegin(); key != d.graph_lru.rend(); ++key) {
          auto it = d.graphs.find(*key);
          const GraphEntry& entry = *it->second.first;
          if (entry.device == nullptr || entry.in_use.load(std::memory_order_acquire)) continue;
          idle = std::move(it->second.first);
          d.graph_lru.erase(it->second.second);
          d.graphs.erase(it);
          break;
        }
      }
      if (idle == nullptr) {
        return Error(ErrorCode::resource_exhausted,
                     "call needs " + std::to_string(bytes) + " bytes of device memory; pool limit " +
                         std::to_string(d.pool_limit) + " bytes with " + std::to_string(in_use) + " in use");
      }
    }
  }

  // Stream-ordered allocation from the device's pool (no driver allocation once it is warm).
  static Result<std::byte*> allocate_device(DeviceState& d, Lane& lane, std::size_t bytes) {
    void* base_ptr = nullptr;
    GB_CUDA_TRY(cudaMallocFromPoolAsync(&base_ptr, bytes, d.pool, lane.stream));
    std::uint64_t reserved = 0;
    cudaMemPoolGetAttribute(d.pool, cudaMemPoolAttrReservedMemCurrent, &reserved);
    {
      std::lock_guard lock(d.pool_mutex);
      (reserved > d.pool_stats.bytes_reserved ? d.pool_stats.misses : d.pool_stats.hits) += 1;
      d.pool_stats.bytes_reserved = reserved;
      d.pool_stats.bytes_in_use += bytes;
      d.pool_stats.peak_bytes_in_use = std::max(d.pool_stats.peak_bytes_in_use, d.pool_stats.bytes_in_use);
    }
    return static_cast<std::byte*>(base_ptr);
  }

  // Enqueues a whole batch: pack, one upload, the segmented recipe, one download, free, event.
  // One staging buffer and one device allocation hold [upload region][download region]. On
  // error, as for enqueue(): the stream is drained and device memory freed.
  Status enqueue_batch(DeviceState& d, Lane& lane, cuda::NvrtcProgram& program, Pending& p) {
    const BatchCall& c = *p.batch;
    const detail::GpuBatchRecipe& recipe = *c.def->gpu->batched;
    const detail::BatchStaging layout(c, recipe, kSlotAlign);
    const std::size_t total = layout.upload_bytes + layout.download_bytes;
    GB_CUDA_TRY(cudaSetDevice(d.cuda_ordinal));
    if (Status s = check_pool_limit(d, total); !s) return s;
    auto staging = d.staging.acquire(total);
    if (!staging) return staging.error();
    p.staging = *staging;
    std::byte* upload = p.staging.data;
    if (!c.acquire_requests()) return batch_abandoned_error();
    detail::pack_batch_tables(c, layout, upload);
    for_segments(c, layout.input_bytes * c.def->signature.inputs.size(), [&](std::size_t b, std::size_t e) {
      detail::pack_batch_inputs(c, layout, upload, b, e);
    });
    c.release_requests();

    auto allocated = allocate_device(d, lane, total);
    if (!allocated) return allocated.error();
    p.device_bytes = total;
    std::byte* base = *allocated;
    Status s = begin_timed_copy(lane, p, lane.stream, TransferDirection::host_to_device, layout.upload_bytes);
    if (s) {
      if (cudaError_t e = cudaMemcpyAsync(base, upload, layout.upload_bytes, cudaMemcpyHostToDevice, lane.stream);
          e != cudaSuccess) {
        s = to_error(e, "cudaMemcpyAsync(batch upload)");
      } else {
        moved(d, TransferDirection::host_to_device, layout.upload_bytes);
        s = end_timed_copy(p, lane.stream);
      }
    }
    if (s) {
      const SlotPointers slots = batch_pointers(base, c, recipe, layout);
      CudaLauncher launcher(program, lane, slots, c.dtype);
      s = recipe.enqueue(launcher, {c.requests.size(), c.total_elements});
    }
    if (s) s = begin_timed_copy(lane, p, lane.stream, TransferDirection::device_to_host, layout.download_bytes);
    if (s) {
      if (cudaError_t e = cudaMemcpyAsync(upload + layout.upload_bytes, base + layout.upload_bytes,
                                          layout.download_bytes, cudaMemcpyDeviceToHost, lane.stream);
          e != cudaSuccess) {
        s = to_error(e, "cudaMemcpyAsync(batch download)");
      } else {
        moved(d, TransferDirection::device_to_host, layout.download_bytes);
        s = end_timed_copy(p, lane.stream);
      }
    }
    const cudaError_t freed = cudaFreeAsync(base, lane.stream);
    if (s && freed != cudaSuccess) s = to_error(freed, "cudaFreeAsync");
    if (s) s = record_event(lane, p);
    if (!s) {
      cudaStreamSynchronize(lane.stream);  // the stream may still read the staging memory
      cudaGetLastError();
      release_device_bytes(d, p.device_bytes);
    }
    return s;
  }

  // Enqueues a whole pipeline on the lane's stream (see "Pipelines"). On error the stream has
  // been drained and per-run device memory freed; p.graph (if set) is still marked in use.
  Status enqueue_pipeline(DeviceState& d, Lane& lane, cuda::NvrtcProgram& program, Pending& p) {
    const PreparedPipeline& pl = *p.pipeline;
    GB_CUDA_TRY(cudaSetDevice(d.cuda_ordinal));
    const PipelineLayout layout(pl);
    const std::string key = pipeline_key(d.device.id, pl);
    bool found = false;
    if (!graphs_) {
      found = true;  // never captured: stream launches
      p.launch_detail = "CUDA graphs are off (ExecutorOptions::cuda_graphs = false)";
    } else {
      std::lock_guard lock(d.graph_mutex);
      auto it = d.graphs.find(key);
      if (it != d.graphs.end()) {
        found = true;
        d.graph_lru.splice(d.graph_lru.begin(), d.graph_lru, it->second.second);
        const std::shared_ptr<GraphEntry>& entry = it->second.first;
        if (entry->exec == nullptr) {
          p.launch_detail = entry->uncapturable;
        } else if (!entry->in_use.exchange(true, std::memory_order_acq_rel)) {
          p.graph = entry;
        } else {
          p.launch_detail = "the cached graph of this pipeline shape is in use by another run";
        }
      }
    }
    auto staging = d.staging.acquire(std::max<std::size_t>(layout.staged_bytes, 1));
    if (!staging) return staging.error();
    p.staging = *staging;
    std::byte* base = nullptr;
    if (p.graph) {
      base = p.graph->device;
    } else {
      if (Status s = check_pool_limit(d, layout.device_bytes); !s) return s;
      auto allocated = allocate_device(d, lane, layout.device_bytes);
      if (!allocated) return allocated.error();
      p.device_bytes = layout.device_bytes;
      base = *allocated;
    }
    std::byte* per_run = p.graph ? nullptr : base;  // freed in stream order after the download

    Status s = upload_pipeline_inputs(d, lane, pl, layout, base, p);
    if (s && p.graph) {
      p.launch = PipelineLaunch::graph_replayed;
      if (cudaError_t e = cudaGraphLaunch(p.graph->exec, lane.stream); e != cudaSuccess) s = to_error(e, "cudaGraphLaunch");
    } else if (s && !found) {
      // Captured (once per shape) with the device's persistent kernels stepped aside: cuBLAS may load
      // a kernel while a GEMM stage is captured, and instantiation may wait for an idle device.
      Result<cudaGraphExec_t> exec = cuda::DeviceIdle::run(
          d.cuda_ordinal, [&] { return capture_pipeline(lane, program, pl, layout, base); });
      if (exec) {
        s = cache_graph(d, key, *exec, base, layout.device_bytes, p);
        if (s) {
          per_run = nullptr;  // the entry owns the memory now
          p.device_bytes = 0;
          p.launch = PipelineLaunch::graph_captured;
          if (cudaError_t e = cudaGraphLaunch(p.graph->exec, lane.stream); e != cudaSuccess) {
            s = to_error(e, "cudaGraphLaunch");
          }
        }
      } else {
        p.launch_detail = "not captured: " + exec.error().message();
        // Remembered unless the failure may pass next time (out of memory, cuBLAS not initialised):
        // such a shape is captured again by its next run.
        const ErrorCode why = exec.error().code();
        if (why != ErrorCode::resource_exhausted && why != ErrorCode::unavailable) {
          remember_uncapturable(d, key, p.launch_detail);
        }
        s = stream_pipeline(lane, program, pl, layout, base, p);
      }
    } else if (s) {
      s = stream_pipeline(lane, program, pl, layout, base, p);
    }
    const std::size_t download = layout.staged_bytes - layout.upload_bytes;
    if (s && download > 0) s = begin_timed_copy(lane, p, lane.stream, TransferDirection::device_to_host, download);
    if (s && download > 0) {
      if (cudaError_t e = cudaMemcpyAsync(p.staging.data + layout.upload_bytes, base + layout.upload_bytes, download,
                                          cudaMemcpyDeviceToHost, lane.stream);
          e != cudaSuccess) {
        s = to_error(e, "cudaMemcpyAsync(pipeline download)");
      } else {
        moved(d, TransferDirection::device_to_host, download);
        s = end_timed_copy(p, lane.stream);
      }
    }
    if (per_run != nullptr) {
      const cudaError_t freed = cudaFreeAsync(per_run, lane.stream);
      if (s && freed != cudaSuccess) s = to_error(freed, "cudaFreeAsync");
    }
    if (s) s = record_event(lane, p);
    if (!s) {
      cudaStreamSynchronize(lane.stream);  // the stream may still use the staging memory
      cudaGetLastError();
      release_device_bytes(d, p.device_bytes);
      p.device_bytes = 0;
    }
    return s;
  }

  // One copy of the external inputs (packed into staging) to the device.
  Status upload_pipeline_inputs(DeviceState& d, Lane& lane, const PreparedPipeline& pl, const PipelineLayout& layout,
                                std::byte* base, Pending& p) {
    if (layout.upload_bytes == 0) return {};
    for (std::size_t i = 0; i < pl.inputs.size(); ++i) {
      host_copy(p.staging.data + layout.input[i], static_cast<const std::byte*>(pl.inputs[i].data), pl.inputs[i].bytes());
    }
    if (Status s = begin_timed_copy(lane, p, lane.stream, TransferDirection::host_to_device, layout.upload_bytes); !s) {
      return s;
    }
    GB_CUDA_TRY(cudaMemcpyAsync(base, p.staging.data, layout.upload_bytes, cudaMemcpyHostToDevice, lane.stream));
    moved(d, TransferDirection::host_to_device, layout.upload_bytes);
    return end_timed_copy(p, lane.stream);
  }

  // The stages' launches on the lane's stream, with an event between stages when timing stages.
  Status stream_pipeline(Lane& lane, cuda::NvrtcProgram& program, const PreparedPipeline& pl,
                         const PipelineLayout& layout, std::byte* base, Pending& p) {
    p.launch = PipelineLaunch::stream;
    const auto mark = [&]() -> Status {
      if (!time_stages_) return {};
      cudaEvent_t e = nullptr;
      if (Status s = take_timing_event(lane, e); !s) return s;
      p.stage_events.push_back(e);
      GB_CUDA_TRY(cudaEventRecord(e, lane.stream));
      return {};
    };
    if (Status s = mark(); !s) return s;
    for (std::size_t i = 0; i < pl.stages.size(); ++i) {
      const PreparedStage& st = pl.stages[i];
      const SlotPointers slots = layout.pointers(base, st, i);
      CudaLauncher launcher(program, lane, slots, pl.dtype);
      if (Status s = detail::enqueue_recipe(*st.def->gpu, launcher, PipelineLayout::shape(st)); !s) {
        return s.error().with_context("stage " + std::to_string(i) + " (" + st.def->id + ")");
      }
      if (Status s = mark(); !s) return s;
    }
    return {};
  }

  // Captures the stages' launches on the lane's stream into a graph and instantiates it. The
  // capture is always ended; nothing runs. Errors say why the pipeline cannot be captured.
  Result<cudaGraphExec_t> capture_pipeline(Lane& lane, cuda::NvrtcProgram& program, const PreparedPipeline& pl,
                                           const PipelineLayout& layout, std::byte* base) {
    const bool blas = std::any_of(pl.stages.begin(), pl.stages.end(),
                                  [](const PreparedStage& st) { return st.def->gpu->uses_blas; });
    if (blas && lane.cublas == nullptr) {  // created outside the capture
      const cuda::CublasLibrary& cublas = cuda::CublasLibrary::instance();
      if (!cublas.available()) return Error(ErrorCode::failed_precondition, cublas.unavailable_reason());
      auto handle = cublas.create_handle();
      if (!handle) return handle.error();
      lane.cublas = *handle;
    }
    // cuBLAS may set this stream up again for a capture (workspace): later GEMMs on it step aside anew.
    lane.gemms_run.clear();
    GB_CUDA_TRY(cudaStreamBeginCapture(lane.stream, cudaStreamCaptureModeThreadLocal));
    Status s;
    try {  // the capture ends below whatever happens: a stream left capturing is unusable
      for (std::size_t i = 0; s && i < pl.stages.size(); ++i) {
        const PreparedStage& st = pl.stages[i];
        const SlotPointers slots = layout.pointers(base, st, i);
        CudaLauncher launcher(program, lane, slots, pl.dtype, true);
        s = detail::enqueue_recipe(*st.def->gpu, launcher, PipelineLayout::shape(st));
        if (!s) s = s.error().with_context("stage " + std::to_string(i) + " (" + st.def->id + ")");
      }
    } catch (const std::exception& e) {
      s = Error(ErrorCode::resource_exhausted, std::string("capturing a CUDA pipeline: ") + e.what());
    }
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(lane.stream, &graph);
    if (s && ended != cudaSuccess) s = to_error(ended, "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    if (s) {
      if (cudaError_t e = cudaGraphInstantiate(&exec, graph, 0); e != cudaSuccess) s = to_error(e, "cudaGraphInstantiate");
    }
    if (s) {
      // Uploaded here, still with the persistent kernels stepped aside, rather than by its first
      // launch after they are back.
      cudaError_t e = cudaGraphUpload(exec, lane.stream);
      if (e == cudaSuccess) e = cudaStreamSynchronize(lane.stream);
      if (e != cudaSuccess) {
        s = to_error(e, "cudaGraphUpload");
        cudaGraphExecDestroy(exec);
      }
    }
    if (graph != nullptr) cudaGraphDestroy(graph);  // the executable graph keeps what it needs
    if (!s) {
      cudaGetLastError();  // a failed capture leaves its error; the stream is usable again
      return s.error();
    }
    return exec;
  }

  // Puts a captured graph and its memory in the cache (evicting the least recently used entry
  // beyond kGraphCacheEntries; a run in flight keeps an evicted entry alive) and in p.graph.
  Status cache_graph(DeviceState& d, const std::string& key, cudaGraphExec_t exec, std::byte* base,
                     std::size_t bytes, Pending& p) {
    std::shared_ptr<GraphEntry> entry;
    try {
      entry = std::make_shared<GraphEntry>();
    } catch (const std::bad_alloc&) {
      cudaGraphExecDestroy(exec);
      return Error(ErrorCode::resource_exhausted, "out of host memory caching a pipeline graph");
    }
    entry->cuda_ordinal = d.cuda_ordinal;
    entry->exec = exec;
    entry->device = base;
    entry->bytes = bytes;
    entry->pool_mutex = &d.pool_mutex;
    entry->pool_stats = &d.pool_stats;
    entry->in_use.store(true, std::memory_order_release);
    p.graph = entry;
    insert_graph(d, key, std::move(entry));
    return {};
  }

  void remember_uncapturable(DeviceState& d, const std::string& key, const std::string& why) {
    try {
      auto entry = std::make_shared<GraphEntry>();
      entry->uncapturable = why;
      insert_graph(d, key, std::move(entry));
    } catch (const std::bad_alloc&) {
      // Not remembered: the next run of this shape tries to capture again.
    }
  }

  static void insert_graph(DeviceState& d, const std::string& key, std::shared_ptr<GraphEntry> entry) {
    std::shared_ptr<GraphEntry> evicted;  // destroyed after the lock is released
    std::lock_guard lock(d.graph_mutex);
    auto it = d.graphs.find(key);
    if (it != d.graphs.end()) {  // raced with another run of the same shape: replace
      evicted = std::move(it->second.first);
      d.graph_lru.erase(it->second.second);
      d.graphs.erase(it);
    }
    d.graph_lru.push_front(key);
    d.graphs.emplace(key, std::make_pair(std::move(entry), d.graph_lru.begin()));
    if (d.graphs.size() > kGraphCacheEntries) {
      auto last = d.graphs.find(d.graph_lru.back());
      evicted = std::move(last->second.first);
      d.graphs.erase(last);
      d.graph_lru.pop_back();
    }
  }

  // After completion: each stage's check on its aux, the returned outputs out of staging, and
  // the stage times (stream launches with stage timing).
  Result<PipelineOutput> unpack_pipeline(const Pending& p) {
    const PreparedPipeline& pl = *p.pipeline;
    const PipelineLayout layout(pl);
    const std::size_t t = size_of(pl.dtype);
    for (std::size_t i = 0; i < pl.stages.size(); ++i) {
      const detail::GpuRecipe& recipe = *pl.stages[i].def->gpu;
      if (recipe.check == nullptr || layout.aux_elems[i] == 0) continue;
      std::vector<double> aux(layout.aux_elems[i]);
      const std::byte* src = p.staging.data + layout.aux[i];
      for (std::size_t k = 0; k < aux.size(); ++k) {
        if (pl.dtype == DType::f32) {
          float v;
          std::memcpy(&v, src + k * t, sizeof v);
          aux[k] = v;
        } else {
          std::memcpy(&aux[k], src + k * t, sizeof(double));
        }
      }
      if (Status s = recipe.check(aux); !s) {
        return s.error().with_context("stage " + std::to_string(i) + " (" + pl.stages[i].def->id + ")");
      }
    }
    PipelineOutput out;
    try {
      out.outputs.resize(pl.stages.size());
      for (std::size_t i = 0; i < pl.stages.size(); ++i) {
        if (!pl.stages[i].returned) continue;
        out.outputs[i] = Tensor::uninitialized(pl.dtype, pl.stages[i].shape.output_count);
        host_copy(static_cast<std::byte*>(out.outputs[i].data()), p.staging.data + layout.output[i],
                  out.outputs[i].bytes());
      }
    } catch (const std::bad_alloc&) {
      return Error(ErrorCode::resource_exhausted, "out of host memory for the outputs of a pipeline");
    }
    out.launch = p.launch;
    out.launch_detail = p.launch_detail;
    if (p.stage_events.size() == pl.stages.size() + 1) {
      const auto observed = std::chrono::steady_clock::now();
      const auto ns = [](float ms) {
        return std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(ms) * 1e6));
      };
      for (std::size_t i = 0; i < pl.stages.size(); ++i) {
        float duration_ms = 0;
        float to_end_ms = 0;
        if (cudaEventElapsedTime(&duration_ms, p.stage_events[i], p.stage_events[i + 1]) != cudaSuccess ||
            cudaEventElapsedTime(&to_end_ms, p.stage_events[i], p.stage_events.back()) != cudaSuccess) {
          cudaGetLastError();
          continue;
        }
        out.timings.push_back({i, observed - ns(to_end_ms), ns(duration_ms)});
      }
    }
    return out;
  }

  // Checks each segment and copies its output from staging into its request (statuses set).
  void scatter(const Pending& p) {
    const BatchCall& c = *p.batch;
    const detail::GpuBatchRecipe& recipe = *c.def->gpu->batched;
    const detail::BatchStaging layout(c, recipe, kSlotAlign);
    const std::byte* download = p.staging.data + layout.upload_bytes;
    for_segments(c, layout.output_bytes, [&](std::size_t b, std::size_t e) {
      detail::scatter_batch(c, recipe, layout, download, b, e);
    });
  }

  // Runs fn(begin, end) over segment ranges: on the copy pool when the batch moves at least
  // kParallelCopyBytes, inline otherwise.
  template <typename Fn>
  void for_segments(const BatchCall& c, std::size_t bytes, const Fn& fn) {
    constexpr std::size_t kParallelCopyBytes = std::size_t{1} << 20;
    const std::size_t segments = c.requests.size();
    if (bytes < kParallelCopyBytes) {
      fn(std::size_t{0}, segments);
      return;
    }
    // About kParallelCopyBytes / 4 per chunk.
    const std::size_t per_chunk = std::max<std::size_t>(1, segments * (kParallelCopyBytes / 4) / bytes);
    copy_pool_->for_chunks(segments, per_chunk, [&fn](std::size_t, std::size_t b, std::size_t e) { fn(b, e); });
  }

  // Pointers of a batch's slots in one device allocation: upload region, then download region.
  static SlotPointers batch_pointers(std::byte* base, const BatchCall& c, const detail::GpuBatchRecipe& r,
                                     const detail::BatchStaging& layout) {
    SlotPointers p{};
    for (std::size_t i = 0; i < c.def->signature.inputs.size(); ++i) p[i] = base + layout.input[i];
    p[slot_index(detail::Slot::offsets)] = base + layout.offsets;
    if (layout.scalars_bytes > 0) p[slot_index(detail::Slot::scalars)] = base + layout.scalars;
    std::byte* download = base + layout.upload_bytes;
    p[slot_index(detail::Slot::output)] = download + layout.output;
    if (r.aux_elems > 0) p[slot_index(detail::Slot::aux)] = download + layout.aux;
    return p;
  }

  Status record_event(Lane& lane, Pending& p) {
    p.event = take_event(lane);
    if (p.event == nullptr) GB_CUDA_TRY(cudaEventCreateWithFlags(&p.event, cudaEventDisableTiming));
    GB_CUDA_TRY(cudaEventRecord(p.event, lane.stream));
    return {};
  }

  // Packs each input into staging in chunks; each chunk's copy starts while the next is packed.
  Status upload_packed(Lane& lane, const PreparedCall& c, const Layout& layout, std::byte* base,
                              std::byte* staging) {
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      const auto* src = static_cast<const std::byte*>(c.inputs[i].data);
      const std::size_t bytes = c.inputs[i].bytes();
      for (std::size_t off = 0; off < bytes; off += kChunkBytes) {
        const std::size_t len = std::min(kChunkBytes, bytes - off);
        host_copy(staging + layout.input[i] + off, src + off, len);
        GB_CUDA_TRY(cudaMemcpyAsync(base + layout.input[i] + off, staging + layout.input[i] + off, len,
                                    cudaMemcpyHostToDevice, lane.stream));
      }
    }
    return {};
  }

  // Uploads through two chunk buffers in turn: a buffer is refilled once its previous upload is done.
  Status upload_streamed(Lane& lane, const PreparedCall& c, const Layout& layout, std::byte* base,
                                const std::array<cuda::PinnedBuffer, 2>& chunks) {
    std::size_t k = 0;
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      const auto* src = static_cast<const std::byte*>(c.inputs[i].data);
      const std::size_t bytes = c.inputs[i].bytes();
      for (std::size_t off = 0; off < bytes; off += kChunkBytes, ++k) {
        const std::size_t b = k % 2;
        const std::size_t len = std::min(kChunkBytes, bytes - off);
        if (k >= 2) GB_CUDA_TRY(cudaEventSynchronize(lane.upload_events[b]));
        host_copy(chunks[b].data, src + off, len);
        GB_CUDA_TRY(cudaMemcpyAsync(base + layout.input[i] + off, chunks[b].data, len, cudaMemcpyHostToDevice,
                                    lane.stream));
        GB_CUDA_TRY(cudaEventRecord(lane.upload_events[b], lane.stream));
      }
    }
    return {};
  }

  // Downloads `bytes` from the device through the two chunk buffers into `dst`.
  Status download_streamed(Lane& lane, const std::byte* src, std::size_t bytes, std::byte* dst,
                                  const std::array<cuda::PinnedBuffer, 2>& chunks) {
    const std::size_t count = (bytes + kChunkBytes - 1) / kChunkBytes;
    auto start = [&](std::size_t k) -> Status {
      const std::size_t off = k * kChunkBytes;
      GB_CUDA_TRY(cudaMemcpyAsync(chunks[k % 2].data, src + off, std::min(kChunkBytes, bytes - off),
                                  cudaMemcpyDeviceToHost, lane.download_stream));
      GB_CUDA_TRY(cudaEventRecord(lane.download_events[k % 2], lane.download_stream));
      return {};
    };
    for (std::size_t k = 0; k < std::min<std::size_t>(count, 2); ++k) {
      if (Status s = start(k); !s) return s;
    }
    for (std::size_t k = 0; k < count; ++k) {
      const std::size_t off = k * kChunkBytes;
      GB_CUDA_TRY(cudaEventSynchronize(lane.download_events[k % 2]));
      host_copy(dst + off, chunks[k % 2].data, std::min(kChunkBytes, bytes - off));
      if (k + 2 < count) {
        if (Status s = start(k + 2); !s) return s;
      }
    }
    return {};
  }

  // Host copies between user memory and page-locked staging: one thread moves about 6 GB/s,
  // so large copies are split over the copy pool.
  void host_copy(std::byte* dst, const std::byte* src, std::size_t bytes) {
    constexpr std::size_t kMinPiece = std::size_t{1} << 20;
    if (bytes < 2 * kMinPiece) {
      std::memcpy(dst, src, bytes);
      return;
    }
    copy_pool_->for_chunks(bytes, kMinPiece, [&](std::size_t, std::size_t b, std::size_t e) {
      std::memcpy(dst + b, src + b, e - b);
    });
  }

  static void release_device_bytes(DeviceState& d, std::size_t bytes) {
    std::lock_guard lock(d.pool_mutex);
    d.pool_stats.bytes_in_use -= bytes;
  }

  void release_host(DeviceState& d, Lane& lane, Pending& p) {
    d.staging.release(std::exchange(p.staging, {}));
    for (auto& chunk : p.chunks) d.staging.release(std::exchange(chunk, {}));
    if (p.event != nullptr) recycle_event(lane, std::exchange(p.event, nullptr));
    for (std::size_t i = 0; i < p.timed_count; ++i) {
      recycle_timing_event(lane, std::exchange(p.timed[i].begin, nullptr));
      recycle_timing_event(lane, std::exchange(p.timed[i].end, nullptr));
    }
    p.timed_count = 0;
    for (cudaEvent_t e : p.stage_events) recycle_timing_event(lane, e);
    p.stage_events.clear();
  }

  void complete_loop(DeviceState& d, Lane& lane) {
    cudaSetDevice(d.cuda_ordinal);  // for the streamed downloads and frees issued from here
    for (;;) {
      Pending p;
      {
        std::unique_lock lock(lane.queue_mutex);
        lane.queue_cv.wait(lock, [&] { return lane.stopping || !lane.queue.empty(); });
        if (lane.queue.empty()) return;
        p = std::move(lane.queue.front());
        lane.queue.pop_front();
      }
      if (p.resident_done) {
        const cudaError_t e = cudaEventSynchronize(p.event);
        Status status = e == cudaSuccess ? Status{} : Status(to_error(e, "resident work"));
        if (status) report_timed_copies(d, p);
        if (status && p.resident_finish) status = p.resident_finish(p);
        release_device_bytes(d, p.device_bytes);
        release_host(d, lane, p);
        p.resident_done(std::move(status));
        continue;
      }
      if (p.pipeline != nullptr) {
        const cudaError_t e = cudaEventSynchronize(p.event);
        Result<PipelineOutput> out =
            e == cudaSuccess ? unpack_pipeline(p) : Result<PipelineOutput>(to_error(e, "running a pipeline"));
        if (e == cudaSuccess) report_timed_copies(d, p);
        release_device_bytes(d, p.device_bytes);
        release_host(d, lane, p);
        if (p.graph) p.graph->in_use.store(false, std::memory_order_release);
        p.graph.reset();
        p.pipeline_done(std::move(out));
        continue;
      }
      if (p.batch != nullptr) {
        const cudaError_t e = cudaEventSynchronize(p.event);
        Status status;
        if (e == cudaSuccess) report_timed_copies(d, p);
        if (e == cudaSuccess && !p.batch->claim_requests()) {
          status = batch_abandoned_error();
        } else if (e == cudaSuccess) {
          scatter(p);
        } else {
          status = to_error(e, "running a batch of " + p.batch->def->id);
        }
        release_device_bytes(d, p.device_bytes);
        release_host(d, lane, p);
        p.batch_done(std::move(status));
        continue;
      }
      const cudaError_t e = cudaEventSynchronize(p.event);
      Result<Tensor> out = e == cudaSuccess ? unpack(lane, p) : Result<Tensor>(to_error(e, "running " + p.call->def->id));
      if (e == cudaSuccess) report_timed_copies(d, p);
      if (out.ok() && p.device != nullptr) moved(d, TransferDirection::device_to_host, out->bytes());  // streamed download
      if (p.device != nullptr) {
        if (cudaError_t f = cudaFreeAsync(p.device, lane.download_stream); f != cudaSuccess && out.ok()) {
          out = to_error(f, "cudaFreeAsync");
        }
      }
      release_device_bytes(d, p.device_bytes);
      release_host(d, lane, p);
      p.done(std::move(out));
    }
  }

  Result<Tensor> unpack(Lane& lane, Pending& p) {
    const PreparedCall& c = *p.call;
    const detail::GpuRecipe& recipe = *c.def->gpu;
    const Layout layout(c, recipe);
    const std::size_t t = size_of(c.dtype);
    std::vector<double> aux(layout.aux_elems);
    const std::byte* aux_src = nullptr;
    if (p.device != nullptr && !aux.empty()) {  // streamed: fetch aux into the first chunk buffer
      if (cudaError_t e = cudaMemcpyAsync(p.chunks[0].data, p.device + layout.aux, aux.size() * t,
                                          cudaMemcpyDeviceToHost, lane.download_stream);
          e != cudaSuccess) {
        return to_error(e, "cudaMemcpyAsync(aux)");
      }
      if (cudaError_t e = cudaStreamSynchronize(lane.download_stream); e != cudaSuccess) return to_error(e, "download aux");
      aux_src = p.chunks[0].data;
    } else if (!aux.empty()) {
      aux_src = p.staging.data + layout.aux;
    }
    for (std::size_t i = 0; i < aux.size(); ++i) {
      if (c.dtype == DType::f32) {
        float v;
        std::memcpy(&v, aux_src + i * t, sizeof v);
        aux[i] = v;
      } else {
        std::memcpy(&aux[i], aux_src + i * t, sizeof(double));
      }
    }
    if (recipe.check != nullptr) {
      if (Status s = recipe.check(aux); !s) return s.error();
    }
    try {
      Tensor out = Tensor::uninitialized(c.dtype, c.output_count);
      auto* dst = static_cast<std::byte*>(out.data());
      if (p.device != nullptr) {
        Status s = begin_timed_copy(lane, p, lane.download_stream, TransferDirection::device_to_host, out.bytes());
        if (s) s = download_streamed(lane, p.device + layout.output, out.bytes(), dst, p.chunks);
        if (s) s = end_timed_copy(p, lane.download_stream);
        if (!s) return s.error();
      } else {
        host_copy(dst, p.staging.data + layout.output, out.bytes());
      }
      return out;
    } catch (const std::bad_alloc&) {
      return Error(ErrorCode::resource_exhausted, "out of host memory for the output of " + c.def->id);
    }
  }

  // Reports a copy issued between host and device memory to the observer, if any.
  void moved(const DeviceState& d, TransferDirection direction, std::uint64_t bytes) const noexcept {
    if (observer_) observer_->on_bytes_moved(d.device.id, direction, bytes);
  }

  std::shared_ptr<ComputeObserver> observer_;  // null: none
  const bool graphs_;                          // BackendOptions::cuda_graphs
  const bool time_transfers_;                  // observer_->wants_transfer_timing(), asked once
  const bool time_stages_;                     // observer_->wants_stage_timing(), asked once
  std::unique_ptr<ThreadPool> copy_pool_;  // before devices_: lanes' threads use it until joined
  std::vector<std::unique_ptr<DeviceState>> devices_;
  std::string reason_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options) {
  return std::make_unique<CudaBackend>(options);
}

}  // namespace gpubridge::compute

// OpenCL backend: every device of every platform that the ICD loader reports.
//
// Per device: one context; kLanes in-order command queues ("lanes") taken round-robin, so that
// one call's copies overlap another call's kernels, each lane with one completion thread; one
// buffer pool; one program per dtype, built on first use and kept with one set of kernel objects
// per lane (kernel arguments are per-object state: a lane's kernels are only touched under its
// enqueue mutex, which also keeps one call's argument setting and launches together).
//
// execute() enqueues a whole call (uploads straight from the caller's memory, the recipe's
// launches, downloads into a fresh Tensor) without waiting, then hands it to the lane's
// completion thread, which waits for its events, checks them, runs the recipe's check, returns
// the buffers to the pool and calls done. The destructor completes every pending call first.
//
// Batch staging: execute_batch() stages a batch in two host-accessible buffers
// (CL_MEM_ALLOC_HOST_PTR, from a second pool, which keeps each buffer's map state between uses).
// The calling thread packs the upload buffer (offsets table, per-segment scalars, every
// segment's inputs; see gpu/batch_staging.hpp) through a mapping an earlier batch left for it,
// then enqueues without waiting: the unmap of the upload buffer, the segmented recipe on
// sub-buffers of both (one per slot, no copies), a map of the download buffer (output + aux)
// for reading, and a new map of the upload buffer for writing, for whichever batch takes it
// next. The completion thread waits for the commands up to the download map, scatters each
// request's output from the mapped download buffer and calls done; only then does it wait for
// the upload buffer's new map, and it returns both buffers still mapped (the next user of a
// download buffer unmaps it as its first command). So the calling thread waits for the device
// only when its upload buffer is new (or was last used for reading): then it maps it and waits.
// Packing and scattering of batches of 1 MB or more are split over a small copy pool (at most
// kMaxCopyThreads, the calling thread included). On a CPU device (PoCL) map and unmap copy
// nothing, so a batch moves each byte once in and once out, as a raw write/read pair would.
//
// Transfer timing: when the observer wants it (asked once, when the device opens), the lanes are
// profiling queues (CL_QUEUE_PROFILING_ENABLE) and every copy's event is noted; after a call,
// batch or resident operation completed, each copy's CL_PROFILING_COMMAND_START/END goes to the
// observer (see TransferTiming for the clock anchor). A batch's upload is timed on its unmap and
// its download on its map (the commands that move the data on a discrete device). Without
// timing, the queues are plain ones and nothing is noted.
//
// Pipelines (execute_pipeline): one lane, one write per external input, every stage's recipe
// back to back over device buffers, one read per returned output (see "Pipelines"). With stage
// timing wanted the lanes are profiling queues too, and each stage's time is reported.
//
// Resident memory: a block is an exact-size buffer of the device pool (counted in its
// statistics, returned by the block's destructor). Every resident write, read and execute of a
// device runs on one lane and completes through its thread in issue order (see "Resident memory").
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "compute/backend.hpp"
#include "compute/cpu/thread_pool.hpp"
#include "compute/gpu/batch_staging.hpp"
#include "compute/gpu/gpu_recipe.hpp"
#include "compute/opencl/opencl_error.hpp"
#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::compute {

namespace {

using opencl::cl_call_error;
using opencl::cl_device_error;
using opencl::cl_error_name;

constexpr std::size_t kLanes = 2;
constexpr std::uint64_t kMinBufferBytes = 256;
constexpr std::size_t kBuildLogExcerptChars = 2000;
constexpr std::size_t kSlotCount = detail::kSlotCount;
constexpr std::size_t kMaxInputs = 4;
// Batch packing and scattering: split over the copy pool from this many bytes on.
constexpr std::size_t kParallelCopyBytes = std::size_t{1} << 20;
constexpr unsigned kMaxCopyThreads = 4;
// OpenCL 2.0 query and flag, by number: opencl.hpp's 1.2 target leaves them out.
constexpr cl_device_info kDeviceSvmCapabilities = 0x1053;
constexpr cl_bitfield kSvmAtomics = cl_bitfield{1} << 3;

std::string trimmed(std::string s) {
  const auto keep = [](char c) { return c != '\0' && c != ' ' && c != '\n' && c != '\r' && c != '\t'; };
  const auto first = std::find_if(s.begin(), s.end(), keep);
  const auto last = std::find_if(s.rbegin(), s.rend(), keep).base();
  return first < last ? std::string(first, last) : std::string();
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Buffer pool

// A buffer of a pool. The map state is used by staging buffers only (see "Batch staging");
// device buffers are never mapped.
struct PooledBuffer {
  cl::Buffer buffer;
  std::uint64_t bytes = 0;         // the buffer's size: its size class
  void* mapped = nullptr;          // host pointer while [0, mapped_bytes) is mapped
  std::uint64_t mapped_bytes = 0;
  bool mapped_for_writing = false;  // CL_MAP_WRITE_INVALIDATE_REGION, else CL_MAP_READ
};

// Which cached staging buffer a batch prefers: its upload buffer already mapped for writing (it
// packs into it at once), its download buffer any other (each needs one unmap, or none).
enum class MapState { any, mapped_for_writing, not_mapped_for_writing };

// Device buffers by power-of-two size class (at least kMinBufferBytes, at most the device's
// largest allocation; resident blocks take exact sizes instead, see acquire_exact). A call takes
// all its buffers at once and gives them back on completion; later calls of the same classes
// reuse them, so a warm pool allocates nothing. Bytes reserved
// (in use + cached) never exceed `limit_bytes`: cached buffers are dropped first, then the call
// fails with resource_exhausted. Thread-safe.
//
// Staging pools (given an `unmap_queue`) also keep each buffer's map state between uses: a
// buffer that goes back mapped stays mapped in the cache (its next user unmaps or uses it), and
// one that is dropped (limit, failed allocation, destruction) is unmapped on `unmap_queue` first.
class BufferPool {
 public:
  BufferPool(cl::Context context, std::string device_id, std::uint64_t max_alloc_bytes, std::uint64_t limit_bytes,
             std::string limit_name, cl_mem_flags flags = CL_MEM_READ_WRITE, cl::CommandQueue unmap_queue = {})
      : flags_(flags),
        context_(std::move(context)),
        device_id_(std::move(device_id)),
        max_alloc_bytes_(max_alloc_bytes),
        limit_bytes_(limit_bytes),
        limit_name_(std::move(limit_name)),
        unmap_queue_(std::move(unmap_queue)) {}

  // Unmaps the cached buffers that are still mapped and waits for that (errors ignored: the
  // buffers are freed right after, there is no one to tell).
  ~BufferPool() {
    bool unmapped = false;
    for (auto& [bytes, list] : free_) {
      for (PooledBuffer& b : list) unmapped = unmap_quietly(b) || unmapped;
    }
    if (unmapped) unmap_queue_.finish();
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // One buffer of at least sizes[i] bytes per entry, or none on error. `states` (empty, or one
  // per entry) says which cached buffers to prefer.
  Result<std::vector<PooledBuffer>> acquire(std::span<const std::uint64_t> sizes,
                                            std::span<const MapState> states = {}) {
    return acquire_sized(sizes, states, false);
  }

  // One buffer of `bytes` rounded up to a multiple of kMinBufferBytes, not to a power of two:
  // for long-lived resident blocks, so that they hold (and count against the limit) what they
  // asked for. Cached under that size on release, like any other buffer.
  Result<PooledBuffer> acquire_exact(std::uint64_t bytes) {
    const std::array<std::uint64_t, 1> sizes{bytes};
    Result<std::vector<PooledBuffer>> got = acquire_sized(sizes, {}, true);
    if (!got) return got.error();
    return std::move(got.value().front());
  }

  // Takes the buffers back for reuse, with their map state; their commands must have completed.
  void release(std::vector<PooledBuffer>& buffers) noexcept {
    std::lock_guard lock(mu_);
    for (auto& b : buffers) give_back(b);
    buffers.clear();
  }

  // Takes one buffer back (a resident block's); its commands must have completed.
  void release(PooledBuffer& buffer) noexcept {
    std::lock_guard lock(mu_);
    give_back(buffer);
  }

  // Forgets a buffer that must not be reused (its state is unknown after a failed command): it
  // is unmapped if it may be mapped, then freed with `b`.
  void drop(PooledBuffer& b) noexcept {
    std::lock_guard lock(mu_);
    stats_.bytes_in_use -= b.bytes;
    stats_.bytes_reserved -= b.bytes;
    b.bytes = 0;
    unmap_quietly(b);
  }

  PoolStats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  Result<std::vector<PooledBuffer>> acquire_sized(std::span<const std::uint64_t> sizes,
                                                  std::span<const MapState> states, bool exact) {
    for (const std::uint64_t bytes : sizes) {
      if (bytes > max_alloc_bytes_) {
        return Error(ErrorCode::resource_exhausted,
                     device_id_ + ": a buffer of " + std::to_string(bytes) +
                         " bytes exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE (" + std::to_string(max_alloc_bytes_) + " bytes)");
      }
    }
    std::lock_guard lock(mu_);
    std::vector<PooledBuffer> out(sizes.size());
    std::vector<bool> hit(sizes.size(), false);
    std::uint64_t total = 0;
    std::uint64_t new_bytes = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      out[i].bytes = exact ? exact_size(sizes[i]) : size_class(sizes[i]);
      total += out[i].bytes;
      auto it = free_.find(out[i].bytes);
      if (it != free_.end() && !it->second.empty()) {
        take_cached(it->second, i < states.size() ? states[i] : MapState::any, out[i]);
        hit[i] = true;
      } else {
        new_bytes += out[i].bytes;
      }
    }
    const auto undo = [&] {
      for (std::size_t i = 0; i < out.size(); ++i) {
        if (hit[i]) free_[out[i].bytes].push_back(std::move(out[i]));
      }
    };
    if (limit_bytes_ != 0 && stats_.bytes_reserved + new_bytes > limit_bytes_) {
      if (new_bytes <= limit_bytes_) drop_cached_until(limit_bytes_ - new_bytes);
      if (stats_.bytes_reserved + new_bytes > limit_bytes_) {
        const std::uint64_t would_hold = stats_.bytes_reserved + new_bytes;
        undo();
        return Error(ErrorCode::resource_exhausted,
                     device_id_ + ": the call needs " + std::to_string(total) + " bytes of device buffers (" +
                         std::to_string(new_bytes) + " new), which would bring the pool to " +
                         std::to_string(would_hold) + " bytes, over its limit of " + std::to_string(limit_bytes_) +
                         " bytes (" + limit_name_ + ")");
      }
    }
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (hit[i]) continue;
      Result<cl::Buffer> created = create(out[i].bytes);
      if (!created && created.error().code() == ErrorCode::resource_exhausted && cached_bytes() > 0) {
        drop_cached_until(0);
        created = create(out[i].bytes);
      }
      if (!created) {
        undo();
        return created.error();
      }
      out[i].buffer = std::move(created.value());
    }
    stats_.bytes_reserved += new_bytes;
    stats_.bytes_in_use += total;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    const auto hits = static_cast<std::uint64_t>(std::count(hit.begin(), hit.end(), true));
    stats_.hits += hits;
    stats_.misses += out.size() - hits;
    return out;
  }

  // Moves the newest cached buffer in `state` (any when there is none) out of `list` into `out`.
  static void take_cached(std::vector<PooledBuffer>& list, MapState state, PooledBuffer& out) noexcept {
    auto pick = std::prev(list.end());
    if (state != MapState::any) {
      const bool want_mapped = state == MapState::mapped_for_writing;
      for (auto it = list.rbegin(); it != list.rend(); ++it) {
        if ((it->mapped != nullptr && it->mapped_for_writing) == want_mapped) {
          pick = std::prev(it.base());
          break;
        }
      }
    }
    out = std::move(*pick);
    list.erase(pick);
  }

  // Caches `b` (under mu_); a buffer that cannot be cached is unmapped and freed with `b`.
  void give_back(PooledBuffer& b) noexcept {
    const std::uint64_t bytes = b.bytes;
    stats_.bytes_in_use -= bytes;
    try {
      free_[bytes].push_back(std::move(b));
    } catch (...) {
      stats_.bytes_reserved -= bytes;
      unmap_quietly(b);
    }
    b.bytes = 0;
  }

  // Enqueues the unmap of a mapped buffer about to be freed (flushed, not waited for: the driver
  // frees the buffer once its commands finished). True when an unmap was enqueued.
  bool unmap_quietly(PooledBuffer& b) noexcept {
    if (b.mapped == nullptr || unmap_queue_() == nullptr) return false;
    const bool enqueued =
        clEnqueueUnmapMemObject(unmap_queue_(), b.buffer(), b.mapped, 0, nullptr, nullptr) == CL_SUCCESS;
    b.mapped = nullptr;
    b.mapped_bytes = 0;
    if (enqueued) unmap_queue_.flush();
    return enqueued;
  }

  std::uint64_t size_class(std::uint64_t bytes) const noexcept {
    return std::min(std::bit_ceil(std::max(bytes, kMinBufferBytes)), max_alloc_bytes_);
  }

  std::uint64_t exact_size(std::uint64_t bytes) const noexcept {
    const std::uint64_t granules = (std::max(bytes, std::uint64_t{1}) + kMinBufferBytes - 1) / kMinBufferBytes;
    return std::min(granules * kMinBufferBytes, max_alloc_bytes_);
  }

  Result<cl::Buffer> create(std::uint64_t bytes) const {
    cl_int err = CL_SUCCESS;
    cl::Buffer buffer(context_, flags_, static_cast<cl::size_type>(bytes), nullptr, &err);
    if (err != CL_SUCCESS) return cl_call_error(err, "clCreateBuffer(" + std::to_string(bytes) + " bytes)");
    return buffer;
  }

  std::uint64_t cached_bytes() const noexcept { return stats_.bytes_reserved - stats_.bytes_in_use; }

  // Frees cached buffers, largest first, until at most `target` bytes are reserved.
  void drop_cached_until(std::uint64_t target) noexcept {
    for (auto it = free_.rbegin(); it != free_.rend() && stats_.bytes_reserved > target; ++it) {
      auto& list = it->second;
      while (!list.empty() && stats_.bytes_reserved > target) {
        unmap_quietly(list.back());
        list.pop_back();
        stats_.bytes_reserved -= it->first;
      }
    }
  }

  const cl_mem_flags flags_;
  const cl::Context context_;
  const std::string device_id_;
  const std::uint64_t max_alloc_bytes_;
  const std::uint64_t limit_bytes_;  // 0: none
  const std::string limit_name_;     // where the limit comes from, for messages
  const cl::CommandQueue unmap_queue_;  // staging pools only: where dropped buffers are unmapped

  mutable std::mutex mu_;
  std::map<std::uint64_t, std::vector<PooledBuffer>> free_;  // guarded by mu_
  PoolStats stats_;                                          // guarded by mu_
};

// ---------------------------------------------------------------------------------------------
// Programs and calls in flight

using KernelMap = std::map<std::string, cl::Kernel, std::less<>>;

// The portable program for one dtype on one device, built on first use.
struct ProgramState {
  std::mutex mu;         // guards the first build
  bool built = false;    // guarded by mu; a failure that is not transient is kept too
  std::optional<Error> failure;
  cl::Program program;
  std::array<KernelMap, kLanes> kernels;  // immutable once built; lane i's map is used under its enqueue mutex
};

// A copy of a pending call to be timed: its event's index in PendingCall::events.
struct TimedTransfer {
  std::size_t event = 0;
  TransferDirection direction = TransferDirection::host_to_device;
  std::uint64_t bytes = 0;
};
// The most copies one call makes: every input up, output and aux down.
constexpr std::size_t kMaxTimedTransfers = kMaxInputs + 2;

// A call whose commands are (partly) enqueued, owned by its lane until completion.
struct PendingCall {
  std::shared_ptr<const PreparedCall> call;  // keeps the inputs' views and the recipe alive
  BackendCompletion done;
  BufferPool* pool = nullptr;
  std::vector<PooledBuffer> buffers;
  std::vector<cl::Event> events;            // every enqueued command, in queue order
  std::vector<std::string_view> commands;   // what each event is (static or program-owned text)
  Tensor output;
  std::vector<std::byte> aux;               // downloaded aux slot
  std::optional<Error> error;               // an enqueue failed: wait for the rest, then fail
  // A batch instead of `call` (buffers: [0] upload, [1] download, both host-accessible).
  const BatchCall* batch = nullptr;
  BatchCompletion batch_done;
  std::array<cl::Buffer, kSlotCount> regions;  // sub-buffers the recipe's slots use
  std::size_t region_align = 0;                 // the layout's alignment (the device's)
  ThreadPool* copy_pool = nullptr;              // splits large packs and scatters; null: inline
  std::size_t result_events = 0;  // the first this many events produce the batch's result; the
                                  // rest (the upload buffer's map for the next batch) may finish later
  // Resident work instead of `call` (write, read or execute_resident): `buffers` holds only the
  // temporary scratch and aux of an execute; `resident_recipe` is set for an execute only.
  bool resident = false;
  ResidentDone resident_done;
  const detail::GpuRecipe* resident_recipe = nullptr;
  DType resident_dtype = DType::f32;
  // Copies to time (only when the device times transfers): reported to timing_observer for
  // device timing_device once every command completed.
  ComputeObserver* timing_observer = nullptr;
  std::string_view timing_device;
  std::array<TimedTransfer, kMaxTimedTransfers> timed{};
  std::size_t timed_count = 0;
  // A pipeline instead of `call` (see "Pipelines"): `buffers` holds its external inputs, then per
  // stage its output, scratch and aux; stage_events[i] = [first, end) of stage i's launch events.
  std::shared_ptr<const PreparedPipeline> pipeline;
  PipelineDone pipeline_done;
  std::vector<Tensor> stage_outputs;
  std::vector<std::vector<std::byte>> stage_aux;
  std::vector<std::pair<std::size_t, std::size_t>> stage_events;
  bool time_stages = false;  // report each stage's profiled time
};

// Notes p.events.back(), a copy of `bytes` in `direction`, for timing (when timing is on).
void note_timed_transfer(PendingCall& p, TransferDirection direction, std::uint64_t bytes) noexcept {
  if (p.timing_observer == nullptr || p.timed_count == p.timed.size() || p.events.empty()) return;
  p.timed[p.timed_count++] = {p.events.size() - 1, direction, bytes};
}

// Reports the noted copies of `p`, whose first `completed` commands completed, with their
// profiled device times. The device clock is anchored at `observed` (the host time the
// completion was seen), taken as the end of the last of those commands on the in-order queue. A
// copy whose profiling information cannot be read is not reported.
void report_timed_transfers(const PendingCall& p, std::size_t completed,
                            std::chrono::steady_clock::time_point observed) noexcept {
  if (p.timing_observer == nullptr || p.timed_count == 0 || completed == 0 || completed > p.events.size()) return;
  cl_ulong anchor = 0;
  if (p.events[completed - 1].getProfilingInfo(CL_PROFILING_COMMAND_END, &anchor) != CL_SUCCESS) return;
  std::array<cl_ulong, kMaxTimedTransfers> starts{};
  std::array<cl_ulong, kMaxTimedTransfers> ends{};
  std::array<bool, kMaxTimedTransfers> readable{};
  for (std::size_t i = 0; i < p.timed_count; ++i) {
    const cl::Event& event = p.events[p.timed[i].event];
    readable[i] = event.getProfilingInfo(CL_PROFILING_COMMAND_START, &starts[i]) == CL_SUCCESS &&
                  event.getProfilingInfo(CL_PROFILING_COMMAND_END, &ends[i]) == CL_SUCCESS && ends[i] >= starts[i];
    if (readable[i]) anchor = std::max(anchor, ends[i]);
  }
  for (std::size_t i = 0; i < p.timed_count; ++i) {
    if (!readable[i]) continue;
    TransferTiming t;
    t.device = p.timing_device;
    t.direction = p.timed[i].direction;
    t.bytes = p.timed[i].bytes;
    t.start = observed - std::chrono::nanoseconds(anchor - starts[i]);
    t.duration = std::chrono::nanoseconds(ends[i] - starts[i]);
    p.timing_observer->on_transfer_timed(t);
  }
}

// Waits for every command of `p` and returns the first failure (or p.error).
Status wait_for_commands(PendingCall& p, const cl::CommandQueue& queue, std::size_t first = 0,
                         std::size_t end = std::numeric_limits<std::size_t>::max()) {
  static_assert(sizeof(cl::Event) == sizeof(cl_event), "cl::Event wraps exactly one cl_event");
  end = std::min(end, p.events.size());
  cl_int err = first >= end ? CL_SUCCESS
                            : clWaitForEvents(static_cast<cl_uint>(end - first),
                                              reinterpret_cast<const cl_event*>(p.events.data() + first));
  if (err != CL_SUCCESS && err != CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) {
    // The wait itself failed: make sure nothing still uses the buffers before they are reused.
    queue.finish();
  }
  if (p.error) return *p.error;
  for (std::size_t i = first; i < end; ++i) {
    cl_int status = CL_COMPLETE;
    const cl_int info_err = p.events[i].getInfo(CL_EVENT_COMMAND_EXECUTION_STATUS, &status);
    if (info_err != CL_SUCCESS) return cl_call_error(info_err, "clGetEventInfo(" + std::string(p.commands[i]) + ")");
    if (status < 0) return cl_device_error(status, p.commands[i]);
    if (status != CL_COMPLETE) {
      return Error(ErrorCode::internal, std::string(p.commands[i]) + " did not complete after clWaitForEvents (status " +
                                            std::to_string(status) + ")");
    }
  }
  if (err != CL_SUCCESS) return cl_call_error(err, "clWaitForEvents");
  return {};
}

// Runs the recipe's check (if any) on the downloaded aux slot `p.aux`, read as `dtype`.
Status check_aux(const detail::GpuRecipe& recipe, DType dtype, const PendingCall& p) {
  if (recipe.check == nullptr) return {};
  std::vector<double> aux(p.aux.size() / size_of(dtype));
  for (std::size_t i = 0; i < aux.size(); ++i) {
    if (dtype == DType::f64) {
      double v = 0;
      std::memcpy(&v, p.aux.data() + i * sizeof v, sizeof v);
      aux[i] = v;
    } else {
      float v = 0;
      std::memcpy(&v, p.aux.data() + i * sizeof v, sizeof v);
      aux[i] = v;
    }
  }
  return recipe.check(aux);
}

// Waits for every command of `p`, then returns the output or the first failure.
Result<Tensor> finish_call(PendingCall& p, const cl::CommandQueue& queue) {
  if (Status s = wait_for_commands(p, queue); !s) return s.error();
  report_timed_transfers(p, p.events.size(), std::chrono::steady_clock::now());
  if (Status s = check_aux(*p.call->def->gpu, p.call->dtype, p); !s) return s.error();
  return std::move(p.output);
}

// Runs fn(begin, end) over ranges of the batch's segments: split over `pool` (the calling thread
// takes part) when the batch moves at least kParallelCopyBytes, inline otherwise.
template <typename Fn>
void for_segments(ThreadPool* pool, const BatchCall& c, std::size_t bytes, const Fn& fn) {
  const std::size_t segments = c.requests.size();
  if (pool == nullptr || bytes < kParallelCopyBytes || segments < 2) {
    fn(std::size_t{0}, segments);
    return;
  }
  // About kParallelCopyBytes / 4 per chunk; ThreadPool makes at most one chunk per thread.
  const std::size_t per_chunk = std::max<std::size_t>(1, segments * (kParallelCopyBytes / 4) / bytes);
  pool->for_chunks(segments, per_chunk, [&fn](std::size_t, std::size_t b, std::size_t e) { fn(b, e); });
}

// True when every enqueued command of `p` completed successfully (after a wait for them all).
bool all_commands_completed(const PendingCall& p) noexcept {
  for (const cl::Event& e : p.events) {
    cl_int status = CL_COMPLETE;
    if (e.getInfo(CL_EVENT_COMMAND_EXECUTION_STATUS, &status) != CL_SUCCESS || status != CL_COMPLETE) return false;
  }
  return true;
}

// Returns a batch's staging buffers to the pool, both mapped (see "Batch staging"). After a
// failed command their state is unknown: both are dropped instead.
void release_staging(PendingCall& p, bool intact) noexcept {
  if (p.pool == nullptr) return;
  if (!intact) {
    for (PooledBuffer& b : p.buffers) p.pool->drop(b);
    return;
  }
  p.pool->release(p.buffers);
}

// Completes a batch exactly once: waits for the commands its result depends on, scatters the
// outputs, calls done, then waits for the rest and returns the staging buffers.
void complete_batch(PendingCall& p, const cl::CommandQueue& queue) noexcept {
  Status status;
  bool intact = true;  // every command completed: the staging buffers are in the state noted
  const std::size_t result_events = p.result_events != 0 ? p.result_events : p.events.size();
  bool rest_pending = result_events < p.events.size();  // commands not waited for yet
  try {
    status = wait_for_commands(p, queue, 0, result_events);
    if (!status) {
      static_cast<void>(wait_for_commands(p, queue, result_events));  // the state of every buffer is known
      rest_pending = false;
      intact = all_commands_completed(p);
    }
    if (status) report_timed_transfers(p, result_events, std::chrono::steady_clock::now());
    if (status && !p.batch->claim_requests()) status = batch_abandoned_error();
    if (status) {
      const detail::GpuBatchRecipe& recipe = *p.batch->def->gpu->batched;
      const detail::BatchStaging layout(*p.batch, recipe, p.region_align);
      const auto* download = static_cast<const std::byte*>(p.buffers[1].mapped);
      for_segments(p.copy_pool, *p.batch, layout.output_bytes, [&](std::size_t b, std::size_t e) {
        detail::scatter_batch(*p.batch, recipe, layout, download, b, e);
      });
    }
  } catch (const std::exception& e) {
    status = Error(ErrorCode::internal, std::string("completing an OpenCL batch: ") + e.what());
  }
  p.batch_done(std::move(status));
  p.regions = {};
  // The upload buffer's map for the next batch, waited for after done: off this batch's latency.
  if (rest_pending && !wait_for_commands(p, queue, result_events)) intact = all_commands_completed(p);
  release_staging(p, intact);
}

void call_resident_done(ResidentDone& done, Status status) noexcept;
void complete_pipeline(PendingCall& p, const cl::CommandQueue& queue) noexcept;

// Completes resident work exactly once: waits, runs an execute's check, returns its temporary
// buffers, calls done.
void complete_resident(PendingCall& p, const cl::CommandQueue& queue) noexcept {
  Status status;
  try {
    status = wait_for_commands(p, queue);
    if (status) report_timed_transfers(p, p.events.size(), std::chrono::steady_clock::now());
    if (status && p.resident_recipe != nullptr) status = check_aux(*p.resident_recipe, p.resident_dtype, p);
  } catch (const std::exception& e) {
    status = Error(ErrorCode::internal, std::string("completing OpenCL resident work: ") + e.what());
  } catch (...) {
    status = Error(ErrorCode::internal, "completing OpenCL resident work: unknown exception");
  }
  if (p.pool != nullptr) p.pool->release(p.buffers);
  ResidentDone done = std::move(p.resident_done);
  call_resident_done(done, std::move(status));  // a throwing completion must not stop the lane
}

// Completes `p` exactly once: waits, returns its buffers, calls done.
void complete_call(PendingCall& p, const cl::CommandQueue& queue) noexcept {
  if (p.batch != nullptr) {
    complete_batch(p, queue);
    return;
  }
  if (p.resident) {
    complete_resident(p, queue);
    return;
  }
  if (p.pipeline != nullptr) {
    complete_pipeline(p, queue);
    return;
  }
  std::optional<Result<Tensor>> result;
  try {
    result.emplace(finish_call(p, queue));
  } catch (const std::exception& e) {
    result.emplace(Error(ErrorCode::internal, std::string("completing an OpenCL call: ") + e.what()));
  } catch (...) {
    result.emplace(Error(ErrorCode::internal, "completing an OpenCL call: unknown exception"));
  }
  if (p.pool != nullptr) p.pool->release(p.buffers);
  BackendCompletion done = std::move(p.done);
  try {
    done(std::move(*result));
  } catch (...) {
    // A completion must not throw; swallowed (and said on stderr) so that the lane keeps serving.
    std::fputs("gpubridge: an OpenCL backend completion threw; exception ignored\n", stderr);
  }
}

// One in-order command queue and the thread that completes its calls in submission order.
class Lane {
 public:
  Lane(std::size_t index, cl::CommandQueue queue) : index_(index), queue_(std::move(queue)) {
    thread_ = named_thread("gb-ocl-lane-" + std::to_string(index_), [this] { run(); });
  }
  // Completes every pending call, joins the thread, then finishes the queue.
  ~Lane() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
    queue_.finish();  // error ignored: no call is pending any more, there is no one to tell
  }
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  std::size_t index() const noexcept { return index_; }
  const cl::CommandQueue& queue() const noexcept { return queue_; }
  std::mutex& enqueue_mutex() noexcept { return enqueue_mu_; }

  // Takes `call` for completion. On an exception `call` is left untouched.
  void push(std::unique_ptr<PendingCall>& call) {
    {
      std::lock_guard lock(mu_);
      pending_.push_back(std::move(call));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::unique_ptr<PendingCall> call;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        if (pending_.empty()) return;
        call = std::move(pending_.front());
        pending_.pop_front();
      }
      complete_call(*call, queue_);
    }
  }

  const std::size_t index_;
  const cl::CommandQueue queue_;
  std::mutex enqueue_mu_;  // one call's uploads, argument setting and launches stay together
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<PendingCall>> pending_;  // guarded by mu_
  bool stopping_ = false;                             // guarded by mu_
  std::thread thread_;
};

// Sets arguments and enqueues launches on one lane for one call (holding the lane's mutex).
class ClLauncher final : public detail::GpuLauncher {
 public:
  ClLauncher(const Lane& lane, KernelMap& kernels, DType dtype, const std::array<const cl::Buffer*, kSlotCount>& slots,
             PendingCall& pending)
      : lane_(lane), kernels_(kernels), dtype_(dtype), slots_(slots), pending_(pending) {}

  Status launch(std::string_view entry, std::uint64_t groups, std::span<const detail::LaunchArg> args) override {
    auto it = kernels_.find(entry);
    if (it == kernels_.end()) {
      return Error(ErrorCode::internal, "no entry point '" + std::string(entry) + "' in the portable kernel source");
    }
    cl::Kernel& kernel = it->second;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const detail::LaunchArg& a = args[i];
      const auto index = static_cast<cl_uint>(i);
      cl_int err = CL_SUCCESS;
      switch (a.kind) {
        case detail::LaunchArg::Kind::buffer: {
          const cl::Buffer* b = slots_[static_cast<std::size_t>(a.slot)];
          if (b == nullptr) {
            return Error(ErrorCode::internal, it->first + ": argument " + std::to_string(i) +
                                                  " names a buffer slot this call has no buffer for");
          }
          err = kernel.setArg(index, *b);
          break;
        }
        case detail::LaunchArg::Kind::count:
          err = kernel.setArg(index, static_cast<cl_ulong>(a.count));
          break;
        case detail::LaunchArg::Kind::scalar:
          err = dtype_ == DType::f64 ? kernel.setArg(index, static_cast<cl_double>(a.scalar))
                                     : kernel.setArg(index, static_cast<cl_float>(a.scalar));
          break;
      }
      if (err != CL_SUCCESS) return cl_call_error(err, "clSetKernelArg(" + it->first + ", " + std::to_string(i) + ")");
    }
    if (groups == 0 || groups > std::numeric_limits<cl::size_type>::max() / detail::kGroupSize) {
      return Error(ErrorCode::internal, it->first + ": invalid work-group count " + std::to_string(groups));
    }
    cl::Event event;
    const cl_int err = lane_.queue().enqueueNDRangeKernel(
        kernel, cl::NullRange, cl::NDRange(static_cast<cl::size_type>(groups) * detail::kGroupSize),
        cl::NDRange(detail::kGroupSize), nullptr, &event);
    if (err != CL_SUCCESS) return cl_call_error(err, "clEnqueueNDRangeKernel(" + it->first + ")");
    pending_.events.push_back(std::move(event));
    pending_.commands.push_back(it->first);
    return {};
  }

  // A blocking read on the lane's in-order queue: it waits for every command enqueued before it.
  Result<std::vector<double>> read(detail::Slot slot, std::size_t offset, std::size_t count) override {
    const cl::Buffer* b = slots_[static_cast<std::size_t>(slot)];
    if (b == nullptr) return Error(ErrorCode::internal, "read-back of a buffer slot this call has no buffer for");
    const std::size_t elem = size_of(dtype_);
    std::vector<std::byte> bytes(count * elem);
    const cl_int err = lane_.queue().enqueueReadBuffer(*b, CL_TRUE, static_cast<cl::size_type>(offset * elem),
                                                       static_cast<cl::size_type>(bytes.size()), bytes.data());
    if (err != CL_SUCCESS) return cl_call_error(err, "clEnqueueReadBuffer(read-back)");
    std::vector<double> out(count);
    for (std::size_t i = 0; i < count; ++i) {
      if (dtype_ == DType::f64) {
        std::memcpy(&out[i], bytes.data() + i * elem, sizeof(double));
      } else {
        float v = 0;
        std::memcpy(&v, bytes.data() + i * elem, sizeof v);
        out[i] = v;
      }
    }
    return out;
  }

 private:
  const Lane& lane_;
  KernelMap& kernels_;
  const DType dtype_;
  const std::array<const cl::Buffer*, kSlotCount>& slots_;
  PendingCall& pending_;
};

// ---------------------------------------------------------------------------------------------
// Devices

struct ClDevice {
  Device info;
  cl::Device device;
  cl::Context context;
  bool fp64 = false;
  std::size_t max_work_group = 0;
  std::uint64_t max_alloc_bytes = 0;
  std::size_t region_align = 256;  // sub-buffer origins: CL_DEVICE_MEM_BASE_ADDR_ALIGN, at least 256 bytes
  std::shared_ptr<BufferPool> pool;  // shared with the resident blocks, which may outlive the device
  std::shared_ptr<ComputeObserver> observer;  // bytes moved; null: none
  bool time_transfers = false;  // observer->wants_transfer_timing(): the lanes are profiling queues
  bool time_stages = false;     // observer->wants_stage_timing(): profiling queues too
  std::unique_ptr<BufferPool> staging_pool;  // host-accessible (CL_MEM_ALLOC_HOST_PTR) buffers of batches
  ThreadPool* copy_pool = nullptr;  // the backend's, outlives the device; null: copies run inline
  std::array<ProgramState, 2> programs;  // indexed by DType
  std::atomic<std::size_t> next_lane{0};
  std::array<std::unique_ptr<Lane>, kLanes> lanes;  // last: drained and joined before the rest goes
};

template <typename T>
Status device_info(const cl::Device& d, cl_device_info what, std::string_view name, T* out) {
  const cl_int err = d.getInfo(what, out);
  if (err != CL_SUCCESS) return cl_call_error(err, "clGetDeviceInfo(" + std::string(name) + ")");
  return {};
}

// "OpenCL 2.1 vendor text" -> 210; 0 when unreadable.
int parse_cl_version(std::string_view text) {
  constexpr std::string_view kPrefix = "OpenCL ";
  if (text.substr(0, kPrefix.size()) != kPrefix) return 0;
  text.remove_prefix(kPrefix.size());
  int major = 0;
  int minor = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), major);
  if (ec != std::errc() || p == text.data() + text.size() || *p != '.') return 0;
  ++p;
  if (std::from_chars(p, text.data() + text.size(), minor).ec != std::errc()) return 0;
  return major * 100 + minor * 10;
}

struct PlatformInfo {
  std::string name;
  std::string version;
};

// Reads the device's properties and opens its context, queues and pool.
Result<std::unique_ptr<ClDevice>> open_device(const PlatformInfo& platform, const cl::Device& device, int ordinal,
                                              const BackendOptions& options) {
  auto d = std::make_unique<ClDevice>();
  d->device = device;
  Device& info = d->info;
  info.id = "opencl:" + std::to_string(ordinal);
  d->observer = options.observer;
  d->time_transfers = d->observer != nullptr && d->observer->wants_transfer_timing();
  d->time_stages = d->observer != nullptr && d->observer->wants_stage_timing();
  info.backend = BackendKind::opencl;
  info.ordinal = ordinal;

  std::string driver_version;
  std::string device_version;
  std::string extensions;
  cl_ulong global_mem = 0;
  cl_ulong max_alloc = 0;
  cl_uint compute_units = 0;
  cl_device_type type = 0;
  cl_bool available = CL_FALSE;
  cl::size_type max_work_group = 0;
  cl_uint base_align_bits = 0;
  for (Status s : {device_info(device, CL_DEVICE_NAME, "CL_DEVICE_NAME", &info.name),
                   device_info(device, CL_DEVICE_VENDOR, "CL_DEVICE_VENDOR", &info.vendor),
                   device_info(device, CL_DRIVER_VERSION, "CL_DRIVER_VERSION", &driver_version),
                   device_info(device, CL_DEVICE_VERSION, "CL_DEVICE_VERSION", &device_version),
                   device_info(device, CL_DEVICE_EXTENSIONS, "CL_DEVICE_EXTENSIONS", &extensions),
                   device_info(device, CL_DEVICE_GLOBAL_MEM_SIZE, "CL_DEVICE_GLOBAL_MEM_SIZE", &global_mem),
                   device_info(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, "CL_DEVICE_MAX_MEM_ALLOC_SIZE", &max_alloc),
                   device_info(device, CL_DEVICE_MAX_COMPUTE_UNITS, "CL_DEVICE_MAX_COMPUTE_UNITS", &compute_units),
                   device_info(device, CL_DEVICE_TYPE, "CL_DEVICE_TYPE", &type),
                   device_info(device, CL_DEVICE_AVAILABLE, "CL_DEVICE_AVAILABLE", &available),
                   device_info(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, "CL_DEVICE_MAX_WORK_GROUP_SIZE",
                               &max_work_group),
                   device_info(device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, "CL_DEVICE_MEM_BASE_ADDR_ALIGN",
                               &base_align_bits)}) {
    if (!s) return s.error();
  }
  info.name = trimmed(std::move(info.name));
  info.vendor = trimmed(std::move(info.vendor));
  if (available != CL_TRUE) return Error(ErrorCode::unavailable, info.name + " reports CL_DEVICE_AVAILABLE = false");
  if (max_alloc == 0) return Error(ErrorCode::internal, info.name + " reports CL_DEVICE_MAX_MEM_ALLOC_SIZE = 0");

  info.driver = platform.name + " " + platform.version + ", driver " + trimmed(std::move(driver_version));
  info.memory_total_bytes = global_mem;
  info.compute_units = compute_units;
  info.is_gpu = (type & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) != 0;

  // Optional properties: a device that cannot answer does not have the capability.
  cl_device_fp_config double_config = 0;
  if (device.getInfo(CL_DEVICE_DOUBLE_FP_CONFIG, &double_config) != CL_SUCCESS) double_config = 0;
  info.caps.fp64 = double_config != 0 || extensions.find("cl_khr_fp64") != std::string::npos;
  cl_bool unified = CL_FALSE;
  if (device.getInfo(CL_DEVICE_HOST_UNIFIED_MEMORY, &unified) != CL_SUCCESS) unified = CL_FALSE;
  info.caps.host_mapped_memory = unified == CL_TRUE;
  if (parse_cl_version(device_version) >= 200) {
    cl_bitfield svm = 0;
    if (clGetDeviceInfo(device(), kDeviceSvmCapabilities, sizeof(svm), &svm, nullptr) != CL_SUCCESS) svm = 0;
    info.caps.host_native_atomics = (svm & kSvmAtomics) != 0;
  }
  info.caps.peer_access = false;

  d->fp64 = info.caps.fp64;
  d->max_work_group = max_work_group;
  d->max_alloc_bytes = max_alloc;
  d->region_align = std::max<std::size_t>(256, std::bit_ceil(std::max<std::size_t>(base_align_bits / 8, 1)));

  cl_int err = CL_SUCCESS;
  d->context = cl::Context(device, nullptr, nullptr, nullptr, &err);
  if (err != CL_SUCCESS) return cl_call_error(err, "clCreateContext");
  const bool capped = options.device_pool_limit_bytes != 0;
  d->pool = std::make_shared<BufferPool>(d->context, info.id, max_alloc,
                                         capped ? options.device_pool_limit_bytes : global_mem,
                                         capped ? "device_pool_limit_bytes" : "CL_DEVICE_GLOBAL_MEM_SIZE");
  std::array<cl::CommandQueue, kLanes> queues;
  for (cl::CommandQueue& queue : queues) {
    const cl_command_queue_properties properties =
        d->time_transfers || d->time_stages ? CL_QUEUE_PROFILING_ENABLE : 0;
    queue = cl::CommandQueue(d->context, device, properties, &err);
    if (err != CL_SUCCESS) return cl_call_error(err, "clCreateCommandQueue");
  }
  d->staging_pool = std::make_unique<BufferPool>(d->context, info.id, max_alloc,
                                                 capped ? options.device_pool_limit_bytes : global_mem,
                                                 capped ? "device_pool_limit_bytes" : "CL_DEVICE_GLOBAL_MEM_SIZE",
                                                 CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, queues[0]);
  for (std::size_t i = 0; i < kLanes; ++i) d->lanes[i] = std::make_unique<Lane>(i, std::move(queues[i]));
  return d;
}

std::string build_log_excerpt(const cl::Program& program, const cl::Device& device) {
  std::string log;
  if (program.getBuildInfo(device, CL_PROGRAM_BUILD_LOG, &log) != CL_SUCCESS) return "(build log unavailable)";
  log = trimmed(std::move(log));
  if (log.empty()) return "(empty build log)";
  if (log.size() > kBuildLogExcerptChars) {
    const std::size_t more = log.size() - kBuildLogExcerptChars;
    log.resize(kBuildLogExcerptChars);
    log += " ... (" + std::to_string(more) + " more characters)";
  }
  return log;
}

// Builds the portable source for `dtype` and creates each lane's kernels. Errors:
// failed_precondition (the device cannot build or run it; kept), resource_exhausted (transient).
Status build_program(const ClDevice& d, DType dtype, ProgramState& state) {
  const std::string what = d.info.id + " (" + d.info.name + ") cannot build the portable kernels for " +
                           std::string(to_string(dtype)) + ": ";
  const auto fail = [&](cl_int err, std::string_view call, std::string detail) -> Error {
    Error e = cl_call_error(err, call);
    return Error(e.code() == ErrorCode::resource_exhausted ? e.code() : ErrorCode::failed_precondition,
                 what + e.message() + detail);
  };
  cl_int err = CL_SUCCESS;
  cl::Program program(d.context, std::string(detail::portable_kernel_source()), false, &err);
  if (err != CL_SUCCESS) return fail(err, "clCreateProgramWithSource", {});
  const std::string options = detail::portable_defines(dtype, "-D");
  err = program.build(std::vector<cl::Device>{d.device}, options.c_str());
  if (err != CL_SUCCESS) return fail(err, "clBuildProgram", "; build log: " + build_log_excerpt(program, d.device));
  std::array<KernelMap, kLanes> kernels;
  for (std::size_t lane = 0; lane < kLanes; ++lane) {
    std::vector<cl::Kernel> created;
    err = program.createKernels(&created);
    if (err != CL_SUCCESS) return fail(err, "clCreateKernelsInProgram", {});
    for (cl::Kernel& k : created) {
      std::string name;
      err = k.getInfo(CL_KERNEL_FUNCTION_NAME, &name);
      if (err != CL_SUCCESS) return fail(err, "clGetKernelInfo(CL_KERNEL_FUNCTION_NAME)", {});
      name = trimmed(std::move(name));
      if (lane == 0) {
        cl::size_type group = 0;
        err = k.getWorkGroupInfo(d.device, CL_KERNEL_WORK_GROUP_SIZE, &group);
        if (err != CL_SUCCESS) return fail(err, "clGetKernelWorkGroupInfo(" + name + ")", {});
        if (group < detail::kGroupSize) {
          return Error(ErrorCode::failed_precondition,
                       what + "kernel " + name + " allows at most " + std::to_string(group) +
                           " work-items per work-group, the portable kernels need " +
                           std::to_string(detail::kGroupSize));
        }
      }
      kernels[lane].emplace(std::move(name), std::move(k));
    }
  }
  state.program = std::move(program);
  state.kernels = std::move(kernels);
  return {};
}

// The built program for `dtype`, building it on first use (thread-safe).
Result<ProgramState*> program_for(ClDevice& d, DType dtype) {
  ProgramState& state = d.programs[static_cast<std::size_t>(dtype)];
  std::lock_guard lock(state.mu);
  if (!state.built) {
    if (Status s = build_program(d, dtype, state); !s) {
      if (s.error().code() == ErrorCode::resource_exhausted) return s.error();  // transient: retried next time
      state.failure = s.error();
    }
    state.built = true;
  }
  if (state.failure) return *state.failure;
  return &state;
}

// Checks that `d` can run `def` in `dtype` and returns its program (failed_precondition if not).
Result<ProgramState*> runnable(ClDevice& d, const KernelDef& def, DType dtype) {
  if (def.gpu == nullptr || (def.gpu->enqueue == nullptr && def.gpu->enqueue_shaped == nullptr)) {
    return Error(ErrorCode::failed_precondition, "kernel " + def.id + " has no GPU implementation");
  }
  if (dtype == DType::f64 && !d.fp64) {
    return Error(ErrorCode::failed_precondition,
                 d.info.id + " (" + d.info.name + ") has no double-precision (fp64) support for kernel " + def.id);
  }
  if (d.max_work_group < detail::kGroupSize) {
    return Error(ErrorCode::failed_precondition,
                 d.info.id + " (" + d.info.name + ") allows at most " + std::to_string(d.max_work_group) +
                     " work-items per work-group, the portable kernels need " + std::to_string(detail::kGroupSize));
  }
  return program_for(d, dtype);
}

// Takes the call's buffers and enqueues all its commands on `lane`, recording them in `p`.
Status enqueue_call(ClDevice& d, Lane& lane, PendingCall& p) {
  const PreparedCall& call = *p.call;
  Result<ProgramState*> program = runnable(d, *call.def, call.dtype);
  if (!program) return program.error();
  const detail::GpuRecipe& recipe = *call.def->gpu;
  if (call.inputs.size() > kMaxInputs) {
    return Error(ErrorCode::failed_precondition, "kernel " + call.def->id + " has " +
                                                     std::to_string(call.inputs.size()) +
                                                     " inputs; GPU recipes take at most 4");
  }

  const std::uint64_t elem = size_of(call.dtype);
  std::array<std::size_t, kMaxInputs> input_counts{};
  for (std::size_t i = 0; i < call.inputs.size(); ++i) input_counts[i] = call.inputs[i].count;
  const detail::ShapedArgs shape{std::span<const std::size_t>(input_counts.data(), call.inputs.size()),
                                 call.output_count, call.scalars};
  const detail::ShapedBuffers temporaries = detail::buffers_for(recipe, shape);
  std::array<int, kSlotCount> slot_buffer{};
  slot_buffer.fill(-1);
  std::vector<std::uint64_t> sizes;
  const auto add = [&](detail::Slot slot, std::uint64_t elems) {
    slot_buffer[static_cast<std::size_t>(slot)] = static_cast<int>(sizes.size());
    sizes.push_back(elems * elem);
  };
  // Each input with its own length (kernels with computed shapes have inputs of different lengths).
  for (std::size_t i = 0; i < call.inputs.size(); ++i) add(static_cast<detail::Slot>(i), input_counts[i]);
  add(detail::Slot::output, call.output_count);
  if (temporaries.scratch_elems > 0) add(detail::Slot::scratch, temporaries.scratch_elems);
  if (temporaries.aux_elems > 0) add(detail::Slot::aux, temporaries.aux_elems);

  Result<std::vector<PooledBuffer>> buffers = d.pool->acquire(sizes);
  if (!buffers) return buffers.error();
  p.buffers = std::move(buffers.value());
  p.pool = d.pool.get();
  std::array<const cl::Buffer*, kSlotCount> slots{};
  for (std::size_t s = 0; s < kSlotCount; ++s) {
    slots[s] = slot_buffer[s] < 0 ? nullptr : &p.buffers[static_cast<std::size_t>(slot_buffer[s])].buffer;
  }
  p.output = Tensor::uninitialized(call.dtype, call.output_count);
  p.aux.resize(temporaries.aux_elems * elem);
  p.events.reserve(16);
  p.commands.reserve(16);

  static constexpr std::array<std::string_view, kMaxInputs> kWriteNames{
      "clEnqueueWriteBuffer(input0)", "clEnqueueWriteBuffer(input1)", "clEnqueueWriteBuffer(input2)",
      "clEnqueueWriteBuffer(input3)"};
  const cl::CommandQueue& queue = lane.queue();
  std::lock_guard lock(lane.enqueue_mutex());
  for (std::size_t i = 0; i < call.inputs.size(); ++i) {
    cl::Event event;
    const std::uint64_t bytes = input_counts[i] * elem;
    const cl_int err = queue.enqueueWriteBuffer(*slots[i], CL_FALSE, 0, static_cast<cl::size_type>(bytes),
                                                call.inputs[i].data, nullptr, &event);
    if (err != CL_SUCCESS) return cl_call_error(err, kWriteNames[i]);
    p.events.push_back(std::move(event));
    p.commands.push_back(kWriteNames[i]);
    note_timed_transfer(p, TransferDirection::host_to_device, bytes);
    if (d.observer) d.observer->on_bytes_moved(d.info.id, TransferDirection::host_to_device, bytes);
  }
  ClLauncher launcher(lane, (*program)->kernels[lane.index()], call.dtype, slots, p);
  if (Status s = detail::enqueue_recipe(recipe, launcher, shape); !s) return s;
  const auto read = [&](detail::Slot slot, void* dst, std::uint64_t bytes, std::string_view name) -> Status {
    cl::Event event;
    const cl_int err = queue.enqueueReadBuffer(*slots[static_cast<std::size_t>(slot)], CL_FALSE, 0,
                                               static_cast<cl::size_type>(bytes), dst, nullptr, &event);
    if (err != CL_SUCCESS) return cl_call_error(err, name);
    p.events.push_back(std::move(event));
    p.commands.push_back(name);
    note_timed_transfer(p, TransferDirection::device_to_host, bytes);
    if (d.observer) d.observer->on_bytes_moved(d.info.id, TransferDirection::device_to_host, bytes);
    return {};
  };
  if (Status s = read(detail::Slot::output, p.output.data(), p.output.bytes(), "clEnqueueReadBuffer(output)"); !s) {
    return s;
  }
  if (!p.aux.empty()) {
    if (Status s = read(detail::Slot::aux, p.aux.data(), p.aux.size(), "clEnqueueReadBuffer(aux)"); !s) return s;
  }
  if (const cl_int err = queue.flush(); err != CL_SUCCESS) return cl_call_error(err, "clFlush");
  return {};
}

// Stages a batch and enqueues all its commands on `lane` (see "Batch staging"), recording them
// in `p`. On error, what was enqueued is recorded and each staging buffer's map state is what
// its enqueued commands leave, so that completing `p` returns the buffers correctly.
Status enqueue_batch(ClDevice& d, Lane& lane, PendingCall& p) {
  const BatchCall& c = *p.batch;
  Result<ProgramState*> program = runnable(d, *c.def, c.dtype);
  if (!program) return program.error();
  if (c.def->gpu->batched == nullptr) {
    return Error(ErrorCode::failed_precondition, "kernel " + c.def->id + " has no batched GPU implementation");
  }
  const detail::GpuBatchRecipe& recipe = *c.def->gpu->batched;
  const detail::BatchStaging layout(c, recipe, d.region_align);
  p.region_align = d.region_align;
  const std::array<std::uint64_t, 2> sizes{layout.upload_bytes, layout.download_bytes};
  static constexpr std::array<MapState, 2> kStates{MapState::mapped_for_writing, MapState::not_mapped_for_writing};
  Result<std::vector<PooledBuffer>> buffers = d.staging_pool->acquire(sizes, kStates);
  if (!buffers) return buffers.error();
  p.buffers = std::move(buffers.value());
  p.pool = d.staging_pool.get();
  PooledBuffer& upload = p.buffers[0];
  PooledBuffer& download = p.buffers[1];

  std::array<const cl::Buffer*, kSlotCount> slots{};
  const auto region = [&](detail::Slot slot, cl::Buffer& parent, std::size_t origin,
                          std::size_t bytes) -> Status {
    if (bytes == 0) return {};
    const cl_buffer_region r{origin, bytes};
    cl_int err = CL_SUCCESS;
    cl::Buffer sub = parent.createSubBuffer(CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
    if (err != CL_SUCCESS) return cl_call_error(err, "clCreateSubBuffer");
    const auto i = static_cast<std::size_t>(slot);
    p.regions[i] = std::move(sub);
    slots[i] = &p.regions[i];
    return {};
  };
  Status s = region(detail::Slot::offsets, upload.buffer, layout.offsets, layout.offsets_bytes);
  if (s) s = region(detail::Slot::scalars, upload.buffer, layout.scalars, layout.scalars_bytes);
  for (std::size_t i = 0; s && i < c.def->signature.inputs.size(); ++i) {
    s = region(static_cast<detail::Slot>(i), upload.buffer, layout.input[i], layout.input_bytes);
  }
  if (s) s = region(detail::Slot::output, download.buffer, layout.output, layout.output_bytes);
  if (s) s = region(detail::Slot::aux, download.buffer, layout.aux, layout.aux_bytes);
  if (!s) return s;
  p.events.reserve(12);
  p.commands.reserve(12);
  // What a map for packing covers: the whole buffer where mapping copies nothing (host-unified
  // memory), so that any later batch of its size class fits; the bytes this batch uploads
  // elsewhere, since unmapping a write mapping uploads all of it.
  const auto upload_map_bytes = [&] {
    return d.info.caps.host_mapped_memory ? upload.bytes : static_cast<std::uint64_t>(layout.upload_bytes);
  };

  const cl::CommandQueue& queue = lane.queue();
  std::lock_guard lock(lane.enqueue_mutex());
  const auto unmap = [&](PooledBuffer& b, std::string_view name) -> Status {
    cl::Event event;
    const cl_int err = queue.enqueueUnmapMemObject(b.buffer, b.mapped, nullptr, &event);
    if (err != CL_SUCCESS) return cl_call_error(err, name);
    b.mapped = nullptr;
    b.mapped_bytes = 0;
    p.events.push_back(std::move(event));
    p.commands.push_back(name);
    return {};
  };
  // Buffers come from the pool as earlier batches left them: mapped (for reading after a
  // download, for writing after an upload) or, when new, not at all.
  if (download.mapped != nullptr) {
    if (s = unmap(download, "clEnqueueUnmapMemObject(batch download, earlier mapping)"); !s) return s;
  }
  if (upload.mapped != nullptr && (!upload.mapped_for_writing || upload.mapped_bytes < layout.upload_bytes)) {
    if (s = unmap(upload, "clEnqueueUnmapMemObject(batch upload, earlier mapping)"); !s) return s;
  }
  if (upload.mapped == nullptr) {  // map it now and wait (the lane's earlier commands first)
    cl_int err = CL_SUCCESS;
    const std::uint64_t bytes = upload_map_bytes();
    void* mapped = queue.enqueueMapBuffer(upload.buffer, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
                                          static_cast<cl::size_type>(bytes), nullptr, nullptr, &err);
    if (err != CL_SUCCESS) return cl_call_error(err, "clEnqueueMapBuffer(batch upload)");
    upload.mapped = mapped;
    upload.mapped_bytes = bytes;
    upload.mapped_for_writing = true;
  }
  auto* host = static_cast<std::byte*>(upload.mapped);
  if (!c.acquire_requests()) return batch_abandoned_error();  // the upload buffer goes back mapped
  {
    struct Release {
      const BatchCall& call;
      ~Release() { call.release_requests(); }  // also when a copy task could not be started
    } release{c};
    detail::pack_batch_tables(c, layout, host);
    for_segments(d.copy_pool, c, layout.input_bytes * c.def->signature.inputs.size(),
                 [&](std::size_t b, std::size_t e) { detail::pack_batch_inputs(c, layout, host, b, e); });
  }
  if (d.observer) d.observer->on_bytes_moved(d.info.id, TransferDirection::host_to_device, layout.upload_bytes);
  if (s = unmap(upload, "clEnqueueUnmapMemObject(batch upload)"); !s) return s;
  note_timed_transfer(p, TransferDirection::host_to_device, layout.upload_bytes);
  ClLauncher launcher(lane, (*program)->kernels[lane.index()], c.dtype, slots, p);
  if (s = recipe.enqueue(launcher, {c.requests.size(), c.total_elements}); !s) return s;
  const auto map = [&](PooledBuffer& b, cl_map_flags flags, std::uint64_t bytes, std::string_view name) -> Status {
    cl::Event event;
    cl_int err = CL_SUCCESS;
    void* mapped = queue.enqueueMapBuffer(b.buffer, CL_FALSE, flags, 0, static_cast<cl::size_type>(bytes), nullptr,
                                          &event, &err);
    if (err != CL_SUCCESS) return cl_call_error(err, name);
    b.mapped = mapped;  // usable once the event completed: this batch's completion waits for it
    b.mapped_bytes = bytes;
    b.mapped_for_writing = flags == CL_MAP_WRITE_INVALIDATE_REGION;
    p.events.push_back(std::move(event));
    p.commands.push_back(name);
    return {};
  };
  if (s = map(download, CL_MAP_READ, layout.download_bytes, "clEnqueueMapBuffer(batch download)"); !s) return s;
  p.result_events = p.events.size();
  if (d.observer) d.observer->on_bytes_moved(d.info.id, TransferDirection::device_to_host, layout.download_bytes);
  note_timed_transfer(p, TransferDirection::device_to_host, layout.download_bytes);
  // The next batch that takes the upload buffer packs into it without a blocking map.
  if (s = map(upload, CL_MAP_WRITE_INVALIDATE_REGION, upload_map_bytes(), "clEnqueueMapBuffer(batch upload, next batch)");
      !s) {
    return s;
  }
  if (const cl_int err = queue.flush(); err != CL_SUCCESS) return cl_call_error(err, "clFlush");
  return {};
}


// ---------------------------------------------------------------------------------------------
// Pipelines
//
// A pipeline runs on one lane: the external inputs are written once, every stage's recipe is
// enqueued back to back over device buffers (a stage's input slots are the buffers of the
// external inputs or of earlier stages' outputs), then the returned outputs and every stage's
// aux are read back. Nothing goes to the host in between, except what a recipe itself reads back
// (GpuLauncher::read, a blocking read on the in-order queue). All buffers come from the device
// pool at once and go back on completion. Launch mode: stream.

// Takes the pipeline's buffers and enqueues all its commands on `lane`, recording them in `p`.
Status enqueue_pipeline(ClDevice& d, Lane& lane, PendingCall& p) {
  const PreparedPipeline& pl = *p.pipeline;
  ProgramState* program = nullptr;
  for (std::size_t i = 0; i < pl.stages.size(); ++i) {
    const PreparedStage& st = pl.stages[i];
    Result<ProgramState*> got = runnable(d, *st.def, pl.dtype);
    if (!got) return got.error().with_context("stage " + std::to_string(i) + " (" + st.def->id + ")");
    if (st.inputs.size() > kMaxInputs) {
      return Error(ErrorCode::failed_precondition, "stage " + std::to_string(i) + " (" + st.def->id +
                                                       ") has more inputs than GPU recipes take");
    }
    program = *got;
  }
  const std::uint64_t elem = size_of(pl.dtype);
  std::vector<std::uint64_t> sizes;
  for (const TensorView& in : pl.inputs) sizes.push_back(in.count * elem);
  struct StageBuffers {
    std::size_t output = 0;
    int scratch = -1, aux = -1;
    std::size_t aux_elems = 0;
  };
  std::vector<StageBuffers> stage_buffers(pl.stages.size());
  for (std::size_t i = 0; i < pl.stages.size(); ++i) {
    const PreparedStage& st = pl.stages[i];
    const detail::ShapedArgs shape{st.shape.input_counts, st.shape.output_count, st.scalars};
    const detail::ShapedBuffers temporaries = detail::buffers_for(*st.def->gpu, shape);
    StageBuffers& b = stage_buffers[i];
    b.output = sizes.size();
    sizes.push_back(st.shape.output_count * elem);
    if (temporaries.scratch_elems > 0) {
      b.scratch = static_cast<int>(sizes.size());
      sizes.push_back(temporaries.scratch_elems * elem);
    }
    if (temporaries.aux_elems > 0) {
      b.aux = static_cast<int>(sizes.size());
      sizes.push_back(temporaries.aux_elems * elem);
    }
    b.aux_elems = temporaries.aux_elems;
  }
  Result<std::vector<PooledBuffer>> buffers = d.pool->acquire(sizes);
  if (!buffers) return buffers.error();
  p.buffers = std::move(buffers.value());
  p.pool = d.pool.get();
  p.stage_outputs.resize(pl.stages.size());
  p.stage_aux.resize(pl.stages.size());
  p.stage_events.reserve(pl.stages.size());
  p.events.reserve(pl.inputs.size() + 4 * pl.stages.size());
  p.commands.reserve(p.events.capacity());

  const cl::CommandQueue& queue = lane.queue();
  std::lock_guard lock(lane.enqueue_mutex());
  for (std::size_t i = 0; i < pl.inputs.size(); ++i) {
    cl::Event event;
    const std::uint64_t bytes = pl.inputs[i].count * elem;
    const cl_int err = queue.enqueueWriteBuffer(p.buffers[i].buffer, CL_FALSE, 0, static_cast<cl::size_type>(bytes),
                                                pl.inputs[i].data, nullptr, &event);
    if (err != CL_SUCCESS) return cl_call_error(err, "clEnqueueWriteBuffer(pipeline input)");
    p.events.push_back(std::move(event));
    p.commands.push_back("clEnqueueWriteBuffer(pipeline input)");
    note_timed_transfer(p, TransferDirection::host_to_device, bytes);
    if (d.observer) d.observer->on_bytes_moved(d.info.id, TransferDirection::host_to_device, bytes);
  }
  for (std::size_t i = 0; i < pl.stages.size(); ++i) {
    const PreparedStage& st = pl.stages[i];
    const StageBuffers& b = stage_buffers[i];
    std::array<const cl::Buffer*, kSlotCount> slots{};
    for (std::size_t k = 0; k < st.inputs.size(); ++k) {
      const StageInput& from = st.inputs[k];
      slots[k] = from.source == StageInput::Source::external ? &p.buffers[from.index].buffer
                                                              : &p.buffers[stage_buffers[from.index].output].buffer;
    }
    slots[static_cast<std::size_t>(detail::Slot::output)] = &p.buffers[b.output].buffer;
    if (b.scratch >= 0) slots[static_cast<std::size_t>(detail::Slot::scratch)] = &p.buffers[static_cast<std::size_t>(b.scratch)].buffer;
    if (b.aux >= 0) slots[static_cast<std::size_t>(detail::Slot::aux)] = &p.buffers[static_cast<std::size_t>(b.aux)].buffer;
    const std::size_t first = p.events.size();
    ClLauncher launcher(lane, program->kernels[lane.index()], pl.dtype, slots, p);
    const detail::ShapedArgs shape{st.shape.input_counts, st.shape.output_count, st.scalars};
    if (Status s = detail::enqueue_recipe(*st.def->gpu, launcher, shape); !s) {
      return s.error().with_context("stage " + std::to_string(i) + " (" + st.def->id + ")");
    }
    p.stage_events.emplace_back(first, p.events.size());
  }
  const auto read = [&](const cl::Buffer& buffer, void* dst, std::uint64_t bytes, std::string_view name) -> Status {
    cl::Event event;
    const cl_int err =
        queue.enqueueReadBuffer(buffer, CL_FALSE, 0, static_cast<cl::size_type>(bytes), dst, nullptr, &event);
    if (err != CL_SUCCESS) return cl_call_error(err, name);
    p.events.push_back(std::move(event));
    p.commands.push_back(name);
    note_timed_transfer(p, TransferDirection::device_to_host, bytes);
    if (d.observer) d.observer->on_bytes_moved(d.info.id, TransferDirection::device_to_host, bytes);
    return {};
  };
  for (std::size_t i = 0; i < pl.stages.size(); ++i) {
    const StageBuffers& b = stage_buffers[i];
    if (pl.stages[i].returned) {
      p.stage_outputs[i] = Tensor::uninitialized(pl.dtype, pl.stages[i].shape.output_count);
      Tensor& out = p.stage_outputs[i];
      if (Status s = read(p.buffers[b.output].buffer, out.data(), out.bytes(), "clEnqueueReadBuffer(pipeline output)");
          !s) {
        return s;
      }
    }
    if (b.aux >= 0 && pl.stages[i].def->gpu->check != nullptr) {
      p.stage_aux[i].resize(b.aux_elems * elem);
      if (Status s = read(p.buffers[static_cast<std::size_t>(b.aux)].buffer, p.stage_aux[i].data(),
                          p.stage_aux[i].size(), "clEnqueueReadBuffer(pipeline aux)");
          !s) {
        return s;
      }
    }
  }
  if (const cl_int err = queue.flush(); err != CL_SUCCESS) return cl_call_error(err, "clFlush");
  return {};
}

// Each stage's profiled time, from its first launch's start to its last launch's end, anchored
// like the transfers (the last command's end at `observed`). Stages whose events cannot be read
// are left out.
std::vector<StageTiming> profiled_stage_times(const PendingCall& p, std::chrono::steady_clock::time_point observed) {
  std::vector<StageTiming> out;
  cl_ulong anchor = 0;
  if (p.events.empty() || p.events.back().getProfilingInfo(CL_PROFILING_COMMAND_END, &anchor) != CL_SUCCESS) return out;
  for (std::size_t i = 0; i < p.stage_events.size(); ++i) {
    const auto [first, end] = p.stage_events[i];
    if (first >= end) continue;
    cl_ulong start = 0;
    cl_ulong finish = 0;
    if (p.events[first].getProfilingInfo(CL_PROFILING_COMMAND_START, &start) != CL_SUCCESS ||
        p.events[end - 1].getProfilingInfo(CL_PROFILING_COMMAND_END, &finish) != CL_SUCCESS || finish < start ||
        anchor < start) {
      continue;
    }
    out.push_back({i, observed - std::chrono::nanoseconds(anchor - start), std::chrono::nanoseconds(finish - start)});
  }
  return out;
}

// Completes a pipeline exactly once: waits, runs each stage's check on its aux, returns the
// buffers, calls done.
void complete_pipeline(PendingCall& p, const cl::CommandQueue& queue) noexcept {
  std::optional<Result<PipelineOutput>> result;
  try {
    Status s = wait_for_commands(p, queue);
    const auto observed = std::chrono::steady_clock::now();
    if (s) report_timed_transfers(p, p.events.size(), observed);
    const PreparedPipeline& pl = *p.pipeline;
    for (std::size_t i = 0; s && i < pl.stages.size() && i < p.stage_aux.size(); ++i) {
      const detail::GpuRecipe& recipe = *pl.stages[i].def->gpu;
      if (recipe.check == nullptr || p.stage_aux[i].empty()) continue;
      p.aux = std::move(p.stage_aux[i]);
      if (Status c = check_aux(recipe, pl.dtype, p); !c) {
        s = c.error().with_context("stage " + std::to_string(i) + " (" + pl.stages[i].def->id + ")");
      }
    }
    if (s) {
      PipelineOutput out;
      out.outputs = std::move(p.stage_outputs);
      out.launch = PipelineLaunch::stream;
      if (p.time_stages) out.timings = profiled_stage_times(p, observed);
      result.emplace(std::move(out));
    } else {
      result.emplace(s.error());
    }
  } catch (const std::exception& e) {
    result.emplace(Error(ErrorCode::internal, std::string("completing an OpenCL pipeline: ") + e.what()));
  } catch (...) {
    result.emplace(Error(ErrorCode::internal, "completing an OpenCL pipeline: unknown exception"));
  }
  if (p.pool != nullptr) p.pool->release(p.buffers);
  PipelineDone done = std::move(p.pipeline_done);
  try {
    done(std::move(*result));
  } catch (...) {
    std::fputs("gpubridge: an OpenCL pipeline completion threw; exception ignored\n", stderr);
  }
}

// ---------------------------------------------------------------------------------------------
// Resident memory
//
// A block is one buffer of its device's pool, of the size asked for (rounded up to
// kMinBufferBytes). All resident work of a device (writes, reads, executes) is enqueued on lane
// kResidentLane and handed to that lane's completion thread under the lane's enqueue mutex: the
// in-order queue runs it in submission order and the thread completes it in the same order, so
// "write, execute, read" issued in that order completes in that order. Work that fails before
// enqueueing anything completes through the lane too, keeping its place in that order.

constexpr std::size_t kResidentLane = 0;

class ClResidentBlock final : public ResidentBlock {
 public:
  ClResidentBlock(std::shared_ptr<BufferPool> pool, PooledBuffer&& buffer, std::size_t bytes) noexcept
      : pool_(std::move(pool)), buffer_(std::move(buffer)), bytes_(bytes) {}
  // Returns the buffer to the pool (thread-safe, from any thread; no work on it may be in flight).
  // The pool is shared, so a block may outlive its backend.
  ~ClResidentBlock() override { pool_->release(buffer_); }
  ClResidentBlock(const ClResidentBlock&) = delete;
  ClResidentBlock& operator=(const ClResidentBlock&) = delete;

  std::size_t bytes() const override { return bytes_; }
  const cl::Buffer& buffer() const noexcept { return buffer_.buffer; }
  const BufferPool* pool() const noexcept { return pool_.get(); }

 private:
  const std::shared_ptr<BufferPool> pool_;
  PooledBuffer buffer_;
  const std::size_t bytes_;  // as asked for; the buffer may be larger
};

// `block` as a block of device `d` holding at least `min_bytes`; invalid_argument otherwise.
Result<const ClResidentBlock*> resident_block(const ClDevice& d, const ResidentBlock* block, std::string_view what,
                                              std::uint64_t min_bytes) {
  const auto* b = dynamic_cast<const ClResidentBlock*>(block);
  if (b == nullptr || b->pool() != d.pool.get()) {
    return Error(ErrorCode::invalid_argument, std::string(what) + " is not a resident block of " + d.info.id);
  }
  if (b->bytes() < min_bytes) {
    return Error(ErrorCode::invalid_argument, std::string(what) + " holds " + std::to_string(b->bytes()) +
                                                  " bytes, the operation needs " + std::to_string(min_bytes));
  }
  return b;
}

// Enqueues a copy from host `src` into `block` (write) or from `block` into host `dst` (read) on
// `lane`, whose enqueue mutex is held, recording it in `p`.
Status enqueue_resident_copy(const ClDevice& d, const Lane& lane, PendingCall& p, const ResidentBlock& block,
                             bool write, const void* src, void* dst, std::size_t bytes) {
  const std::string_view name = write ? "clEnqueueWriteBuffer(resident)" : "clEnqueueReadBuffer(resident)";
  if (bytes > block.bytes()) {
    return Error(ErrorCode::invalid_argument, std::string(write ? "writing " : "reading ") + std::to_string(bytes) +
                                                  " bytes: larger than the resident block (" +
                                                  std::to_string(block.bytes()) + " bytes)");
  }
  Result<const ClResidentBlock*> b = resident_block(d, &block, "the block", 0);
  if (!b) return b.error();
  if (bytes == 0) return {};
  if (write ? src == nullptr : dst == nullptr) {
    return Error(ErrorCode::invalid_argument, std::string(name) + ": null host pointer");
  }
  p.events.reserve(1);
  p.commands.reserve(1);
  const cl::CommandQueue& queue = lane.queue();
  cl::Event event;
  const auto size = static_cast<cl::size_type>(bytes);
  const cl_int err = write ? queue.enqueueWriteBuffer((*b)->buffer(), CL_FALSE, 0, size, src, nullptr, &event)
                           : queue.enqueueReadBuffer((*b)->buffer(), CL_FALSE, 0, size, dst, nullptr, &event);
  if (err != CL_SUCCESS) return cl_call_error(err, name);
  p.events.push_back(std::move(event));
  p.commands.push_back(name);
  note_timed_transfer(p, write ? TransferDirection::host_to_device : TransferDirection::device_to_host, bytes);
  if (d.observer) {
    d.observer->on_bytes_moved(d.info.id,
                               write ? TransferDirection::host_to_device : TransferDirection::device_to_host, bytes);
  }
  if (const cl_int ferr = queue.flush(); ferr != CL_SUCCESS) return cl_call_error(ferr, "clFlush");
  return {};
}

// Enqueues the recipe of `call` over its resident blocks on `lane`, whose enqueue mutex is held:
// scratch and aux come from the pool for the call's duration, aux is read back into p.aux.
Status enqueue_resident_call(ClDevice& d, const Lane& lane, const ResidentCall& call, PendingCall& p) {
  if (call.def == nullptr) return Error(ErrorCode::invalid_argument, "resident call without a kernel");
  const KernelDef& def = *call.def;
  if (def.signature.output == OutputShape::computed) {
    return Error(ErrorCode::failed_precondition, "kernel " + def.id + " is not batchable: it has its own shapes");
  }
  Result<ProgramState*> program = runnable(d, def, call.dtype);
  if (!program) return program.error();
  const detail::GpuRecipe& recipe = *def.gpu;
  const auto invalid = [&](const std::string& why) {
    return Error(ErrorCode::invalid_argument, "resident " + def.id + " on " + d.info.id + ": " + why);
  };
  if (std::find(def.signature.dtypes.begin(), def.signature.dtypes.end(), call.dtype) == def.signature.dtypes.end()) {
    return invalid("the kernel does not accept " + std::string(to_string(call.dtype)));
  }
  if (call.input_count != def.signature.inputs.size() || call.input_count > kMaxInputs) {
    return invalid(std::to_string(call.input_count) + " inputs, the kernel takes " +
                   std::to_string(def.signature.inputs.size()));
  }
  if (call.scalar_count != def.signature.scalars.size() || call.scalar_count > call.scalars.size()) {
    return invalid(std::to_string(call.scalar_count) + " scalars, the kernel takes " +
                   std::to_string(def.signature.scalars.size()));
  }
  if (call.n == 0 || call.n > kMaxElements) return invalid("n = " + std::to_string(call.n));
  if (call.output_count != KernelCatalog::output_count(def, call.n)) {
    return invalid("output_count = " + std::to_string(call.output_count) + " for n = " + std::to_string(call.n));
  }
  const std::uint64_t elem = size_of(call.dtype);
  std::array<const cl::Buffer*, kSlotCount> slots{};
  static constexpr std::array<std::string_view, kMaxInputs> kInputNames{"input 0", "input 1", "input 2", "input 3"};
  for (std::size_t i = 0; i < call.input_count; ++i) {
    Result<const ClResidentBlock*> b = resident_block(d, call.inputs[i], kInputNames[i], call.n * elem);
    if (!b) return invalid(b.error().message());
    slots[i] = &(*b)->buffer();
  }
  Result<const ClResidentBlock*> out = resident_block(d, call.output, "the output", call.output_count * elem);
  if (!out) return invalid(out.error().message());
  slots[static_cast<std::size_t>(detail::Slot::output)] = &(*out)->buffer();

  std::array<std::uint64_t, 2> sizes{};
  std::size_t temporaries = 0;
  if (recipe.scratch_elems > 0) sizes[temporaries++] = recipe.scratch_elems * elem;
  if (recipe.aux_elems > 0) sizes[temporaries++] = recipe.aux_elems * elem;
  if (temporaries > 0) {
    Result<std::vector<PooledBuffer>> buffers = d.pool->acquire(std::span(sizes.data(), temporaries));
    if (!buffers) return buffers.error();
    p.buffers = std::move(buffers.value());
    p.pool = d.pool.get();
    std::size_t k = 0;
    if (recipe.scratch_elems > 0) slots[static_cast<std::size_t>(detail::Slot::scratch)] = &p.buffers[k++].buffer;
    if (recipe.aux_elems > 0) slots[static_cast<std::size_t>(detail::Slot::aux)] = &p.buffers[k++].buffer;
  }
  p.aux.resize(recipe.aux_elems * elem);
  p.resident_recipe = &recipe;
  p.resident_dtype = call.dtype;
  p.events.reserve(8);
  p.commands.reserve(8);

  ClLauncher launcher(lane, (*program)->kernels[lane.index()], call.dtype, slots, p);
  if (Status s = recipe.enqueue(launcher, call.n, std::span(call.scalars.data(), call.scalar_count)); !s) return s;
  const cl::CommandQueue& queue = lane.queue();
  if (!p.aux.empty()) {
    cl::Event event;
    const cl_int err = queue.enqueueReadBuffer(*slots[static_cast<std::size_t>(detail::Slot::aux)], CL_FALSE, 0,
                                               static_cast<cl::size_type>(p.aux.size()), p.aux.data(), nullptr, &event);
    if (err != CL_SUCCESS) return cl_call_error(err, "clEnqueueReadBuffer(aux)");
    p.events.push_back(std::move(event));
    p.commands.push_back("clEnqueueReadBuffer(aux)");
  }
  if (const cl_int err = queue.flush(); err != CL_SUCCESS) return cl_call_error(err, "clFlush");
  return {};
}

// Calls a resident completion, swallowing (and saying on stderr) what it throws.
void call_resident_done(ResidentDone& done, Status status) noexcept {
  try {
    done(std::move(status));
  } catch (...) {
    std::fputs("gpubridge: an OpenCL resident completion threw; exception ignored\n", stderr);
  }
}

// ---------------------------------------------------------------------------------------------
// Backend

class OpenClBackend final : public Backend {
 public:
  explicit OpenClBackend(const BackendOptions& options) { discover(options); }

  // Every pending call completes (its done runs) before the devices go.
  ~OpenClBackend() override = default;

  BackendKind kind() const override { return BackendKind::opencl; }

  BackendStatus status() const override { return status_; }

  Status can_run(int ordinal, const KernelDef& def, DType dtype) const override {
    try {
      ClDevice* d = device(ordinal);
      if (d == nullptr) return no_such_device(ordinal);
      Result<ProgramState*> program = runnable(*d, def, dtype);
      if (program) return {};
      const Error& e = program.error();
      if (e.code() == ErrorCode::failed_precondition) return e;
      return Error(ErrorCode::failed_precondition, e.message(), e.context());
    } catch (const std::exception& e) {
      return Error(ErrorCode::failed_precondition, std::string("OpenCL can_run: ") + e.what());
    }
  }

  void execute(int ordinal, std::shared_ptr<const PreparedCall> call, BackendCompletion done) override {
    ClDevice* d = device(ordinal);
    if (d == nullptr || call == nullptr || call->def == nullptr) {
      done(d == nullptr ? no_such_device(ordinal) : Error(ErrorCode::internal, "OpenCL execute: empty call"));
      return;
    }
    std::unique_ptr<PendingCall> p;
    try {
      p = std::make_unique<PendingCall>();
    } catch (const std::bad_alloc&) {
      done(Error(ErrorCode::resource_exhausted, "out of host memory starting an OpenCL call"));
      return;
    }
    p->call = std::move(call);
    p->done = std::move(done);
    time_if_wanted(*d, *p);
    Lane& lane = *d->lanes[d->next_lane.fetch_add(1, std::memory_order_relaxed) % kLanes];
    submit(lane, std::move(p), "call", [&](PendingCall& pending) { return enqueue_call(*d, lane, pending); });
  }

  void execute_batch(int ordinal, const BatchCall& call, BatchCompletion done) override {
    ClDevice* d = device(ordinal);
    if (d == nullptr) {
      done(no_such_device(ordinal));
      return;
    }
    std::unique_ptr<PendingCall> p;
    try {
      p = std::make_unique<PendingCall>();
    } catch (const std::bad_alloc&) {
      done(Error(ErrorCode::resource_exhausted, "out of host memory starting an OpenCL batch"));
      return;
    }
    p->batch = &call;
    p->batch_done = done;
    p->copy_pool = d->copy_pool;
    time_if_wanted(*d, *p);
    Lane& lane = *d->lanes[d->next_lane.fetch_add(1, std::memory_order_relaxed) % kLanes];
    submit(lane, std::move(p), "batch", [&](PendingCall& pending) { return enqueue_batch(*d, lane, pending); });
  }

  void execute_pipeline(int ordinal, std::shared_ptr<const PreparedPipeline> pipeline, PipelineDone done) override {
    ClDevice* d = device(ordinal);
    if (d == nullptr || pipeline == nullptr) {
      done(d == nullptr ? no_such_device(ordinal) : Error(ErrorCode::internal, "OpenCL execute_pipeline: empty pipeline"));
      return;
    }
    std::unique_ptr<PendingCall> p;
    try {
      p = std::make_unique<PendingCall>();
    } catch (const std::bad_alloc&) {
      done(Error(ErrorCode::resource_exhausted, "out of host memory starting an OpenCL pipeline"));
      return;
    }
    p->pipeline = std::move(pipeline);
    p->pipeline_done = std::move(done);
    p->time_stages = d->time_stages;
    time_if_wanted(*d, *p);
    Lane& lane = *d->lanes[d->next_lane.fetch_add(1, std::memory_order_relaxed) % kLanes];
    submit(lane, std::move(p), "pipeline", [&](PendingCall& pending) { return enqueue_pipeline(*d, lane, pending); });
  }

  // Enqueues a call or batch with `enqueue`, then hands it to the lane's completion thread, or
  // completes it here when nothing was enqueued or it cannot be queued.
  template <typename Enqueue>
  void submit(Lane& lane, std::unique_ptr<PendingCall> p, const char* what, Enqueue&& enqueue) {
    Status s;
    try {
      s = enqueue(*p);
    } catch (const std::exception& e) {
      lane.queue().finish();  // commands may be enqueued that `p` does not record
      const bool oom = dynamic_cast<const std::bad_alloc*>(&e) != nullptr;
      s = Error(oom ? ErrorCode::resource_exhausted : ErrorCode::internal,
                std::string("enqueueing an OpenCL ") + what + ": " + e.what());
    }
    if (!s) p->error = s.error();
    if (!p->events.empty()) {
      try {
        lane.push(p);
        return;
      } catch (...) {
        // Could not queue it: complete it here instead (complete_call waits for its events).
      }
    }
    complete_call(*p, lane.queue());
  }

  // Resident blocks come from the device pool and count in its statistics; see "Resident memory".
  Result<std::unique_ptr<ResidentBlock>> allocate_resident(int ordinal, std::size_t bytes) override {
    ClDevice* d = device(ordinal);
    if (d == nullptr) return no_such_device(ordinal);
    try {
      Result<PooledBuffer> buffer = d->pool->acquire_exact(bytes);
      if (!buffer) return buffer.error();
      try {
        auto block = std::make_unique<ClResidentBlock>(d->pool, std::move(buffer.value()), bytes);
        return std::unique_ptr<ResidentBlock>(std::move(block));
      } catch (...) {
        d->pool->release(buffer.value());  // not moved from: make_unique failed before constructing
        throw;
      }
    } catch (const std::bad_alloc&) {
      return Error(ErrorCode::resource_exhausted, "out of host memory allocating a resident block on " + d->info.id);
    } catch (const std::exception& e) {
      return Error(ErrorCode::internal, std::string("allocating a resident block: ") + e.what());
    }
  }

  void write_resident(int ordinal, ResidentBlock& block, const void* src, std::size_t bytes,
                      ResidentDone done) override {
    submit_resident(ordinal, std::move(done), [&](ClDevice& d, Lane& lane, PendingCall& p) {
      return enqueue_resident_copy(d, lane, p, block, true, src, nullptr, bytes);
    });
  }

  void read_resident(int ordinal, const ResidentBlock& block, void* dst, std::size_t bytes,
                     ResidentDone done) override {
    submit_resident(ordinal, std::move(done), [&](ClDevice& d, Lane& lane, PendingCall& p) {
      return enqueue_resident_copy(d, lane, p, block, false, nullptr, dst, bytes);
    });
  }

  void execute_resident(int ordinal, const ResidentCall& call, ResidentDone done) override {
    submit_resident(ordinal, std::move(done), [&](ClDevice& d, Lane& lane, PendingCall& p) {
      return enqueue_resident_call(d, lane, call, p);
    });
  }

  PoolStats device_pool_stats(int ordinal) const override {
    const ClDevice* d = device(ordinal);
    return d == nullptr ? PoolStats{} : d->pool->stats();
  }

  // The host-accessible buffers batches are staged in. Single calls copy straight from and to
  // the caller's memory and use no staging.
  PoolStats staging_pool_stats(int ordinal) const override {
    const ClDevice* d = device(ordinal);
    return d == nullptr ? PoolStats{} : d->staging_pool->stats();
  }

 private:
  ClDevice* device(int ordinal) const {
    if (ordinal < 0 || static_cast<std::size_t>(ordinal) >= devices_.size()) return nullptr;
    return devices_[static_cast<std::size_t>(ordinal)].get();
  }

  // Runs `enqueue(device, lane, pending)` on the device's resident lane under its enqueue mutex
  // and hands the work to the lane's completion thread, failed or not (see "Resident memory").
  template <typename Enqueue>
  void submit_resident(int ordinal, ResidentDone done, Enqueue&& enqueue) noexcept {
    ClDevice* d = device(ordinal);
    if (d == nullptr) {
      call_resident_done(done, no_such_device(ordinal));
      return;
    }
    std::unique_ptr<PendingCall> p;
    try {
      p = std::make_unique<PendingCall>();
    } catch (...) {
      call_resident_done(done,
                         Error(ErrorCode::resource_exhausted, "out of host memory starting OpenCL resident work"));
      return;
    }
    p->resident = true;
    p->resident_done = std::move(done);
    time_if_wanted(*d, *p);
    Lane& lane = *d->lanes[kResidentLane];
    std::unique_lock lock(lane.enqueue_mutex());
    try {
      if (Status s = enqueue(*d, lane, *p); !s) p->error = s.error();
    } catch (const std::exception& e) {
      // Commands may be enqueued that `p` does not record: let them all finish first.
      lane.queue().finish();
      const bool oom = dynamic_cast<const std::bad_alloc*>(&e) != nullptr;
      p->error = Error(oom ? ErrorCode::resource_exhausted : ErrorCode::internal,
                       std::string("enqueueing OpenCL resident work: ") + e.what());
    }
    try {
      lane.push(p);
      return;
    } catch (...) {
      // Could not queue it: complete it here, without the lock (complete_call waits for its events).
    }
    lock.unlock();
    complete_call(*p, lane.queue());
  }

  // Makes `p` note its copies for timing when the device times transfers.
  static void time_if_wanted(const ClDevice& d, PendingCall& p) noexcept {
    if (!d.time_transfers) return;
    p.timing_observer = d.observer.get();
    p.timing_device = d.info.id;
  }

  static Error no_such_device(int ordinal) {
    return Error(ErrorCode::failed_precondition, "no OpenCL device opencl:" + std::to_string(ordinal));
  }

  Result<std::unique_ptr<ClDevice>> open_device_noexcept(const PlatformInfo& platform, const cl::Device& device,
                                                         const BackendOptions& options) const {
    try {
      return open_device(platform, device, static_cast<int>(devices_.size()), options);
    } catch (const std::exception& e) {
      return Error(ErrorCode::internal, std::string("opening the device: ") + e.what());
    }
  }

  void discover(const BackendOptions& options) {
    status_.kind = BackendKind::opencl;
    std::vector<cl::Platform> platforms;
    const cl_int err = cl::Platform::get(&platforms);
    if (err != CL_SUCCESS || platforms.empty()) {
      status_.reason = err == CL_SUCCESS ? "clGetPlatformIDs: no OpenCL platform"
                                         : "clGetPlatformIDs: " + cl_error_name(err);
      if (err == CL_PLATFORM_NOT_FOUND_KHR) status_.reason += ": the OpenCL ICD loader found no platform";
      return;
    }
    std::vector<std::string> notes;
    for (std::size_t pi = 0; pi < platforms.size(); ++pi) {
      const cl::Platform& platform = platforms[pi];
      PlatformInfo pinfo;
      if (platform.getInfo(CL_PLATFORM_NAME, &pinfo.name) != CL_SUCCESS) pinfo.name = "platform " + std::to_string(pi);
      if (platform.getInfo(CL_PLATFORM_VERSION, &pinfo.version) != CL_SUCCESS) pinfo.version = "(unknown version)";
      pinfo.name = trimmed(std::move(pinfo.name));
      pinfo.version = trimmed(std::move(pinfo.version));
      std::vector<cl::Device> found;
      const cl_int derr = platform.getDevices(CL_DEVICE_TYPE_ALL, &found);
      if (derr != CL_SUCCESS || found.empty()) {
        notes.push_back(pinfo.name + ": no device (clGetDeviceIDs: " +
                        cl_error_name(derr == CL_SUCCESS ? CL_DEVICE_NOT_FOUND : derr) + ")");
        continue;
      }
      for (std::size_t di = 0; di < found.size(); ++di) {
        Result<std::unique_ptr<ClDevice>> opened = open_device_noexcept(pinfo, found[di], options);
        if (!opened) {
          notes.push_back(pinfo.name + " device " + std::to_string(di) + " skipped: " + opened.error().message());
          continue;
        }
        status_.devices.push_back(opened.value()->info);
        devices_.push_back(std::move(opened.value()));
      }
    }
    const unsigned copy_threads = std::min(kMaxCopyThreads, std::max(1u, std::thread::hardware_concurrency()));
    if (!devices_.empty() && copy_threads > 1) {
      try {
        copy_pool_ = std::make_unique<ThreadPool>(copy_threads, "gb-ocl-copy");
        for (auto& d : devices_) d->copy_pool = copy_pool_.get();
      } catch (const std::exception&) {
        copy_pool_.reset();  // no threads to spare: batches copy on their own threads
      }
    }
    status_.available = !devices_.empty();
    status_.reason = status_.available ? join(notes, "; ") : "no usable OpenCL device: " + join(notes, "; ");
  }

  BackendStatus status_;
  std::unique_ptr<ThreadPool> copy_pool_;  // before devices_: their lanes use it until joined
  std::vector<std::unique_ptr<ClDevice>> devices_;
};

}  // namespace

std::unique_ptr<Backend> make_opencl_backend(const BackendOptions& options) {
  try {
    return std::make_unique<OpenClBackend>(options);
  } catch (const std::exception& e) {
    return make_absent_backend(BackendKind::opencl, std::string("the OpenCL backend failed to start: ") + e.what());
  }
}

}  // namespace gpubridge::compute

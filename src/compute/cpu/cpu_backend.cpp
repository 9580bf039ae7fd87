// The CPU backend: one device ("cpu:0") backed by a thread pool. Every catalog kernel has a
// CPU implementation, so can_run() always succeeds.
//
// Batches run their segments in parallel over the pool, in chunks of consecutive segments; each
// segment runs the kernel's CPU implementation on the caller's memory (inputs read in place,
// output written in place) with a serial CpuParallel, so nothing is allocated per request.
#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>

#include "compute/backend.hpp"
#include "compute/cpu/thread_pool.hpp"
#include "compute/request_prefetch.hpp"
#include "gpubridge/core/cache_line.hpp"

namespace gpubridge::compute {

namespace {

// Calls with at most this many input elements in total run on the submitting thread: a pool
// hop would cost more than the work.
constexpr std::size_t kInlineElements = 1 << 14;

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "CPU";
}

std::optional<std::uint64_t> mem_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

// Elements per chunk of a batch (about 256 KiB of f32 input): below it, segments share a chunk.
// Handing a chunk to another thread costs a wake-up of a few microseconds, so a chunk is several
// times that in work: a batch of 256 requests of 256 elements runs as one chunk (on the
// dispatcher, see execute_batch), one of 4096 such requests as up to 16 (never more chunks than
// pool threads).
constexpr std::size_t kBatchChunkElements = 1 << 16;

// Runs every loop on the calling thread, as one chunk.
class SerialParallel final : public CpuParallel {
 public:
  std::size_t chunk_count(std::size_t n, std::size_t) const override { return n == 0 ? 0 : 1; }
  void for_chunks(std::size_t n, std::size_t,
                  const std::function<void(std::size_t, std::size_t, std::size_t)>& fn) override {
    if (n > 0) fn(0, 0, n);
  }
};

// Runs one segment of a batch into its request's output and sets the request's status. `serial`
// is shared by the segments of one chunk.
void run_segment(const KernelDef& def, DType dtype, BatchRequest& r, SerialParallel& serial) {
  const std::size_t inputs = def.signature.inputs.size();
  std::array<const void*, BatchRequest::kMaxInputs> data{};
  for (std::size_t i = 0; i < inputs; ++i) data[i] = r.inputs[i].data;
  std::array<std::size_t, BatchRequest::kMaxInputs> counts{};
  for (std::size_t i = 0; i < inputs; ++i) counts[i] = r.inputs[i].count;
  const CpuKernelArgs args{dtype,
                           r.inputs[0].count,
                           std::span<const void* const>(data.data(), inputs),
                           std::span<const double>(r.scalars.data(), def.signature.scalars.size()),
                           r.output,
                           serial,
                           std::span<const std::size_t>(counts.data(), inputs),
                           KernelCatalog::output_count(def, r.inputs[0].count)};
  try {
    r.status = def.cpu(args);
  } catch (const std::bad_alloc&) {
    r.status = Error(ErrorCode::resource_exhausted, "out of host memory running " + def.id);
  } catch (const std::exception& e) {
    r.status = Error(ErrorCode::internal, std::string("CPU kernel ") + def.id + " threw: " + e.what());
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(unsigned threads) : pool_(threads, "gb-cpu") {
    device_.id = "cpu:0";
    device_.backend = BackendKind::cpu;
    device_.name = cpu_model_name();
    device_.vendor = "host";
    device_.driver = "native C++ (thread pool of " + std::to_string(pool_.size()) + ")";
    device_.memory_total_bytes =
        static_cast<std::uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(sysconf(_SC_PAGE_SIZE));
    device_.compute_units = pool_.size();
    device_.caps = {.fp64 = true, .host_mapped_memory = true, .host_native_atomics = true, .peer_access = false};
  }

  BackendKind kind() const override { return BackendKind::cpu; }

  BackendStatus status() const override {
    Device d = device_;
    d.memory_free_bytes = mem_available_bytes();
    return {BackendKind::cpu, true, {}, {d}};
  }

  Status can_run(int ordinal, const KernelDef&, DType) const override {
    if (ordinal != 0) return Error(ErrorCode::failed_precondition, "no CPU device " + std::to_string(ordinal));
    return {};
  }

  void execute(int, std::shared_ptr<const PreparedCall> call, BackendCompletion done) override {
    std::size_t elements = call->output_count;
    for (const TensorView& in : call->inputs) elements += in.count;
    if (elements <= kInlineElements) {
      done(run(*call));
      return;
    }
    pool_.post([this, call = std::move(call), done = std::move(done)] { done(run(*call)); });
  }

  // A batch that runs as one chunk runs on the submitting thread (the batcher's dispatcher): on
  // another thread it would run no sooner, and the hand-over and wake-ups cost more than a small
  // batch's work (bench_grains: 0.78 -> 0.69 us per request, B=256, 2 cores). Larger batches go to
  // the pool, their chunks in parallel, and the dispatcher forms the next batch meanwhile.
  // Limit: one batcher's one-chunk batches run one after another, so on a many-core host one
  // kernel's small batches get one core (about 3 M requests/s of a 256-float add from memory).
  // Segment failures are per-request; the batch as a whole always succeeds.
  // The requests are claimed (BatchCall::claim_requests) before the first one is read.
  void execute_batch(int, const BatchCall& call, BatchCompletion done) override {
    if (pool_.chunk_count(call.requests.size(), segments_per_chunk(call)) <= 1) {
      if (!call.claim_requests()) return done(batch_abandoned_error());
      run_batch(call);
      done(Status{});
      return;
    }
    pool_.post([this, &call, done] {
      if (!call.claim_requests()) return done(batch_abandoned_error());
      run_batch(call);
      done(Status{});
    });
  }

  // A small request runs on the submitting thread for the reason execute() runs small calls
  // there: on the host a batch has no launch to amortise and runs the same loop per segment, so
  // queueing the request buys nothing, while the hand-over to the batcher's thread and the wake-up
  // of the caller cost more than its work (see DynamicBatcher::run_inline). Its data is asked for
  // before the kernel reads it: requests come from anywhere in memory, and the hardware
  // prefetchers would start cold at each (0.68 -> 0.50 us per 256-float add, one grain worker).
  bool run_request_here(int, const KernelDef& def, DType dtype, BatchRequest& r) override {
    const std::size_t elements =
        r.elements_ * def.signature.inputs.size() + KernelCatalog::output_count(def, r.elements_);
    if (elements > kInlineElements) return false;
    detail::prefetch_inputs(def, r);
    detail::prefetch_output(def, dtype, r);
    SerialParallel serial;
    run_segment(def, dtype, r, serial);
    return true;
  }

  // Resident memory on the CPU is host memory; resident work runs on the calling thread, so the
  // operations of one caller complete in the order it issued them.
  Result<std::unique_ptr<ResidentBlock>> allocate_resident(int, std::size_t bytes) override {
    try {
      return std::unique_ptr<ResidentBlock>(std::make_unique<HostBlock>(bytes));
    } catch (const std::bad_alloc&) {
      return Error(ErrorCode::resource_exhausted, "out of host memory for a resident block of " + std::to_string(bytes) + " bytes");
    }
  }

  void write_resident(int, ResidentBlock& block, const void* src, std::size_t bytes, ResidentDone done) override {
    auto& b = static_cast<HostBlock&>(block);
    if (bytes > b.bytes()) return done(Error(ErrorCode::invalid_argument, "write larger than the resident block"));
    std::memcpy(b.data(), src, bytes);
    done(Status{});
  }

  void read_resident(int, const ResidentBlock& block, void* dst, std::size_t bytes, ResidentDone done) override {
    const auto& b = static_cast<const HostBlock&>(block);
    if (bytes > b.bytes()) return done(Error(ErrorCode::invalid_argument, "read larger than the resident block"));
    std::memcpy(dst, b.data(), bytes);
    done(Status{});
  }

  void execute_resident(int, const ResidentCall& call, ResidentDone done) override {
    std::array<const void*, 4> inputs{};
    for (std::size_t i = 0; i < call.input_count; ++i) inputs[i] = static_cast<const HostBlock*>(call.inputs[i])->data();
    std::array<std::size_t, 4> counts{};
    for (std::size_t i = 0; i < call.input_count; ++i) counts[i] = call.n;
    CpuKernelArgs args{call.dtype,
                       call.n,
                       std::span<const void* const>(inputs.data(), call.input_count),
                       std::span<const double>(call.scalars.data(), call.scalar_count),
                       static_cast<HostBlock*>(call.output)->data(),
                       pool_,
                       std::span<const std::size_t>(counts.data(), call.input_count),
                       call.output_count};
    Status status;
    try {
      status = call.def->cpu(args);
    } catch (const std::exception& e) {
      status = Error(ErrorCode::internal, std::string("CPU kernel ") + call.def->id + " threw: " + e.what());
    }
    done(std::move(status));
  }

 private:
  // A resident block on the CPU: 64-byte aligned host memory.
  class HostBlock final : public ResidentBlock {
   public:
    explicit HostBlock(std::size_t bytes) : storage_(Tensor::uninitialized(DType::f64, (bytes + 7) / 8)), bytes_(bytes) {}
    std::size_t bytes() const override { return bytes_; }
    void* data() { return storage_.data(); }
    const void* data() const { return storage_.data(); }

   private:
    Tensor storage_;
    std::size_t bytes_;
  };

  // Consecutive segments per chunk so that a chunk holds about kBatchChunkElements elements.
  static std::size_t segments_per_chunk(const BatchCall& call) {
    return std::max<std::size_t>(
        1, call.requests.size() * kBatchChunkElements / std::max<std::size_t>(call.total_elements, 1));
  }

  void run_batch(const BatchCall& call) {
    const BatchCall* c = &call;  // one pointer: the loop body fits std::function's inline storage
    pool_.for_chunks(call.requests.size(), segments_per_chunk(call), [c](std::size_t, std::size_t begin, std::size_t end) {
      SerialParallel serial;
      detail::for_requests_prefetched(
          *c, begin, end,
          [c](const BatchRequest& r) {
            detail::prefetch_inputs(*c->def, r);
            detail::prefetch_output(*c->def, c->dtype, r);
          },
          [c, &serial](std::size_t s) { run_segment(*c->def, c->dtype, *c->requests[s], serial); });
    });
  }

  Result<Tensor> run(const PreparedCall& call) {
    try {
      Tensor out = Tensor::uninitialized(call.dtype, call.output_count);
      std::array<const void*, 4> inputs{};
      std::array<std::size_t, 4> counts{};
      const std::size_t k = std::min(call.inputs.size(), inputs.size());  // the catalog allows at most 4
      for (std::size_t i = 0; i < k; ++i) {
        inputs[i] = call.inputs[i].data;
        counts[i] = call.inputs[i].count;
      }
      CpuKernelArgs args{call.dtype,
                         call.n,
                         std::span<const void* const>(inputs.data(), k),
                         call.scalars,
                         out.data(),
                         pool_,
                         std::span<const std::size_t>(counts.data(), k),
                         call.output_count};
      if (Status s = call.def->cpu(args); !s) return s.error();
      return out;
    } catch (const std::bad_alloc&) {
      return Error(ErrorCode::resource_exhausted, "out of host memory running " + call.def->id);
    } catch (const std::exception& e) {
      return Error(ErrorCode::internal, std::string("CPU kernel ") + call.def->id + " threw: " + e.what());
    }
  }

  ThreadPool pool_;
  Device device_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options.cpu_threads);
}

}  // namespace gpubridge::compute

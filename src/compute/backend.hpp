#pragma once
// Internal backend interface. A backend owns the devices of one kind (cpu, cuda, opencl), their
// memory pools and queues. The Executor validates calls and applies the fallback policy; a
// backend only runs what it is given.
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "gpubridge/compute/batcher.hpp"
#include "gpubridge/compute/executor.hpp"
#include "gpubridge/compute/pipeline.hpp"

namespace gpubridge::compute {

// A validated call bound to its kernel definition. Shared so that asynchronous backends can
// keep it alive until completion; input views must stay valid until then (caller's contract).
struct PreparedCall {
  const KernelDef* def = nullptr;
  DType dtype = DType::f32;
  std::size_t n = 0;             // the first input's length (>= 1; every input's unless computed)
  std::size_t output_count = 0;  // n or 1 per the signature, or the computed kernel's shape
                                 // (each input's own length is inputs[i].count)
  std::vector<TensorView> inputs;
  std::vector<double> scalars;
  // Copies of the caller's inputs, which `inputs` then view, for calls that may complete before
  // the device is done with them (calls with a timeout); empty otherwise.
  std::vector<Tensor> owned_inputs;
};

// Called exactly once per execute(), from any thread (possibly inline). On success it carries
// the single output tensor. Error codes the Executor relies on:
//   resource_exhausted  -> device memory could not hold the call (fallback reason out_of_memory)
//   failed_precondition -> kernel or dtype not runnable on that device (kernel_missing)
//   invalid_argument    -> the data itself is invalid (e.g. zero-norm input); never a fallback
//   anything else       -> the device failed (device_error)
using BackendCompletion = std::function<void(Result<Tensor>)>;

// One batch of the dynamic batcher: validated requests of one kernel and dtype, run as segments
// of one launch. Segment i is requests[i]: its length n_i = inputs[0].count (>= 1, every input of
// the signature that long), its scalars, and its output (output_count(def, n_i) elements). The
// batcher owns the call and the requests until the completion ran; the backend must not touch
// them afterwards.
//
// Request memory access (a batch whose deadline passed may be abandoned by the batcher while a
// device still holds it): a backend touches the requests' memory (inputs, outputs, statuses)
// only between acquire_requests() and release_requests(), or after claim_requests() for the
// final write-back. When acquire/claim returns false the batch was abandoned: the backend must
// not touch the requests again and completes the batch with `cancelled`.
struct BatchCall {
  const KernelDef* def = nullptr;
  DType dtype = DType::f32;
  std::span<BatchRequest* const> requests;
  std::span<const std::uint64_t> offsets;  // requests.size() + 1 prefix sums: segment i starts at offsets[i]
  std::size_t total_elements = 0;          // sum of the segments' lengths = offsets.back()
  // 0 free, 1 held by the backend or batcher, 2 abandoned; null: never abandoned.
  std::atomic<std::uint8_t>* access = nullptr;

  static constexpr std::uint8_t kFree = 0, kHeld = 1, kAbandoned = 2;
  // Takes the requests for a while (pair with release_requests()); false when abandoned.
  bool acquire_requests() const noexcept {
    if (access == nullptr) return true;
    std::uint8_t expected = kFree;
    return access->compare_exchange_strong(expected, kHeld, std::memory_order_acq_rel);
  }
  void release_requests() const noexcept {
    if (access != nullptr) access->store(kFree, std::memory_order_release);
  }
  // Takes the requests for good (results are written back); false when abandoned.
  bool claim_requests() const noexcept { return acquire_requests(); }
  bool abandoned() const noexcept {
    return access != nullptr && access->load(std::memory_order_acquire) == kAbandoned;
  }
};

// The error a backend completes an abandoned batch with.
inline Error batch_abandoned_error() { return Error(ErrorCode::cancelled, "the batch was abandoned (deadline or stop)"); }

// Called exactly once per execute_batch(), from any thread (possibly inline), with the batch's
// status. A function pointer and a context rather than a std::function: nothing is allocated
// per batch to carry it.
//   ok:    every request's `status` is set: ok (its output is written) or that segment's own
//          error (e.g. invalid_argument for a zero-norm segment; its output is unspecified).
//   error: the batch as a whole failed (codes as for BackendCompletion); request statuses and
//          outputs are unspecified, and the caller may run the batch again elsewhere.
struct BatchCompletion {
  void (*fn)(void* context, Status status) = nullptr;
  void* context = nullptr;
  void operator()(Status status) const { fn(context, std::move(status)); }
};

// Memory that stays on one device between calls (plain host memory on the CPU backend). The
// destructor returns it to the device; destroy a block only when no work using it is in flight
// (the Executor keeps blocks alive through shared ownership until their work completed).
class ResidentBlock {
 public:
  virtual ~ResidentBlock() = default;
  virtual std::size_t bytes() const = 0;
};

// A catalog kernel over resident blocks of one device: inputs (n elements each) and an output
// block of output_count elements, all of `dtype`. Scratch and aux memory are the backend's
// business; a recipe check that fails (e.g. zero norm) completes with its error.
struct ResidentCall {
  const KernelDef* def = nullptr;
  DType dtype = DType::f32;
  std::size_t n = 0;
  std::size_t output_count = 0;
  std::array<const ResidentBlock*, 4> inputs{};
  std::size_t input_count = 0;
  std::array<double, 2> scalars{};
  std::size_t scalar_count = 0;
  ResidentBlock* output = nullptr;
};

// Completion of resident work: called exactly once, from any thread (possibly inline), never
// with locks of the backend held. Error codes as for BackendCompletion.
using ResidentDone = std::function<void(Status)>;

// A validated pipeline bound to its kernel definitions (see pipeline.hpp). Shared like
// PreparedCall; external input views must stay valid until completion.
struct PreparedStage {
  const KernelDef* def = nullptr;
  std::vector<StageInput> inputs;  // validated: external indices in range, stage indices earlier
  std::vector<double> scalars;
  StageShape shape;
  bool returned = false;  // its output goes back to the caller (keep_output, or the last stage)
};
struct PreparedPipeline {
  DType dtype = DType::f32;
  std::vector<TensorView> inputs;  // external
  std::vector<PreparedStage> stages;
};

// A stage's time as a backend measured it (see PipelineStageExecution).
struct StageTiming {
  std::size_t stage = 0;
  std::chrono::steady_clock::time_point start{};
  std::chrono::nanoseconds duration{0};
};

// What a backend hands back for a pipeline: outputs[i] holds stage i's output when it is
// returned (empty Tensor otherwise); timings of the stages it timed, in stage order.
struct PipelineOutput {
  std::vector<Tensor> outputs;
  PipelineLaunch launch = PipelineLaunch::per_stage;
  std::string launch_detail;
  std::vector<StageTiming> timings;
};
// Called exactly once per execute_pipeline(), from any thread (possibly inline); error codes as
// for BackendCompletion (a stage's own error carries the stage in its context).
using PipelineDone = std::function<void(Result<PipelineOutput>)>;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  // Discovery result, fixed after construction except for memory_free_bytes (re-read).
  virtual BackendStatus status() const = 0;
  // OK when device `ordinal` can run `def` with `dtype`; otherwise failed_precondition with why.
  virtual Status can_run(int ordinal, const KernelDef& def, DType dtype) const = 0;
  virtual void execute(int ordinal, std::shared_ptr<const PreparedCall> call, BackendCompletion done) = 0;
  // Runs a batch as one segmented launch: inputs packed into one staging buffer with an offsets
  // table, one upload, the launch(es), one download, results scattered into each request's
  // output. No device allocation and no heap allocation per request once the pools are warm.
  // `call` stays valid until `done` ran. The default fails with failed_precondition (a backend
  // without batches: the batcher then runs them on the CPU, reason kernel_missing).
  virtual void execute_batch(int ordinal, const BatchCall& call, BatchCompletion done);
  // Runs one validated batched request (elements_ set) now, on the calling thread, when this
  // backend runs work that small on the submitting thread anyway (the CPU backend, as for
  // execute()); sets its status (ok, or the segment's own error). False, touching nothing, when it
  // does not: the request goes through a batch. The default (every device backend) is false.
  virtual bool run_request_here(int ordinal, const KernelDef& def, DType dtype, BatchRequest& request);
  // Resident memory. Defaults: unimplemented (the backend keeps nothing on its devices).
  // allocate_resident: resource_exhausted when the device (or its pool limit) cannot hold it.
  virtual Result<std::unique_ptr<ResidentBlock>> allocate_resident(int ordinal, std::size_t bytes);
  // Copies host memory `src` (valid until done) into the block / the block into host `dst`.
  virtual void write_resident(int ordinal, ResidentBlock& block, const void* src, std::size_t bytes, ResidentDone done);
  virtual void read_resident(int ordinal, const ResidentBlock& block, void* dst, std::size_t bytes, ResidentDone done);
  virtual void execute_resident(int ordinal, const ResidentCall& call, ResidentDone done);
  // Runs a whole pipeline on device `ordinal` (which can run every stage). The default runs it
  // stage by stage through execute() with the intermediates in host memory, timing each stage
  // on the host (launch per_stage); GPU backends keep intermediates on the device.
  virtual void execute_pipeline(int ordinal, std::shared_ptr<const PreparedPipeline> pipeline, PipelineDone done);
  virtual PoolStats device_pool_stats(int /*ordinal*/) const { return {}; }
  virtual PoolStats staging_pool_stats(int /*ordinal*/) const { return {}; }
};

struct BackendOptions {
  unsigned cpu_threads = 0;
  std::uint64_t device_pool_limit_bytes = 0;  // 0: no cap
  std::shared_ptr<ComputeObserver> observer;   // bytes moved (GPU backends); null: none
  bool cuda_graphs = true;                     // ExecutorOptions::cuda_graphs
};

// Factories. The CUDA and OpenCL factories always return a backend; when the backend is not
// usable (not built in, no driver, no device) its status() says why and it has no devices.
std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options);
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);
std::unique_ptr<Backend> make_opencl_backend(const BackendOptions& options);

}  // namespace gpubridge::compute

namespace gpubridge::compute {
// A backend with no devices whose status() carries `reason`.
std::unique_ptr<Backend> make_absent_backend(BackendKind kind, std::string reason);
}  // namespace gpubridge::compute

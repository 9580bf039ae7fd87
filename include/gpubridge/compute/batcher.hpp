#pragma once
// Dynamic batching: many small requests for one kernel become few launches.
//
// A DynamicBatcher serves one (kernel, dtype, device) queue. Requests are caller-owned and are
// neither copied nor allocated by the batcher: submit() links the request into a bounded queue,
// and the batcher writes the result into the request's output span and calls its on_done hook
// exactly once (on a batcher or backend thread, never inside submit()). A batch closes when it
// holds max_batch requests or when its oldest request has waited max_delay; its inputs are
// packed into one staging buffer with an offsets table and the whole batch runs as one segmented
// launch. Expired requests fail with deadline_exceeded and are not run; a full queue rejects the
// request with resource_exhausted ("queue full") instead of growing.
//
// On the host (a batcher placed on the CPU device) a small request may instead run at once on the
// submitting thread: run_inline().
//
// Thread-safe: any thread may submit. The destructor (or stop()) fails queued requests with
// `cancelled` and waits for batches in flight.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "gpubridge/compute/executor.hpp"

namespace gpubridge::compute {

enum class Priority : std::uint8_t { low = 0, normal = 1, high = 2 };
inline constexpr std::size_t kPriorityCount = 3;

// Bounds of BatchPolicy that create() enforces: batch slots are sized from max_batch, and the
// intake holds 16 bytes per queue place from the batcher's creation.
inline constexpr std::size_t kMaxBatchSize = std::size_t{1} << 20;
inline constexpr std::size_t kMaxQueueCapacity = std::size_t{1} << 22;
inline constexpr std::size_t kMaxInflightBatches = 64;

// Batch policy is data: what closes a batch and how big it may get.
struct BatchPolicy {
  std::size_t max_batch = 1024;                 // requests per launch (upper bound in adaptive mode)
  std::chrono::microseconds max_delay{200};     // longest wait of a batch's oldest request
  std::size_t queue_capacity = 1 << 16;         // queued requests per batcher (all priorities), at
                                                // most kMaxQueueCapacity
  std::size_t max_inflight_batches = 4;         // batches submitted to the device at once
  // Adaptive mode: AIMD on the batch size toward a latency target (queueing + execution of a
  // batch's oldest request): + additive_step while under target, halved when over. The limit
  // starts in the middle of [min_batch, max_batch] and stays within it.
  bool adaptive = false;
  std::chrono::microseconds latency_target{2000};
  std::size_t min_batch = 1;
  std::size_t additive_step = 16;
};

using SteadyTime = std::chrono::steady_clock::time_point;

// What happened to one request; valid when on_done runs.
struct BatchReport {
  const char* device_id = "";  // stable for the Executor's lifetime
  BackendKind backend = BackendKind::cpu;
  FallbackReason fallback = FallbackReason::none;
  std::uint32_t batch_size = 0;  // requests in the launch that served this one
  std::chrono::nanoseconds queued{0};    // submit to batch dispatch
  std::chrono::nanoseconds executed{0};  // batch dispatch to completion
};

// One request. Fill the inputs, output, scalars and hooks, then submit(); do not touch it again
// until on_done ran. Inputs and output must stay valid until then.
struct BatchRequest {
  static constexpr std::size_t kMaxInputs = 4;
  static constexpr std::size_t kMaxScalars = 2;

  // First and together: what the batcher's dispatcher reads of every queued request (a request
  // is written on the submitting core, so each of its cache lines the dispatcher reads is a miss).
  Priority priority = Priority::normal;
  SteadyTime deadline = SteadyTime::max();      // not run (deadline_exceeded) once passed
  // Batcher-private bookkeeping: enqueue time, elements per input (both set by submit()), a link
  // for lists of requests failed together.
  SteadyTime enqueued_{};
  std::size_t elements_ = 0;
  BatchRequest* next_ = nullptr;

  std::array<TensorView, kMaxInputs> inputs{};  // the first signature.inputs.size() are used
  std::array<double, kMaxScalars> scalars{};    // the first signature.scalars.size() are used
  void* output = nullptr;                       // output_count(def, n) elements of the dtype
  std::size_t output_capacity = 0;              // elements available at `output`
  void (*on_done)(BatchRequest& request) = nullptr;
  void* user = nullptr;                         // for the caller's on_done

  // Results, valid in on_done.
  Status status;
  BatchReport report;
};

// Run on the completing thread around each run of on_done hooks over the requests of one batch
// (or of one group of failed requests), so that the caller's side can group the work those hooks
// queue (the grain runtime posts each activation's resumptions once per batch, see
// runtime::open_resume_batch). Both set or neither.
struct CompletionScope {
  void (*open)() noexcept = nullptr;
  void (*close)() noexcept = nullptr;
};

struct BatcherStats {
  std::uint64_t submitted = 0;        // accepted into the queue
  std::uint64_t completed = 0;        // finished with ok status (queued or run inline)
  std::uint64_t failed = 0;           // finished with an error (deadline, device, data)
  std::uint64_t ran_inline = 0;       // of those, run by run_inline() (no batch, no queue)
  std::uint64_t rejected_queue_full = 0;
  std::uint64_t expired = 0;          // failed with deadline_exceeded before running
  std::uint64_t batches = 0;
  std::uint64_t batched_requests = 0; // sum of batch sizes
  std::size_t current_max_batch = 0;  // adaptive mode moves this
  std::size_t queue_depth = 0;
};

class DynamicBatcher {
 public:
  // Errors: not_found (unknown kernel), invalid_argument (dtype the kernel does not take, bad
  // policy), unavailable / failed_precondition (no device can serve it and fallback disabled).
  // The device is chosen once, by the executor's fallback policy, from `placement`. The
  // executor must outlive the batcher. A request longer than 2^22 elements is refused
  // (out_of_range): batching is for many small requests, Executor::submit takes large ones.
  // Kernels with their own shapes (OutputShape::computed) are refused with failed_precondition
  // ("not batchable").
  static Result<std::unique_ptr<DynamicBatcher>> create(Executor& executor, std::string kernel, DType dtype,
                                                        BatchPolicy policy, CallOptions placement = {},
                                                        CompletionScope scope = {});
  virtual ~DynamicBatcher() = default;

  // Ownership: on success the batcher holds the request until on_done. On error (the request
  // is invalid, the queue is full, the batcher is stopped) nothing was queued, on_done will not
  // run, and the caller keeps the request.
  virtual Status submit(BatchRequest& request) = 0;
  // Runs the request now, on the calling thread, instead of queueing it, when this batcher's
  // batches run on the host (the CPU device, placed or fallen back to at creation) and the
  // request is small enough for the CPU backend to run small work in place (16384 elements of
  // inputs and output together). On the host a batch has no launch to amortise and runs the same
  // loop per segment; queueing the request costs a hand-over to the batcher's thread and a wake-up
  // of the caller, more than such a request's work. True: it ran; its status and report are
  // set (batch_size 1, queued 0; the fallback reason of the placement, if any) and on_done is not
  // called. False, touching nothing, for every other request - a GPU batcher's, a larger one, an
  // invalid or already expired one, any while the batcher stops or while fault rules are set
  // (faults are injected into batches): submit() it, which explains any refusal. Priorities,
  // max_delay and the queue bound do not apply to a request that never waits. Like submit(),
  // not concurrently with the batcher's destruction (stop() does not wait for inline runs).
  virtual bool run_inline(BatchRequest& request) noexcept = 0;
  virtual std::size_t inflight() const = 0;  // queued + running requests
  // Fails queued requests (cancelled) and waits for running ones. Not from an on_done hook.
  virtual void stop() = 0;
  virtual BatcherStats stats() const = 0;
  virtual const Device& device() const = 0;  // where batches run (before any fallback)
};

}  // namespace gpubridge::compute

#pragma once
// GpuServices: the compute side of a silo as GPU grains see it — the Executor, and one
// DynamicBatcher per (kernel, dtype), created on first use with the silo's batch policy and
// placement. Grains get it from their factory (the silo registers them with it).
//
// submit_batch() is the bridge between the two worlds: a coroutine awaits one BatchRequest and
// resumes in its own ResumeContext (inside its grain's turn) when the batch that served it
// completed. It allocates nothing: the request lives in the awaiting frame.
//
// Thread-safety: every member is thread-safe. Batchers live until stop() or destruction.
#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gpubridge/compute/batcher.hpp"
#include "gpubridge/compute/executor.hpp"
#include "gpubridge/runtime/resume_context.hpp"

namespace gpubridge::grains {

class GpuServices {
 public:
  GpuServices(compute::Executor& executor, compute::BatchPolicy policy, compute::CallOptions placement);
  ~GpuServices();  // stops every batcher
  GpuServices(const GpuServices&) = delete;
  GpuServices& operator=(const GpuServices&) = delete;

  compute::Executor& executor() noexcept { return executor_; }
  const compute::BatchPolicy& policy() const noexcept { return policy_; }
  const compute::CallOptions& placement() const noexcept { return placement_; }

  // The batcher of (kernel, dtype); created on first use. Errors as DynamicBatcher::create.
  Result<compute::DynamicBatcher*> batcher(std::string_view kernel, compute::DType dtype);
  // "kernel/dtype" -> statistics of every batcher created so far.
  std::vector<std::pair<std::string, compute::BatcherStats>> batcher_stats() const;
  // Stops every batcher: queued requests fail with `cancelled`. Later batcher() calls fail.
  void stop();

  // Host copies of resident grain states parked at deactivation, by grain id (process memory).
  void park_state(const std::string& grain, compute::Tensor state);
  std::optional<compute::Tensor> take_parked_state(const std::string& grain);

 private:
  compute::Executor& executor_;
  compute::BatchPolicy policy_;
  compute::CallOptions placement_;
  mutable std::mutex mutex_;
  bool stopped_ = false;
  std::map<std::string, std::unique_ptr<compute::DynamicBatcher>, std::less<>> batchers_;
  std::map<std::string, compute::Tensor> parked_;
};

// co_await completion<T>(start): `start(done)` begins an operation that calls `done(Result<T>)`
// exactly once from any thread; the awaiting coroutine resumes in its own ResumeContext with the
// value, or the error thrown as ErrorException. Completing inline (before start returns) is fine.
template <typename T>
class CompletionAwaiter {
 public:
  using Start = std::function<void(std::function<void(Result<T>)>)>;
  explicit CompletionAwaiter(Start start) : start_(std::move(start)) {}
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> handle) {
    context_ = runtime::ResumeContext::current();
    resumption_.handle = handle;
    start_([this](Result<T> r) {
      result_.emplace(std::move(r));
      if (state_.exchange(kDone) == kSuspended) context_.resume(resumption_);
    });
    // Completed inline: do not suspend. Otherwise the completion may already be resuming us on
    // another thread, so nothing here is touched after the exchange.
    return state_.exchange(kSuspended) != kDone;
  }
  T await_resume() {
    if (!result_->ok()) throw ErrorException(result_->error());
    return std::move(*result_).value();
  }

 private:
  static constexpr int kStarting = 0, kSuspended = 1, kDone = 2;
  Start start_;
  std::optional<Result<T>> result_;
  std::atomic<int> state_{kStarting};
  runtime::Resumption resumption_;
  runtime::ResumeContext context_;
};

// co_await submit_batch(batcher, request): submits and suspends until on_done; then returns the
// request's report or throws ErrorException with the request's error (queue full, deadline,
// device or data error). A request that the batcher runs inline (DynamicBatcher::run_inline: a
// small one on the host) completes without suspending. The request's on_done/user fields are
// taken over by the awaiter, and a refused submit's error is kept in its status.
class BatchAwaiter {
 public:
  BatchAwaiter(compute::DynamicBatcher& batcher, compute::BatchRequest& request) noexcept
      : batcher_(batcher), request_(request) {}
  bool await_ready() noexcept { return batcher_.run_inline(request_); }
  bool await_suspend(std::coroutine_handle<> handle);
  compute::BatchReport await_resume() const;

 private:
  static void on_done(compute::BatchRequest& request);
  compute::DynamicBatcher& batcher_;
  compute::BatchRequest& request_;
  runtime::Resumption resumption_;
  runtime::ResumeContext context_;
};

inline BatchAwaiter submit_batch(compute::DynamicBatcher& batcher, compute::BatchRequest& request) noexcept {
  return BatchAwaiter(batcher, request);
}

// "vector.add/f32" -> ("vector.add", f32). invalid_argument on anything else.
Result<std::pair<std::string, compute::DType>> parse_kernel_key(std::string_view key);
std::string kernel_key(std::string_view kernel, compute::DType dtype);

}  // namespace gpubridge::grains

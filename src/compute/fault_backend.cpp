// Fault injection decorator (see fault_backend.hpp).
#include "compute/fault_backend.hpp"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "gpubridge/resilience/fault_injection.hpp"

namespace gpubridge::compute {

namespace {

using Clock = std::chrono::steady_clock;
using resilience::FaultMode;
using resilience::FaultSpec;

constexpr std::chrono::milliseconds kHangPoll{5};

class FaultBackendImpl final : public FaultBackend {
 public:
  FaultBackendImpl(std::unique_ptr<Backend> inner, std::shared_ptr<resilience::FaultInjector> faults,
                   TimerQueue& timer, std::shared_ptr<ComputeObserver> observer)
      : inner_(std::move(inner)),
        faults_(std::move(faults)),
        timer_(timer),
        observer_(std::move(observer)),
        name_(to_string(inner_->kind())) {}

  ~FaultBackendImpl() override { release_all(); }

  BackendKind kind() const override { return inner_->kind(); }
  BackendStatus status() const override { return inner_->status(); }
  Status can_run(int ordinal, const KernelDef& def, DType dtype) const override {
    return inner_->can_run(ordinal, def, dtype);
  }
  PoolStats device_pool_stats(int ordinal) const override { return inner_->device_pool_stats(ordinal); }
  PoolStats staging_pool_stats(int ordinal) const override { return inner_->staging_pool_stats(ordinal); }
  Result<std::unique_ptr<ResidentBlock>> allocate_resident(int ordinal, std::size_t bytes) override {
    return inner_->allocate_resident(ordinal, bytes);
  }

  void execute(int ordinal, std::shared_ptr<const PreparedCall> call, BackendCompletion done) override {
    std::optional<FaultSpec> fault = faults_->match(name_, call->def->id);
    if (!fault) return inner_->execute(ordinal, std::move(call), std::move(done));
    const std::string kernel = call->def->id;
    auto shared_done = std::make_shared<BackendCompletion>(std::move(done));
    inject(*fault, kernel,
           [this, ordinal, call = std::move(call), shared_done]() mutable {
             inner_->execute(ordinal, std::move(call), std::move(*shared_done));
           },
           [shared_done](Error e) { (*shared_done)(std::move(e)); }, nullptr);
  }

  // A pipeline gets the first fault that matches any of its stages' kernels; without one it runs
  // on the wrapped backend as a whole (device-resident intermediates, graphs).
  void execute_pipeline(int ordinal, std::shared_ptr<const PreparedPipeline> pipeline, PipelineDone done) override {
    std::optional<FaultSpec> fault;
    std::string kernel;
    for (const auto& stage : pipeline->stages) {
      fault = faults_->match(name_, stage.def->id);
      if (fault) {
        kernel = stage.def->id;
        break;
      }
    }
    if (!fault) return inner_->execute_pipeline(ordinal, std::move(pipeline), std::move(done));
    auto shared_done = std::make_shared<PipelineDone>(std::move(done));
    inject(*fault, kernel,
           [this, ordinal, pipeline = std::move(pipeline), shared_done]() mutable {
             inner_->execute_pipeline(ordinal, std::move(pipeline), std::move(*shared_done));
           },
           [shared_done](Error e) { (*shared_done)(std::move(e)); }, nullptr);
  }

  void execute_batch(int ordinal, const BatchCall& call, BatchCompletion done) override {
    std::optional<FaultSpec> fault = faults_->match(name_, call.def->id);
    if (!fault) return inner_->execute_batch(ordinal, call, done);
    const BatchCall* c = &call;  // valid until done ran
    inject(*fault, call.def->id, [this, ordinal, c, done] { inner_->execute_batch(ordinal, *c, done); },
           [done](Error e) { done(Status(std::move(e))); }, c);
  }

  // While any fault rule is set, requests go through batches, where faults are injected.
  bool run_request_here(int ordinal, const KernelDef& def, DType dtype, BatchRequest& request) override {
    if (faults_->armed()) return false;
    return inner_->run_request_here(ordinal, def, dtype, request);
  }

  void write_resident(int ordinal, ResidentBlock& block, const void* src, std::size_t bytes,
                      ResidentDone done) override {
    std::optional<FaultSpec> fault = faults_->match(name_, "resident.write");
    if (!fault) return inner_->write_resident(ordinal, block, src, bytes, std::move(done));
    auto shared_done = std::make_shared<ResidentDone>(std::move(done));
    ResidentBlock* b = &block;
    inject(*fault, "resident.write",
           [this, ordinal, b, src, bytes, shared_done] {
             inner_->write_resident(ordinal, *b, src, bytes, std::move(*shared_done));
           },
           [shared_done](Error e) { (*shared_done)(Status(std::move(e))); }, nullptr);
  }

  void read_resident(int ordinal, const ResidentBlock& block, void* dst, std::size_t bytes,
                     ResidentDone done) override {
    std::optional<FaultSpec> fault = faults_->match(name_, "resident.read");
    if (!fault) return inner_->read_resident(ordinal, block, dst, bytes, std::move(done));
    auto shared_done = std::make_shared<ResidentDone>(std::move(done));
    const ResidentBlock* b = &block;
    inject(*fault, "resident.read",
           [this, ordinal, b, dst, bytes, shared_done] {
             inner_->read_resident(ordinal, *b, dst, bytes, std::move(*shared_done));
           },
           [shared_done](Error e) { (*shared_done)(Status(std::move(e))); }, nullptr);
  }

  void execute_resident(int ordinal, const ResidentCall& call, ResidentDone done) override {
    std::optional<FaultSpec> fault = faults_->match(name_, call.def->id);
    if (!fault) return inner_->execute_resident(ordinal, call, std::move(done));
    auto shared_done = std::make_shared<ResidentDone>(std::move(done));
    inject(*fault, call.def->id,
           [this, ordinal, copy = call, shared_done] {
             inner_->execute_resident(ordinal, copy, std::move(*shared_done));
           },
           [shared_done](Error e) { (*shared_done)(Status(std::move(e))); }, nullptr);
  }

  void release_all() noexcept override {
    std::vector<Hang> released;
    {
      std::lock_guard lock(mutex_);
      shut_down_ = true;
      released.swap(hangs_);
    }
    for (Hang& h : released) h.cancel(Error(ErrorCode::cancelled, "injected hang released: the executor shuts down"));
  }

  std::size_t hung() const override {
    std::lock_guard lock(mutex_);
    return hangs_.size();
  }

 private:
  struct Hang {
    FaultSpec spec;
    Clock::time_point until;  // max: until the rule is removed
    std::function<void()> resume;
    std::function<void(Error)> cancel;
    const BatchCall* batch = nullptr;  // polled for abandonment
  };

  // Applies `fault`: `run` starts the real operation, `fail` completes it with an error.
  void inject(const FaultSpec& fault, std::string_view kernel, std::function<void()> run,
              std::function<void(Error)> fail, const BatchCall* batch) {
    if (observer_) observer_->on_fault_injected(name_, kernel, fault.mode);
    switch (fault.mode) {
      case FaultMode::fail:
        fail(Error(ErrorCode::unavailable, "injected fault (" + resilience::to_string(fault) + ")",
                   std::string(name_) + " " + std::string(kernel)));
        return;
      case FaultMode::slow:
        timer_.schedule(Clock::now() + fault.delay, std::move(run));
        return;
      case FaultMode::hang: {
        Hang h{fault, fault.delay.count() > 0 ? Clock::now() + fault.delay : Clock::time_point::max(), std::move(run),
               std::move(fail), batch};
        bool start_poll = false;
        bool held = false;
        {
          std::lock_guard lock(mutex_);
          if (!shut_down_) {
            hangs_.push_back(std::move(h));
            held = true;
            start_poll = !polling_;
            polling_ = true;
          }
        }
        if (!held) {  // shutting down
          h.cancel(Error(ErrorCode::cancelled, "injected hang released: the executor shuts down"));
          return;
        }
        if (start_poll) timer_.schedule(Clock::now() + kHangPoll, [this] { poll(); });
        return;
      }
    }
  }

  // Timer task: resumes or cancels hangs whose time came, re-arms itself while hangs remain.
  void poll() {
    const auto rules = faults_->snapshot();
    const auto has_rule = [&](const FaultSpec& s) {
      return std::any_of(rules.begin(), rules.end(), [&](const auto& r) { return r.first == s; });
    };
    const Clock::time_point now = Clock::now();
    std::vector<Hang> resumed;
    std::vector<Hang> cancelled;
    bool again = false;
    {
      std::lock_guard lock(mutex_);
      for (auto it = hangs_.begin(); it != hangs_.end();) {
        if (it->batch != nullptr && it->batch->abandoned()) {
          cancelled.push_back(std::move(*it));
        } else if (now >= it->until || !has_rule(it->spec)) {
          resumed.push_back(std::move(*it));
        } else {
          ++it;
          continue;
        }
        it = hangs_.erase(it);
      }
      again = !hangs_.empty() && !shut_down_;
      polling_ = again;
    }
    for (Hang& h : cancelled) h.cancel(batch_abandoned_error());
    for (Hang& h : resumed) h.resume();
    if (again) timer_.schedule(Clock::now() + kHangPoll, [this] { poll(); });
  }

  std::unique_ptr<Backend> inner_;
  std::shared_ptr<resilience::FaultInjector> faults_;
  TimerQueue& timer_;
  std::shared_ptr<ComputeObserver> observer_;
  std::string_view name_;  // "cpu", "cuda", "opencl" (static storage)

  mutable std::mutex mutex_;
  std::vector<Hang> hangs_;
  bool polling_ = false;
  bool shut_down_ = false;
};

}  // namespace

std::unique_ptr<FaultBackend> make_fault_backend(std::unique_ptr<Backend> inner,
                                                 std::shared_ptr<resilience::FaultInjector> faults, TimerQueue& timer,
                                                 std::shared_ptr<ComputeObserver> observer) {
  return std::make_unique<FaultBackendImpl>(std::move(inner), std::move(faults), timer, std::move(observer));
}

}  // namespace gpubridge::compute

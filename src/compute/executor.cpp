#include "gpubridge/compute/executor.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>

#include <cstring>

#include "compute/backend.hpp"
#include "compute/cpu/thread_pool.hpp"
#include "compute/executor_access.hpp"
#include "compute/fallback_policy.hpp"
#include "compute/fault_backend.hpp"
#include "compute/timer_queue.hpp"
#include "gpubridge/core/cache_line.hpp"
#include "gpubridge/resilience/bulkhead.hpp"
#include "gpubridge/resilience/fault_injection.hpp"

namespace gpubridge::compute {

namespace {

using Clock = std::chrono::steady_clock;

// Best first: CUDA, OpenCL GPUs, CPU, OpenCL CPU devices.
int device_rank(const Device& d) {
  if (d.backend == BackendKind::cuda) return 0;
  if (d.backend == BackendKind::opencl && d.is_gpu) return 1;
  if (d.backend == BackendKind::cpu) return 2;
  return 3;
}

// Striped: every worker that runs small CPU requests inline counts them here at once.
struct DeviceCounters {
  StripedCounter<> calls;
  StripedCounter<> errors;
};

}  // namespace

struct Executor::Impl {
  KernelCatalog catalog;
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<FaultBackend*> fault_backends;  // the decorators among `backends` (faults set)
  std::unique_ptr<FallbackPolicy> policy;
  std::map<std::string, DeviceCounters> counters;  // keyed by device id; fixed after construction
  std::array<std::atomic<std::uint64_t>, kFallbackReasonCount> fallbacks{};
  std::shared_ptr<ComputeObserver> observer;
  ComputeObserver* obs = nullptr;  // observer.get(), for the hot path
  ResilienceOptions resilience;
  std::unique_ptr<resilience::BreakerSet> breakers;  // null: breakers off
  // Bulkheads of the non-CPU devices, keyed by device id; fixed after construction; empty: off.
  std::map<std::string, std::unique_ptr<resilience::Bulkhead>, std::less<>> bulkheads;
  std::shared_ptr<resilience::FaultInjector> faults;
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> deadlines{0};
  std::unique_ptr<TimerQueue> timer = std::make_unique<TimerQueue>();
  ThreadPool callbacks{1, "gb-callbacks"};  // runs user callbacks, never on a backend thread

  std::mutex inflight_mutex;
  std::condition_variable inflight_cv;
  std::size_t inflight = 0;

  // One call in flight: everything needed to finish it, possibly on the CPU after a device error.
  // Owned through shared_ptr by the backend completion, the retry task and submit(); while one
  // exists the executor counts a call in flight (released by the destructor), so that a late
  // device completion never outlives the executor.
  struct Call {
    Impl* impl = nullptr;
    std::shared_ptr<const PreparedCall> prepared;
    CallOptions options;
    ExecutionReport report;  // written by the thread that currently drives the call
    Clock::time_point start;
    std::function<void(Result<KernelResult>)> finish;
    std::atomic<bool> completed{false};             // finish ran or is running (exactly once)
    std::atomic<const DeviceSlot*> current{nullptr};  // where it runs now
    std::uint32_t attempt = 1;                      // on the current device
    resilience::CircuitBreaker* breaker = nullptr;  // of the current attempt
    std::atomic<bool> breaker_pending{false};       // an allow() awaits its record_*()
    std::optional<resilience::Bulkhead::Permit> permit;  // held while a device runs it

    ~Call() {
      if (impl != nullptr) impl->end();
    }
  };

  void begin() {
    std::lock_guard lock(inflight_mutex);
    ++inflight;
  }
  void end() {
    std::lock_guard lock(inflight_mutex);
    if (--inflight == 0) inflight_cv.notify_all();
  }

  void count_fallback(FallbackReason r, std::uint64_t calls = 1) {
    fallbacks[static_cast<std::size_t>(r)].fetch_add(calls, std::memory_order_relaxed);
  }
  void count_call(const DeviceSlot& slot, bool failed) {
    DeviceCounters& c = counters.at(slot.device.id);
    c.calls.add();
    if (failed) c.errors.add();
  }

  static const std::string& kernel_of(const Call& call) { return call.prepared->def->id; }

  // Completes the call once; false when it was already completed (the result is dropped).
  static bool complete(Call& call, Result<KernelResult> result) {
    if (call.completed.exchange(true, std::memory_order_acq_rel)) return false;
    call.finish(std::move(result));
    return true;
  }

  resilience::Bulkhead* bulkhead_of(const DeviceSlot& slot) {
    if (bulkheads.empty()) return nullptr;
    auto it = bulkheads.find(slot.device.id);
    return it == bulkheads.end() ? nullptr : it->second.get();
  }

  // Runs the call on `slot` after the resilience checks (non-CPU devices only).
  void dispatch(const std::shared_ptr<Call>& call, const DeviceSlot& slot) {
    if (call->completed.load(std::memory_order_acquire)) return;  // e.g. the deadline passed during a backoff
    if (slot.device.backend == BackendKind::cpu) return run_on(slot, call);
    if (resilience::Bulkhead* bulkhead = bulkhead_of(slot)) {
      call->permit = bulkhead->try_acquire();
      if (!call->permit) {
        if (obs) obs->on_bulkhead_rejected(slot.device.id);
        return divert(call, slot, FallbackReason::bulkhead_full,
                      "bulkhead full: " + std::to_string(bulkhead->capacity()) + " calls already run on " +
                          slot.device.id);
      }
    }
    call->breaker = nullptr;
    if (breakers) {
      resilience::CircuitBreaker& breaker = breakers->get(slot.device.id, kernel_of(*call));
      if (!breaker.allow()) {
        call->permit.reset();
        return divert(call, slot, FallbackReason::breaker_open,
                      "circuit breaker open for " + slot.device.id + "/" + kernel_of(*call));
      }
      call->breaker = &breaker;
      call->breaker_pending.store(true, std::memory_order_release);
    }
    run_on(slot, call);
  }

  // The device refused the call before running it: the CPU runs it, or it fails.
  void divert(const std::shared_ptr<Call>& call, const DeviceSlot& from, FallbackReason reason, std::string detail) {
    if (!call->options.allow_fallback) {
      const ErrorCode code = reason == FallbackReason::bulkhead_full ? ErrorCode::resource_exhausted
                                                                     : ErrorCode::unavailable;
      complete(*call, Error(code, std::move(detail),
                            kernel_of(*call) + ", requested " + call->report.requested + ", fallback disabled"));
      return;
    }
    count_fallback(reason);
    if (obs) obs->on_fallback(reason, kernel_of(*call), from.device.id, policy->cpu().device.id, 1);
    call->report.fallback = reason;
    call->report.fallback_detail = std::move(detail);
    run_on(policy->cpu(), call);
  }

  void run_on(const DeviceSlot& slot, std::shared_ptr<Call> call) {
    call->report.device_id = slot.device.id;
    call->report.backend = slot.device.backend;
    call->current.store(&slot, std::memory_order_release);
    const DeviceSlot* slot_ptr = &slot;
    const Clock::time_point started = Clock::now();
    slot.backend->execute(slot.device.ordinal, call->prepared, [this, slot_ptr, call, started](Result<Tensor> out) {
      on_done(*slot_ptr, call, std::move(out), started);
    });
  }

  // Records the outcome of an attempt in its breaker, once (the deadline may have done it).
  static void record_breaker(Call& call, const Result<Tensor>& out) {
    if (!call.breaker_pending.exchange(false, std::memory_order_acq_rel)) return;
    resilience::CircuitBreaker& b = *call.breaker;
    if (out.ok()) return b.record_success();
    if (FallbackPolicy::reason_for(out.error()) == FallbackReason::device_error) return b.record_failure();
    // Not a device failure (bad data, kernel missing, memory): counts as neither, except that a
    // half-open probe the device answered closes the breaker (it must report to free the probe).
    if (b.state() == resilience::BreakerState::half_open) b.record_success();
  }

  void on_done(const DeviceSlot& slot, const std::shared_ptr<Call>& call, Result<Tensor> out,
               Clock::time_point started) {
    count_call(slot, !out.ok());
    if (obs) {
      obs->on_kernel_executed({kernel_of(*call), slot.device.id, slot.device.backend, 1, started,
                               Clock::now() - started, out.ok() ? ErrorCode::ok : out.error().code()});
    }
    call->permit.reset();
    record_breaker(*call, out);
    if (call->completed.load(std::memory_order_acquire)) return;  // completed by its deadline: dropped
    if (!out.ok()) {
      const FallbackReason reason = FallbackPolicy::reason_for(out.error());
      const bool on_cpu = slot.device.backend == BackendKind::cpu;
      if (reason == FallbackReason::device_error && !on_cpu && resilience.enable_retry &&
          resilience::is_retryable(out.error().code()) && call->attempt < resilience.retry.max_attempts) {
        const std::uint32_t retry = call->attempt++;
        retries.fetch_add(1, std::memory_order_relaxed);
        if (obs) obs->on_retry(kernel_of(*call), call->attempt);
        const auto delay = resilience::backoff_delay(resilience.retry, retry, resilience::random_bits());
        const DeviceSlot* slot_ptr = &slot;
        try {
          timer->schedule(Clock::now() + delay, [this, slot_ptr, call] { dispatch(call, *slot_ptr); });
          return;
        } catch (const std::bad_alloc&) {
          // No retry without memory for it: the fallback below.
        }
      }
      if (reason != FallbackReason::none && !on_cpu && call->options.allow_fallback) {
        count_fallback(reason);
        if (obs) obs->on_fallback(reason, kernel_of(*call), slot.device.id, policy->cpu().device.id, 1);
        call->report.fallback = reason;
        call->report.fallback_detail = slot.device.id + ": " + out.error().to_string();
        run_on(policy->cpu(), call);
        return;
      }
      complete(*call, out.error().with_context(kernel_of(*call) + " on " + slot.device.id));
      return;
    }
    call->report.elapsed = Clock::now() - call->start;
    KernelResult result;
    result.outputs.push_back(std::move(out).value());
    result.report = call->report;
    complete(*call, std::move(result));
  }

  // Timer task: the call's deadline passed. Counted (and the breaker told) before the caller sees
  // the error, so that statistics read after completion include it.
  void on_deadline(const std::shared_ptr<Call>& call) {
    if (call->completed.exchange(true, std::memory_order_acq_rel)) return;  // completed first
    const DeviceSlot* slot = call->current.load(std::memory_order_acquire);
    const std::string device = slot == nullptr ? std::string() : slot->device.id;
    deadlines.fetch_add(1, std::memory_order_relaxed);
    if (obs) obs->on_deadline_exceeded(kernel_of(*call), device);
    // A device that did not answer in time failed this attempt.
    if (call->breaker_pending.exchange(false, std::memory_order_acq_rel)) call->breaker->record_failure();
    call->finish(Error(ErrorCode::deadline_exceeded,
                       "no result within the timeout of " +
                           std::to_string(
                               std::chrono::duration_cast<std::chrono::milliseconds>(call->options.timeout).count()) +
                           " ms",
                       kernel_of(*call) + (device.empty() ? "" : " on " + device)));
  }

  // ---- Pipelines -------------------------------------------------------------------------
  // One pipeline in flight (counted in flight like a Call, released by the destructor).
  struct PipelineRun {
    Impl* impl = nullptr;
    std::shared_ptr<const PreparedPipeline> prepared;
    CallOptions options;
    ExecutionReport report;
    Clock::time_point start;
    std::function<void(Result<PipelineResult>)> finish;

    ~PipelineRun() {
      if (impl != nullptr) impl->end();
    }
  };
  // The kernel label of pipeline-wide events (fallbacks): a pipeline is not one kernel.
  static constexpr std::string_view kPipelineLabel = "pipeline";

  // OK when `slot` runs every stage; otherwise failed_precondition naming the first stage it cannot.
  static Status runs_every_stage(const DeviceSlot& slot, const PreparedPipeline& p) {
    for (std::size_t i = 0; i < p.stages.size(); ++i) {
      const KernelDef& def = *p.stages[i].def;
      if (Status ok = slot.backend->can_run(slot.device.ordinal, def, p.dtype); !ok) {
        return Error(ErrorCode::failed_precondition,
                     "stage " + std::to_string(i) + " (" + def.id + "): " + ok.error().message());
      }
    }
    return {};
  }

  // The pipeline's device: as FallbackPolicy::place for a call, except that the device must run
  // every stage; otherwise the CPU with the reason (or an error without fallback).
  Result<Placement> place_pipeline(const PreparedPipeline& p, const CallOptions& options) const {
    const auto fall_back = [&](FallbackReason reason, std::string detail) -> Result<Placement> {
      if (!options.allow_fallback) {
        const ErrorCode code =
            reason == FallbackReason::no_device ? ErrorCode::unavailable : ErrorCode::failed_precondition;
        return Error(code, std::move(detail), "pipeline, requested " + describe_request(options) + ", fallback disabled");
      }
      return Placement{&policy->cpu(), reason, std::move(detail)};
    };
    if (!options.device_id.empty()) {
      for (const auto& s : policy->devices()) {
        if (s.device.id != options.device_id) continue;
        if (Status ok = runs_every_stage(s, p); !ok) {
          return fall_back(FallbackReason::kernel_missing, s.device.id + ": " + ok.error().message());
        }
        return Placement{&s, FallbackReason::none, {}};
      }
      return fall_back(FallbackReason::no_device, "no device '" + options.device_id + "'");
    }
    if (options.backend == BackendChoice::cpu) return Placement{&policy->cpu(), FallbackReason::none, {}};
    std::string missing;
    bool any = false;
    for (const auto& s : policy->devices()) {
      const bool wanted = options.backend == BackendChoice::automatic
                              ? s.device.is_gpu
                              : to_string(s.device.backend) == to_string(options.backend);
      if (!wanted) continue;
      any = true;
      if (Status ok = runs_every_stage(s, p); !ok) {
        missing += (missing.empty() ? "" : "; ") + s.device.id + ": " + ok.error().message();
        continue;
      }
      return Placement{&s, FallbackReason::none, {}};
    }
    if (any) return fall_back(FallbackReason::kernel_missing, std::move(missing));
    if (options.backend == BackendChoice::automatic) return Placement{&policy->cpu(), FallbackReason::none, {}};
    return fall_back(FallbackReason::no_device, "no " + std::string(to_string(options.backend)) + " device");
  }

  void run_pipeline_on(const DeviceSlot& slot, const std::shared_ptr<PipelineRun>& run) {
    run->report.device_id = slot.device.id;
    run->report.backend = slot.device.backend;
    const DeviceSlot* slot_ptr = &slot;
    slot.backend->execute_pipeline(slot.device.ordinal, run->prepared,
                                   [this, slot_ptr, run](Result<PipelineOutput> out) {
                                     on_pipeline_done(*slot_ptr, run, std::move(out));
                                   });
  }

  void on_pipeline_done(const DeviceSlot& slot, const std::shared_ptr<PipelineRun>& run, Result<PipelineOutput> out) {
    count_call(slot, !out.ok());
    if (!out.ok()) {
      const FallbackReason reason = FallbackPolicy::reason_for(out.error());
      if (reason != FallbackReason::none && slot.device.backend != BackendKind::cpu && run->options.allow_fallback) {
        count_fallback(reason);
        if (obs) obs->on_fallback(reason, kPipelineLabel, slot.device.id, policy->cpu().device.id, 1);
        run->report.fallback = reason;
        run->report.fallback_detail = slot.device.id + ": " + out.error().to_string();
        run_pipeline_on(policy->cpu(), run);
        return;
      }
      run->finish(out.error().with_context("pipeline on " + slot.device.id));
      return;
    }
    PipelineOutput& o = out.value();
    const PreparedPipeline& p = *run->prepared;
    if (obs) {
      for (const StageTiming& t : o.timings) {
        if (t.stage >= p.stages.size()) continue;
        obs->on_pipeline_stage({p.stages[t.stage].def->id, slot.device.id, slot.device.backend,
                                static_cast<std::uint32_t>(t.stage), static_cast<std::uint32_t>(p.stages.size()),
                                t.start, t.duration});
      }
    }
    if (o.outputs.size() != p.stages.size() || o.outputs.back().count() == 0) {
      run->finish(Error(ErrorCode::internal, "the backend returned no output for the last stage",
                        "pipeline on " + slot.device.id));
      return;
    }
    PipelineResult result;
    result.output = std::move(o.outputs.back());
    o.outputs.back() = Tensor();
    result.stage_outputs = std::move(o.outputs);
    run->report.elapsed = Clock::now() - run->start;
    result.report = run->report;
    result.launch = o.launch;
    result.launch_detail = std::move(o.launch_detail);
    run->finish(std::move(result));
  }

  void submit_pipeline(Pipeline pipeline, CallOptions options, std::function<void(Result<PipelineResult>)> finish) {
    auto shapes = validate_pipeline(catalog, pipeline);
    if (!shapes) {
      finish(shapes.error());
      return;
    }
    if (options.timeout.count() != 0) {
      finish(Error(ErrorCode::invalid_argument, "CallOptions.timeout is not supported for pipelines", "pipeline"));
      return;
    }
    auto prepared = std::make_shared<PreparedPipeline>();
    prepared->dtype = pipeline.dtype;
    prepared->inputs = std::move(pipeline.inputs);
    prepared->stages.reserve(pipeline.stages.size());
    for (std::size_t i = 0; i < pipeline.stages.size(); ++i) {
      PipelineStage& st = pipeline.stages[i];
      PreparedStage ps;
      ps.def = *catalog.lookup(st.kernel);
      ps.inputs = std::move(st.inputs);
      ps.scalars = std::move(st.scalars);
      ps.shape = std::move((*shapes)[i]);
      ps.returned = st.keep_output || i + 1 == pipeline.stages.size();
      prepared->stages.push_back(std::move(ps));
    }
    auto placement = place_pipeline(*prepared, options);
    if (!placement) {
      finish(placement.error());
      return;
    }
    auto run = std::make_shared<PipelineRun>();
    begin();  // released by ~PipelineRun
    run->impl = this;
    run->prepared = std::move(prepared);
    run->report.requested = describe_request(options);
    run->report.fallback = placement->fallback;
    run->report.fallback_detail = placement->detail;
    run->options = std::move(options);
    run->start = Clock::now();
    run->finish = std::move(finish);
    if (placement->fallback != FallbackReason::none) {
      count_fallback(placement->fallback);
      if (obs) obs->on_fallback(placement->fallback, kPipelineLabel, run->report.requested, placement->slot->device.id, 1);
    }
    run_pipeline_on(*placement->slot, run);
  }

  void submit(KernelCall kcall, CallOptions options, std::function<void(Result<KernelResult>)> finish) {
    auto shape = catalog.validate(kcall);
    if (!shape) {
      finish(shape.error());
      return;
    }
    if (options.timeout.count() < 0) {
      finish(Error(ErrorCode::invalid_argument, "CallOptions.timeout must not be negative", kcall.kernel));
      return;
    }
    const KernelDef* def = *catalog.lookup(kcall.kernel);
    auto placement = policy->place(*def, kcall.dtype, options);
    if (!placement) {
      finish(placement.error().with_context(def->id));
      return;
    }
    auto prepared = std::make_shared<PreparedCall>();
    prepared->def = def;
    prepared->dtype = kcall.dtype;
    prepared->n = shape->n;
    prepared->output_count = shape->output_count;
    prepared->inputs = std::move(kcall.inputs);
    prepared->scalars = std::move(kcall.scalars);
    if (options.timeout.count() > 0) {
      // The call may complete before a device is done reading: it reads copies of ours.
      prepared->owned_inputs.reserve(prepared->inputs.size());
      for (TensorView& in : prepared->inputs) {
        Tensor copy = Tensor::uninitialized(in.dtype, in.count);
        std::memcpy(copy.data(), in.data, in.bytes());
        in = copy.view();
        prepared->owned_inputs.push_back(std::move(copy));
      }
    }

    auto call = std::make_shared<Call>();
    begin();  // released by ~Call
    call->impl = this;
    call->prepared = std::move(prepared);
    call->report.requested = describe_request(options);
    call->report.fallback = placement->fallback;
    call->report.fallback_detail = placement->detail;
    call->options = std::move(options);
    call->start = Clock::now();
    call->finish = std::move(finish);
    if (placement->fallback != FallbackReason::none) {
      count_fallback(placement->fallback);
      if (obs) obs->on_fallback(placement->fallback, def->id, call->report.requested, placement->slot->device.id, 1);
    }
    if (call->options.timeout.count() > 0) {
      std::weak_ptr<Call> weak = call;
      timer->schedule(call->start + call->options.timeout, [this, weak] {
        if (auto c = weak.lock()) on_deadline(c);
      });
    }
    dispatch(call, *placement->slot);
  }
};

Executor::Executor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Executor::~Executor() {
  for (FaultBackend* f : impl_->fault_backends) f->release_all();
  {
    std::unique_lock lock(impl_->inflight_mutex);
    impl_->inflight_cv.wait(lock, [this] { return impl_->inflight == 0; });
  }
  // Before the backends go: pending timer tasks (fault polls) refer to them.
  impl_->timer.reset();
}

Result<std::unique_ptr<Executor>> Executor::create(ExecutorOptions options, KernelCatalog catalog) {
  BackendOptions bo{options.cpu_threads, options.device_pool_limit_bytes, options.observer, options.cuda_graphs};
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(make_cpu_backend(bo));
  if (options.enable_cuda) {
    backends.push_back(make_cuda_backend(bo));
  } else {
    backends.push_back(make_absent_backend(BackendKind::cuda, "disabled by configuration"));
  }
  if (options.enable_opencl) {
    backends.push_back(make_opencl_backend(bo));
  } else {
    backends.push_back(make_absent_backend(BackendKind::opencl, "disabled by configuration"));
  }
  return create_with_backends(std::move(backends), std::move(catalog), options);
}

Result<std::unique_ptr<Executor>> Executor::create_with_backends(std::vector<std::unique_ptr<Backend>> backends,
                                                                 KernelCatalog catalog, ExecutorOptions options) {
  const bool has_cpu = std::any_of(backends.begin(), backends.end(),
                                   [](const auto& b) { return b->kind() == BackendKind::cpu; });
  if (!has_cpu) backends.insert(backends.begin(), make_cpu_backend({options.cpu_threads, 0}));

  if (options.resilience.enable_breakers) {
    if (Status s = resilience::validate(options.resilience.breaker); !s) return s.error().with_context("ExecutorOptions.resilience.breaker");
  }
  if (options.resilience.enable_retry) {
    if (Status s = resilience::validate(options.resilience.retry); !s) return s.error().with_context("ExecutorOptions.resilience.retry");
  }

  auto impl = std::make_unique<Impl>();
  impl->catalog = std::move(catalog);
  impl->observer = options.observer;
  impl->obs = impl->observer.get();
  impl->resilience = options.resilience;
  impl->faults = options.faults;
  if (impl->faults) {
    for (auto& b : backends) {
      auto decorated = make_fault_backend(std::move(b), impl->faults, *impl->timer, impl->observer);
      impl->fault_backends.push_back(decorated.get());
      b = std::move(decorated);
    }
  }
  if (options.resilience.enable_breakers) {
    impl->breakers = std::make_unique<resilience::BreakerSet>(options.resilience.breaker, options.resilience.clock);
    if (ComputeObserver* obs = impl->obs) {
      auto keep = impl->observer;  // the listener may outlive nothing it uses
      impl->breakers->set_listener([obs, keep](std::string_view device, std::string_view kernel,
                                               resilience::BreakerState from, resilience::BreakerState to) {
        obs->on_breaker_transition(device, kernel, from, to);
      });
    }
  }
  std::vector<DeviceSlot> slots;
  std::vector<BackendStatus> statuses;
  for (auto& b : backends) {
    BackendStatus st = b->status();
    for (const auto& d : st.devices) slots.push_back({b.get(), d});
    statuses.push_back(std::move(st));
  }
  std::stable_sort(slots.begin(), slots.end(),
                   [](const DeviceSlot& a, const DeviceSlot& b) { return device_rank(a.device) < device_rank(b.device); });
  for (const auto& s : slots) {
    if (!impl->counters.try_emplace(s.device.id).second) {
      return Error(ErrorCode::invalid_argument, "two devices share the id '" + s.device.id + "'");
    }
    if (options.resilience.bulkhead_max_concurrent > 0 && s.device.backend != BackendKind::cpu) {
      impl->bulkheads.emplace(s.device.id,
                              std::make_unique<resilience::Bulkhead>(options.resilience.bulkhead_max_concurrent));
    }
  }
  impl->backends = std::move(backends);
  impl->policy = std::make_unique<FallbackPolicy>(std::move(slots), std::move(statuses));
  return std::unique_ptr<Executor>(new Executor(std::move(impl)));
}

std::future<Result<KernelResult>> Executor::submit(KernelCall call, CallOptions options) {
  auto promise = std::make_shared<std::promise<Result<KernelResult>>>();
  auto future = promise->get_future();
  impl_->submit(std::move(call), std::move(options),
                [promise](Result<KernelResult> r) { promise->set_value(std::move(r)); });
  return future;
}

void Executor::submit(KernelCall call, CallOptions options, Completion done) {
  Impl* impl = impl_.get();
  impl->submit(std::move(call), std::move(options), [impl, done = std::move(done)](Result<KernelResult> r) mutable {
    // The in-flight count covers the callback too: it is released only after `done` ran.
    impl->begin();
    impl->callbacks.post([impl, done = std::move(done), r = std::make_shared<Result<KernelResult>>(std::move(r))]() mutable {
      done(std::move(*r));
      impl->end();
    });
  });
}

Result<KernelResult> Executor::run(KernelCall call, CallOptions options) {
  return submit(std::move(call), std::move(options)).get();
}

std::future<Result<PipelineResult>> Executor::submit_pipeline(Pipeline pipeline, CallOptions options) {
  auto promise = std::make_shared<std::promise<Result<PipelineResult>>>();
  auto future = promise->get_future();
  impl_->submit_pipeline(std::move(pipeline), std::move(options),
                         [promise](Result<PipelineResult> r) { promise->set_value(std::move(r)); });
  return future;
}

void Executor::submit_pipeline(Pipeline pipeline, CallOptions options, PipelineCompletion done) {
  Impl* impl = impl_.get();
  impl->submit_pipeline(std::move(pipeline), std::move(options),
                        [impl, done = std::move(done)](Result<PipelineResult> r) mutable {
                          impl->begin();  // covers the callback, as for submit()
                          impl->callbacks.post([impl, done = std::move(done),
                                                r = std::make_shared<Result<PipelineResult>>(std::move(r))]() mutable {
                            done(std::move(*r));
                            impl->end();
                          });
                        });
}

Result<PipelineResult> Executor::run_pipeline(Pipeline pipeline, CallOptions options) {
  return submit_pipeline(std::move(pipeline), std::move(options)).get();
}

const KernelCatalog& Executor::catalog() const noexcept { return impl_->catalog; }

const FallbackPolicy& detail::ExecutorAccess::policy(const Executor& executor) { return *executor.impl_->policy; }

void detail::ExecutorAccess::count_call(Executor& executor, const DeviceSlot& slot, bool failed) {
  executor.impl_->count_call(slot, failed);
}

void detail::ExecutorAccess::count_fallback(Executor& executor, FallbackReason reason, std::uint64_t calls) {
  executor.impl_->count_fallback(reason, calls);
}

ComputeObserver* detail::ExecutorAccess::observer(const Executor& executor) { return executor.impl_->obs; }

resilience::CircuitBreaker* detail::ExecutorAccess::breaker(Executor& executor, const DeviceSlot& slot,
                                                            std::string_view kernel) {
  if (!executor.impl_->breakers || slot.device.backend == BackendKind::cpu) return nullptr;
  return &executor.impl_->breakers->get(slot.device.id, kernel);
}

resilience::Bulkhead* detail::ExecutorAccess::bulkhead(Executor& executor, const DeviceSlot& slot) {
  return executor.impl_->bulkhead_of(slot);
}

void detail::ExecutorAccess::count_deadlines(Executor& executor, std::uint64_t calls) {
  executor.impl_->deadlines.fetch_add(calls, std::memory_order_relaxed);
}

std::vector<BackendStatus> Executor::backends() const {
  std::vector<BackendStatus> out;
  for (const auto& b : impl_->backends) out.push_back(b->status());
  return out;
}

std::vector<Device> Executor::devices() const {
  std::vector<Device> out;
  std::map<std::string, Device> fresh;
  for (const auto& b : impl_->backends) {
    for (auto& d : b->status().devices) fresh[d.id] = d;
  }
  for (const auto& s : impl_->policy->devices()) out.push_back(fresh.count(s.device.id) ? fresh[s.device.id] : s.device);
  return out;
}

ExecutorStats Executor::stats() const {
  ExecutorStats st;
  for (std::size_t i = 0; i < kFallbackReasonCount; ++i) st.fallbacks[i] = impl_->fallbacks[i].load();
  for (const auto& s : impl_->policy->devices()) {
    const DeviceCounters& c = impl_->counters.at(s.device.id);
    st.devices.push_back({s.device.id, c.calls.value(), c.errors.value(), s.backend->device_pool_stats(s.device.ordinal),
                          s.backend->staging_pool_stats(s.device.ordinal)});
  }
  if (impl_->breakers) {
    for (auto& e : impl_->breakers->snapshot()) {
      st.breakers.push_back({std::move(e.device), std::move(e.kernel), e.state, e.opened});
    }
  }
  st.retries = impl_->retries.load();
  st.deadline_exceeded = impl_->deadlines.load();
  for (const auto& [id, b] : impl_->bulkheads) st.bulkhead_rejections += b->rejected();
  st.faults_injected = impl_->faults ? impl_->faults->injected() : 0;
  return st;
}

}  // namespace gpubridge::compute

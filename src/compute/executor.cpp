#include "gpubridge/compute/executor.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>

#include "compute/backend.hpp"
#include "compute/cpu/thread_pool.hpp"
#include "compute/executor_access.hpp"
#include "compute/fallback_policy.hpp"

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

struct DeviceCounters {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> errors{0};
};

}  // namespace

struct Executor::Impl {
  KernelCatalog catalog;
  std::vector<std::unique_ptr<Backend>> backends;
  std::unique_ptr<FallbackPolicy> policy;
  std::map<std::string, DeviceCounters> counters;  // keyed by device id; fixed after construction
  std::array<std::atomic<std::uint64_t>, kFallbackReasonCount> fallbacks{};
  ThreadPool callbacks{1};  // runs user callbacks, never on a backend thread

  std::mutex inflight_mutex;
  std::condition_variable inflight_cv;
  std::size_t inflight = 0;

  // One call in flight: everything needed to finish it, possibly on the CPU after a device error.
  struct Call {
    std::shared_ptr<const PreparedCall> prepared;
    CallOptions options;
    ExecutionReport report;
    Clock::time_point start;
    std::function<void(Result<KernelResult>)> finish;
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
    c.calls.fetch_add(1);
    if (failed) c.errors.fetch_add(1);
  }

  void run_on(const DeviceSlot& slot, std::shared_ptr<Call> call) {
    call->report.device_id = slot.device.id;
    call->report.backend = slot.device.backend;
    const DeviceSlot* slot_ptr = &slot;
    slot.backend->execute(slot.device.ordinal, call->prepared,
                          [this, slot_ptr, call](Result<Tensor> out) { on_done(*slot_ptr, call, std::move(out)); });
  }

  void on_done(const DeviceSlot& slot, const std::shared_ptr<Call>& call, Result<Tensor> out) {
    count_call(slot, !out.ok());
    if (!out.ok()) {
      const FallbackReason reason = FallbackPolicy::reason_for(out.error());
      const bool on_cpu = slot.device.backend == BackendKind::cpu;
      if (reason != FallbackReason::none && !on_cpu && call->options.allow_fallback) {
        count_fallback(reason);
        call->report.fallback = reason;
        call->report.fallback_detail = slot.device.id + ": " + out.error().to_string();
        run_on(policy->cpu(), call);
        return;
      }
      call->finish(out.error().with_context(call->prepared->def->id + " on " + slot.device.id));
      return;
    }
    call->report.elapsed = Clock::now() - call->start;
    KernelResult result;
    result.outputs.push_back(std::move(out).value());
    result.report = std::move(call->report);
    call->finish(std::move(result));
  }

  void submit(KernelCall kcall, CallOptions options, std::function<void(Result<KernelResult>)> finish) {
    auto n = catalog.validate(kcall);
    if (!n) {
      finish(n.error());
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
    prepared->n = *n;
    prepared->output_count = KernelCatalog::output_count(*def, *n);
    prepared->inputs = std::move(kcall.inputs);
    prepared->scalars = std::move(kcall.scalars);

    auto call = std::make_shared<Call>();
    call->prepared = std::move(prepared);
    call->report.requested = describe_request(options);
    call->report.fallback = placement->fallback;
    call->report.fallback_detail = placement->detail;
    call->options = std::move(options);
    call->start = Clock::now();
    begin();
    call->finish = [this, finish = std::move(finish)](Result<KernelResult> r) {
      finish(std::move(r));
      end();
    };
    if (placement->fallback != FallbackReason::none) count_fallback(placement->fallback);
    run_on(*placement->slot, std::move(call));
  }
};

Executor::Executor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Executor::~Executor() {
  std::unique_lock lock(impl_->inflight_mutex);
  impl_->inflight_cv.wait(lock, [this] { return impl_->inflight == 0; });
}

Result<std::unique_ptr<Executor>> Executor::create(ExecutorOptions options, KernelCatalog catalog) {
  BackendOptions bo{options.cpu_threads, options.device_pool_limit_bytes};
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

  auto impl = std::make_unique<Impl>();
  impl->catalog = std::move(catalog);
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

const KernelCatalog& Executor::catalog() const noexcept { return impl_->catalog; }

const FallbackPolicy& detail::ExecutorAccess::policy(const Executor& executor) { return *executor.impl_->policy; }

void detail::ExecutorAccess::count_call(Executor& executor, const DeviceSlot& slot, bool failed) {
  executor.impl_->count_call(slot, failed);
}

void detail::ExecutorAccess::count_fallback(Executor& executor, FallbackReason reason, std::uint64_t calls) {
  executor.impl_->count_fallback(reason, calls);
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
    st.devices.push_back({s.device.id, c.calls.load(), c.errors.load(), s.backend->device_pool_stats(s.device.ordinal),
                          s.backend->staging_pool_stats(s.device.ordinal)});
  }
  return st;
}

}  // namespace gpubridge::compute

// Resilience in the compute hot path, on this machine's real backends: the OpenCL device
// (PoCL on CI) plays the GPU and faults are injected on backend=opencl. Breakers, retries,
// bulkheads, deadlines and the observer hooks, for plain calls and through the batcher.
// Breaker time comes from a fake clock; hangs are bounded by call deadlines (no sleeps to wait
// for an outcome, only generous liveness timeouts).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "compute/batcher_support.hpp"
#include "gpubridge/compute/observer.hpp"
#include "gpubridge/resilience/fault_injection.hpp"

namespace gpubridge::compute {
namespace {

using namespace std::chrono_literals;
using resilience::BreakerState;
using resilience::FaultInjector;
using resilience::FaultMode;
using testing::Completions;
using testing::make_job;
using testing::output_at;

// Counts every event; remembers breaker transitions and fallback reasons in order.
class CountingObserver final : public ComputeObserver {
 public:
  void on_kernel_executed(const KernelExecution& e) noexcept override {
    std::lock_guard lock(mu_);
    ++executions[std::string(e.device)];
    if (e.code != ErrorCode::ok) ++failed_executions;
    executed_requests += e.requests;
  }
  void on_batch_dispatched(std::string_view, std::string_view, std::span<const std::chrono::nanoseconds> queued) noexcept override {
    std::lock_guard lock(mu_);
    ++batches_dispatched;
    queued_samples += queued.size();
  }
  void on_batch_requests_done(std::string_view, BatchOutcome outcome, std::uint64_t count) noexcept override {
    std::lock_guard lock(mu_);
    outcomes[static_cast<std::size_t>(outcome)] += count;
  }
  void on_bytes_moved(std::string_view device, TransferDirection d, std::uint64_t bytes) noexcept override {
    std::lock_guard lock(mu_);
    if (device.rfind("opencl:", 0) == 0) (d == TransferDirection::host_to_device ? h2d : d2h) += bytes;
  }
  void on_fallback(FallbackReason reason, std::string_view, std::string_view, std::string_view to,
                   std::uint32_t requests) noexcept override {
    std::lock_guard lock(mu_);
    fallbacks.push_back(reason);
    fallback_requests += requests;
    last_fallback_to = std::string(to);
  }
  void on_breaker_transition(std::string_view device, std::string_view kernel, BreakerState from,
                             BreakerState to) noexcept override {
    std::lock_guard lock(mu_);
    transitions.push_back(std::string(device) + "/" + std::string(kernel) + ":" + std::string(resilience::to_string(from)) +
                          "->" + std::string(resilience::to_string(to)));
  }
  void on_bulkhead_rejected(std::string_view) noexcept override { bulkhead_rejections.fetch_add(1); }
  void on_retry(std::string_view, std::uint32_t attempt) noexcept override {
    last_retry_attempt.store(attempt);
    retries.fetch_add(1);
    if (clear_on_retry != nullptr) clear_on_retry->clear();  // the device recovers before the retry
  }
  void on_fault_injected(std::string_view backend, std::string_view, FaultMode) noexcept override {
    if (backend == "opencl") faults.fetch_add(1);
  }
  void on_deadline_exceeded(std::string_view, std::string_view) noexcept override { deadlines.fetch_add(1); }

  std::size_t executions_on(const std::string& device) {
    std::lock_guard lock(mu_);
    return executions[device];
  }
  std::vector<std::string> transitions_seen() {
    std::lock_guard lock(mu_);
    return transitions;
  }
  std::vector<FallbackReason> fallbacks_seen() {
    std::lock_guard lock(mu_);
    return fallbacks;
  }

  std::mutex mu_;
  std::map<std::string, std::size_t> executions;
  std::size_t failed_executions = 0;
  std::size_t executed_requests = 0;
  std::size_t batches_dispatched = 0;
  std::size_t queued_samples = 0;
  std::array<std::size_t, 4> outcomes{};
  std::uint64_t h2d = 0, d2h = 0;
  std::vector<FallbackReason> fallbacks;
  std::size_t fallback_requests = 0;
  std::string last_fallback_to;
  std::vector<std::string> transitions;
  std::atomic<int> bulkhead_rejections{0};
  std::atomic<int> retries{0};
  std::atomic<std::uint32_t> last_retry_attempt{0};
  std::atomic<int> faults{0};
  std::atomic<int> deadlines{0};
  FaultInjector* clear_on_retry = nullptr;
};

// A clock the test moves by hand.
struct FakeClock {
  std::atomic<std::int64_t> ns{0};
  std::chrono::steady_clock::time_point now() const {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns.load()));
  }
  void advance(std::chrono::nanoseconds d) { ns.fetch_add(d.count()); }
};

constexpr std::uint32_t kThreshold = 3;
constexpr auto kOpenInterval = 50ms;

struct Rig {
  std::shared_ptr<FaultInjector> faults = std::make_shared<FaultInjector>();
  std::shared_ptr<CountingObserver> observer = std::make_shared<CountingObserver>();
  std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
  std::unique_ptr<Executor> executor;
};

// An executor with the real CPU and OpenCL backends, breakers on a fake clock, the injector and
// the counting observer; `tune` adjusts the options. Null when there is no OpenCL device.
Rig make_rig(const std::function<void(ExecutorOptions&)>& tune = {}) {
  Rig rig;
  ExecutorOptions o;
  o.enable_cuda = false;
  o.enable_opencl = true;
  o.observer = rig.observer;
  o.faults = rig.faults;
  o.resilience.enable_breakers = true;
  o.resilience.breaker.failure_threshold = kThreshold;
  o.resilience.breaker.open_interval = kOpenInterval;
  auto clock = rig.clock;
  o.resilience.clock = [clock] { return clock->now(); };
  if (tune) tune(o);
  rig.executor = testing::make_executor(o);
  return rig;
}

#define REQUIRE_OPENCL(rig)                                                                              \
  do {                                                                                                   \
    ASSERT_NE((rig).executor, nullptr);                                                                  \
    const std::string why = testing::absent_reason(*(rig).executor, BackendKind::opencl);                \
    if (!why.empty()) {                                                                                  \
      if (testing::backend_required("opencl")) FAIL() << "OpenCL required but absent: " << why;          \
      GTEST_SKIP() << "no OpenCL device: " << why;                                                       \
    }                                                                                                    \
  } while (0)

const std::vector<float> kA{1, 2, 3, 4, 5, 6, 7, 8};
const std::vector<float> kB{10, 20, 30, 40, 50, 60, 70, 80};

KernelCall add_call() { return {"vector.add", DType::f32, {kA, kB}, {}}; }
CallOptions on_opencl(bool allow_fallback = true, std::chrono::nanoseconds timeout = 0ns) {
  return {.backend = BackendChoice::automatic, .device_id = "opencl:0", .allow_fallback = allow_fallback,
          .timeout = timeout};
}

void expect_sum(const KernelResult& r) {
  auto out = r.outputs.at(0).as<float>();
  ASSERT_EQ(out.size(), kA.size());
  for (std::size_t i = 0; i < kA.size(); ++i) EXPECT_EQ(out[i], kA[i] + kB[i]);
}

resilience::FaultSpec fault(const std::string& text) {
  auto spec = resilience::parse_fault_spec(text);
  EXPECT_TRUE(spec.ok()) << spec.error().to_string();
  return *spec;
}

std::optional<BreakerStatus> breaker_of(const Executor& ex, const std::string& device, const std::string& kernel) {
  for (const auto& b : ex.stats().breakers) {
    if (b.device_id == device && b.kernel == kernel) return b;
  }
  return std::nullopt;
}

// ---- breakers on plain calls ----

TEST(Resilience, BreakerOpensAfterThresholdThenHalfOpenProbeCloses) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  Executor& ex = *rig.executor;
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=fail")});

  for (std::uint32_t i = 0; i < kThreshold; ++i) {
    auto r = ex.run(add_call(), on_opencl());
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->report.device_id, "cpu:0");
    EXPECT_EQ(r->report.fallback, FallbackReason::device_error);
    EXPECT_NE(r->report.fallback_detail.find("injected fault"), std::string::npos) << r->report.fallback_detail;
    expect_sum(*r);
  }
  auto open = breaker_of(ex, "opencl:0", "vector.add");
  ASSERT_TRUE(open.has_value());
  EXPECT_EQ(open->state, BreakerState::open);
  EXPECT_EQ(open->opened, 1u);

  // Open: the device is not even tried.
  auto r = ex.run(add_call(), on_opencl());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.device_id, "cpu:0");
  EXPECT_EQ(r->report.fallback, FallbackReason::breaker_open);
  EXPECT_NE(r->report.fallback_detail.find("circuit breaker open for opencl:0/vector.add"), std::string::npos);
  expect_sum(*r);
  EXPECT_EQ(rig.faults->injected(), kThreshold) << "no call reached the OpenCL device while open";
  EXPECT_EQ(ex.stats().fallback_count(FallbackReason::breaker_open), 1u);
  EXPECT_EQ(ex.stats().fallback_count(FallbackReason::device_error), kThreshold);
  EXPECT_EQ(std::string(to_string(FallbackReason::breaker_open)), "breaker_open");

  // The device recovers; after the open interval the half-open probe runs there and closes it.
  rig.faults->clear();
  rig.clock->advance(kOpenInterval + 1ms);
  auto probe = ex.run(add_call(), on_opencl());
  ASSERT_TRUE(probe.ok()) << probe.error().to_string();
  EXPECT_EQ(probe->report.device_id, "opencl:0");
  EXPECT_EQ(probe->report.fallback, FallbackReason::none);
  expect_sum(*probe);
  EXPECT_EQ(breaker_of(ex, "opencl:0", "vector.add")->state, BreakerState::closed);

  const std::vector<std::string> want{"opencl:0/vector.add:closed->open", "opencl:0/vector.add:open->half_open",
                                      "opencl:0/vector.add:half_open->closed"};
  EXPECT_EQ(rig.observer->transitions_seen(), want);
  EXPECT_EQ(rig.observer->faults.load(), static_cast<int>(kThreshold));
}

TEST(Resilience, OpenBreakerWithoutFallbackFailsUnavailable) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  Executor& ex = *rig.executor;
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=fail")});
  for (std::uint32_t i = 0; i < kThreshold; ++i) {
    auto r = ex.run(add_call(), on_opencl(/*allow_fallback=*/false));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::unavailable);
    EXPECT_NE(r.error().message().find("injected fault"), std::string::npos) << r.error().to_string();
  }
  auto r = ex.run(add_call(), on_opencl(/*allow_fallback=*/false));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::unavailable);
  EXPECT_NE(r.error().message().find("circuit breaker open for opencl:0/vector.add"), std::string::npos)
      << r.error().to_string();
  EXPECT_EQ(rig.faults->injected(), kThreshold);
}

TEST(Resilience, DataErrorsDoNotOpenTheBreaker) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  const std::vector<float> zeros(16, 0.f);
  for (std::uint32_t i = 0; i < kThreshold + 2; ++i) {
    auto r = rig.executor->run({"vector.normalize", DType::f32, {zeros}, {}}, on_opencl());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  }
  EXPECT_EQ(breaker_of(*rig.executor, "opencl:0", "vector.normalize")->state, BreakerState::closed);
}

// ---- retry ----

TEST(Resilience, RetryableDeviceErrorSucceedsOnTheSecondAttempt) {
  Rig rig = make_rig([](ExecutorOptions& o) {
    o.resilience.enable_retry = true;
    o.resilience.retry.max_attempts = 3;
    o.resilience.retry.initial_backoff = 1ms;
  });
  REQUIRE_OPENCL(rig);
  rig.observer->clear_on_retry = rig.faults.get();  // the fault is gone when the retry runs
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=fail")});
  auto r = rig.executor->run(add_call(), on_opencl());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.device_id, "opencl:0");
  EXPECT_EQ(r->report.fallback, FallbackReason::none);
  expect_sum(*r);
  EXPECT_EQ(rig.executor->stats().retries, 1u);
  EXPECT_EQ(rig.observer->retries.load(), 1);
  EXPECT_EQ(rig.observer->last_retry_attempt.load(), 2u);
  EXPECT_EQ(rig.faults->injected(), 1u);
}

TEST(Resilience, RetriesExhaustedThenTheCpuRunsIt) {
  Rig rig = make_rig([](ExecutorOptions& o) {
    o.resilience.enable_breakers = false;
    o.resilience.enable_retry = true;
    o.resilience.retry.max_attempts = 3;
    o.resilience.retry.initial_backoff = 1ms;
  });
  REQUIRE_OPENCL(rig);
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=fail")});
  auto r = rig.executor->run(add_call(), on_opencl());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.device_id, "cpu:0");
  EXPECT_EQ(r->report.fallback, FallbackReason::device_error);
  expect_sum(*r);
  EXPECT_EQ(rig.faults->injected(), 3u) << "three attempts on the device";
  EXPECT_EQ(rig.executor->stats().retries, 2u);
}

// ---- slow, hang, deadlines ----

TEST(Resilience, SlowFaultAddsLatencyResultsStayCorrect) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=slow,delay_ms=40")});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = rig.executor->run(add_call(), on_opencl());
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.device_id, "opencl:0");
  expect_sum(*r);
  EXPECT_GE(took, 40ms) << "the injected delay was applied";
  EXPECT_EQ(rig.observer->faults.load(), 1);
}

TEST(Resilience, HungDeviceCallCompletesAtItsDeadlineAndShutdownDoesNotHang) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=hang")});  // until cleared or shutdown
  std::future<Result<KernelResult>> pending;
  {
    // Caller-owned inputs that are freed as soon as the call completed.
    std::vector<float> a(kA), b(kB);
    pending = rig.executor->submit({"vector.add", DType::f32, {a, b}, {}}, on_opencl(true, 50ms));
    ASSERT_EQ(pending.wait_for(20s), std::future_status::ready) << "the deadline did not complete the call";
  }
  auto r = pending.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::deadline_exceeded);
  EXPECT_NE(r.error().to_string().find("opencl:0"), std::string::npos) << r.error().to_string();
  const ExecutorStats st = rig.executor->stats();
  EXPECT_EQ(st.deadline_exceeded, 1u);
  EXPECT_EQ(rig.observer->deadlines.load(), 1);
  // The hung attempt counts as a device failure.
  rig.executor.reset();  // releases the hang (cancelled); must return
  SUCCEED();
}

TEST(Resilience, DeadlineOnTheCpuPathToo) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  rig.faults->set({fault("backend=cpu,kernel=vector.add,mode=hang,delay_ms=300")});
  auto r = rig.executor->run(add_call(), {.backend = BackendChoice::cpu, .timeout = 20ms});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::deadline_exceeded);
  // A call that finishes in time is unaffected by its timeout.
  rig.faults->clear();
  auto ok = rig.executor->run(add_call(), on_opencl(true, 10s));
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  expect_sum(*ok);
}

// ---- bulkheads ----

TEST(Resilience, FullBulkheadFallsBackOrFailsResourceExhausted) {
  Rig rig = make_rig([](ExecutorOptions& o) { o.resilience.bulkhead_max_concurrent = 1; });
  REQUIRE_OPENCL(rig);
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=hang")});
  auto held = rig.executor->submit(add_call(), on_opencl());  // takes the only permit and hangs
  auto r = rig.executor->run(add_call(), on_opencl());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.device_id, "cpu:0");
  EXPECT_EQ(r->report.fallback, FallbackReason::bulkhead_full);
  expect_sum(*r);
  auto refused = rig.executor->run(add_call(), on_opencl(/*allow_fallback=*/false));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::resource_exhausted);
  EXPECT_NE(refused.error().message().find("bulkhead full"), std::string::npos) << refused.error().to_string();
  EXPECT_EQ(rig.executor->stats().fallback_count(FallbackReason::bulkhead_full), 1u);
  EXPECT_EQ(rig.executor->stats().bulkhead_rejections, 2u);
  EXPECT_EQ(rig.observer->bulkhead_rejections.load(), 2);

  rig.faults->clear();  // the hung call resumes and runs on the device
  ASSERT_EQ(held.wait_for(20s), std::future_status::ready);
  auto first = held.get();
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(first->report.device_id, "opencl:0");
  expect_sum(*first);
  auto after = rig.executor->run(add_call(), on_opencl());  // the permit came back
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->report.device_id, "opencl:0");
}

// ---- the batcher ----

std::unique_ptr<DynamicBatcher> opencl_batcher(Executor& ex, std::size_t max_batch, bool allow_fallback = true) {
  BatchPolicy policy;
  policy.max_batch = max_batch;
  policy.max_delay = 10s;  // batches close by size
  policy.max_inflight_batches = 2;
  auto b = DynamicBatcher::create(ex, "vector.add", DType::f32, policy,
                                  {.backend = BackendChoice::automatic, .device_id = "opencl:0",
                                   .allow_fallback = allow_fallback});
  EXPECT_TRUE(b.ok()) << b.error().to_string();
  return b.ok() ? std::move(b).value() : nullptr;
}

// Submits one batch of `size` requests and waits for all of them.
std::vector<std::unique_ptr<testing::Job>> run_batch(Executor& ex, DynamicBatcher& batcher, std::size_t size,
                                                     SteadyTime deadline = SteadyTime::max()) {
  Completions done;
  std::vector<std::unique_ptr<testing::Job>> jobs;
  const KernelDef& def = **ex.catalog().lookup("vector.add");
  for (std::size_t i = 0; i < size; ++i) {
    jobs.push_back(make_job(def, DType::f32, 64, static_cast<unsigned>(i + 1), done));
    jobs.back()->request.deadline = deadline;
  }
  for (auto& j : jobs) EXPECT_TRUE(batcher.submit(j->request).ok());
  EXPECT_TRUE(done.wait_for(size, std::chrono::seconds(20)));
  return jobs;
}

void expect_job_sum(const testing::Job& j) {
  ASSERT_TRUE(j.request.status.ok()) << j.request.status.error().to_string();
  const auto* a = reinterpret_cast<const float*>(j.inputs[0].data());
  const auto* b = reinterpret_cast<const float*>(j.inputs[1].data());
  for (std::size_t i = 0; i < 64; ++i) EXPECT_FLOAT_EQ(static_cast<float>(output_at(j, DType::f32, i)), a[i] + b[i]);
}

TEST(Resilience, BatcherSharesTheBreakers) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  Executor& ex = *rig.executor;
  auto batcher = opencl_batcher(ex, 4);
  ASSERT_NE(batcher, nullptr);
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=fail")});
  for (std::uint32_t i = 0; i < kThreshold; ++i) {
    for (const auto& j : run_batch(ex, *batcher, 4)) {
      EXPECT_EQ(j->request.report.fallback, FallbackReason::device_error);
      EXPECT_EQ(std::string(j->request.report.device_id), "cpu:0");
      expect_job_sum(*j);
    }
  }
  EXPECT_EQ(breaker_of(ex, "opencl:0", "vector.add")->state, BreakerState::open);
  for (const auto& j : run_batch(ex, *batcher, 4)) {
    EXPECT_EQ(j->request.report.fallback, FallbackReason::breaker_open);
    expect_job_sum(*j);
  }
  EXPECT_EQ(ex.stats().fallback_count(FallbackReason::breaker_open), 4u) << "counted per request";
  EXPECT_EQ(rig.faults->injected(), kThreshold);

  // A plain call sees the same breaker.
  auto r = ex.run(add_call(), on_opencl());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.fallback, FallbackReason::breaker_open);

  rig.faults->clear();
  rig.clock->advance(kOpenInterval + 1ms);
  for (const auto& j : run_batch(ex, *batcher, 4)) {
    EXPECT_EQ(j->request.report.fallback, FallbackReason::none);
    EXPECT_EQ(std::string(j->request.report.device_id), "opencl:0");
    expect_job_sum(*j);
  }
  EXPECT_EQ(breaker_of(ex, "opencl:0", "vector.add")->state, BreakerState::closed);
}

TEST(Resilience, HungBatchFailsItsRequestsAtTheirDeadlineWithoutTouchingThem) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  Executor& ex = *rig.executor;
  auto batcher = opencl_batcher(ex, 3);
  ASSERT_NE(batcher, nullptr);
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=hang")});
  auto jobs = run_batch(ex, *batcher, 3, std::chrono::steady_clock::now() + 50ms);
  for (const auto& j : jobs) {
    EXPECT_EQ(j->on_done_calls, 1);
    ASSERT_FALSE(j->request.status.ok());
    EXPECT_EQ(j->request.status.error().code(), ErrorCode::deadline_exceeded);
    for (std::size_t i = 0; i < 64; ++i) EXPECT_EQ(output_at(*j, DType::f32, i), 42.0) << "output untouched";
  }
  EXPECT_EQ(batcher->stats().expired, 3u);
  // The device wakes up: the abandoned batch must not write into the (reused) requests.
  for (auto& j : jobs) std::fill(j->output.begin(), j->output.end(), -1.0);
  rig.faults->clear();
  // Later batches still run (the slot came back) on the CPU or the device.
  for (const auto& j : run_batch(ex, *batcher, 3)) expect_job_sum(*j);
  for (const auto& j : jobs) {
    EXPECT_EQ(j->on_done_calls, 1) << "completed exactly once";
    for (double v : j->output) EXPECT_EQ(v, -1.0) << "a late completion wrote into a completed request";
  }
  std::lock_guard lock(rig.observer->mu_);
  EXPECT_EQ(rig.observer->outcomes[static_cast<std::size_t>(BatchOutcome::expired)], 3u);
}

TEST(Resilience, BatcherStopDoesNotHangOnAHungBatch) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  auto batcher = opencl_batcher(*rig.executor, 2);
  ASSERT_NE(batcher, nullptr);
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=hang")});
  Completions done;
  const KernelDef& def = **rig.executor->catalog().lookup("vector.add");
  auto a = make_job(def, DType::f32, 64, 1, done);
  auto b = make_job(def, DType::f32, 64, 2, done);
  ASSERT_TRUE(batcher->submit(a->request).ok());
  ASSERT_TRUE(batcher->submit(b->request).ok());
  // Wait until the batch reached the device (and hangs there): stop() then finds it in flight.
  for (int i = 0; i < 20000 && rig.observer->faults.load() == 0; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(rig.observer->faults.load(), 1);
  EXPECT_EQ(batcher->inflight(), 2u);
  batcher->stop();  // no deadlines: the hung batch is abandoned after the grace period
  ASSERT_TRUE(done.wait_for(2, std::chrono::seconds(1)));
  EXPECT_EQ(a->request.status.error().code(), ErrorCode::cancelled);
  EXPECT_EQ(b->request.status.error().code(), ErrorCode::cancelled);
}

// ---- observer ----

TEST(Resilience, ObserverSeesExecutionsTransfersBatchesAndFallbacks) {
  Rig rig = make_rig();
  REQUIRE_OPENCL(rig);
  Executor& ex = *rig.executor;
  auto r = ex.run(add_call(), on_opencl());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  {
    auto batcher = opencl_batcher(ex, 4);
    ASSERT_NE(batcher, nullptr);
    for (const auto& j : run_batch(ex, *batcher, 4)) expect_job_sum(*j);
  }
  rig.faults->set({fault("backend=opencl,kernel=vector.add,mode=fail")});
  auto fb = ex.run(add_call(), on_opencl());
  ASSERT_TRUE(fb.ok());

  CountingObserver& o = *rig.observer;
  std::lock_guard lock(o.mu_);
  EXPECT_EQ(o.executions["opencl:0"], 3u) << "one call, one batch, one failed call";
  EXPECT_EQ(o.executions["cpu:0"], 1u) << "the fallback";
  EXPECT_EQ(o.failed_executions, 1u);
  EXPECT_EQ(o.executed_requests, 1u + 4u + 1u + 1u);
  EXPECT_GE(o.h2d, 2 * kA.size() * sizeof(float)) << "inputs uploaded";
  EXPECT_GE(o.d2h, kA.size() * sizeof(float)) << "output downloaded";
  EXPECT_EQ(o.batches_dispatched, 1u);
  EXPECT_EQ(o.queued_samples, 4u);
  EXPECT_EQ(o.outcomes[static_cast<std::size_t>(BatchOutcome::ok)], 4u);
  ASSERT_EQ(o.fallbacks.size(), 1u);
  EXPECT_EQ(o.fallbacks[0], FallbackReason::device_error);
  EXPECT_EQ(o.last_fallback_to, "cpu:0");
  EXPECT_EQ(o.faults.load(), 1);
}

TEST(Resilience, InvalidResilienceOptionsAreRefused) {
  ExecutorOptions o;
  o.enable_cuda = false;
  o.enable_opencl = false;
  o.resilience.enable_breakers = true;
  o.resilience.breaker.failure_threshold = 0;
  auto e = Executor::create(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(e.error().to_string().find("failure_threshold"), std::string::npos) << e.error().to_string();

  auto cpu = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  auto r = cpu->run(add_call(), {.timeout = -1ms});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace gpubridge::compute

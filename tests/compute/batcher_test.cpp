// The dynamic batcher's rules, one test each: what closes a batch, adaptive sizing, deadlines,
// priorities, backpressure, stop, validation, per-segment failure, the CPU fallback and which
// requests run inline on the host. The
// device is the CPU backend or a test backend that holds batches at a gate (explicit barriers,
// no sleeps); timeouts only guard liveness.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include "batcher_support.hpp"
#include "compute/backend.hpp"
#include "compute/batch_queue.hpp"
#include "gpubridge/resilience/fault_injection.hpp"

namespace gpubridge::compute {
namespace {

using testing::Completions;
using testing::Job;
using testing::make_job;
using testing::output_at;
using namespace std::chrono_literals;

// A GPU-like device ("cuda:0") that runs batches with an inner CPU backend. It records the
// priorities of every batch it receives, can hold batches at a gate until open(), and can fail
// every batch with a chosen error.
class TestGpu final : public Backend {
 public:
  explicit TestGpu(bool gated = false, std::optional<Error> fail = std::nullopt)
      : open_(!gated), fail_(std::move(fail)), inner_(make_cpu_backend({1, 0})) {}

  BackendKind kind() const override { return BackendKind::cuda; }
  BackendStatus status() const override {
    Device d;
    d.id = "cuda:0";
    d.backend = BackendKind::cuda;
    d.name = "test GPU";
    d.is_gpu = true;
    d.caps.fp64 = true;
    return {BackendKind::cuda, true, {}, {d}};
  }
  Status can_run(int, const KernelDef& def, DType) const override {
    if (def.gpu == nullptr) return Error(ErrorCode::failed_precondition, "kernel '" + def.id + "' has no GPU implementation");
    return {};
  }
  void execute(int, std::shared_ptr<const PreparedCall> call, BackendCompletion done) override {
    inner_->execute(0, std::move(call), std::move(done));
  }
  void execute_batch(int, const BatchCall& call, BatchCompletion done) override {
    std::vector<Priority> priorities;
    for (const BatchRequest* r : call.requests) priorities.push_back(r->priority);
    {
      std::unique_lock lock(mu_);
      batches_.push_back(std::move(priorities));
      cv_.notify_all();
      if (!fail_ && !open_) {
        parked_.push_back({&call, done});
        return;
      }
    }
    if (fail_) {
      done(*fail_);
      return;
    }
    inner_->execute_batch(0, call, done);
  }

  void open() {
    std::vector<Parked> run;
    {
      std::lock_guard lock(mu_);
      open_ = true;
      run.swap(parked_);
    }
    for (const Parked& p : run) inner_->execute_batch(0, *p.call, p.done);
  }
  bool wait_for_batches(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 30s, [&] { return batches_.size() >= n; });
  }
  std::vector<std::vector<Priority>> batches() const {
    std::lock_guard lock(mu_);
    return batches_;
  }

 private:
  struct Parked {
    const BatchCall* call;
    BatchCompletion done;
  };
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool open_;
  std::optional<Error> fail_;
  std::vector<Parked> parked_;
  std::vector<std::vector<Priority>> batches_;
  std::unique_ptr<Backend> inner_;
};

// Opens the gate when a test ends early, so that the batcher's destructor does not wait forever.
struct OpenAtExit {
  TestGpu* gpu;
  ~OpenAtExit() { gpu->open(); }
};

struct GpuFixture {
  TestGpu* gpu = nullptr;
  std::unique_ptr<Executor> executor;
};

GpuFixture with_test_gpu(bool gated, std::optional<Error> fail = std::nullopt,
                         KernelCatalog catalog = KernelCatalog::with_builtin_kernels()) {
  GpuFixture f;
  auto backend = std::make_unique<TestGpu>(gated, std::move(fail));
  f.gpu = backend.get();
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(std::move(backend));
  auto e = Executor::create_with_backends(std::move(backends), std::move(catalog));
  EXPECT_TRUE(e.ok());
  f.executor = std::move(e).value();
  return f;
}

std::unique_ptr<Executor> cpu_executor() {
  return testing::make_executor({.enable_cuda = false, .enable_opencl = false, .cpu_threads = 2});
}

const KernelDef& kernel(Executor& ex, const char* id) { return **ex.catalog().lookup(id); }

std::unique_ptr<DynamicBatcher> make_batcher(Executor& ex, const char* id, BatchPolicy policy, CallOptions where = {}) {
  auto b = DynamicBatcher::create(ex, id, DType::f32, policy, std::move(where));
  EXPECT_TRUE(b.ok()) << b.error().to_string();
  return b.ok() ? std::move(b).value() : nullptr;
}

// A "vector.add" batcher on a gated TestGpu: batches wait at the device until the test opens the
// gate. Members go in reverse order, also when a test fails half-way: the gate opens, then the
// batcher drains (the requests' hooks still find their jobs and `done`), then the executor goes.
struct GatedAdd {
  explicit GatedAdd(BatchPolicy policy)
      : f(with_test_gpu(/*gated=*/true)),
        add(kernel(*f.executor, "vector.add")),
        batcher(make_batcher(*f.executor, "vector.add", policy)),
        guard{f.gpu} {}

  // A new request of 8 floats (see make_job), kept in `jobs`, completing into `done`.
  Job& job(unsigned seed) { return *jobs.emplace_back(make_job(add, DType::f32, 8, seed, done)); }
  // Submits a first request (seed 0) and waits until the device holds its batch.
  Job& hold_first() {
    Job& first = job(0);
    EXPECT_TRUE(batcher->submit(first.request).ok());
    EXPECT_TRUE(f.gpu->wait_for_batches(1));
    return first;
  }

  GpuFixture f;
  Completions done;
  const KernelDef& add;
  std::vector<std::unique_ptr<Job>> jobs;
  std::unique_ptr<DynamicBatcher> batcher;
  OpenAtExit guard;
};

// Batches of up to `max_batch` requests, sent at once, one at a time on the device.
BatchPolicy one_batch_at_a_time(std::size_t max_batch) {
  BatchPolicy policy;
  policy.max_batch = max_batch;
  policy.max_delay = 0us;
  policy.max_inflight_batches = 1;
  return policy;
}

void expect_sum(const Job& j) {
  const auto* a = reinterpret_cast<const float*>(j.inputs[0].data());
  const auto* b = reinterpret_cast<const float*>(j.inputs[1].data());
  for (std::size_t i = 0; i < j.request.inputs[0].count; ++i) ASSERT_EQ(output_at(j, DType::f32, i), a[i] + b[i]) << i;
}

// ---- the batching step and AIMD, with fake time ----

TEST(BatchStep, SendsAtSizeOrDelayOtherwiseWaitsUntilTheOldestIsDue) {
  const SteadyTime t0{};
  const auto delay = 200us;
  EXPECT_FALSE(detail::decide_batch(0, 8, t0, t0 + 1s, delay).send);
  EXPECT_TRUE(detail::decide_batch(8, 8, t0, t0, delay).send);
  const auto wait = detail::decide_batch(3, 8, t0, t0 + 50us, delay);
  EXPECT_FALSE(wait.send);
  EXPECT_EQ(wait.wake, t0 + delay);
  EXPECT_TRUE(detail::decide_batch(3, 8, t0, t0 + delay, delay).send);
}

TEST(BatchStep, AimdAddsUnderTargetHalvesOverItWithinBounds) {
  BatchPolicy p;
  p.adaptive = true;
  p.max_batch = 100;
  p.min_batch = 4;
  p.additive_step = 16;
  p.latency_target = 1ms;
  EXPECT_EQ(detail::initial_batch_limit(p), 52u);
  EXPECT_EQ(detail::next_batch_limit(52, 500us, p), 68u);
  EXPECT_EQ(detail::next_batch_limit(90, 500us, p), 100u);
  EXPECT_EQ(detail::next_batch_limit(52, 2ms, p), 26u);
  EXPECT_EQ(detail::next_batch_limit(6, 2ms, p), 4u);
  p.adaptive = false;
  EXPECT_EQ(detail::initial_batch_limit(p), 100u);
}

TEST(BatchQueueTest, ServesHighPriorityFirstFifoWithinAPriorityAndRemovesExpired) {
  detail::BatchQueue q;
  std::array<BatchRequest, 6> r{};
  const Priority order[] = {Priority::low, Priority::high, Priority::normal, Priority::high, Priority::low, Priority::normal};
  const SteadyTime t0{};
  for (std::size_t i = 0; i < r.size(); ++i) {
    r[i].priority = order[i];
    r[i].enqueued_ = t0 + std::chrono::microseconds(i);
    r[i].deadline = i == 2 ? t0 + 10us : SteadyTime::max();
    ASSERT_TRUE(q.push(r[i]));
  }
  EXPECT_EQ(q.oldest_enqueued(), t0);
  SteadyTime earliest{};
  BatchRequest* expired = q.remove_expired(t0 + 5us, earliest);
  EXPECT_EQ(expired, nullptr);
  EXPECT_EQ(earliest, t0 + 10us);
  expired = q.remove_expired(t0 + 10us, earliest);
  ASSERT_EQ(expired, &r[2]);
  EXPECT_EQ(expired->next_, nullptr);
  EXPECT_EQ(earliest, SteadyTime::max());
  EXPECT_EQ(q.size(), 5u);
  const BatchRequest* want[] = {&r[1], &r[3], &r[5], &r[0], &r[4]};
  // push_front undoes a pop: the request is served next again (the batcher puts back the one
  // that would make a batch too large).
  BatchRequest* first = q.pop();
  ASSERT_EQ(first, want[0]);
  q.push_front(*first);
  EXPECT_EQ(q.size(), 5u);
  EXPECT_EQ(q.front(), want[0]);
  for (const BatchRequest* w : want) EXPECT_EQ(q.pop(), w);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.pop(), nullptr);
  q.push_front(r[0]);  // into an empty FIFO
  ASSERT_TRUE(q.push(r[4]));
  EXPECT_EQ(q.pop(), &r[0]);
  EXPECT_EQ(q.pop(), &r[4]);
  EXPECT_TRUE(q.empty());
}

// The FIFOs are rings that grow: order holds across growth, wrap-around and push_front at the
// ring's first slot, and expired requests leave from the middle without disturbing the rest.
TEST(BatchQueueTest, KeepsOrderAcrossGrowthWrapAroundAndRemovals) {
  detail::BatchQueue q(4);
  std::vector<BatchRequest> r(300);
  std::size_t next_in = 0, next_out = 0;
  for (int round = 0; round < 3; ++round) {  // the ring wraps, then grows while wrapped
    for (int i = 0; i < 90; ++i) ASSERT_TRUE(q.push(r[next_in++]));
    for (int i = 0; i < 60; ++i) ASSERT_EQ(q.pop(), &r[next_out++]);
    BatchRequest* first = q.pop();
    q.push_front(*first);
    ASSERT_EQ(q.front(), &r[next_out]);
  }
  ASSERT_EQ(q.size(), next_in - next_out);
  const SteadyTime t0{};
  for (std::size_t i = next_out; i < next_in; ++i) r[i].deadline = i % 3 == 0 ? t0 : SteadyTime::max();
  SteadyTime earliest{};
  std::size_t expired = 0;
  for (BatchRequest* e = q.remove_expired(t0, earliest); e != nullptr; e = e->next_) {
    EXPECT_EQ((e - r.data()) % 3, 0);
    ++expired;
  }
  EXPECT_GT(expired, 0u);
  EXPECT_EQ(earliest, SteadyTime::max());
  for (std::size_t i = next_out; i < next_in; ++i) {
    if (i % 3 != 0) {
      ASSERT_EQ(q.pop(), &r[i]);
    }
  }
  EXPECT_TRUE(q.empty());
}

// ---- what closes a batch ----

// A batch closes early rather than exceed 2^22 elements per input; the request that did not fit
// opens the next batch (served first, not reordered).
TEST(Batcher, ElementCapClosesABatchEarly) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_batch = 3;
  policy.max_delay = 200ms;  // the third request's batch closes by delay
  auto batcher = make_batcher(*ex, "vector.add", policy);
  Completions done;
  constexpr std::size_t kN = 1'500'000;  // two fit under 2^22 elements, three do not
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < 3; ++i) jobs.push_back(make_job(kernel(*ex, "vector.add"), DType::f32, kN, i + 1, done));
  for (auto& j : jobs) ASSERT_TRUE(batcher->submit(j->request).ok());
  ASSERT_TRUE(done.wait_for(3));
  const std::uint32_t sizes[] = {2, 2, 1};
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    ASSERT_TRUE(jobs[i]->request.status.ok()) << jobs[i]->request.status.error().to_string();
    EXPECT_EQ(jobs[i]->on_done_calls, 1);
    EXPECT_EQ(jobs[i]->request.report.batch_size, sizes[i]) << "request " << i;
    expect_sum(*jobs[i]);
  }
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.batches, 2u);
  EXPECT_EQ(st.batched_requests, 3u);
}

TEST(Batcher, SizeClosesABatch) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_batch = 8;
  policy.max_delay = 60s;  // only the size can close it within the test's timeout
  auto batcher = make_batcher(*ex, "vector.add", policy);
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < 8; ++i) jobs.push_back(make_job(kernel(*ex, "vector.add"), DType::f32, 100 + i, i, done));
  for (auto& j : jobs) ASSERT_TRUE(batcher->submit(j->request).ok());
  ASSERT_TRUE(done.wait_for(8));
  for (auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok()) << j->request.status.error().to_string();
    EXPECT_EQ(j->on_done_calls, 1);
    EXPECT_EQ(j->request.report.batch_size, 8u);
    EXPECT_STREQ(j->request.report.device_id, "cpu:0");
    EXPECT_EQ(j->request.report.backend, BackendKind::cpu);
    EXPECT_EQ(j->request.report.fallback, FallbackReason::none);
    EXPECT_GE(j->request.report.queued.count(), 0);
    EXPECT_GE(j->request.report.executed.count(), 0);
    expect_sum(*j);
  }
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.batches, 1u);
  EXPECT_EQ(st.batched_requests, 8u);
  EXPECT_EQ(st.submitted, 8u);
  EXPECT_EQ(st.completed, 8u);
  EXPECT_EQ(st.current_max_batch, 8u);
  EXPECT_EQ(batcher->inflight(), 0u);
}

TEST(Batcher, DelayClosesABatch) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_batch = 1000;
  policy.max_delay = 20ms;
  auto batcher = make_batcher(*ex, "vector.add", policy);
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < 3; ++i) jobs.push_back(make_job(kernel(*ex, "vector.add"), DType::f32, 64, i, done));
  const auto start = std::chrono::steady_clock::now();
  for (auto& j : jobs) ASSERT_TRUE(batcher->submit(j->request).ok());
  ASSERT_TRUE(done.wait_for(3));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);  // liveness bound only
  for (auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok());
    EXPECT_EQ(j->request.report.batch_size, 3u);
    expect_sum(*j);
  }
  // The batch left when its oldest request had waited max_delay (steady_clock), not before.
  EXPECT_GE(jobs[0]->request.report.queued, policy.max_delay);
  EXPECT_EQ(batcher->stats().batches, 1u);
}

// ---- adaptive mode ----

// Runs one-request batches one after the other until the limit equals `until` (or `batches`
// ran); returns the limit.
std::size_t run_sequential_batches(Executor& ex, DynamicBatcher& batcher, int batches, std::size_t until = 0) {
  Completions done;
  for (int i = 0; i < batches && batcher.stats().current_max_batch != until; ++i) {
    auto job = make_job(kernel(ex, "vector.add"), DType::f32, 32, static_cast<unsigned>(i), done);
    EXPECT_TRUE(batcher.submit(job->request).ok());
    EXPECT_TRUE(done.wait_for(static_cast<std::size_t>(i) + 1));
    EXPECT_TRUE(job->request.status.ok());
  }
  return batcher.stats().current_max_batch;
}

TEST(Batcher, AdaptiveShrinksTheBatchUnderATinyLatencyTarget) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.adaptive = true;
  policy.max_batch = 64;
  policy.min_batch = 2;
  policy.additive_step = 1;
  policy.max_delay = 0us;
  policy.latency_target = 1us;  // the shortest target: a thread hand-off alone takes longer
  auto batcher = make_batcher(*ex, "vector.add", policy);
  EXPECT_EQ(batcher->stats().current_max_batch, 33u);
  // 33 -> 16 -> 8 -> 4 -> 2 (min_batch) after four batches over the target.
  EXPECT_EQ(run_sequential_batches(*ex, *batcher, 100, 2), 2u);
  EXPECT_EQ(run_sequential_batches(*ex, *batcher, 3), 2u) << "never below min_batch";
}

TEST(Batcher, AdaptiveGrowsTheBatchUnderALargeLatencyTarget) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.adaptive = true;
  policy.max_batch = 64;
  policy.min_batch = 1;
  policy.additive_step = 8;
  policy.max_delay = 0us;
  policy.latency_target = 1h;  // every batch is under it
  auto batcher = make_batcher(*ex, "vector.add", policy);
  EXPECT_EQ(batcher->stats().current_max_batch, 32u);
  EXPECT_EQ(run_sequential_batches(*ex, *batcher, 2), 48u);
  EXPECT_EQ(run_sequential_batches(*ex, *batcher, 4), 64u);  // capped at max_batch
}

// ---- deadlines ----

TEST(Batcher, ExpiredRequestFailsWithoutRunning) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_delay = 0us;
  auto batcher = make_batcher(*ex, "vector.add", policy);
  Completions done;
  auto job = make_job(kernel(*ex, "vector.add"), DType::f32, 16, 1, done);
  job->request.deadline = std::chrono::steady_clock::now() - 1ms;
  ASSERT_TRUE(batcher->submit(job->request).ok());
  ASSERT_TRUE(done.wait_for(1));
  ASSERT_FALSE(job->request.status.ok());
  EXPECT_EQ(job->request.status.error().code(), ErrorCode::deadline_exceeded);
  EXPECT_EQ(job->request.report.batch_size, 0u);
  for (std::size_t i = 0; i < 16; ++i) EXPECT_EQ(output_at(*job, DType::f32, i), 42.0) << "output untouched";
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.expired, 1u);
  EXPECT_EQ(st.failed, 1u);
  EXPECT_EQ(st.batches, 0u);
}

TEST(Batcher, RequestExpiresWhileQueuedBehindABusyDevice) {
  GatedAdd g(one_batch_at_a_time(1));
  Job& first = g.hold_first();
  ASSERT_FALSE(HasFailure());
  Job& late = g.job(2);
  late.request.deadline = std::chrono::steady_clock::now() + 30ms;
  ASSERT_TRUE(g.batcher->submit(late.request).ok());
  // It fails at its deadline although no batch slot is free (the device is still held).
  ASSERT_TRUE(g.done.wait_for(1));
  EXPECT_EQ(late.request.status.error().code(), ErrorCode::deadline_exceeded);
  EXPECT_EQ(first.on_done_calls, 0);
  for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(output_at(late, DType::f32, i), 42.0);
  g.f.gpu->open();
  ASSERT_TRUE(g.done.wait_for(2));
  EXPECT_TRUE(first.request.status.ok());
  expect_sum(first);
  EXPECT_EQ(g.f.gpu->batches().size(), 1u) << "the expired request never reached the device";
  EXPECT_EQ(g.batcher->stats().expired, 1u);
}

// ---- priorities ----

TEST(Batcher, HighPriorityIsServedBeforeLow) {
  GatedAdd g(one_batch_at_a_time(4));
  g.hold_first();  // in flight; the rest queue behind it
  ASSERT_FALSE(HasFailure());
  for (unsigned i = 1; i <= 8; ++i) {
    Job& j = g.job(i);
    j.request.priority = i % 2 == 0 ? Priority::high : Priority::low;
    ASSERT_TRUE(g.batcher->submit(j.request).ok());
  }
  EXPECT_EQ(g.batcher->stats().queue_depth, 8u);
  g.f.gpu->open();
  ASSERT_TRUE(g.done.wait_for(g.jobs.size()));
  const auto batches = g.f.gpu->batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[1], std::vector<Priority>(4, Priority::high));
  EXPECT_EQ(batches[2], std::vector<Priority>(4, Priority::low));
  for (auto& j : g.jobs) {
    ASSERT_TRUE(j->request.status.ok());
    expect_sum(*j);
  }
}

// ---- backpressure ----

TEST(Batcher, FullQueueRejectsWithoutLosingAnything) {
  BatchPolicy policy = one_batch_at_a_time(1);
  policy.queue_capacity = 4;
  GatedAdd g(policy);
  auto& batcher = g.batcher;
  auto& done = g.done;
  auto& jobs = g.jobs;
  g.hold_first();  // running, no longer queued
  ASSERT_FALSE(HasFailure());
  for (unsigned i = 1; i < 6; ++i) g.job(i);
  for (unsigned i = 1; i <= 4; ++i) ASSERT_TRUE(batcher->submit(jobs[i]->request).ok()) << i;
  const Status rejected = batcher->submit(jobs[5]->request);
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.error().code(), ErrorCode::resource_exhausted);
  EXPECT_NE(rejected.error().message().find("queue full (capacity 4)"), std::string::npos) << rejected.error().message();
  EXPECT_EQ(batcher->inflight(), 5u);
  BatcherStats st = batcher->stats();
  EXPECT_EQ(st.rejected_queue_full, 1u);
  EXPECT_EQ(st.queue_depth, 4u);
  EXPECT_EQ(st.submitted, 5u);
  g.f.gpu->open();
  ASSERT_TRUE(done.wait_for(5));
  for (unsigned i = 0; i <= 4; ++i) {
    ASSERT_TRUE(jobs[i]->request.status.ok());
    EXPECT_EQ(jobs[i]->on_done_calls, 1);
    expect_sum(*jobs[i]);
  }
  EXPECT_EQ(jobs[5]->on_done_calls, 0) << "a rejected request stays the caller's";
  ASSERT_TRUE(batcher->submit(jobs[5]->request).ok()) << "accepted once there is room";
  ASSERT_TRUE(done.wait_for(6));
  expect_sum(*jobs[5]);
  st = batcher->stats();
  EXPECT_EQ(st.completed, 6u);
  EXPECT_EQ(st.failed, 0u);
}

// ---- stop ----

TEST(Batcher, StopCancelsQueuedRequestsAndWaitsForRunningOnes) {
  GatedAdd g(one_batch_at_a_time(2));
  auto& batcher = g.batcher;
  auto& done = g.done;
  auto& jobs = g.jobs;
  g.hold_first();
  ASSERT_FALSE(HasFailure());
  for (unsigned i = 1; i < 5; ++i) g.job(i);
  for (unsigned i = 1; i < 5; ++i) ASSERT_TRUE(batcher->submit(jobs[i]->request).ok());
  std::thread stopper([&] { batcher->stop(); });
  ASSERT_TRUE(done.wait_for(4));  // the four queued ones, cancelled while the first still runs
  for (unsigned i = 1; i < 5; ++i) {
    ASSERT_FALSE(jobs[i]->request.status.ok());
    EXPECT_EQ(jobs[i]->request.status.error().code(), ErrorCode::cancelled);
    EXPECT_EQ(output_at(*jobs[i], DType::f32, 0), 42.0);
  }
  EXPECT_EQ(jobs[0]->on_done_calls, 0);
  g.f.gpu->open();
  stopper.join();  // returns once the running batch completed
  EXPECT_EQ(jobs[0]->on_done_calls, 1);
  EXPECT_TRUE(jobs[0]->request.status.ok());
  expect_sum(*jobs[0]);
  EXPECT_EQ(batcher->inflight(), 0u);
  Job& after = g.job(9);
  const Status s = batcher->submit(after.request);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::failed_precondition);
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.completed, 1u);
  EXPECT_EQ(st.failed, 4u);
  for (unsigned i = 0; i < 5; ++i) EXPECT_EQ(jobs[i]->on_done_calls, 1);
}

TEST(Batcher, DestructorCancelsQueuedRequests) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_batch = 100;
  policy.max_delay = 60s;
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  {
    auto batcher = make_batcher(*ex, "vector.add", policy);
    for (unsigned i = 0; i < 3; ++i) {
      jobs.push_back(make_job(kernel(*ex, "vector.add"), DType::f32, 8, i, done));
      ASSERT_TRUE(batcher->submit(jobs.back()->request).ok());
    }
  }
  EXPECT_EQ(done.count(), 3u);
  for (auto& j : jobs) EXPECT_EQ(j->request.status.error().code(), ErrorCode::cancelled);
}

// ---- validation ----

TEST(Batcher, InvalidRequestsAreRejectedAtSubmit) {
  auto ex = cpu_executor();
  auto batcher = make_batcher(*ex, "vector.axpy", {});
  Completions done;
  const KernelDef& axpy = kernel(*ex, "vector.axpy");
  std::vector<double> f64(8, 1.0);
  const float dummy = 0;
  struct Case {
    const char* what;
    void (*mutate)(BatchRequest&, const std::vector<double>&, const float*);
    ErrorCode code;
  };
  const Case cases[] = {
      {"no on_done", [](BatchRequest& r, const auto&, const float*) { r.on_done = nullptr; }, ErrorCode::invalid_argument},
      {"other dtype", [](BatchRequest& r, const auto& d, const float*) { r.inputs[1] = TensorView(d); },
       ErrorCode::invalid_argument},
      {"missing input", [](BatchRequest& r, const auto&, const float*) { r.inputs[1] = {}; }, ErrorCode::invalid_argument},
      {"null data",
       [](BatchRequest& r, const auto&, const float*) { r.inputs[0].data = nullptr; }, ErrorCode::invalid_argument},
      {"empty", [](BatchRequest& r, const auto&, const float*) { r.inputs[0].count = r.inputs[1].count = 0; },
       ErrorCode::invalid_argument},
      {"lengths differ", [](BatchRequest& r, const auto&, const float*) { r.inputs[1].count = 7; },
       ErrorCode::invalid_argument},
      {"extra input", [](BatchRequest& r, const auto&, const float* p) { r.inputs[2] = TensorView(DType::f32, p, 1); },
       ErrorCode::invalid_argument},
      {"no output", [](BatchRequest& r, const auto&, const float*) { r.output = nullptr; }, ErrorCode::invalid_argument},
      {"output too small", [](BatchRequest& r, const auto&, const float*) { r.output_capacity = 7; },
       ErrorCode::invalid_argument},
      {"bad priority", [](BatchRequest& r, const auto&, const float*) { r.priority = static_cast<Priority>(7); },
       ErrorCode::invalid_argument},
      {"oversized",
       [](BatchRequest& r, const auto&, const float*) {
         r.inputs[0].count = r.inputs[1].count = (std::size_t{1} << 22) + 1;  // never read: rejected first
         r.output_capacity = r.inputs[0].count;
       },
       ErrorCode::out_of_range},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto job = make_job(axpy, DType::f32, 8, 1, done);
    c.mutate(job->request, f64, &dummy);
    const Status s = batcher->submit(job->request);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code(), c.code) << s.error().to_string();
    EXPECT_EQ(job->on_done_calls, 0);
  }
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.submitted, 0u);
  EXPECT_EQ(st.queue_depth, 0u);
  EXPECT_EQ(done.count(), 0u);
}

TEST(Batcher, CreateRejectsUnknownKernelsDtypesAndBadPolicies) {
  KernelCatalog catalog = KernelCatalog::with_builtin_kernels();
  ASSERT_TRUE(catalog
                  .add({"test.scale3", "three scalars", {{"x"}, {"a", "b", "c"}, OutputShape::like_inputs, {DType::f32}},
                        [](const CpuKernelArgs&) { return Status{}; }})
                  .ok());
  auto created = Executor::create_with_backends({}, std::move(catalog));
  ASSERT_TRUE(created.ok());
  Executor& ex = **created;
  EXPECT_EQ(DynamicBatcher::create(ex, "vector.nope", DType::f32, {}).error().code(), ErrorCode::not_found);
  EXPECT_EQ(DynamicBatcher::create(ex, "test.scale3", DType::f64, {}).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(DynamicBatcher::create(ex, "test.scale3", DType::f32, {}).error().code(), ErrorCode::invalid_argument)
      << "more scalars than a request holds";
  for (auto bad : {+[](BatchPolicy& p) { p.max_batch = 0; }, +[](BatchPolicy& p) { p.queue_capacity = 0; },
                   +[](BatchPolicy& p) { p.queue_capacity = kMaxQueueCapacity + 1; },
                   +[](BatchPolicy& p) { p.max_inflight_batches = 0; }, +[](BatchPolicy& p) { p.max_delay = -1us; },
                   +[](BatchPolicy& p) {
                     p.adaptive = true;
                     p.min_batch = p.max_batch + 1;
                   },
                   +[](BatchPolicy& p) {
                     p.adaptive = true;
                     p.latency_target = 0us;
                   }}) {
    BatchPolicy p;
    bad(p);
    auto b = DynamicBatcher::create(ex, "vector.add", DType::f32, p);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.error().code(), ErrorCode::invalid_argument);
  }
}

// ---- per-segment failure ----

TEST(Batcher, ZeroNormSegmentFailsAlone) {
  auto ex = cpu_executor();
  testing::expect_zero_segment_fails_alone(*ex, BackendChoice::cpu);
}

// ---- fallback ----

TEST(Batcher, DeviceErrorRerunsTheBatchOnTheCpuWithTheReason) {
  auto f = with_test_gpu(false, Error(ErrorCode::internal, "cudaErrorIllegalAddress (700): an illegal memory access"));
  BatchPolicy policy;
  policy.max_batch = 8;
  policy.max_delay = 60s;
  auto batcher = make_batcher(*f.executor, "vector.add", policy);
  EXPECT_EQ(batcher->device().id, "cuda:0");
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < 8; ++i) {
    jobs.push_back(make_job(kernel(*f.executor, "vector.add"), DType::f32, 50, i, done));
    ASSERT_TRUE(batcher->submit(jobs.back()->request).ok());
  }
  ASSERT_TRUE(done.wait_for(8));
  for (auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok()) << j->request.status.error().to_string();
    EXPECT_STREQ(j->request.report.device_id, "cpu:0");
    EXPECT_EQ(j->request.report.backend, BackendKind::cpu);
    EXPECT_EQ(j->request.report.fallback, FallbackReason::device_error);
    EXPECT_EQ(j->request.report.batch_size, 8u);
    expect_sum(*j);
  }
  const ExecutorStats st = f.executor->stats();
  EXPECT_EQ(st.fallback_count(FallbackReason::device_error), 8u) << "counted once per request";
  for (const auto& d : st.devices) {
    if (d.device_id == "cuda:0") {
      EXPECT_EQ(d.errors, 1u);
    }
    if (d.device_id == "cpu:0") {
      EXPECT_EQ(d.calls, 1u);
    }
  }
}

TEST(Batcher, OutOfMemoryRerunsOnTheCpuAsOutOfMemory) {
  auto f = with_test_gpu(false, Error(ErrorCode::resource_exhausted, "out of device memory"));
  BatchPolicy policy;
  policy.max_batch = 2;
  policy.max_delay = 60s;
  auto batcher = make_batcher(*f.executor, "vector.add", policy);
  Completions done;
  auto a = make_job(kernel(*f.executor, "vector.add"), DType::f32, 10, 1, done);
  auto b = make_job(kernel(*f.executor, "vector.add"), DType::f32, 20, 2, done);
  ASSERT_TRUE(batcher->submit(a->request).ok());
  ASSERT_TRUE(batcher->submit(b->request).ok());
  ASSERT_TRUE(done.wait_for(2));
  EXPECT_EQ(a->request.report.fallback, FallbackReason::out_of_memory);
  expect_sum(*a);
  expect_sum(*b);
  EXPECT_EQ(f.executor->stats().fallback_count(FallbackReason::out_of_memory), 2u);
}

TEST(Batcher, DeviceErrorWithFallbackDisabledFailsTheRequests) {
  auto f = with_test_gpu(false, Error(ErrorCode::internal, "device lost"));
  BatchPolicy policy;
  policy.max_batch = 2;
  policy.max_delay = 60s;
  auto batcher = make_batcher(*f.executor, "vector.add", policy, testing::only_on(BackendChoice::cuda));
  Completions done;
  auto a = make_job(kernel(*f.executor, "vector.add"), DType::f32, 10, 1, done);
  auto b = make_job(kernel(*f.executor, "vector.add"), DType::f32, 20, 2, done);
  ASSERT_TRUE(batcher->submit(a->request).ok());
  ASSERT_TRUE(batcher->submit(b->request).ok());
  ASSERT_TRUE(done.wait_for(2));
  for (const Job* j : {a.get(), b.get()}) {
    ASSERT_FALSE(j->request.status.ok());
    EXPECT_EQ(j->request.status.error().code(), ErrorCode::internal);
    EXPECT_NE(j->request.status.error().to_string().find("cuda:0"), std::string::npos);
    EXPECT_EQ(output_at(*j, DType::f32, 0), 42.0);
  }
  EXPECT_EQ(f.executor->stats().fallback_count(FallbackReason::device_error), 0u);
  EXPECT_EQ(batcher->stats().failed, 2u);
}

TEST(Batcher, UserKernelWithoutGpuRecipeRunsBatchedOnTheCpu) {
  KernelCatalog catalog = KernelCatalog::with_builtin_kernels();
  ASSERT_TRUE(catalog
                  .add({"test.negate", "out = -x", {{"x"}, {}, OutputShape::like_inputs, {DType::f32}},
                        [](const CpuKernelArgs& a) {
                          auto* out = static_cast<float*>(a.output);
                          auto* x = static_cast<const float*>(a.inputs[0]);
                          for (std::size_t i = 0; i < a.n; ++i) out[i] = -x[i];
                          return Status{};
                        }})
                  .ok());
  auto f = with_test_gpu(false, Error(ErrorCode::internal, "never reached"), std::move(catalog));
  BatchPolicy policy;
  policy.max_batch = 3;
  policy.max_delay = 60s;
  auto batcher = make_batcher(*f.executor, "test.negate", policy, {.backend = BackendChoice::cuda});
  EXPECT_EQ(batcher->device().id, "cpu:0");
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < 3; ++i) {
    jobs.push_back(make_job(kernel(*f.executor, "test.negate"), DType::f32, 5 + i, i, done));
    ASSERT_TRUE(batcher->submit(jobs.back()->request).ok());
  }
  ASSERT_TRUE(done.wait_for(3));
  for (auto& j : jobs) {
    ASSERT_TRUE(j->request.status.ok());
    EXPECT_EQ(j->request.report.fallback, FallbackReason::kernel_missing);
    EXPECT_STREQ(j->request.report.device_id, "cpu:0");
    const auto* x = reinterpret_cast<const float*>(j->inputs[0].data());
    EXPECT_EQ(output_at(*j, DType::f32, 2), -x[2]);
  }
  EXPECT_TRUE(f.gpu->batches().empty());
  EXPECT_EQ(f.executor->stats().fallback_count(FallbackReason::kernel_missing), 3u);

  auto strict = DynamicBatcher::create(*f.executor, "test.negate", DType::f32, policy,
                                       testing::only_on(BackendChoice::cuda));
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.error().code(), ErrorCode::failed_precondition);
}

// ---- concurrency ----

thread_local bool t_in_submit = false;
std::atomic<int> g_done_inside_submit{0};

void count_and_check(BatchRequest& r) {
  if (t_in_submit) g_done_inside_submit.fetch_add(1);
  testing::job_done(r);
}

TEST(Batcher, ConcurrentProducersEachGetExactlyOneCompletion) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_batch = 64;
  policy.max_delay = 100us;
  policy.queue_capacity = 1 << 14;
  auto batcher = make_batcher(*ex, "vector.add", policy);
  constexpr unsigned kThreads = 4, kPerThread = 500;
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < kThreads * kPerThread; ++i) {
    jobs.push_back(make_job(kernel(*ex, "vector.add"), DType::f32, 1 + i % 300, i, done));
    jobs.back()->request.on_done = count_and_check;
    jobs.back()->request.priority = static_cast<Priority>(i % 3);
  }
  std::vector<std::thread> producers;
  for (unsigned t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (unsigned i = 0; i < kPerThread; ++i) {
        t_in_submit = true;
        const Status s = batcher->submit(jobs[t * kPerThread + i]->request);
        t_in_submit = false;
        EXPECT_TRUE(s.ok());
      }
    });
  }
  for (auto& p : producers) p.join();
  ASSERT_TRUE(done.wait_for(jobs.size()));
  EXPECT_EQ(g_done_inside_submit.load(), 0) << "on_done never runs inside submit()";
  for (auto& j : jobs) {
    ASSERT_EQ(j->on_done_calls, 1);
    ASSERT_TRUE(j->request.status.ok());
    ASSERT_GE(j->request.report.batch_size, 1u);
    expect_sum(*j);
  }
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.submitted, jobs.size());
  EXPECT_EQ(st.completed, jobs.size());
  EXPECT_EQ(st.batched_requests, jobs.size());
  EXPECT_LE(st.batches, jobs.size());
  EXPECT_EQ(batcher->inflight(), 0u);
}

// The first request into an empty queue while a batch with a far deadline is held by the device:
// it must go out after max_delay, not at the held batch's deadline.
TEST(Batcher, FirstRequestIsNotHeldUntilAnInflightBatchDeadline) {
  BatchPolicy policy;
  policy.max_batch = 4;
  policy.max_delay = 1ms;
  policy.max_inflight_batches = 2;
  GatedAdd g(policy);
  for (unsigned i = 0; i < 4; ++i) {
    Job& j = g.job(i + 1);
    j.request.deadline = std::chrono::steady_clock::now() + 5s;
    ASSERT_TRUE(g.batcher->submit(j.request).ok());
  }
  ASSERT_TRUE(g.f.gpu->wait_for_batches(1));
  std::this_thread::sleep_for(50ms);  // the dispatcher now sleeps until the held batch's deadline
  Job& next = g.job(9);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(g.batcher->submit(next.request).ok());
  ASSERT_TRUE(g.f.gpu->wait_for_batches(2));
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_LT(waited, 1000ms) << "max_delay is 1 ms, the second batch left after " << waited.count() << " ms";
  g.f.gpu->open();
  ASSERT_TRUE(g.done.wait_for(5));
}

// A caller that reuses (or frees) its request as soon as on_done ran, as BatchAwaiter does with
// its coroutine frame: submit() must not read the request after pushing it (a race that a
// ThreadSanitizer build of this test reports).
void reuse_on_done(BatchRequest& r) {
  r.deadline = SteadyTime::max();  // the caller owns the request again
  testing::job_done(r);
}

TEST(Batcher, SubmitDoesNotReadTheRequestAfterThePush) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_batch = 64;
  policy.max_delay = 200us;
  auto batcher = make_batcher(*ex, "vector.add", policy);
  const KernelDef& add = kernel(*ex, "vector.add");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        Completions done;
        auto job = make_job(add, DType::f32, 8, static_cast<unsigned>(t * 1000 + i), done);
        job->request.on_done = reuse_on_done;
        if (!batcher->submit(job->request).ok()) continue;
        done.wait_for(1);
      }
    });
  }
  for (auto& th : threads) th.join();
}

// The completion scope is open around every on_done hook of a batch (success and failure paths)
// and closed after it, once per group of hooks; a half-set scope is refused.
std::atomic<int> g_scope_depth{0};
std::atomic<int> g_scope_opens{0};
std::atomic<int> g_hooks_outside_scope{0};
void scope_open() noexcept {
  g_scope_depth.fetch_add(1);
  g_scope_opens.fetch_add(1);
}
void scope_close() noexcept { g_scope_depth.fetch_sub(1); }
void done_in_scope(BatchRequest& r) {
  if (g_scope_depth.load() <= 0) g_hooks_outside_scope.fetch_add(1);
  testing::job_done(r);
}

TEST(Batcher, CompletionScopeIsOpenAroundEveryHook) {
  auto ex = cpu_executor();
  BatchPolicy policy;
  policy.max_batch = 8;
  policy.max_delay = 60s;
  const CompletionScope scope{&scope_open, &scope_close};
  auto created = DynamicBatcher::create(*ex, "vector.add", DType::f32, policy, {}, scope);
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  auto& batcher = *created;
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < 8; ++i) {
    jobs.push_back(make_job(kernel(*ex, "vector.add"), DType::f32, 64, i, done));
    jobs.back()->request.on_done = done_in_scope;
    ASSERT_TRUE(batcher->submit(jobs.back()->request).ok());
  }
  ASSERT_TRUE(done.wait_for(8));
  // An expired request fails through the same scope.
  auto late = make_job(kernel(*ex, "vector.add"), DType::f32, 64, 99, done);
  late->request.on_done = done_in_scope;
  late->request.deadline = std::chrono::steady_clock::now() - 1s;
  ASSERT_TRUE(batcher->submit(late->request).ok());
  ASSERT_TRUE(done.wait_for(9));
  EXPECT_EQ(late->request.status.error().code(), ErrorCode::deadline_exceeded);
  batcher->stop();
  EXPECT_EQ(g_hooks_outside_scope.load(), 0);
  EXPECT_EQ(g_scope_depth.load(), 0);
  EXPECT_GE(g_scope_opens.load(), 2);  // the batch, the expired request
  EXPECT_LE(g_scope_opens.load(), 9);  // not one per request of the batch

  auto half = DynamicBatcher::create(*ex, "vector.add", DType::f32, policy, {}, CompletionScope{&scope_open, nullptr});
  ASSERT_FALSE(half.ok());
  EXPECT_EQ(half.error().code(), ErrorCode::invalid_argument);
}


// ---- small requests run inline on the host ----

std::uint64_t cpu_calls(Executor& ex) {
  for (const auto& d : ex.stats().devices) {
    if (d.device_id == "cpu:0") return d.calls;
  }
  return 0;
}

TEST(Batcher, SmallHostRequestRunsInlineWithItsReport) {
  auto ex = cpu_executor();
  auto batcher = make_batcher(*ex, "vector.add", {});
  Completions done;
  auto job = make_job(kernel(*ex, "vector.add"), DType::f32, 256, 1, done);
  ASSERT_TRUE(batcher->run_inline(job->request));
  ASSERT_TRUE(job->request.status.ok()) << job->request.status.error().to_string();
  expect_sum(*job);
  EXPECT_EQ(job->on_done_calls, 0) << "an inline run does not call on_done";
  const BatchReport& r = job->request.report;
  EXPECT_STREQ(r.device_id, "cpu:0");
  EXPECT_EQ(r.backend, BackendKind::cpu);
  EXPECT_EQ(r.fallback, FallbackReason::none);
  EXPECT_EQ(r.batch_size, 1u);
  EXPECT_EQ(r.queued.count(), 0);
  EXPECT_GT(r.executed.count(), 0);
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.ran_inline, 1u);
  EXPECT_EQ(st.completed, 1u);
  EXPECT_EQ(st.failed, 0u);
  EXPECT_EQ(st.submitted, 0u);
  EXPECT_EQ(st.batches, 0u);
  EXPECT_EQ(cpu_calls(*ex), 1u) << "one execution on the CPU device";
}

TEST(Batcher, SegmentErrorOfAnInlineRequestIsItsStatus) {
  auto ex = cpu_executor();
  auto batcher = make_batcher(*ex, "vector.normalize", {});
  Completions done;
  auto zeros = make_job(kernel(*ex, "vector.normalize"), DType::f32, 16, 1, done);
  std::fill(zeros->inputs[0].begin(), zeros->inputs[0].end(), 0.0);
  ASSERT_TRUE(batcher->run_inline(zeros->request));
  ASSERT_FALSE(zeros->request.status.ok());
  EXPECT_EQ(zeros->request.status.error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(zeros->request.report.batch_size, 1u);
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.ran_inline, 1u);
  EXPECT_EQ(st.failed, 1u);
  EXPECT_EQ(st.completed, 0u);
}

// Large, invalid, expired requests and any after stop() are left as they were, for submit().
TEST(Batcher, RequestsThatDoNotRunInlineAreLeftForSubmit) {
  auto ex = cpu_executor();
  auto batcher = make_batcher(*ex, "vector.add", {.max_batch = 4, .max_delay = 100us});
  const KernelDef& add = kernel(*ex, "vector.add");
  Completions done;
  // 2 inputs + 1 output of 8192 elements: more than the 16384 the CPU backend runs in place.
  auto large = make_job(add, DType::f32, 8192, 1, done);
  auto other_dtype = make_job(add, DType::f32, 8, 2, done);
  std::vector<double> f64(8, 1.0);
  other_dtype->request.inputs[1] = TensorView(f64);
  auto expired = make_job(add, DType::f32, 8, 3, done);
  expired->request.deadline = std::chrono::steady_clock::now() - 1s;
  for (Job* j : {large.get(), other_dtype.get(), expired.get()}) {
    EXPECT_FALSE(batcher->run_inline(j->request));
    EXPECT_EQ(output_at(*j, DType::f32, 0), 42.0) << "not run";
    EXPECT_EQ(j->request.report.batch_size, 0u) << "no report written";
  }
  EXPECT_EQ(batcher->stats().ran_inline, 0u);
  // submit() takes them as always: the large one runs batched, the others fail with their reason.
  EXPECT_EQ(batcher->submit(other_dtype->request).error().code(), ErrorCode::invalid_argument);
  ASSERT_TRUE(batcher->submit(large->request).ok());
  ASSERT_TRUE(batcher->submit(expired->request).ok());
  ASSERT_TRUE(done.wait_for(2));
  ASSERT_TRUE(large->request.status.ok()) << large->request.status.error().to_string();
  expect_sum(*large);
  EXPECT_EQ(large->on_done_calls, 1);
  EXPECT_EQ(expired->request.status.error().code(), ErrorCode::deadline_exceeded);
  batcher->stop();
  auto after_stop = make_job(add, DType::f32, 8, 4, done);
  EXPECT_FALSE(batcher->run_inline(after_stop->request));
  EXPECT_EQ(batcher->submit(after_stop->request).error().code(), ErrorCode::failed_precondition);
  EXPECT_EQ(batcher->stats().ran_inline, 0u);
}

// Threads running small requests inline while others go through batches (large ones): every
// request runs exactly once and the counts add up.
TEST(Batcher, InlineRunsAndBatchesFromManyThreadsAddUp) {
  auto ex = cpu_executor();
  auto batcher = make_batcher(*ex, "vector.add", {.max_batch = 8, .max_delay = 100us});
  const KernelDef& add = kernel(*ex, "vector.add");
  constexpr unsigned kThreads = 4, kPerThread = 300;
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned i = 0; i < kThreads * kPerThread; ++i) {
    // Every 10th request is too large to run inline (3 x 6000 elements > 16384).
    jobs.push_back(make_job(add, DType::f32, i % 10 == 0 ? 6000 : 1 + i % 500, i, done));
  }
  std::atomic<unsigned> inline_runs{0}, submitted{0};
  std::vector<std::thread> producers;
  for (unsigned t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (unsigned i = 0; i < kPerThread; ++i) {
        BatchRequest& r = jobs[t * kPerThread + i]->request;
        if (batcher->run_inline(r)) {
          inline_runs.fetch_add(1);
        } else {
          EXPECT_TRUE(batcher->submit(r).ok());
          submitted.fetch_add(1);
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  ASSERT_TRUE(done.wait_for(submitted.load()));
  EXPECT_EQ(inline_runs.load(), kThreads * kPerThread * 9 / 10);
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const Job& j = *jobs[i];
    ASSERT_TRUE(j.request.status.ok()) << i;
    const bool ran_inline = i % 10 != 0;
    ASSERT_EQ(j.on_done_calls, ran_inline ? 0 : 1) << i;
    ASSERT_GE(j.request.report.batch_size, 1u) << i;
    if (ran_inline) {
      ASSERT_EQ(j.request.report.queued.count(), 0) << i;
    }
    expect_sum(j);
  }
  const BatcherStats st = batcher->stats();
  EXPECT_EQ(st.ran_inline, inline_runs.load());
  EXPECT_EQ(st.submitted, submitted.load());
  EXPECT_EQ(st.completed, jobs.size());
  EXPECT_EQ(st.batched_requests, submitted.load());
  EXPECT_EQ(cpu_calls(*ex), inline_runs.load() + st.batches);
}

TEST(Batcher, DeviceBatcherNeverRunsInline) {
  auto f = with_test_gpu(/*gated=*/false);
  auto batcher = make_batcher(*f.executor, "vector.add", {});
  ASSERT_EQ(batcher->device().id, "cuda:0");
  Completions done;
  auto job = make_job(kernel(*f.executor, "vector.add"), DType::f32, 8, 1, done);
  EXPECT_FALSE(batcher->run_inline(job->request));
  EXPECT_EQ(output_at(*job, DType::f32, 0), 42.0);
}

// Faults are injected into batches: while any rule is set, host requests go through them.
TEST(Batcher, SetFaultRulesSendHostRequestsThroughBatches) {
  auto faults = std::make_shared<resilience::FaultInjector>();
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false, .cpu_threads = 2, .faults = faults});
  auto batcher = make_batcher(*ex, "vector.add", {.max_batch = 1, .max_delay = 0us});
  Completions done;
  auto job = make_job(kernel(*ex, "vector.add"), DType::f32, 8, 1, done);
  faults->set({resilience::FaultSpec{.backend = "cpu", .kernel = "vector.add"}});
  EXPECT_FALSE(batcher->run_inline(job->request));
  ASSERT_TRUE(batcher->submit(job->request).ok());
  ASSERT_TRUE(done.wait_for(1));
  ASSERT_FALSE(job->request.status.ok()) << "the fault was injected into the batch";
  faults->clear();
  auto next = make_job(kernel(*ex, "vector.add"), DType::f32, 8, 2, done);
  EXPECT_TRUE(batcher->run_inline(next->request));
  EXPECT_TRUE(next->request.status.ok());
}

}  // namespace
}  // namespace gpubridge::compute

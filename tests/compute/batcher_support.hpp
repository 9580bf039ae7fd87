#pragma once
// Helpers for the dynamic batcher tests: completion counting without sleeps, caller-owned
// requests with their data, and the batched-vs-unbatched equivalence check run on every backend.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpubridge/compute/batcher.hpp"
#include "test_support.hpp"

namespace gpubridge::testing {

using namespace gpubridge::compute;  // NOLINT: test-only convenience

// Counts on_done calls; tests wait on it with a generous timeout (liveness only).
class Completions {
 public:
  void arrive() {
    std::lock_guard lock(mu_);
    ++count_;
    cv_.notify_all();
  }
  // True once at least `n` completions arrived; false after `timeout`.
  bool wait_for(std::size_t n, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_ >= n; });
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::size_t count_ = 0;
};

// One caller-owned request with its input and output storage (doubles hold either dtype's bytes).
struct Job {
  std::vector<std::vector<double>> inputs;  // raw storage, reinterpreted per dtype
  std::vector<double> output;
  BatchRequest request;
  int on_done_calls = 0;
  Completions* completions = nullptr;
};

inline void job_done(BatchRequest& r) {
  auto* job = static_cast<Job*>(r.user);
  ++job->on_done_calls;
  job->completions->arrive();
}

// A job for `def` with `n` elements per input of `dtype`, filled from `seed`; output prefilled
// with a sentinel (42) so that tests can tell it was left untouched.
inline std::unique_ptr<Job> make_job(const KernelDef& def, DType dtype, std::size_t n, unsigned seed,
                                     Completions& completions, double scalar = 0.75) {
  auto job = std::make_unique<Job>();
  job->completions = &completions;
  const std::size_t out = KernelCatalog::output_count(def, n);
  job->output.assign(out, 0.0);
  if (dtype == DType::f32) {
    auto* f = reinterpret_cast<float*>(job->output.data());
    for (std::size_t i = 0; i < out; ++i) f[i] = 42.f;
  } else {
    for (auto& v : job->output) v = 42.0;
  }
  for (std::size_t k = 0; k < def.signature.inputs.size(); ++k) {
    job->inputs.emplace_back(n);
    if (dtype == DType::f32) {
      auto vals = random_f32(n, seed * 7 + static_cast<unsigned>(k));
      std::memcpy(job->inputs.back().data(), vals.data(), n * sizeof(float));
    } else {
      job->inputs.back() = random_f64(n, seed * 7 + static_cast<unsigned>(k));
    }
    job->request.inputs[k] = TensorView(dtype, job->inputs.back().data(), n);
  }
  for (std::size_t k = 0; k < def.signature.scalars.size(); ++k) job->request.scalars[k] = scalar + 0.25 * k;
  job->request.output = job->output.data();
  job->request.output_capacity = out;
  job->request.on_done = job_done;
  job->request.user = job.get();
  return job;
}

inline double output_at(const Job& job, DType dtype, std::size_t i) {
  return dtype == DType::f32 ? reinterpret_cast<const float*>(job.output.data())[i] : job.output[i];
}

inline KernelCall call_of(const KernelDef& def, DType dtype, const Job& job) {
  KernelCall call{def.id, dtype, {}, {}};
  for (std::size_t k = 0; k < def.signature.inputs.size(); ++k) call.inputs.push_back(job.request.inputs[k]);
  for (std::size_t k = 0; k < def.signature.scalars.size(); ++k) call.scalars.push_back(job.request.scalars[k]);
  return call;
}

inline CallOptions only_on(BackendChoice b) { return {.backend = b, .device_id = {}, .allow_fallback = false}; }

// Every built-in kernel, f32 and f64, segments of varied lengths in one batch on `backend`:
// each request's output matches Executor::run of the same request on the same backend.
inline void expect_batched_matches_unbatched(Executor& ex, BackendChoice backend, BackendKind kind) {
  const std::vector<std::size_t> lengths{1, 3, 256, 1000, 257, 4099, 1, 31, 65536, 255, 2};
  for (const std::string& id : ex.catalog().ids()) {
    const KernelDef& def = **ex.catalog().lookup(id);
    if (def.signature.output == OutputShape::computed) continue;  // not batchable (matrix_kernels_test)
    for (DType dtype : {DType::f32, DType::f64}) {
      SCOPED_TRACE(id + " " + std::string(to_string(dtype)));
      BatchPolicy policy;
      policy.max_batch = lengths.size();  // the batch closes by size: one launch for all segments
      policy.max_delay = std::chrono::seconds(10);
      auto batcher = DynamicBatcher::create(ex, id, dtype, policy, only_on(backend));
      ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
      EXPECT_EQ((*batcher)->device().backend, kind);
      Completions done;
      std::vector<std::unique_ptr<Job>> jobs;
      for (std::size_t s = 0; s < lengths.size(); ++s) {
        jobs.push_back(make_job(def, dtype, lengths[s], static_cast<unsigned>(s + 1), done, 0.5 + 0.125 * s));
      }
      for (auto& j : jobs) ASSERT_TRUE((*batcher)->submit(j->request).ok());
      ASSERT_TRUE(done.wait_for(jobs.size())) << "batch did not complete";
      const double eps = dtype == DType::f32 ? 1.2e-7 : 2.3e-16;
      for (std::size_t s = 0; s < jobs.size(); ++s) {
        const Job& j = *jobs[s];
        const std::size_t n = lengths[s];
        SCOPED_TRACE("segment " + std::to_string(s) + " n=" + std::to_string(n));
        ASSERT_TRUE(j.request.status.ok()) << j.request.status.error().to_string();
        EXPECT_EQ(j.on_done_calls, 1);
        EXPECT_EQ(j.request.report.batch_size, lengths.size());
        EXPECT_EQ(j.request.report.backend, kind);
        EXPECT_EQ(j.request.report.fallback, FallbackReason::none);
        auto ref = ex.run(call_of(def, dtype, j), only_on(backend));
        ASSERT_TRUE(ref.ok()) << ref.error().to_string();
        const Tensor& want = ref->outputs.at(0);
        const double tol = def.signature.output == OutputShape::scalar ? 8 * eps * static_cast<double>(n) : 8 * eps * 2;
        ASSERT_EQ(want.count(), KernelCatalog::output_count(def, n));
        for (std::size_t i = 0; i < want.count(); ++i) {
          ASSERT_NEAR(output_at(j, dtype, i), want.at(i), tol) << "element " << i;
        }
      }
      EXPECT_EQ((*batcher)->stats().batches, 1u);
    }
  }
}

// vector.normalize over segments where one is all zeros: that one fails alone.
inline void expect_zero_segment_fails_alone(Executor& ex, BackendChoice backend) {
  const KernelDef& def = **ex.catalog().lookup("vector.normalize");
  BatchPolicy policy;
  policy.max_batch = 5;
  policy.max_delay = std::chrono::seconds(10);
  auto batcher = DynamicBatcher::create(ex, "vector.normalize", DType::f32, policy, only_on(backend));
  ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
  Completions done;
  std::vector<std::unique_ptr<Job>> jobs;
  for (unsigned s = 0; s < 5; ++s) jobs.push_back(make_job(def, DType::f32, 300 + s, s + 1, done));
  auto* zero = reinterpret_cast<float*>(jobs[2]->inputs[0].data());
  for (std::size_t i = 0; i < 302; ++i) zero[i] = 0.f;
  for (auto& j : jobs) ASSERT_TRUE((*batcher)->submit(j->request).ok());
  ASSERT_TRUE(done.wait_for(5));
  for (std::size_t s = 0; s < 5; ++s) {
    const BatchRequest& r = jobs[s]->request;
    EXPECT_EQ(r.report.batch_size, 5u);
    if (s == 2) {
      ASSERT_FALSE(r.status.ok());
      EXPECT_EQ(r.status.error().code(), ErrorCode::invalid_argument);
      EXPECT_NE(r.status.error().message().find("zero L2 norm"), std::string::npos) << r.status.error().message();
      continue;
    }
    ASSERT_TRUE(r.status.ok()) << r.status.error().to_string();
    double ss = 0;
    for (std::size_t i = 0; i < 300 + s; ++i) ss += output_at(*jobs[s], DType::f32, i) * output_at(*jobs[s], DType::f32, i);
    EXPECT_NEAR(ss, 1.0, 1e-5) << "segment " << s << " is normalized";
  }
  const BatcherStats st = (*batcher)->stats();
  EXPECT_EQ(st.completed, 4u);
  EXPECT_EQ(st.failed, 1u);
}

}  // namespace gpubridge::testing

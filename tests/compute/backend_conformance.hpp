#pragma once
// Conformance checks shared by the OpenCL and CUDA backend tests: every built-in kernel against
// the CPU implementation, pool reuse, concurrency and error paths on one backend.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "test_support.hpp"

namespace gpubridge::testing {

using namespace gpubridge::compute;  // NOLINT: test-only convenience

inline CallOptions strictly_on(BackendChoice b) { return {.backend = b, .device_id = {}, .allow_fallback = false}; }

inline void expect_all_kernels_match_cpu(Executor& ex, BackendChoice backend) {
  for (const std::string& id : ex.catalog().ids()) {
    const KernelDef& def = **ex.catalog().lookup(id);
    // Kernels with their own shapes are checked shape by shape in matrix_kernels_test.
    if (def.signature.output == OutputShape::computed) continue;
    for (DType dtype : {DType::f32, DType::f64}) {
      for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{255}, std::size_t{257}, std::size_t{4099},
                            std::size_t{300001}}) {
        SCOPED_TRACE(id + " " + std::string(to_string(dtype)) + " n=" + std::to_string(n));
        std::vector<float> f[2];
        std::vector<double> d[2];
        KernelCall call{id, dtype, {}, std::vector<double>(def.signature.scalars.size(), 0.75)};
        for (std::size_t k = 0; k < def.signature.inputs.size(); ++k) {
          if (dtype == DType::f32) {
            f[k] = random_f32(n, static_cast<unsigned>(n + k));
            call.inputs.emplace_back(f[k]);
          } else {
            d[k] = random_f64(n, static_cast<unsigned>(n + k));
            call.inputs.emplace_back(d[k]);
          }
        }
        auto ref = ex.run(call, strictly_on(BackendChoice::cpu));
        auto got = ex.run(call, strictly_on(backend));
        ASSERT_TRUE(ref.ok()) << ref.error().to_string();
        ASSERT_TRUE(got.ok()) << got.error().to_string();
        EXPECT_EQ(to_string(got->report.backend), to_string(backend));
        EXPECT_EQ(got->report.fallback, FallbackReason::none);
        const Tensor& a = got->outputs.at(0);
        const Tensor& b = ref->outputs.at(0);
        ASSERT_EQ(a.count(), b.count());
        ASSERT_EQ(a.dtype(), dtype);
        const double eps = dtype == DType::f32 ? 1.2e-7 : 2.3e-16;
        const double tol = def.signature.output == OutputShape::scalar ? 8 * eps * static_cast<double>(n) : 8 * eps * 2;
        for (std::size_t i = 0; i < a.count(); ++i) ASSERT_NEAR(a.at(i), b.at(i), tol) << "element " << i;
      }
    }
  }
}

// Checks the pool of the device the backend picks (the first GPU of that backend, if any).
inline void expect_pool_reuse(Executor& ex, BackendChoice backend) {
  auto x = random_f32(100000, 1);
  auto y = random_f32(100000, 2);
  std::string device_id;
  for (int i = 0; i < 20; ++i) {
    auto r = ex.run({"vector.add", DType::f32, {x, y}, {}}, strictly_on(backend));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    device_id = r->report.device_id;
  }
  for (const auto& d : ex.stats().devices) {
    if (d.device_id != device_id) continue;
    EXPECT_GE(d.calls, 20u);
    EXPECT_GT(d.device_pool.hits, d.device_pool.misses) << "warm calls must reuse pooled memory";
    EXPECT_GT(d.device_pool.peak_bytes_in_use, 0u);
    EXPECT_EQ(d.device_pool.bytes_in_use, 0u) << "every call returned its memory";
    return;
  }
  ADD_FAILURE() << "device " << device_id << " not in stats";
}

inline void expect_concurrent_calls_complete(Executor& ex, BackendChoice backend) {
  constexpr int kThreads = 4, kPerThread = 50;
  auto x = random_f64(10007, 3);
  double expected = 0;
  for (double v : x) expected += v;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<std::future<Result<KernelResult>>> futures;
      for (int i = 0; i < kPerThread; ++i) futures.push_back(ex.submit({"reduce.sum", DType::f64, {x}, {}}, strictly_on(backend)));
      for (auto& f : futures) {
        auto r = f.get();
        if (r.ok() && std::abs(r->outputs[0].at(0) - expected) < 1e-9) good.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), kThreads * kPerThread);
}

inline void expect_zero_norm_is_error(Executor& ex, BackendChoice backend) {
  std::vector<float> zeros(1000, 0.f);
  auto r = ex.run({"vector.normalize", DType::f32, {zeros}, {}}, strictly_on(backend));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("zero L2 norm"), std::string::npos);
}

}  // namespace gpubridge::testing

// The matrix kernels (matrix.multiply, matrix.transpose, matrix.inverse) on every backend against
// straightforward triple-loop references, their shape errors, singular matrices, a real-world
// ill-conditioned inverse (pores_1), and what is not supported (batches, resident buffers).
// Built twice: matrix_kernels_test (CPU + OpenCL, label integration) and matrix_kernels_cuda_test
// (GB_MATRIX_TEST_CUDA, label gpu: skipped with the reason when there is no CUDA device).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "compute/backend_conformance.hpp"
#include "gpubridge/compute/batcher.hpp"
#include "gpubridge/compute/device_buffer.hpp"
#if GPUBRIDGE_HAVE_CUDA
#include "compute/cuda/cublas_library.hpp"
#endif

namespace gpubridge::compute {
namespace {

using testing::strictly_on;

struct Shape3 {
  std::size_t m, k, n;
};

std::vector<double> values(std::size_t count, unsigned seed, DType dtype) {
  std::vector<double> v = testing::random_f64(count, seed);
  if (dtype == DType::f32) {
    for (double& x : v) x = static_cast<float>(x);
  }
  return v;
}

// Keeps typed copies alive for the views of a call.
struct CallData {
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<double>> f64;
  KernelCall call;
  CallData(std::string kernel, DType dtype, const std::vector<std::vector<double>>& inputs, std::vector<double> scalars) {
    call = {std::move(kernel), dtype, {}, std::move(scalars)};
    for (const auto& in : inputs) {
      if (dtype == DType::f32) {
        f32.emplace_back(in.begin(), in.end());
      } else {
        f64.push_back(in);
      }
    }
    for (const auto& v : f32) call.inputs.emplace_back(v);
    for (const auto& v : f64) call.inputs.emplace_back(v);
  }
};

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> out(t.count());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = t.at(i);
  return out;
}

std::vector<double> reference_multiply(const std::vector<double>& a, const std::vector<double>& b, Shape3 s) {
  std::vector<double> c(s.m * s.n);
  for (std::size_t i = 0; i < s.m; ++i) {
    for (std::size_t j = 0; j < s.n; ++j) {
      long double acc = 0;
      for (std::size_t q = 0; q < s.k; ++q) acc += static_cast<long double>(a[i * s.k + q]) * b[q * s.n + j];
      c[i * s.n + j] = static_cast<double>(acc);
    }
  }
  return c;
}

// max_ij |(A X - I)_ij| in long double.
double identity_residual(const std::vector<double>& a, const std::vector<double>& x, std::size_t n) {
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      long double acc = 0;
      for (std::size_t q = 0; q < n; ++q) acc += static_cast<long double>(a[i * n + q]) * x[q * n + j];
      worst = std::max(worst, static_cast<double>(std::abs(acc - (i == j ? 1.0L : 0.0L))));
    }
  }
  return worst;
}

// Strictly diagonally dominant (margin 1): well conditioned.
std::vector<double> dominant_matrix(std::size_t n, unsigned seed) {
  std::vector<double> a = testing::random_f64(n * n, seed);
  for (std::size_t i = 0; i < n; ++i) {
    double off = 0;
    for (std::size_t j = 0; j < n; ++j) off += j == i ? 0 : std::abs(a[i * n + j]);
    a[i * n + i] = off + 1;
  }
  return a;
}

void expect_multiply_matches_reference(Executor& ex, BackendChoice backend) {
  const std::vector<Shape3> shapes{{1, 1, 1}, {1, 7, 5}, {5, 7, 1}, {3, 5, 2}, {17, 33, 19}, {64, 64, 64}, {65, 17, 129}};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Shape3& s : shapes) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " " + std::to_string(s.m) + "x" + std::to_string(s.k) + " * " +
                   std::to_string(s.k) + "x" + std::to_string(s.n));
      const auto a = values(s.m * s.k, 11, dtype), b = values(s.k * s.n, 12, dtype);
      CallData d("matrix.multiply", dtype, {a, b}, {double(s.m), double(s.k), double(s.n)});
      auto r = ex.run(d.call, strictly_on(backend));
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      EXPECT_EQ(r->report.fallback, FallbackReason::none);
      const auto got = to_doubles(r->outputs.at(0));
      const auto want = reference_multiply(a, b, s);
      ASSERT_EQ(got.size(), want.size());
      const double eps = dtype == DType::f32 ? FLT_EPSILON : DBL_EPSILON;
      const double tol = 4 * eps * static_cast<double>(s.k + 2);
      for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "element " << i;
    }
  }
}

void expect_transpose_is_exact(Executor& ex, BackendChoice backend) {
  const std::vector<std::pair<std::size_t, std::size_t>> shapes{{1, 1}, {1, 13}, {13, 1}, {17, 33}, {64, 64}, {100, 3}};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const auto& [m, n] : shapes) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " " + std::to_string(m) + "x" + std::to_string(n));
      const auto a = values(m * n, 21, dtype);
      CallData d("matrix.transpose", dtype, {a}, {double(m), double(n)});
      auto r = ex.run(d.call, strictly_on(backend));
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      const auto got = to_doubles(r->outputs.at(0));
      ASSERT_EQ(got.size(), m * n);
      for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) ASSERT_EQ(got[j * m + i], a[i * n + j]) << i << "," << j;
      }
    }
  }
}

void expect_inverse_of_dominant_matrices(Executor& ex, BackendChoice backend) {
  for (std::size_t n : {1, 2, 3, 17, 64, 129}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const auto a = dominant_matrix(n, static_cast<unsigned>(n));
    CallData d("matrix.inverse", DType::f64, {a}, {double(n)});
    auto r = ex.run(d.call, strictly_on(backend));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_LE(identity_residual(a, to_doubles(r->outputs.at(0)), n), 1e-12);
  }
}

void expect_singular_matrices_rejected(Executor& ex, BackendChoice backend) {
  struct Case {
    std::vector<double> a;
    std::size_t n;
    std::size_t column;
  };
  const double tiny = std::ldexp(1.0, -52);  // 1 + 2^-52: the pivot left is below n * eps * max|A|
  const std::vector<Case> cases{
      {{0, 0, 0, 0}, 2, 0},                           // zero matrix
      {{1, 2, 3, 4, 5, 6, 5, 7, 9}, 3, 2},            // row 2 = row 0 + row 1
      {{2, 4, 1, 2}, 2, 1},                           // proportional rows
      {{1, 1, 1, 1 + tiny}, 2, 1},                    // near-singular to working precision
  };
  for (const Case& c : cases) {
    CallData d("matrix.inverse", DType::f64, {c.a}, {double(c.n)});
    auto r = ex.run(d.call, strictly_on(backend));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument) << r.error().to_string();
    EXPECT_NE(r.error().message().find("singular"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("pivot column " + std::to_string(c.column)), std::string::npos)
        << r.error().message();
  }
  // Just above the threshold: invertible (if badly conditioned).
  const std::vector<double> barely{1, 1, 1, 1 + std::ldexp(1.0, -49)};
  CallData d("matrix.inverse", DType::f64, {barely}, {2.0});
  auto r = ex.run(d.call, strictly_on(backend));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  const auto x = to_doubles(r->outputs.at(0));
  EXPECT_NEAR(x[3], std::ldexp(1.0, 49), std::ldexp(1.0, 49) * 1e-3);  // (A^-1)_11 = 1 / 2^-49
}

// A tiny Matrix Market reader: "%%MatrixMarket matrix coordinate real general", 1-based entries.
std::vector<double> read_matrix_market(const std::string& path, std::size_t& n) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("%%MatrixMarket matrix coordinate real general", 0), 0u) << line;
  while (std::getline(in, line) && !line.empty() && line[0] == '%') {
  }
  std::istringstream header(line);
  std::size_t rows = 0, cols = 0, entries = 0;
  header >> rows >> cols >> entries;
  EXPECT_EQ(rows, cols);
  n = rows;
  std::vector<double> a(rows * cols, 0.0);
  for (std::size_t e = 0; e < entries; ++e) {
    std::size_t i = 0, j = 0;
    double v = 0;
    in >> i >> j >> v;
    EXPECT_TRUE(i >= 1 && i <= rows && j >= 1 && j <= cols) << "entry " << e;
    a[(i - 1) * cols + (j - 1)] = v;
  }
  EXPECT_FALSE(in.fail()) << path << " ended early";
  return a;
}

void expect_pores_1_inverse(Executor& ex, BackendChoice backend) {
  std::size_t n = 0;
  const auto a = read_matrix_market(testing::shared_data_dir(GB_SHARED_DATA_DIR) + "/matrices/pores_1.mtx", n);
  ASSERT_EQ(n, 30u);
  CallData d("matrix.inverse", DType::f64, {a}, {double(n)});
  auto r = ex.run(d.call, strictly_on(backend));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_LE(identity_residual(a, to_doubles(r->outputs.at(0)), n), 1e-6);
}

#if !GB_MATRIX_TEST_CUDA

class MatrixShapes : public ::testing::Test {
 protected:
  std::unique_ptr<Executor> ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  Error shape_error(const std::string& kernel, DType dtype, std::vector<std::vector<double>> inputs,
                    std::vector<double> scalars) {
    CallData d(kernel, dtype, inputs, std::move(scalars));
    auto r = ex->run(d.call);
    EXPECT_FALSE(r.ok()) << kernel;
    return r.ok() ? Error() : r.error();
  }
};

TEST_F(MatrixShapes, ValidateGivesTheComputedOutputLength) {
  std::vector<float> a(15), b(10), t(6);
  auto mm = ex->catalog().validate({"matrix.multiply", DType::f32, {a, b}, {3, 5, 2}});
  ASSERT_TRUE(mm.ok()) << mm.error().to_string();
  EXPECT_EQ(mm->n, 15u);
  EXPECT_EQ(mm->output_count, 6u);
  auto tr = ex->catalog().validate({"matrix.transpose", DType::f32, {t}, {2, 3}});
  ASSERT_TRUE(tr.ok());
  EXPECT_EQ(tr->output_count, 6u);
  std::vector<float> x(4), y(4);
  auto add = ex->catalog().validate({"vector.add", DType::f32, {x, y}, {}});
  ASSERT_TRUE(add.ok());
  EXPECT_EQ(add->n, 4u);
  EXPECT_EQ(add->output_count, 4u);
}

TEST_F(MatrixShapes, WrongCountsNameTheMismatch) {
  Error e = shape_error("matrix.multiply", DType::f32, {std::vector<double>(12), std::vector<double>(10)}, {3, 5, 2});
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  EXPECT_EQ(e.message(), "matrix.multiply: a has 12 elements, m*k = 3*5 = 15");
  e = shape_error("matrix.multiply", DType::f64, {std::vector<double>(15), std::vector<double>(9)}, {3, 5, 2});
  EXPECT_EQ(e.message(), "matrix.multiply: b has 9 elements, k*n = 5*2 = 10");
  e = shape_error("matrix.transpose", DType::f32, {std::vector<double>(7)}, {2, 3});
  EXPECT_EQ(e.message(), "matrix.transpose: a has 7 elements, m*n = 2*3 = 6");
  e = shape_error("matrix.inverse", DType::f64, {std::vector<double>(6)}, {3});
  EXPECT_EQ(e.message(), "matrix.inverse: a has 6 elements, n*n = 3*3 = 9");
  // Element-wise kernels still need equal lengths.
  e = shape_error("vector.add", DType::f32, {std::vector<double>(3), std::vector<double>(4)}, {});
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
}

TEST_F(MatrixShapes, BadDimensionScalarsAreRejected) {
  const std::vector<double> one(1, 1.0);
  struct Bad {
    double value;
    std::string why;
  };
  for (const Bad& bad : {Bad{0, "must be at least 1"}, Bad{-2, "must be at least 1"}, Bad{1.5, "not a whole number"},
                         Bad{NAN, "not a finite number"}, Bad{INFINITY, "not a finite number"}}) {
    Error e = shape_error("matrix.transpose", DType::f32, {one}, {bad.value, 1});
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_NE(e.message().find("matrix.transpose: dimension m = "), std::string::npos) << e.message();
    EXPECT_NE(e.message().find(bad.why), std::string::npos) << e.message();
  }
  Error e = shape_error("matrix.multiply", DType::f32, {one, one}, {1, 1, -1});
  EXPECT_NE(e.message().find("dimension n = -1 must be at least 1"), std::string::npos) << e.message();
  e = shape_error("matrix.multiply", DType::f32, {one, one}, {1, 1});
  EXPECT_NE(e.message().find("takes 3 scalar(s), got 2"), std::string::npos) << e.message();
}

TEST_F(MatrixShapes, InverseIsDoublePrecisionOnly) {
  Error e = shape_error("matrix.inverse", DType::f32, {std::vector<double>(4, 1.0)}, {2});
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  EXPECT_NE(e.message().find("does not accept element type f32"), std::string::npos) << e.message();
}

TEST_F(MatrixShapes, NonFiniteEntriesOfTheInverseAreRejected) {
  Error e = shape_error("matrix.inverse", DType::f64, {{1, NAN, 0, 1}}, {2});
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  EXPECT_NE(e.message().find("not finite"), std::string::npos) << e.message();
}

TEST_F(MatrixShapes, NotBatchableNorResident) {
  auto batcher = DynamicBatcher::create(*ex, "matrix.multiply", DType::f32, {}, {});
  ASSERT_FALSE(batcher.ok());
  EXPECT_EQ(batcher.error().code(), ErrorCode::failed_precondition);
  EXPECT_NE(batcher.error().message().find("not batchable"), std::string::npos) << batcher.error().message();

  std::vector<double> a{1, 2, 3, 4};
  auto buffer = upload_now(*ex, TensorView(a), {.backend = BackendChoice::cpu});
  ASSERT_TRUE(buffer.ok()) << buffer.error().to_string();
  const std::vector<DeviceBuffer> inputs{*buffer};
  auto r = run_resident_now(*ex, "matrix.transpose", inputs, std::vector<double>{2, 2});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::failed_precondition);
  EXPECT_NE(r.error().message().find("not batchable"), std::string::npos) << r.error().message();
}

class CpuMatrixKernels : public ::testing::Test {
 protected:
  std::unique_ptr<Executor> ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
};
TEST_F(CpuMatrixKernels, MultiplyMatchesReference) { expect_multiply_matches_reference(*ex, BackendChoice::cpu); }
TEST_F(CpuMatrixKernels, TransposeIsExact) { expect_transpose_is_exact(*ex, BackendChoice::cpu); }
TEST_F(CpuMatrixKernels, InverseOfDominantMatrices) { expect_inverse_of_dominant_matrices(*ex, BackendChoice::cpu); }
TEST_F(CpuMatrixKernels, SingularMatricesRejected) { expect_singular_matrices_rejected(*ex, BackendChoice::cpu); }
TEST_F(CpuMatrixKernels, Pores1Inverse) { expect_pores_1_inverse(*ex, BackendChoice::cpu); }

class OpenClMatrixKernels : public ::testing::Test {
 protected:
  std::unique_ptr<Executor> ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
};
TEST_F(OpenClMatrixKernels, MultiplyMatchesReference) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  expect_multiply_matches_reference(*ex, BackendChoice::opencl);
}
TEST_F(OpenClMatrixKernels, TransposeIsExact) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  expect_transpose_is_exact(*ex, BackendChoice::opencl);
}
TEST_F(OpenClMatrixKernels, InverseOfDominantMatrices) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  expect_inverse_of_dominant_matrices(*ex, BackendChoice::opencl);
}
TEST_F(OpenClMatrixKernels, SingularMatricesRejected) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  expect_singular_matrices_rejected(*ex, BackendChoice::opencl);
}
TEST_F(OpenClMatrixKernels, Pores1Inverse) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  expect_pores_1_inverse(*ex, BackendChoice::opencl);
}

#if GPUBRIDGE_HAVE_CUDA
TEST(CublasLibrary, MissingLibraryIsReportedWithTheLoaderError) {
  auto lib = cuda::CublasLibrary::load("libgpubridge-no-such-cublas.so.0");
  EXPECT_FALSE(lib->available());
  EXPECT_NE(lib->unavailable_reason().find("dlopen(libgpubridge-no-such-cublas.so.0)"), std::string::npos)
      << lib->unavailable_reason();
  auto handle = lib->create_handle();
  ASSERT_FALSE(handle.ok());
  EXPECT_EQ(handle.error().code(), ErrorCode::failed_precondition);
}
#endif

#else  // GB_MATRIX_TEST_CUDA

class CudaMatrixKernels : public ::testing::Test {
 protected:
  std::unique_ptr<Executor> ex = testing::make_executor({.enable_cuda = true, .enable_opencl = false});
  bool cublas() const { return cuda::CublasLibrary::instance().available(); }
};
TEST_F(CudaMatrixKernels, MultiplyMatchesReferenceWithCublas) {
  GB_REQUIRE_BACKEND(ex, BackendKind::cuda);
  if (!cublas()) GB_SKIP_UNLESS_REQUIRED("cuda", cuda::CublasLibrary::instance().unavailable_reason());
  expect_multiply_matches_reference(*ex, BackendChoice::cuda);
}
// Without cuBLAS, matrix.multiply is missing on CUDA: strictly it fails with why, with fallback it
// runs on the CPU with reason kernel_missing. Never another GEMM on the GPU.
TEST_F(CudaMatrixKernels, MultiplyWithoutCublasIsReportedHonestly) {
  GB_REQUIRE_BACKEND(ex, BackendKind::cuda);
  std::vector<float> a(6, 1.f), b(6, 1.f);
  KernelCall call{"matrix.multiply", DType::f32, {a, b}, {2, 3, 2}};
  auto strict = ex->run(call, strictly_on(BackendChoice::cuda));
  auto fallback = ex->run(call, {.backend = BackendChoice::cuda, .device_id = {}, .allow_fallback = true});
  ASSERT_TRUE(fallback.ok()) << fallback.error().to_string();
  if (cublas()) {
    ASSERT_TRUE(strict.ok()) << strict.error().to_string();
    EXPECT_EQ(strict->report.backend, BackendKind::cuda);
    EXPECT_EQ(fallback->report.fallback, FallbackReason::none);
  } else {
    ASSERT_FALSE(strict.ok());
    EXPECT_NE(strict.error().to_string().find("cuBLAS"), std::string::npos) << strict.error().to_string();
    EXPECT_EQ(fallback->report.backend, BackendKind::cpu);
    EXPECT_EQ(fallback->report.fallback, FallbackReason::kernel_missing);
    EXPECT_NE(fallback->report.fallback_detail.find("cuBLAS"), std::string::npos) << fallback->report.fallback_detail;
  }
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(fallback->outputs.at(0).at(i), 3.0);
}
TEST_F(CudaMatrixKernels, TransposeIsExact) {
  GB_REQUIRE_BACKEND(ex, BackendKind::cuda);
  expect_transpose_is_exact(*ex, BackendChoice::cuda);
}
TEST_F(CudaMatrixKernels, InverseOfDominantMatrices) {
  GB_REQUIRE_BACKEND(ex, BackendKind::cuda);
  expect_inverse_of_dominant_matrices(*ex, BackendChoice::cuda);
}
TEST_F(CudaMatrixKernels, SingularMatricesRejected) {
  GB_REQUIRE_BACKEND(ex, BackendKind::cuda);
  expect_singular_matrices_rejected(*ex, BackendChoice::cuda);
}
TEST_F(CudaMatrixKernels, Pores1Inverse) {
  GB_REQUIRE_BACKEND(ex, BackendKind::cuda);
  expect_pores_1_inverse(*ex, BackendChoice::cuda);
}

#endif  // GB_MATRIX_TEST_CUDA

}  // namespace
}  // namespace gpubridge::compute

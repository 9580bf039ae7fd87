// The image kernels' GPU recipes (image.resize, image.gaussian_blur, image.sobel,
// image.correlate) on OpenCL against the CPU implementation, shape by shape: 1x1, 1xN, Nx1, odd
// sizes, 3 channels, small and large sigma, even-sized and 1x1 correlation kernels, on values in
// [0, 255). The GPU repeats the CPU's float arithmetic step for step, so they must agree within
// 1e-4. Also: `verify` passes for the image kernels on the CPU (against independent references)
// and on OpenCL.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "compute/backend_conformance.hpp"
#include "gpubridge/compute/verify.hpp"

namespace gpubridge::compute {
namespace {

using testing::strictly_on;

constexpr double kTolerance = 1e-4;

struct Shape {
  std::size_t height, width, channels;
  std::size_t count() const { return height * width * channels; }
  std::string name() const {
    return std::to_string(height) + "x" + std::to_string(width) + "x" + std::to_string(channels);
  }
};

const std::vector<Shape> kShapes{{1, 1, 1}, {1, 1, 3}, {1, 23, 1}, {19, 1, 3}, {2, 2, 1},
                                 {7, 5, 3}, {31, 45, 3}, {64, 48, 1}, {257, 129, 3}};

std::vector<float> pixels(std::size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(0.f, 255.f);
  std::vector<float> v(count);
  for (float& x : v) x = d(rng);
  return v;
}

class OpenClImageKernels : public ::testing::Test {
 protected:
  std::unique_ptr<Executor> ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true});

  // Runs the call on the CPU and on OpenCL and compares every value.
  void expect_opencl_matches_cpu(const KernelCall& call) {
    auto want = ex->run(call, strictly_on(BackendChoice::cpu));
    auto got = ex->run(call, strictly_on(BackendChoice::opencl));
    ASSERT_TRUE(want.ok()) << want.error().to_string();
    ASSERT_TRUE(got.ok()) << got.error().to_string();
    EXPECT_EQ(got->report.backend, BackendKind::opencl);
    EXPECT_EQ(got->report.fallback, FallbackReason::none);
    const Tensor& a = got->outputs.at(0);
    const Tensor& b = want->outputs.at(0);
    ASSERT_EQ(a.count(), b.count());
    for (std::size_t i = 0; i < a.count(); ++i) {
      ASSERT_FALSE(std::isnan(a.at(i))) << "value " << i;
      ASSERT_NEAR(a.at(i), b.at(i), kTolerance) << "value " << i;
    }
  }
};

TEST_F(OpenClImageKernels, ResizeMatchesCpu) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  for (const Shape& s : kShapes) {
    const auto image = pixels(s.count(), 1);
    const std::vector<std::pair<std::size_t, std::size_t>> outputs{
        {1, 1}, {s.height, s.width}, {2 * s.height + 1, 3 * s.width}, {s.height / 2 + 1, s.width / 3 + 1}, {5, 97}};
    for (const auto& [oh, ow] : outputs) {
      SCOPED_TRACE(s.name() + " -> " + std::to_string(oh) + "x" + std::to_string(ow));
      expect_opencl_matches_cpu({"image.resize", DType::f32, {TensorView(image)},
                                 {double(s.height), double(s.width), double(s.channels), double(oh), double(ow)}});
    }
  }
}

TEST_F(OpenClImageKernels, GaussianBlurMatchesCpu) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  for (const Shape& s : kShapes) {
    const auto image = pixels(s.count(), 2);
    // 0.3: a 3-tap kernel; 12: 97 taps, wider than most of these images (repeated reflection).
    for (double sigma : {0.3, 1.0, 1.5, 3.0, 12.0}) {
      SCOPED_TRACE(s.name() + " sigma " + std::to_string(sigma));
      expect_opencl_matches_cpu({"image.gaussian_blur", DType::f32, {TensorView(image)},
                                 {double(s.height), double(s.width), double(s.channels), sigma}});
    }
  }
}

TEST_F(OpenClImageKernels, SobelMatchesCpuForEveryComponent) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  for (const Shape& s : kShapes) {
    const auto image = pixels(s.count(), 3);
    for (double component : {0.0, 1.0, 2.0}) {
      SCOPED_TRACE(s.name() + " component " + std::to_string(component));
      expect_opencl_matches_cpu({"image.sobel", DType::f32, {TensorView(image)},
                                 {double(s.height), double(s.width), double(s.channels), component}});
    }
  }
}

TEST_F(OpenClImageKernels, CorrelateMatchesCpuForOddEvenAndUnitKernels) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  const std::vector<std::pair<std::size_t, std::size_t>> kernels{{1, 1}, {2, 2}, {3, 5}, {4, 6}, {7, 1}, {1, 8}, {9, 9}};
  for (const Shape& s : kShapes) {
    const auto image = pixels(s.count(), 4);
    for (const auto& [rows, cols] : kernels) {
      SCOPED_TRACE(s.name() + " kernel " + std::to_string(rows) + "x" + std::to_string(cols));
      const auto kernel = testing::random_f32(rows * cols, static_cast<unsigned>(rows * 16 + cols));
      expect_opencl_matches_cpu({"image.correlate", DType::f32, {TensorView(image), TensorView(kernel)},
                                 {double(s.height), double(s.width), double(s.channels), double(rows), double(cols)}});
    }
  }
}

// A 1x1 kernel [k] scales the image: exact on both backends.
TEST_F(OpenClImageKernels, UnitCorrelationKernelScalesExactly) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  const auto image = pixels(5 * 4 * 3, 5);
  const std::vector<float> kernel{0.5f};
  auto r = ex->run({"image.correlate", DType::f32, {TensorView(image), TensorView(kernel)}, {5, 4, 3, 1, 1}},
                   strictly_on(BackendChoice::opencl));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  for (std::size_t i = 0; i < image.size(); ++i) EXPECT_EQ(r->outputs.at(0).at(i), 0.5 * image[i]) << i;
}

// Bad scalars are rejected before anything runs, on a GPU as on the CPU.
TEST_F(OpenClImageKernels, BadParametersAreRejectedBeforeLaunch) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  const auto image = pixels(12, 6);
  auto blur = ex->run({"image.gaussian_blur", DType::f32, {TensorView(image)}, {2, 2, 3, 0}},
                      strictly_on(BackendChoice::opencl));
  ASSERT_FALSE(blur.ok());
  EXPECT_EQ(blur.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(blur.error().message().find("sigma"), std::string::npos) << blur.error().message();
  auto sobel = ex->run({"image.sobel", DType::f32, {TensorView(image)}, {2, 2, 3, 3}}, strictly_on(BackendChoice::opencl));
  ASSERT_FALSE(sobel.ok());
  EXPECT_NE(sobel.error().message().find("component"), std::string::npos) << sobel.error().message();
}

// Verify runs every example size on every device of the backend (a GPU machine has two OpenCL
// devices: PoCL and the GPU's driver).
void expect_image_rows_pass(Executor& ex, BackendKind backend) {
  std::size_t devices = 0;
  for (const Device& d : ex.devices()) devices += d.backend == backend ? 1 : 0;
  ASSERT_GT(devices, 0u);
  for (const std::string kernel : {"image.resize", "image.gaussian_blur", "image.sobel", "image.correlate"}) {
    auto report = verify_catalog(ex, {.backend = backend, .kernel = kernel});
    ASSERT_TRUE(report.ok()) << report.error().to_string();
    EXPECT_EQ(report->failed(), 0u) << kernel;
    EXPECT_EQ(report->skipped(), 0u) << kernel;
    EXPECT_EQ(report->passed(), 5u * devices) << kernel << ": one row per example size and device";
    for (const VerifyRow& row : report->rows) {
      EXPECT_EQ(row.status, VerifyStatus::pass) << kernel << " size " << row.n << ": " << row.reason;
    }
  }
}

TEST(ImageKernelsVerify, CpuMatchesIndependentReferences) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  expect_image_rows_pass(*ex, BackendKind::cpu);
}

TEST_F(OpenClImageKernels, VerifyPasses) {
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  expect_image_rows_pass(*ex, BackendKind::opencl);
}

}  // namespace
}  // namespace gpubridge::compute

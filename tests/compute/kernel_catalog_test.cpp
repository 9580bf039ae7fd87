// Boundary validation of kernel calls: every malformed call is a typed error, nothing runs.
#include <gtest/gtest.h>

#include "gpubridge/compute/kernel_catalog.hpp"
#include "test_support.hpp"

namespace gpubridge::compute {
namespace {

class KernelCatalogTest : public ::testing::Test {
 protected:
  KernelCatalog catalog = KernelCatalog::with_builtin_kernels();
  std::vector<float> a = std::vector<float>(10, 1.f);
  std::vector<float> b = std::vector<float>(10, 2.f);
};

TEST_F(KernelCatalogTest, BuiltinKernelsArePresentWithStableIds) {
  EXPECT_EQ(catalog.ids(), (std::vector<std::string>{"graph.bfs", "graph.pagerank", "graph.sssp", "image.correlate",
                                                     "image.gaussian_blur", "image.resize", "image.sobel",
                                                     "matrix.inverse", "matrix.multiply", "matrix.transpose",
                                                     "reduce.sum", "vector.add", "vector.axpy", "vector.dot",
                                                     "vector.normalize"}));
  auto add = catalog.lookup("vector.add");
  ASSERT_TRUE(add.ok());
  EXPECT_EQ((*add)->signature.inputs.size(), 2u);
  EXPECT_NE((*add)->gpu, nullptr);
}

TEST_F(KernelCatalogTest, ImageAndGraphKernelsCheckTheirShapes) {
  std::vector<float> img(12, 1.f);
  EXPECT_TRUE(catalog.validate({"image.gaussian_blur", DType::f32, {img}, {3, 4, 1, 1.5}}).ok());
  auto bad = catalog.validate({"image.gaussian_blur", DType::f32, {img}, {3, 5, 1, 1.5}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("height*width*channels"), std::string::npos) << bad.error().to_string();
  EXPECT_FALSE(catalog.validate({"image.gaussian_blur", DType::f32, {img}, {3, 4, 1, 0}}).ok());
  EXPECT_FALSE(catalog.validate({"image.sobel", DType::f32, {img}, {2, 3, 2, 2}}).ok()) << "2 channels";
  auto resized = catalog.validate({"image.resize", DType::f32, {img}, {3, 4, 1, 6, 8}});
  ASSERT_TRUE(resized.ok());
  EXPECT_EQ(resized->output_count, 48u);
  std::vector<double> offsets{0, 1, 2}, neighbors{1, 0}, weights{1, 1};
  auto bfs = catalog.validate({"graph.bfs", DType::f64, {offsets, neighbors}, {1}});
  ASSERT_TRUE(bfs.ok());
  EXPECT_EQ(bfs->output_count, 2u);
  EXPECT_FALSE(catalog.validate({"graph.bfs", DType::f64, {offsets, neighbors}, {2}}).ok()) << "source out of range";
  EXPECT_FALSE(catalog.validate({"graph.sssp", DType::f64, {offsets, neighbors, std::vector<double>{1}}, {0}}).ok());
}

TEST_F(KernelCatalogTest, UnknownKernelIsNotFoundAndListsKnownIds) {
  auto r = catalog.validate({"vector.sub", DType::f32, {a, b}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(r.error().message().find("vector.sub"), std::string::npos);
  EXPECT_NE(r.error().message().find("vector.add"), std::string::npos);
}

TEST_F(KernelCatalogTest, InputOfWrongElementTypeIsRejected) {
  std::vector<double> d(10, 1.0);
  auto r = catalog.validate({"vector.add", DType::f32, {a, d}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("f64"), std::string::npos);
}

TEST_F(KernelCatalogTest, MismatchedLengthsAreRejected) {
  std::vector<float> short_b(9, 1.f);
  auto r = catalog.validate({"vector.add", DType::f32, {a, short_b}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("lengths differ"), std::string::npos);
}

TEST_F(KernelCatalogTest, EmptyInputIsRejected) {
  std::vector<float> empty;
  auto r = catalog.validate({"reduce.sum", DType::f32, {empty}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("empty"), std::string::npos);
}

TEST_F(KernelCatalogTest, OversizedInputIsOutOfRangeWithoutTouchingData) {
  // The data pointer is never read: validation happens before any work.
  const float fake = 0;
  TensorView huge(DType::f32, &fake, kMaxElements + 1);
  auto r = catalog.validate({"reduce.sum", DType::f32, {huge}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::out_of_range);
}

TEST_F(KernelCatalogTest, WrongArityAndScalarsAreRejected) {
  EXPECT_EQ(catalog.validate({"vector.add", DType::f32, {a}, {}}).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(catalog.validate({"vector.axpy", DType::f32, {a, b}, {}}).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(catalog.validate({"vector.add", DType::f32, {a, b}, {2.0}}).error().code(), ErrorCode::invalid_argument);
  EXPECT_TRUE(catalog.validate({"vector.axpy", DType::f32, {a, b}, {2.0}}).ok());
}

TEST_F(KernelCatalogTest, NullDataIsRejected) {
  TensorView null_view(DType::f32, nullptr, 10);
  auto r = catalog.validate({"vector.add", DType::f32, {a, null_view}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
}

TEST_F(KernelCatalogTest, ElementTypeTheKernelDoesNotAcceptIsRejected) {
  KernelCatalog c;
  ASSERT_TRUE(c.add({"test.f64only", "", {{"x"}, {}, OutputShape::scalar, {DType::f64}},
                     [](const CpuKernelArgs&) { return Status{}; }})
                  .ok());
  auto r = c.validate({"test.f64only", DType::f32, {a}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("does not accept element type f32"), std::string::npos);
}

TEST_F(KernelCatalogTest, RegistrationRejectsBadDefinitions) {
  KernelCatalog c;
  auto cpu = [](const CpuKernelArgs&) { return Status{}; };
  KernelSignature sig{{"x"}, {}, OutputShape::scalar, {DType::f32}};
  EXPECT_EQ(c.add({"Bad Id", "", sig, cpu}).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(c.add({"test.nocpu", "", sig, nullptr}).error().code(), ErrorCode::invalid_argument);
  ASSERT_TRUE(c.add({"test.ok", "", sig, cpu}).ok());
  EXPECT_EQ(c.add({"test.ok", "", sig, cpu}).error().code(), ErrorCode::already_exists);
}

TEST_F(KernelCatalogTest, ComputedShapesNeedAShapeFunctionAndOnlyThey) {
  KernelCatalog c;
  auto cpu = [](const CpuKernelArgs&) { return Status{}; };
  auto shape = [](std::span<const std::size_t> counts, std::span<const double>) -> Result<std::size_t> {
    return counts[0] + counts[1];
  };
  EXPECT_EQ(c.add({"test.noshape", "", {{"x", "y"}, {}, OutputShape::computed, {DType::f32}}, cpu}).error().code(),
            ErrorCode::invalid_argument);
  EXPECT_EQ(c.add({"test.stray", "", {{"x"}, {}, OutputShape::like_inputs, {DType::f32}, shape}, cpu}).error().code(),
            ErrorCode::invalid_argument);
  ASSERT_TRUE(c.add({"test.concat", "", {{"x", "y"}, {}, OutputShape::computed, {DType::f32}, shape}, cpu}).ok());
  // Inputs of different lengths are fine for a computed kernel; the output length is the shape's.
  std::vector<float> three(3, 1.f);
  auto r = c.validate({"test.concat", DType::f32, {a, three}, {}});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->n, 10u);
  EXPECT_EQ(r->output_count, 13u);
}

TEST(ExecutorValidation, InvalidCallCompletesWithErrorAndRunsNothing) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  ASSERT_NE(ex, nullptr);
  std::vector<float> a(4, 1.f), b(3, 1.f);
  auto r = ex->run({"vector.add", DType::f32, {a, b}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  for (const auto& d : ex->stats().devices) EXPECT_EQ(d.calls, 0u) << d.device_id;
}

}  // namespace
}  // namespace gpubridge::compute

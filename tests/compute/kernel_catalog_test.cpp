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
  EXPECT_EQ(catalog.ids(), (std::vector<std::string>{"reduce.sum", "vector.add", "vector.axpy", "vector.dot",
                                                     "vector.normalize"}));
  auto add = catalog.lookup("vector.add");
  ASSERT_TRUE(add.ok());
  EXPECT_EQ((*add)->signature.inputs.size(), 2u);
  EXPECT_NE((*add)->gpu, nullptr);
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

// The portable kernel source compiles with NVRTC for every dtype and for the oldest and newest
// targets we support. NVRTC needs no driver, so this runs on every build machine.
#include <gtest/gtest.h>

#include "compute/cuda/nvrtc_program.hpp"
#include "compute/gpu/gpu_recipe.hpp"

namespace gpubridge::compute {
namespace {

TEST(NvrtcCompile, PortableSourceCompilesForEveryDtypeAndTarget) {
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const std::string target : {"sm_75", "sm_90", "compute_90"}) {
      auto image = cuda::compile_portable(detail::portable_kernel_source(), dtype, target);
      ASSERT_TRUE(image.ok()) << target << " " << to_string(dtype) << ": " << image.error().to_string();
      EXPECT_GT(image->size(), 1000u);
    }
  }
}

TEST(NvrtcCompile, BrokenSourceReportsTheCompilerLog) {
  auto image = cuda::compile_portable("extern \"C\" __global__ void k() { undefined_name; }", DType::f32, "sm_90");
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.error().code(), ErrorCode::internal);
  EXPECT_NE(image.error().message().find("undefined_name"), std::string::npos) << image.error().message();
}

}  // namespace
}  // namespace gpubridge::compute

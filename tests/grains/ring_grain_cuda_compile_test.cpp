// The CUDA handlers of the ring grain tests' counter program (grains/ring_grain_program.hpp)
// compile with NVRTC inside the generated ring kernel (no GPU needed), so the gpu-labelled ring
// grain tests meet a device with a source known to compile.
#include <gtest/gtest.h>

#include "compute/cuda/nvrtc_program.hpp"
#include "grains/ring_grain_program.hpp"

namespace {

using namespace gpubridge::testing::ring_program;

TEST(RingGrainCudaCompile, CounterProgramCompilesForSm75AndSm90) {
  for (std::int64_t scale : {1, 100}) {
    auto source = ring::cuda_ring_kernel_source(cuda_counter_handlers(scale));
    ASSERT_TRUE(source.ok()) << source.error().to_string();
    for (const std::string target : {"sm_75", "sm_90"}) {
      auto image = gpubridge::compute::cuda::compile_portable(*source, gpubridge::compute::DType::f32, target);
      ASSERT_TRUE(image.ok()) << target << ": " << image.error().to_string();
    }
  }
}

}  // namespace

// The CUDA ring kernel's generated source compiles with NVRTC for the oldest and newest targets
// (no driver needed), and bad handler registrations are clear errors before any CUDA call.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "compute/cuda/nvrtc_program.hpp"
#include "compute/ring/cuda_ring_server.hpp"
#include "cuda_ring_handlers.hpp"
#include "gpubridge/compute/cuda_ring.hpp"

namespace ring = gpubridge::compute::ring;
using gpubridge::ErrorCode;
using ::testing::HasSubstr;

namespace {

ring::CudaHandlerSource sample_handlers() {
  ring::CudaHandlerSource h;
  h.source = R"(
__device__ int echo(const gb_ring_call& c) {
  if (c.payload_bytes > c.reply_capacity) return -GB_RING_OUT_OF_RANGE;
  for (unsigned int i = 0; i < c.payload_bytes; ++i) c.reply[i] = c.payload[i];
  ++*reinterpret_cast<unsigned long long*>(c.state);
  return static_cast<int>(c.payload_bytes);
}
__device__ int refuse(const gb_ring_call&) { return -GB_RING_INVALID_ARGUMENT; }
)";
  h.handlers = {{1, 7, "echo"}, {2, 7, "refuse"}};
  return h;
}

TEST(CudaRingCompileTest, GeneratedKernelCompilesForSm75AndSm90) {
  auto source = ring::cuda_ring_kernel_source(sample_handlers());
  ASSERT_TRUE(source.ok()) << source.error().to_string();
  EXPECT_THAT(*source, HasSubstr("case 1u:\n      if (actor_type != 7u) return GB_RING_DISPATCH_WRONG_TYPE;\n"
                                 "      written = echo(call);"));
  for (const std::string target : {"sm_75", "sm_90", "compute_90"}) {
    auto image = gpubridge::compute::cuda::compile_portable(*source, gpubridge::compute::DType::f32, target);
    ASSERT_TRUE(image.ok()) << target << ": " << image.error().to_string();
    EXPECT_GT(image->size(), 1000u) << target;
    if (target == "compute_90") {
      const std::string ptx(image->begin(), image->end());
      EXPECT_THAT(ptx, HasSubstr(std::string(".entry ") + ring::detail::kRingKernelEntry + "("));
      EXPECT_THAT(ptx, HasSubstr("membar.sys"));      // __threadfence_system()
      EXPECT_THAT(ptx, HasSubstr("ld.acquire.sys"));  // a completion slot's turn before reuse
    }
  }
}

TEST(CudaRingCompileTest, TheGpuTestsHandlersCompile) {
  for (std::uint64_t version : {1u, 2u}) {
    auto source = ring::cuda_ring_kernel_source(gpubridge::testing::cuda_ring::handlers(version));
    ASSERT_TRUE(source.ok()) << source.error().to_string();
    for (const std::string target : {"sm_75", "sm_90"}) {
      auto image = gpubridge::compute::cuda::compile_portable(*source, gpubridge::compute::DType::f32, target);
      ASSERT_TRUE(image.ok()) << target << ": " << image.error().to_string();
    }
  }
}

// With time_phases the kernel reads the global timer around its phases; without, it never does
// (the control word age check reads it too, so count the reads).
TEST(CudaRingCompileTest, PhaseTimingIsCompiledInOnlyWhenAsked) {
  auto timer_reads = [](bool timed) {
    auto source = ring::cuda_ring_kernel_source(sample_handlers(), timed);
    EXPECT_TRUE(source.ok()) << source.error().to_string();
    if (!source.ok()) return std::size_t{0};
    EXPECT_EQ(source->find("#define GB_RING_TIME_PHASES") != std::string::npos, timed);
    auto image = gpubridge::compute::cuda::compile_portable(*source, gpubridge::compute::DType::f32, "compute_90");
    EXPECT_TRUE(image.ok()) << image.error().to_string();
    if (!image.ok()) return std::size_t{0};
    const std::string ptx(image->begin(), image->end());
    std::size_t n = 0;
    for (std::size_t at = ptx.find("%globaltimer"); at != std::string::npos; at = ptx.find("%globaltimer", at + 1)) ++n;
    return n;
  };
  EXPECT_GT(timer_reads(true), timer_reads(false));
}

TEST(CudaRingCompileTest, NoHandlersStillCompiles) {
  auto source = ring::cuda_ring_kernel_source({});
  ASSERT_TRUE(source.ok()) << source.error().to_string();
  auto image = gpubridge::compute::cuda::compile_portable(*source, gpubridge::compute::DType::f32, "sm_90");
  ASSERT_TRUE(image.ok()) << image.error().to_string();
}

TEST(CudaRingCompileTest, BrokenHandlerSourceReportsTheCompilerLog) {
  ring::CudaHandlerSource h = sample_handlers();
  h.source += "__device__ int broken(const gb_ring_call& c) { return undefined_name; }\n";
  auto source = ring::cuda_ring_kernel_source(h);
  ASSERT_TRUE(source.ok());
  auto image = gpubridge::compute::cuda::compile_portable(*source, gpubridge::compute::DType::f32, "sm_90");
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.error().message(), HasSubstr("undefined_name"));
  EXPECT_THAT(image.error().message(), HasSubstr("handlers.cu"));  // errors point into the user's source
}

TEST(CudaRingCompileTest, BadServerOptionsAreClearErrorsBeforeAnyCudaCall) {
  ring::RingConfig config;
  config.request_slots = 8;
  config.completion_slots = 8;
  config.actor_types = {{7, 16, 2}};
  auto memory = ring::RingMemory::create(config).value();
  ring::CudaRingServerOptions no_queue;
  no_queue.internal_queue_slots = 0;
  auto r = ring::CudaRingServer::create(*memory, sample_handlers(), no_queue);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(r.error().message(), HasSubstr("internal_queue_slots"));
  ring::CudaRingServerOptions no_hops;
  no_hops.max_hops = 0;
  r = ring::CudaRingServer::create(*memory, sample_handlers(), no_hops);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(r.error().message(), HasSubstr("max_hops"));
  const ring::CudaRingServerOptions defaults;  // the CPU server's bounds
  EXPECT_EQ(defaults.internal_queue_slots, ring::CpuRingServerOptions{}.internal_queue_slots);
  EXPECT_EQ(defaults.max_hops, ring::CpuRingServerOptions{}.max_hops);
}

TEST(CudaRingCompileTest, DeviceMessagingIsDeclaredForHandlers) {
  auto source = ring::cuda_ring_kernel_source(sample_handlers());
  ASSERT_TRUE(source.ok());
  const std::size_t user = source->find("#line 1 \"handlers.cu\"");
  ASSERT_NE(user, std::string::npos);
  for (const char* name : {"__device__ int gb_ring_post(", "__device__ int gb_ring_forward(", "unsigned int hops;",
                           "bool replies_to_host;"}) {
    const std::size_t at = source->find(name);
    ASSERT_NE(at, std::string::npos) << name;
    EXPECT_LT(at, user) << name << " must be visible to the user's handlers";
  }
}

TEST(CudaRingCompileTest, BadHandlerRegistrationsAreClearErrors) {
  ring::CudaHandlerSource reserved = sample_handlers();
  reserved.handlers.push_back({ring::kActivateHandler, 7, "echo"});
  auto r = ring::cuda_ring_kernel_source(reserved);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(r.error().message(), HasSubstr("reserved"));

  ring::CudaHandlerSource duplicate = sample_handlers();
  duplicate.handlers.push_back({1, 7, "refuse"});
  r = ring::cuda_ring_kernel_source(duplicate);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(r.error().message(), HasSubstr("twice"));

  for (const std::string name : {"", "1abc", "echo(call); x", "a-b"}) {
    ring::CudaHandlerSource bad = sample_handlers();
    bad.handlers.push_back({9, 7, name});
    r = ring::cuda_ring_kernel_source(bad);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument) << name;
    EXPECT_THAT(r.error().message(), HasSubstr("not a C identifier")) << name;
  }
}

}  // namespace

#pragma once
// Handlers of the CUDA ring tests (device source), shared by the gpu test and the NVRTC compile
// check so the source is known to compile before it first meets a device.
#include <cstdint>
#include <string>

#include "gpubridge/compute/cuda_ring.hpp"

namespace gpubridge::testing::cuda_ring {

namespace ring = gpubridge::compute::ring;

constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kEcho = 1;   // counts the message in the state, echoes the payload
constexpr std::uint32_t kCount = 2;  // counts; replies (version, counter)
constexpr std::uint32_t kSpin = 3;   // busy for the payload's u64 nanoseconds (no heartbeat meanwhile)
constexpr std::uint32_t kFail = 4;   // fails with invalid_argument
constexpr std::uint32_t kTrap = 5;   // kills the kernel (__trap)

inline ring::CudaHandlerSource handlers(std::uint64_t version) {
  ring::CudaHandlerSource h;
  h.source = "#define TEST_VERSION " + std::to_string(version) + "ull\n" + R"(
__device__ unsigned long long test_bump(const gb_ring_call& c) {
  unsigned long long* counter = reinterpret_cast<unsigned long long*>(c.state);
  return ++*counter;
}
__device__ void test_put_u64(unsigned char* out, unsigned long long v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
__device__ int test_echo(const gb_ring_call& c) {
  test_bump(c);
  if (c.payload_bytes > c.reply_capacity) return -GB_RING_OUT_OF_RANGE;
  for (unsigned int i = 0; i < c.payload_bytes; ++i) c.reply[i] = c.payload[i];
  return static_cast<int>(c.payload_bytes);
}
__device__ int test_count(const gb_ring_call& c) {
  const unsigned long long n = test_bump(c);
  if (c.reply_capacity < 16) return -GB_RING_OUT_OF_RANGE;
  test_put_u64(c.reply, TEST_VERSION);
  test_put_u64(c.reply + 8, n);
  return 16;
}
__device__ unsigned long long test_now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ int test_spin(const gb_ring_call& c) {
  unsigned long long ns = 0;
  for (unsigned int i = 0; i < 8 && i < c.payload_bytes; ++i) ns |= static_cast<unsigned long long>(c.payload[i]) << (8 * i);
  const unsigned long long start = test_now_ns();
  while (test_now_ns() - start < ns) {
  }
  return 0;
}
__device__ int test_fail(const gb_ring_call&) { return -GB_RING_INVALID_ARGUMENT; }
__device__ int test_trap(const gb_ring_call&) { __trap(); return 0; }
)";
  h.handlers = {{kEcho, kCounterType, "test_echo"},
                {kCount, kCounterType, "test_count"},
                {kSpin, kCounterType, "test_spin"},
                {kFail, kCounterType, "test_fail"},
                {kTrap, kCounterType, "test_trap"}};
  return h;
}

}  // namespace gpubridge::testing::cuda_ring

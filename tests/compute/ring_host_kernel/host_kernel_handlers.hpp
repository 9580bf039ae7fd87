#pragma once
// Handlers of the host-compiled ring kernel (device-dialect C++ that only the host compiles): the
// CPU protocol tests' handlers, the shared device-side messaging handlers (cuda_ring_handlers.hpp)
// and a few that wait on the test's gate (gb_host_test_gate_wait, defined by the test binary).
#include <cstdint>
#include <string>

#include "cuda_ring_handlers.hpp"

namespace gpubridge::testing::ring_host {

using cuda_ring::kCounterType;
using cuda_ring::kEcho;   // counts the message in the state, echoes the payload (out_of_range if too long)
using cuda_ring::kCount;  // counts; replies (version, counter)
using cuda_ring::kFail;   // fails with invalid_argument
using cuda_ring::kTrap;   // kills the kernel (__trap)
constexpr std::uint32_t kBlock = 30;           // waits on the test's gate
constexpr std::uint32_t kReverse = 31;         // replies with the payload reversed (resource_exhausted if too long)
constexpr std::uint32_t kOverclaim = 32;       // reports more reply bytes than it may write
constexpr std::uint32_t kGateForward = 33;     // waits on the gate, then forwards kAdd to itself
constexpr std::uint32_t kGatePostCounts = 34;  // waits on the gate, then posts 3 kCount to itself
constexpr std::uint32_t kOtherType = 2;
constexpr std::uint32_t kOtherTypeEcho = 35;   // kEcho's code, for actors of kOtherType

inline compute::ring::CudaHandlerSource host_handlers(std::uint64_t version) {
  compute::ring::CudaHandlerSource h;
  h.source = "#define TEST_VERSION " + std::to_string(version) + "ull\n#define HOST_ADD " +
             std::to_string(cuda_ring::kAdd) + "u\n#define HOST_COUNT " + std::to_string(kCount) + "u\n" + R"(
extern "C" void gb_host_test_gate_wait();
__device__ unsigned long long host_bump(const gb_ring_call& c) {
  unsigned long long* counter = reinterpret_cast<unsigned long long*>(c.state);
  return ++*counter;
}
__device__ void host_put_u64(unsigned char* out, unsigned long long v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
__device__ int host_echo(const gb_ring_call& c) {
  host_bump(c);
  if (c.payload_bytes > c.reply_capacity) return -GB_RING_OUT_OF_RANGE;
  for (unsigned int i = 0; i < c.payload_bytes; ++i) c.reply[i] = c.payload[i];
  return static_cast<int>(c.payload_bytes);
}
__device__ int host_count(const gb_ring_call& c) {
  const unsigned long long n = host_bump(c);
  if (c.reply_capacity < 16) return -GB_RING_OUT_OF_RANGE;
  host_put_u64(c.reply, TEST_VERSION);
  host_put_u64(c.reply + 8, n);
  return 16;
}
__device__ int host_fail(const gb_ring_call&) { return -GB_RING_INVALID_ARGUMENT; }
__device__ int host_trap(const gb_ring_call&) { __trap(); }
__device__ int host_block(const gb_ring_call&) {
  gb_host_test_gate_wait();
  return 0;
}
__device__ int host_reverse(const gb_ring_call& c) {
  if (c.payload_bytes > c.reply_capacity) return -GB_RING_RESOURCE_EXHAUSTED;
  for (unsigned int i = 0; i < c.payload_bytes; ++i) c.reply[i] = c.payload[c.payload_bytes - 1 - i];
  return static_cast<int>(c.payload_bytes);
}
__device__ int host_overclaim(const gb_ring_call& c) { return static_cast<int>(c.reply_capacity) + 1; }
__device__ int host_gate_forward(const gb_ring_call& c) {
  gb_host_test_gate_wait();
  return gb_ring_forward(c, c.actor_id, HOST_ADD, nullptr, 0);
}
__device__ int host_gate_post_counts(const gb_ring_call& c) {
  gb_host_test_gate_wait();
  for (int i = 0; i < 3; ++i) {
    const int posted = gb_ring_post(c, c.actor_id, HOST_COUNT, nullptr, 0);
    if (posted != 0) return posted;
  }
  return 0;
}
)" + cuda_ring::messaging_source();
  h.handlers = {{kEcho, kCounterType, "host_echo"},
                {kCount, kCounterType, "host_count"},
                {kFail, kCounterType, "host_fail"},
                {kTrap, kCounterType, "host_trap"},
                {kBlock, kCounterType, "host_block"},
                {kReverse, kCounterType, "host_reverse"},
                {kOverclaim, kCounterType, "host_overclaim"},
                {kGateForward, kCounterType, "host_gate_forward"},
                {kGatePostCounts, kCounterType, "host_gate_post_counts"},
                {kOtherTypeEcho, kOtherType, "host_echo"}};
  for (const compute::ring::CudaHandler& m : cuda_ring::messaging_handlers()) h.handlers.push_back(m);
  return h;
}

}  // namespace gpubridge::testing::ring_host

#pragma once
// The handlers of the CUDA ring tests: ONE device source for the gpu test (cuda_ring_test), the
// NVRTC compile check (cuda_ring_compile_test: the source is known to compile before it first meets
// a device) and the host-compiled kernel (ring_host_kernel/kernel_generator.cpp, cuda_ring_host_test).
// The generated source is compiled as host C++ with GB_RING_HOST_SHIM defined; the handler source
// branches on it in one place only: how kHold holds the kernel (and NVRTC's inlining hint).
#include <cstdint>
#include <string>

#include "gpubridge/compute/cuda_ring.hpp"

namespace gpubridge::testing::cuda_ring {

namespace ring = gpubridge::compute::ring;

// Actor types: kCounterType's state starts with a little-endian u64 counter; kOtherType exists to
// be refused by kCounterType's handlers.
constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kOtherType = 2;

// Handlers of kCounterType (payload and reply words are little-endian).
constexpr std::uint32_t kEcho = 1;   // counts the message in the state, echoes the payload (out_of_range if too long)
constexpr std::uint32_t kCount = 2;  // counts; replies (handler version, counter)
constexpr std::uint32_t kFail = 4;   // fails with invalid_argument and a reason (gb_ring_fail)
constexpr std::uint32_t kTrap = 5;   // kills the kernel (__trap)
constexpr std::uint32_t kFailWithCode = 6;  // (code): gb_ring_fail(code, "asked to fail")
// Device-side messaging (payload words are u32).
constexpr std::uint32_t kAdd = 20;           // counter += payload u64 (1 when shorter); replies the counter
constexpr std::uint32_t kPostAdds = 21;      // (target, n): posts n kAdd to target; fails with the first refusal
constexpr std::uint32_t kRelay = 22;         // (next, after, left): counter += 1; while left > 0 forwards
                                             // (after, next, left - 1) to next, else replies (hops, counter)
constexpr std::uint32_t kForwardTwice = 23;  // forwards kAdd to itself; a second forward must be refused
constexpr std::uint32_t kTryPost = 24;       // (target, handler, bytes): posts `bytes` zero bytes, returns the result
constexpr std::uint32_t kPostThenFail = 25;  // (target): posts kAdd to target, then fails with aborted
constexpr std::uint32_t kForwardEcho = 26;   // (target, rest...): forwards `rest` to kEcho on target
// Holding the kernel busy, so that a test can act while a message is in progress. Host-compiled,
// kHold waits on the test's gate (gb_host_test_gate_wait, defined by the host test binary) until the
// test releases it. A running device kernel cannot be reached by the test, so on a device kHold
// spins for kDeviceHoldNanoseconds instead. Either way no heartbeat is written meanwhile.
constexpr std::uint32_t kHold = 30;
constexpr std::uint32_t kReverse = 31;              // replies with the payload reversed (resource_exhausted if too long)
constexpr std::uint32_t kOverclaim = 32;            // reports more reply bytes than it may write
constexpr std::uint32_t kHoldThenForward = 33;      // holds, then forwards kAdd to itself
constexpr std::uint32_t kHoldThenPostCounts = 34;   // holds, then posts 3 kCount to itself
// Handlers of kOtherType.
constexpr std::uint32_t kOtherTypeEcho = 35;  // kEcho's code

constexpr std::uint64_t kDeviceHoldNanoseconds = 1'000'000'000;

// Every handler above; `version` is what kCount replies first (hot reload tests serve 1, then 2).
inline ring::CudaHandlerSource handlers(std::uint64_t version) {
  ring::CudaHandlerSource h;
  h.source = "#define TEST_VERSION " + std::to_string(version) + "ull\n#define TEST_ADD " + std::to_string(kAdd) +
             "u\n#define TEST_COUNT " + std::to_string(kCount) + "u\n#define TEST_RELAY " + std::to_string(kRelay) +
             "u\n#define TEST_ECHO " + std::to_string(kEcho) + "u\n#define TEST_HOLD_NS " +
             std::to_string(kDeviceHoldNanoseconds) + "ull\n" + R"(
#ifdef GB_RING_HOST_SHIM
#define TEST_HANDLER
extern "C" void gb_host_test_gate_wait();
__device__ void test_hold() { gb_host_test_gate_wait(); }
#else
// Out of line: inlined into the kernel's dispatch switch, these handlers take NVRTC several times longer.
#define TEST_HANDLER __noinline__
__device__ unsigned long long test_now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ void test_hold() {
  const unsigned long long start = test_now_ns();
  while (test_now_ns() - start < TEST_HOLD_NS) {
  }
}
#endif
__device__ unsigned int test_u32(const gb_ring_call& c, unsigned int at) {
  unsigned int v = 0;
  for (unsigned int i = 0; i < 4 && at + i < c.payload_bytes; ++i) v |= static_cast<unsigned int>(c.payload[at + i]) << (8 * i);
  return v;
}
__device__ void test_put_u32(unsigned char* out, unsigned int v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
__device__ void test_put_u64(unsigned char* out, unsigned long long v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
__device__ unsigned long long test_counter_add(const gb_ring_call& c, unsigned long long n) {
  unsigned long long v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<unsigned long long>(c.state[i]) << (8 * i);
  v += n;
  test_put_u64(c.state, v);
  return v;
}
__device__ TEST_HANDLER int test_echo(const gb_ring_call& c) {
  test_counter_add(c, 1);
  if (c.payload_bytes > c.reply_capacity) return -GB_RING_OUT_OF_RANGE;
  for (unsigned int i = 0; i < c.payload_bytes; ++i) c.reply[i] = c.payload[i];
  return static_cast<int>(c.payload_bytes);
}
__device__ TEST_HANDLER int test_count(const gb_ring_call& c) {
  const unsigned long long n = test_counter_add(c, 1);
  if (c.reply_capacity < 16) return -GB_RING_OUT_OF_RANGE;
  test_put_u64(c.reply, TEST_VERSION);
  test_put_u64(c.reply + 8, n);
  return 16;
}
__device__ TEST_HANDLER int test_fail(const gb_ring_call& c) {
  return gb_ring_fail(c, GB_RING_INVALID_ARGUMENT, "test_fail refuses every call");
}
__device__ TEST_HANDLER int test_fail_with_code(const gb_ring_call& c) {
  unsigned int code = 0;
  for (unsigned int i = 0; i < 4 && i < c.payload_bytes; ++i) code |= static_cast<unsigned int>(c.payload[i]) << (8 * i);
  return gb_ring_fail(c, code, "asked to fail");
}
__device__ TEST_HANDLER int test_trap(const gb_ring_call&) {
  __trap();
  return 0;
}
__device__ TEST_HANDLER int test_hold_call(const gb_ring_call&) {
  test_hold();
  return 0;
}
__device__ TEST_HANDLER int test_reverse(const gb_ring_call& c) {
  if (c.payload_bytes > c.reply_capacity) return -GB_RING_RESOURCE_EXHAUSTED;
  for (unsigned int i = 0; i < c.payload_bytes; ++i) c.reply[i] = c.payload[c.payload_bytes - 1 - i];
  return static_cast<int>(c.payload_bytes);
}
__device__ TEST_HANDLER int test_overclaim(const gb_ring_call& c) { return static_cast<int>(c.reply_capacity) + 1; }
__device__ TEST_HANDLER int test_add(const gb_ring_call& c) {
  unsigned long long n = 1;
  if (c.payload_bytes >= 8) {
    n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<unsigned long long>(c.payload[i]) << (8 * i);
  }
  const unsigned long long v = test_counter_add(c, n);
  if (c.reply_capacity < 8) return -GB_RING_OUT_OF_RANGE;
  test_put_u64(c.reply, v);
  return 8;
}
__device__ TEST_HANDLER int test_post_adds(const gb_ring_call& c) {
  const unsigned int target = test_u32(c, 0);
  const unsigned int n = test_u32(c, 4);
  for (unsigned int i = 0; i < n; ++i) {
    const int posted = gb_ring_post(c, target, TEST_ADD, nullptr, 0);
    if (posted != 0) return posted;
  }
  return 0;
}
__device__ TEST_HANDLER int test_relay(const gb_ring_call& c) {
  const unsigned int next = test_u32(c, 0);
  const unsigned int after = test_u32(c, 4);
  const unsigned int left = test_u32(c, 8);
  const unsigned long long v = test_counter_add(c, 1);
  if (left > 0) {
    unsigned char p[12];
    test_put_u32(p, after);
    test_put_u32(p + 4, next);
    test_put_u32(p + 8, left - 1);
    return gb_ring_forward(c, next, TEST_RELAY, p, 12);
  }
  if (c.reply_capacity < 16) return -GB_RING_OUT_OF_RANGE;
  test_put_u64(c.reply, c.hops);
  test_put_u64(c.reply + 8, v);
  return 16;
}
__device__ TEST_HANDLER int test_forward_twice(const gb_ring_call& c) {
  if (gb_ring_forward(c, c.actor_id, TEST_ADD, nullptr, 0) != 0) return -GB_RING_INTERNAL;
  if (gb_ring_forward(c, c.actor_id, TEST_ADD, nullptr, 0) != -GB_RING_FAILED_PRECONDITION) return -GB_RING_INTERNAL;
  return 0;
}
__device__ TEST_HANDLER int test_try_post(const gb_ring_call& c) {
  unsigned char zeros[256];
  for (int i = 0; i < 256; ++i) zeros[i] = 0;
  const unsigned int bytes = test_u32(c, 8);
  if (bytes > sizeof zeros) return -GB_RING_OUT_OF_RANGE;
  return gb_ring_post(c, test_u32(c, 0), test_u32(c, 4), zeros, bytes);
}
__device__ TEST_HANDLER int test_post_then_fail(const gb_ring_call& c) {
  const int posted = gb_ring_post(c, test_u32(c, 0), TEST_ADD, nullptr, 0);
  return posted != 0 ? posted : -GB_RING_ABORTED;
}
__device__ TEST_HANDLER int test_forward_echo(const gb_ring_call& c) {
  if (c.payload_bytes < 4) return -GB_RING_INVALID_ARGUMENT;
  return gb_ring_forward(c, test_u32(c, 0), TEST_ECHO, c.payload + 4, c.payload_bytes - 4);
}
__device__ TEST_HANDLER int test_hold_then_forward(const gb_ring_call& c) {
  test_hold();
  return gb_ring_forward(c, c.actor_id, TEST_ADD, nullptr, 0);
}
__device__ TEST_HANDLER int test_hold_then_post_counts(const gb_ring_call& c) {
  test_hold();
  for (int i = 0; i < 3; ++i) {
    const int posted = gb_ring_post(c, c.actor_id, TEST_COUNT, nullptr, 0);
    if (posted != 0) return posted;
  }
  return 0;
}
)";
  h.handlers = {{kEcho, kCounterType, "test_echo"},
                {kCount, kCounterType, "test_count"},
                {kFail, kCounterType, "test_fail"},
                {kTrap, kCounterType, "test_trap"},
                {kFailWithCode, kCounterType, "test_fail_with_code"},
                {kAdd, kCounterType, "test_add"},
                {kPostAdds, kCounterType, "test_post_adds"},
                {kRelay, kCounterType, "test_relay"},
                {kForwardTwice, kCounterType, "test_forward_twice"},
                {kTryPost, kCounterType, "test_try_post"},
                {kPostThenFail, kCounterType, "test_post_then_fail"},
                {kForwardEcho, kCounterType, "test_forward_echo"},
                {kHold, kCounterType, "test_hold_call"},
                {kReverse, kCounterType, "test_reverse"},
                {kOverclaim, kCounterType, "test_overclaim"},
                {kHoldThenForward, kCounterType, "test_hold_then_forward"},
                {kHoldThenPostCounts, kCounterType, "test_hold_then_post_counts"},
                {kOtherTypeEcho, kOtherType, "test_echo"}};
  return h;
}

}  // namespace gpubridge::testing::cuda_ring

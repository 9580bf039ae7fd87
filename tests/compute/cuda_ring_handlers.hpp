#pragma once
// Handlers of the CUDA ring tests (device source), shared by the gpu test, the NVRTC compile check
// (so the source is known to compile before it first meets a device) and, for the device-side
// messaging handlers, the host-compiled kernel harness (tests/compute/ring_host_kernel).
#include <cstdint>
#include <string>
#include <vector>

#include "gpubridge/compute/cuda_ring.hpp"

namespace gpubridge::testing::cuda_ring {

namespace ring = gpubridge::compute::ring;

constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kEcho = 1;   // counts the message in the state, echoes the payload
constexpr std::uint32_t kCount = 2;  // counts; replies (version, counter)
constexpr std::uint32_t kSpin = 3;   // busy for the payload's u64 nanoseconds (no heartbeat meanwhile)
constexpr std::uint32_t kFail = 4;   // fails with invalid_argument
constexpr std::uint32_t kTrap = 5;   // kills the kernel (__trap)

// Device-side messaging handlers (portable device code; actor type kCounterType, whose state
// starts with a little-endian u64 counter). Payload words are little-endian u32.
constexpr std::uint32_t kAdd = 20;           // counter += payload u64 (1 when shorter); replies the counter
constexpr std::uint32_t kPostAdds = 21;      // (target, n): posts n kAdd to target; fails with the first refusal
constexpr std::uint32_t kRelay = 22;         // (next, after, left): counter += 1; while left > 0 forwards
                                             // (after, next, left - 1) to next, else replies (hops, counter)
constexpr std::uint32_t kForwardTwice = 23;  // forwards kAdd to itself; a second forward must be refused
constexpr std::uint32_t kTryPost = 24;       // (target, handler, bytes): posts `bytes` zero bytes, returns the result
constexpr std::uint32_t kPostThenFail = 25;  // (target): posts kAdd to target, then fails with aborted
constexpr std::uint32_t kForwardEcho = 26;   // (target, rest...): forwards `rest` to kEcho (id 1) on target

inline std::string messaging_source() {
  return "#define MSG_ADD " + std::to_string(kAdd) + "u\n#define MSG_RELAY " + std::to_string(kRelay) +
         "u\n#define MSG_ECHO " +
         std::to_string(kEcho) + "u\n" + R"(
__device__ unsigned int msg_u32(const gb_ring_call& c, unsigned int at) {
  unsigned int v = 0;
  for (unsigned int i = 0; i < 4 && at + i < c.payload_bytes; ++i) v |= static_cast<unsigned int>(c.payload[at + i]) << (8 * i);
  return v;
}
__device__ void msg_put_u32(unsigned char* out, unsigned int v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
__device__ void msg_put_u64(unsigned char* out, unsigned long long v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(v >> (8 * i));
}
__device__ unsigned long long msg_counter_add(const gb_ring_call& c, unsigned long long n) {
  unsigned long long v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<unsigned long long>(c.state[i]) << (8 * i);
  v += n;
  msg_put_u64(c.state, v);
  return v;
}
__device__ int msg_add(const gb_ring_call& c) {
  unsigned long long n = 1;
  if (c.payload_bytes >= 8) {
    n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<unsigned long long>(c.payload[i]) << (8 * i);
  }
  const unsigned long long v = msg_counter_add(c, n);
  if (c.reply_capacity < 8) return -GB_RING_OUT_OF_RANGE;
  msg_put_u64(c.reply, v);
  return 8;
}
__device__ int msg_post_adds(const gb_ring_call& c) {
  const unsigned int target = msg_u32(c, 0);
  const unsigned int n = msg_u32(c, 4);
  for (unsigned int i = 0; i < n; ++i) {
    const int posted = gb_ring_post(c, target, MSG_ADD, nullptr, 0);
    if (posted != 0) return posted;
  }
  return 0;
}
__device__ int msg_relay(const gb_ring_call& c) {
  const unsigned int next = msg_u32(c, 0);
  const unsigned int after = msg_u32(c, 4);
  const unsigned int left = msg_u32(c, 8);
  const unsigned long long v = msg_counter_add(c, 1);
  if (left > 0) {
    unsigned char p[12];
    msg_put_u32(p, after);
    msg_put_u32(p + 4, next);
    msg_put_u32(p + 8, left - 1);
    return gb_ring_forward(c, next, MSG_RELAY, p, 12);
  }
  if (c.reply_capacity < 16) return -GB_RING_OUT_OF_RANGE;
  msg_put_u64(c.reply, c.hops);
  msg_put_u64(c.reply + 8, v);
  return 16;
}
__device__ int msg_forward_twice(const gb_ring_call& c) {
  if (gb_ring_forward(c, c.actor_id, MSG_ADD, nullptr, 0) != 0) return -GB_RING_INTERNAL;
  if (gb_ring_forward(c, c.actor_id, MSG_ADD, nullptr, 0) != -GB_RING_FAILED_PRECONDITION) return -GB_RING_INTERNAL;
  return 0;
}
__device__ int msg_try_post(const gb_ring_call& c) {
  unsigned char zeros[256];
  for (int i = 0; i < 256; ++i) zeros[i] = 0;
  const unsigned int bytes = msg_u32(c, 8);
  if (bytes > sizeof zeros) return -GB_RING_OUT_OF_RANGE;
  return gb_ring_post(c, msg_u32(c, 0), msg_u32(c, 4), zeros, bytes);
}
__device__ int msg_post_then_fail(const gb_ring_call& c) {
  const int posted = gb_ring_post(c, msg_u32(c, 0), MSG_ADD, nullptr, 0);
  return posted != 0 ? posted : -GB_RING_ABORTED;
}
__device__ int msg_forward_echo(const gb_ring_call& c) {
  if (c.payload_bytes < 4) return -GB_RING_INVALID_ARGUMENT;
  return gb_ring_forward(c, msg_u32(c, 0), MSG_ECHO, c.payload + 4, c.payload_bytes - 4);
}
)";
}

inline std::vector<ring::CudaHandler> messaging_handlers() {
  return {{kAdd, kCounterType, "msg_add"},
          {kPostAdds, kCounterType, "msg_post_adds"},
          {kRelay, kCounterType, "msg_relay"},
          {kForwardTwice, kCounterType, "msg_forward_twice"},
          {kTryPost, kCounterType, "msg_try_post"},
          {kPostThenFail, kCounterType, "msg_post_then_fail"},
          {kForwardEcho, kCounterType, "msg_forward_echo"}};
}

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
  h.source += messaging_source();
  h.handlers = {{kEcho, kCounterType, "test_echo"},
                {kCount, kCounterType, "test_count"},
                {kSpin, kCounterType, "test_spin"},
                {kFail, kCounterType, "test_fail"},
                {kTrap, kCounterType, "test_trap"}};
  for (const ring::CudaHandler& m : messaging_handlers()) h.handlers.push_back(m);
  return h;
}

}  // namespace gpubridge::testing::cuda_ring

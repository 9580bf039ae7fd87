#pragma once
// A counter ring program for the ring host, silo and CUDA placement tests: the same handler ids as
// C++ functions (CPU server) and as CUDA source (persistent kernel).
//   kAdd:  i64 delta -> i64 total (state: i64 total)
//   kGet:  -> i64 total
//   kTrap: aborts the server (HandlerTrap on the CPU, __trap() on CUDA)
// `scale` multiplies every delta (a reload test swaps scale 1 for another).
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "gpubridge/grains/ring_grain.hpp"

namespace gpubridge::testing::ring_program {

namespace ring = gpubridge::compute::ring;
using Bytes = std::vector<std::byte>;

constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kCounterStateBytes = 8;
constexpr std::uint32_t kAdd = 1;
constexpr std::uint32_t kGet = 2;
constexpr std::uint32_t kTrap = 3;

inline Bytes i64_bytes(std::int64_t v) {
  Bytes b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}
inline std::int64_t i64_of(std::span<const std::byte> b) {
  std::int64_t v = 0;
  std::memcpy(&v, b.data(), 8);
  return v;
}

inline ring::HandlerTable cpu_counter_handlers(std::int64_t scale) {
  ring::HandlerTable t;
  // A handler table refuses reserved or duplicate ids: fail loudly rather than at the first call.
  auto add = [&t](ring::HandlerSpec spec) {
    if (Status s = t.add(std::move(spec)); !s) throw ErrorException(s.error());
  };
  auto reply_total = [](std::span<std::byte> state, std::span<std::byte> out) -> Result<std::size_t> {
    if (out.size() < 8) return Error(ErrorCode::out_of_range, "reply capacity below 8 bytes");
    std::memcpy(out.data(), state.data(), 8);
    return std::size_t{8};
  };
  add({kAdd, kCounterType,
       [scale, reply_total](std::span<std::byte> state, std::span<const std::byte> in,
                            std::span<std::byte> out) -> Result<std::size_t> {
         if (in.size() != 8) return Error(ErrorCode::invalid_argument, "add takes an 8-byte delta");
         const std::int64_t total = i64_of(state) + scale * i64_of(in);
         std::memcpy(state.data(), &total, 8);
         return reply_total(state, out);
       }});
  add({kGet, kCounterType,
       [reply_total](std::span<std::byte> state, std::span<const std::byte>, std::span<std::byte> out) {
         return reply_total(state, out);
       }});
  add({kTrap, kCounterType,
       [](std::span<std::byte>, std::span<const std::byte>, std::span<std::byte>) -> Result<std::size_t> {
         throw ring::HandlerTrap{};
       }});
  return t;
}

inline ring::CudaHandlerSource cuda_counter_handlers(std::int64_t scale) {
  ring::CudaHandlerSource h;
  h.source = "#define COUNTER_SCALE " + std::to_string(scale) + "ll\n" + R"(
__device__ unsigned long long counter_load(const unsigned char* p) {
  unsigned long long v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<unsigned long long>(p[i]) << (8 * i);
  return v;
}
__device__ void counter_store(unsigned char* p, unsigned long long v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
__device__ int counter_add(const gb_ring_call& c) {
  if (c.payload_bytes != 8) return gb_ring_fail(c, GB_RING_INVALID_ARGUMENT, "add takes an 8-byte delta");
  if (c.reply_capacity < 8) return -GB_RING_OUT_OF_RANGE;
  const long long total = static_cast<long long>(counter_load(c.state)) +
                          COUNTER_SCALE * static_cast<long long>(counter_load(c.payload));
  counter_store(c.state, static_cast<unsigned long long>(total));
  counter_store(c.reply, static_cast<unsigned long long>(total));
  return 8;
}
__device__ int counter_get(const gb_ring_call& c) {
  if (c.reply_capacity < 8) return -GB_RING_OUT_OF_RANGE;
  counter_store(c.reply, counter_load(c.state));
  return 8;
}
__device__ int counter_trap(const gb_ring_call&) { __trap(); return 0; }
)";
  h.handlers = {{kAdd, kCounterType, "counter_add"}, {kGet, kCounterType, "counter_get"}, {kTrap, kCounterType, "counter_trap"}};
  return h;
}

// The counter program: one actor type "counter" with `max_actors` ids; CUDA handlers when asked.
inline grains::RingProgram counter_program(std::uint32_t max_actors, bool with_cuda = true, std::int64_t scale = 1) {
  grains::RingProgram p;
  p.actor_types = {{"counter", kCounterType, kCounterStateBytes, max_actors}};
  p.cpu_handlers = cpu_counter_handlers(scale);
  if (with_cuda) p.cuda_handlers = cuda_counter_handlers(scale);
  return p;
}

}  // namespace gpubridge::testing::ring_program

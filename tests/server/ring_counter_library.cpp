// A ring library: a shared library that gives a silo the ring program "counter" (CPU handlers).
// Named in a silo configuration's "ring_libraries"; see docs/tutorials/rings.md.
//   handler 1 (add): payload i64 delta -> reply i64 total      handler 2 (get): -> reply i64 total
#include <cstdint>
#include <cstring>
#include <span>

#include "gpubridge/server/ring_library.hpp"

namespace {

using namespace gpubridge;
namespace ring = gpubridge::compute::ring;

constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kAdd = 1;
constexpr std::uint32_t kGet = 2;

std::int64_t load_i64(std::span<const std::byte> bytes) {
  std::int64_t v = 0;
  std::memcpy(&v, bytes.data(), sizeof v);
  return v;
}

Result<std::size_t> reply_total(std::span<const std::byte> state, std::span<std::byte> out) {
  if (out.size() < 8) return Error(ErrorCode::out_of_range, "reply capacity below 8 bytes");
  std::memcpy(out.data(), state.data(), 8);
  return std::size_t{8};
}

Result<std::size_t> add(std::span<std::byte> state, std::span<const std::byte> in, std::span<std::byte> out) {
  if (in.size() != 8) return Error(ErrorCode::invalid_argument, "add takes an 8-byte delta");
  const std::int64_t total = load_i64(state) + load_i64(in);
  std::memcpy(state.data(), &total, 8);
  return reply_total(state, out);
}

Result<std::size_t> get(std::span<std::byte> state, std::span<const std::byte>, std::span<std::byte> out) {
  return reply_total(state, out);
}

Status register_programs(server::RingPrograms& programs) {
  grains::RingProgram counter;
  counter.actor_types = {{"counter", kCounterType, /*state_bytes=*/8, /*max_actors=*/64}};
  if (Status s = counter.cpu_handlers.add({kAdd, kCounterType, add}); !s) return s;
  if (Status s = counter.cpu_handlers.add({kGet, kCounterType, get}); !s) return s;
  return programs.add("counter", std::move(counter));  // validated here
}

}  // namespace

GPUBRIDGE_RING_LIBRARY(register_programs);

#pragma once
// Grains over the counter ring program (grains/ring_grain_program.hpp) for the silo tests: a typed
// ring grain, one counter actor on the ring it was made with, and an ordinary grain that calls
// counters (ring grains reached from other grains).
#include <cstdint>
#include <string>
#include <vector>

#include "gpubridge/grains/ring_grain.hpp"
#include "gpubridge/runtime/grain.hpp"
#include "grains/ring_grain_program.hpp"

namespace gpubridge::testing::ring_program {

class Counter : public grains::RingGrain {
 public:
  explicit Counter(grains::RingHost& host) : RingGrain(host, grains::RingGrainKind{kCounterType, {}}) {}
  runtime::Task<std::int64_t> add(std::int64_t delta) {
    const Bytes payload = i64_bytes(delta);
    const Bytes reply = co_await send(kAdd, payload, 64);
    co_return i64_of(reply);
  }
  runtime::Task<std::int64_t> total() {
    const Bytes reply = co_await send(kGet, {}, 64);
    co_return i64_of(reply);
  }
};

class Tally : public runtime::Grain {
 public:
  runtime::Task<std::int64_t> add_to_each(std::vector<std::string> counters, std::int64_t delta) {
    std::int64_t sum = 0;
    for (const std::string& key : counters) sum += co_await get_grain<Counter>(key).call<&Counter::add>(delta);
    co_return sum;
  }
};

}  // namespace gpubridge::testing::ring_program

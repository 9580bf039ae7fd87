#pragma once
// Allocation counting for the "no allocation per request" tests. A test binary that links
// counting_new.cpp has the global operator new (every form) replaced by one that counts each call
// in the whole process, on every thread; allocations() reads that count.
#include <cstdint>

namespace gpubridge::testing {

std::uint64_t allocations() noexcept;

}  // namespace gpubridge::testing

// Ring libraries that a silo must refuse, one per build (RING_FAULT_* selects which):
//   RING_FAULT_NO_ENTRY  a shared library without the entry points
//   RING_FAULT_UNRESOLVED  one that needs a symbol no program provides
//   RING_FAULT_ERROR     its entry point fails with a code and message
//   RING_FAULT_ABI       built "for another ABI" (its tag differs from the silo's)
//   RING_FAULT_THROW     a hand-written entry point that throws
#include <cstddef>
#include <stdexcept>

#if defined(RING_FAULT_NO_ENTRY)

extern "C" int not_a_ring_library() { return 1; }

#elif defined(RING_FAULT_UNRESOLVED)

extern "C" int gpubridge_symbol_nobody_defines();
extern "C" int calls_a_missing_symbol() { return gpubridge_symbol_nobody_defines(); }

#else

#include "gpubridge/server/ring_library.hpp"

#if defined(RING_FAULT_ERROR)

namespace {
gpubridge::Status register_programs(gpubridge::server::RingPrograms&) {
  return gpubridge::Error(gpubridge::ErrorCode::failed_precondition, "calibration table missing");
}
}  // namespace
GPUBRIDGE_RING_LIBRARY(register_programs);

#elif defined(RING_FAULT_ABI)

extern "C" const char* gpubridge_ring_abi_v1() { return "gpubridge ring library v1; another build"; }
extern "C" int gpubridge_ring_programs_v1(gpubridge::server::RingPrograms*, char*, std::size_t) { return 0; }

#elif defined(RING_FAULT_THROW)

extern "C" const char* gpubridge_ring_abi_v1() {
  static const std::string tag = GPUBRIDGE_RING_LIBRARY_ABI_TAG();
  return tag.c_str();
}
extern "C" int gpubridge_ring_programs_v1(gpubridge::server::RingPrograms*, char*, std::size_t) {
  throw std::runtime_error("registration blew up");
}

#else
#error "define one RING_FAULT_* mode"
#endif
#endif

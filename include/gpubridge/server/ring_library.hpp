#pragma once
// Ring libraries: shared libraries that add ring programs to a silo (configuration key
// `ring_libraries`). This header is the contract between such a library and the silo that loads it.
//
// A ring library exports two C symbols; GPUBRIDGE_RING_LIBRARY(register_fn) defines both:
//   int gpubridge_ring_programs_v1(RingPrograms* programs, char* error, std::size_t error_bytes)
//       adds the library's programs to `programs` (RingPrograms::add). Returns 0 on success; on
//       failure non-zero (an ErrorCode value; anything else reads as `unknown`) with a message,
//       NUL-terminated within error[0, error_bytes). Called once per Silo::start that names the
//       library, on the thread calling Silo::start. Must not throw (the silo reports it if it does).
//   const char* gpubridge_ring_abi_v1()
//       the library's GPUBRIDGE_RING_LIBRARY_ABI_TAG(), compared with the silo's own.
//
// ABI rule: C++ types cross the boundary (RingPrograms, RingProgram, std::function, std::string,
// Status), so a library must be built against the same GpuBridge headers, with the same compiler,
// standard library and ABI-affecting flags as the silo. The silo refuses a library whose ABI tag
// (compiler version, standard library, C++ standard, sizes of the types that cross) differs from its
// own; the tag cannot see every change (a header edit that keeps the sizes), so rebuild ring
// libraries whenever the silo is rebuilt. A change to this contract gets a new symbol version (_v2);
// a silo loads only the version it knows.
//
// Symbols: the library calls into GpuBridge (RingPrograms::add, HandlerTable::add, Error) without
// linking it; those references are resolved from the process that loads it. The gpubridge program
// exports its symbols for that; a program embedding a silo must too (CMake ENABLE_EXPORTS, i.e.
// -rdynamic), or loading fails with the linker's "undefined symbol" message.
//
// Loading and lifetime: Silo::start loads each library with dlopen(RTLD_NOW | RTLD_LOCAL) before
// anything starts, and the silo keeps it loaded until it is destroyed, after its rings: handler code
// lives in the library, so it is unloaded only when no ring server or RingHost can call into it.
#include <cstddef>
#include <exception>
#include <string>

#include "gpubridge/server/silo.hpp"

extern "C" {
int gpubridge_ring_programs_v1(gpubridge::server::RingPrograms* programs, char* error, std::size_t error_bytes);
const char* gpubridge_ring_abi_v1();
}

namespace gpubridge::server {

inline constexpr const char* kRingProgramsSymbol = "gpubridge_ring_programs_v1";
inline constexpr const char* kRingAbiSymbol = "gpubridge_ring_abi_v1";
using RingProgramsEntry = int (*)(RingPrograms* programs, char* error, std::size_t error_bytes);
using RingAbiEntry = const char* (*)();

namespace ring_library_detail {

inline void copy_message(const std::string& message, char* error, std::size_t error_bytes) {
  if (error == nullptr || error_bytes == 0) return;
  const std::size_t n = message.size() < error_bytes - 1 ? message.size() : error_bytes - 1;
  message.copy(error, n);
  error[n] = '\0';
}

// The body of gpubridge_ring_programs_v1 for a `Status register_fn(RingPrograms&)`.
template <typename RegisterFn>
int call_register(RegisterFn&& register_fn, RingPrograms* programs, char* error, std::size_t error_bytes) {
  try {
    if (programs == nullptr) {
      copy_message("no RingPrograms to fill (null)", error, error_bytes);
      return static_cast<int>(ErrorCode::invalid_argument);
    }
    Status status = register_fn(*programs);
    if (status.ok()) return 0;
    copy_message(status.error().message(), error, error_bytes);
    return static_cast<int>(status.error().code());
  } catch (const ErrorException& e) {
    copy_message(e.error().message(), error, error_bytes);
    return static_cast<int>(e.error().code() == ErrorCode::ok ? ErrorCode::unknown : e.error().code());
  } catch (const std::exception& e) {
    copy_message(std::string("exception: ") + e.what(), error, error_bytes);
  } catch (...) {
    copy_message("an exception that is not a std::exception", error, error_bytes);
  }
  return static_cast<int>(ErrorCode::unknown);
}

}  // namespace ring_library_detail
}  // namespace gpubridge::server

#define GPUBRIDGE_RING_LIBRARY_STRINGIFY_(x) #x
#define GPUBRIDGE_RING_LIBRARY_STRING_(x) GPUBRIDGE_RING_LIBRARY_STRINGIFY_(x)
#if defined(__GLIBCXX__)
#define GPUBRIDGE_RING_LIBRARY_STDLIB_ \
  "libstdc++ " GPUBRIDGE_RING_LIBRARY_STRING_(__GLIBCXX__) " cxx11-abi " GPUBRIDGE_RING_LIBRARY_STRING_(_GLIBCXX_USE_CXX11_ABI)
#elif defined(_LIBCPP_VERSION)
#define GPUBRIDGE_RING_LIBRARY_STDLIB_ "libc++ " GPUBRIDGE_RING_LIBRARY_STRING_(_LIBCPP_VERSION)
#else
#define GPUBRIDGE_RING_LIBRARY_STDLIB_ "unknown standard library"
#endif
#if defined(_GLIBCXX_DEBUG)
#define GPUBRIDGE_RING_LIBRARY_DEBUG_ " debug-containers"
#else
#define GPUBRIDGE_RING_LIBRARY_DEBUG_ ""
#endif

// The ABI tag of the translation unit that expands it (a std::string). A macro, not a function, so
// that the library's tag is computed from the library's own compilation: an inline function could
// be resolved to the silo's copy at load time.
#define GPUBRIDGE_RING_LIBRARY_ABI_TAG()                                                                      \
  (std::string("gpubridge ring library v1; compiler " __VERSION__ "; " GPUBRIDGE_RING_LIBRARY_STDLIB_          \
               GPUBRIDGE_RING_LIBRARY_DEBUG_ "; c++ " GPUBRIDGE_RING_LIBRARY_STRING_(__cplusplus) "; sizes ") + \
   std::to_string(sizeof(::gpubridge::server::RingPrograms)) + "/" +                                         \
   std::to_string(sizeof(::gpubridge::grains::RingProgram)) + "/" +                                          \
   std::to_string(sizeof(::gpubridge::grains::RingActorType)) + "/" +                                        \
   std::to_string(sizeof(::gpubridge::compute::ring::HandlerSpec)) + "/" +                                   \
   std::to_string(sizeof(::gpubridge::compute::ring::HandlerTable)) + "/" +                                  \
   std::to_string(sizeof(::gpubridge::compute::ring::CudaHandlerSource)) + "/" +                             \
   std::to_string(sizeof(::gpubridge::Status)) + "/" + std::to_string(sizeof(::gpubridge::Error)))

// Defines a ring library's two entry points from `register_fn`, a function or lambda
// `gpubridge::Status (gpubridge::server::RingPrograms&)`; its error (or exception) becomes the
// entry point's error code and message. Use once, at namespace scope, in one file of the library,
// followed by a semicolon.
#define GPUBRIDGE_RING_LIBRARY(register_fn)                                                                  \
  extern "C" __attribute__((visibility("default"))) const char* gpubridge_ring_abi_v1() {                   \
    static const std::string tag = GPUBRIDGE_RING_LIBRARY_ABI_TAG();                                          \
    return tag.c_str();                                                                                       \
  }                                                                                                           \
  extern "C" __attribute__((visibility("default"))) int gpubridge_ring_programs_v1(                         \
      ::gpubridge::server::RingPrograms* programs, char* error, std::size_t error_bytes) {                   \
    return ::gpubridge::server::ring_library_detail::call_register(register_fn, programs, error, error_bytes); \
  }                                                                                                           \
  static_assert(true, "GPUBRIDGE_RING_LIBRARY takes a semicolon")

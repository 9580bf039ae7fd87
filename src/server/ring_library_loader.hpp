#pragma once
// Loads the configuration's ring libraries for Silo::start (the ABI is stated in
// gpubridge/server/ring_library.hpp). Internal to the server. Not thread-safe: one thread loads.
#include <memory>
#include <string>
#include <vector>

#include "gpubridge/core/result.hpp"
#include "gpubridge/server/silo.hpp"

namespace gpubridge::server {

// One loaded ring library: a dlopen handle, closed by the destructor. Whoever destroys it must have
// destroyed everything holding the library's code first (its programs, the rings serving them).
class RingLibrary {
 public:
  // Loads `path` (dlopen RTLD_NOW | RTLD_LOCAL), compares its ABI tag with the silo's and calls its
  // gpubridge_ring_programs_v1 with an empty RingPrograms, returned in `programs`. `key` names the
  // configuration entry ("ring_libraries[1]"); every error starts with "<key> ('<path>')".
  // Errors: not_found (no such file), invalid_argument (not a loadable shared library, an
  // unresolved symbol, a missing entry point, an ABI mismatch), the entry point's own code and
  // message (unknown when it threw or returned a code that is not an ErrorCode).
  static Result<std::unique_ptr<RingLibrary>> load(const std::string& path, const std::string& key,
                                                   RingPrograms& programs);
  ~RingLibrary();
  RingLibrary(const RingLibrary&) = delete;
  RingLibrary& operator=(const RingLibrary&) = delete;

  const std::string& path() const noexcept { return path_; }

 private:
  RingLibrary(std::string path, void* handle) : path_(std::move(path)), handle_(handle) {}
  std::string path_;
  void* handle_;
};

// The embedder's programs merged with the libraries' programs, and the libraries holding their
// code. Member order matters: `programs` is destroyed before `libraries` are closed.
struct LoadedRingPrograms {
  std::vector<std::unique_ptr<RingLibrary>> libraries;
  RingPrograms programs;
};

// Loads `paths` in order (as RingLibrary::load, keys "ring_libraries[i]") and merges their programs
// with `embedded`. A program name from two sources is already_exists naming both ("registered in
// code" for the embedder's). On error, libraries loaded so far are closed again.
Result<LoadedRingPrograms> load_ring_programs(const std::vector<std::string>& paths, RingPrograms embedded);

}  // namespace gpubridge::server

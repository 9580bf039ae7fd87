#include "server/ring_library_loader.hpp"

#include <dlfcn.h>

#include <array>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <system_error>

#include "gpubridge/server/ring_library.hpp"

namespace gpubridge::server {

namespace {

std::string last_dl_error() {
  const char* message = dlerror();
  return message != nullptr ? message : "no reason given";
}

ErrorCode code_from_entry(int returned) {
  if (returned > 0 && returned <= static_cast<int>(ErrorCode::unauthenticated)) return static_cast<ErrorCode>(returned);
  return ErrorCode::unknown;
}

}  // namespace

Result<std::unique_ptr<RingLibrary>> RingLibrary::load(const std::string& path, const std::string& key,
                                                       RingPrograms& programs) {
  const std::string where = key + " ('" + path + "')";
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  if (ec) return Error(ErrorCode::invalid_argument, where + ": cannot access it: " + ec.message());
  if (!exists) return Error(ErrorCode::not_found, where + ": no such file");
  dlerror();  // clear a stale message
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const std::string reason = last_dl_error();
    const bool unresolved = reason.find("undefined symbol") != std::string::npos;
    return Error(ErrorCode::invalid_argument,
                 where + ": cannot load it as a shared library: " + reason +
                     (unresolved ? " (a ring library takes GpuBridge's symbols from the program loading it, which "
                                   "must export them: CMake ENABLE_EXPORTS, -rdynamic)"
                                 : ""));
  }
  std::unique_ptr<RingLibrary> library(new RingLibrary(path, handle));

  dlerror();
  auto entry = reinterpret_cast<RingProgramsEntry>(dlsym(handle, kRingProgramsSymbol));
  if (entry == nullptr) {
    return Error(ErrorCode::invalid_argument, where + ": no symbol '" + std::string(kRingProgramsSymbol) +
                                                  "' (not a ring library of this contract version; see "
                                                  "gpubridge/server/ring_library.hpp)");
  }

  dlerror();
  auto abi = reinterpret_cast<RingAbiEntry>(dlsym(handle, kRingAbiSymbol));
  if (abi == nullptr) {
    return Error(ErrorCode::invalid_argument, where + ": no symbol '" + std::string(kRingAbiSymbol) +
                                                  "' (define both entry points with GPUBRIDGE_RING_LIBRARY, "
                                                  "gpubridge/server/ring_library.hpp)");
  }
  const std::string expected = GPUBRIDGE_RING_LIBRARY_ABI_TAG();
  const char* found = abi();
  if (found == nullptr || expected != found) {
    return Error(ErrorCode::invalid_argument,
                 where + ": built for another ABI (library: '" + std::string(found != nullptr ? found : "(null)") +
                     "'; this silo: '" + expected +
                     "'); rebuild it against these GpuBridge headers with the silo's compiler and flags");
  }
  RingPrograms filled;  // declared after `library`: destroyed before it is closed
  std::array<char, 1024> message{};
  int returned = 0;
  std::string thrown;
  try {
    returned = entry(&filled, message.data(), message.size());
  } catch (const std::exception& e) {
    thrown = std::string("threw: ") + e.what();
  } catch (...) {
    thrown = "threw an exception that is not a std::exception";
  }
  message.back() = '\0';
  if (!thrown.empty() || returned != 0) {
    if (!thrown.empty()) return Error(ErrorCode::unknown, where + ": " + kRingProgramsSymbol + " " + thrown);
    const std::string text = message[0] != '\0' ? std::string(message.data()) : "no message";
    return Error(code_from_entry(returned), where + ": " + kRingProgramsSymbol + " failed (returned " +
                                                std::to_string(returned) + "): " + text);
  }
  programs = std::move(filled);
  return library;
}

RingLibrary::~RingLibrary() {
  // A failed dlclose leaves the library mapped, which is harmless; say so and go on.
  if (handle_ != nullptr && dlclose(handle_) != 0) {
    std::fprintf(stderr, "gpubridge: closing ring library '%s': %s\n", path_.c_str(), last_dl_error().c_str());
  }
}

Result<LoadedRingPrograms> load_ring_programs(const std::vector<std::string>& paths, RingPrograms embedded) {
  LoadedRingPrograms loaded;
  std::map<std::string, std::string> source_of;  // program name -> where it came from
  for (const std::string& name : embedded.names()) {
    if (Status s = loaded.programs.add(name, *embedded.find(name)); !s) return s.error();
    source_of.emplace(name, "registered in code");
  }
  embedded = RingPrograms{};
  for (std::size_t i = 0; i < paths.size(); ++i) {
    const std::string key = "ring_libraries[" + std::to_string(i) + "]";
    RingPrograms own;
    auto library = RingLibrary::load(paths[i], key, own);
    if (!library) return library.error();
    // Held by `loaded` from here, so it is closed after `own` and loaded.programs on any error.
    loaded.libraries.push_back(std::move(library).value());
    const std::string source = key + " ('" + paths[i] + "')";
    for (const std::string& name : own.names()) {
      if (auto taken = source_of.find(name); taken != source_of.end()) {
        return Error(ErrorCode::already_exists,
                     source + ": ring program '" + name + "' is already registered (" + taken->second + ")");
      }
      if (Status s = loaded.programs.add(name, *own.find(name)); !s) return s.error().with_context(source);
      source_of.emplace(name, source);
    }
  }
  return loaded;
}

}  // namespace gpubridge::server

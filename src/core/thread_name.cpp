#include "gpubridge/core/thread_name.hpp"

#include <algorithm>
#include <array>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace gpubridge {

namespace {
constexpr std::size_t kMaxName = 15;  // Linux: 16 bytes with the terminating zero
}  // namespace

namespace {
void name_thread(std::thread::native_handle_type thread, std::string_view name) noexcept {
#if defined(__linux__)
  std::array<char, kMaxName + 1> buffer{};
  std::copy_n(name.data(), std::min(name.size(), kMaxName), buffer.data());
  pthread_setname_np(thread, buffer.data());
#else
  (void)thread;
  (void)name;
#endif
}
}  // namespace

void name_this_thread(std::string_view name) noexcept {
#if defined(__linux__)
  name_thread(pthread_self(), name);
#else
  (void)name;
#endif
}

void name_started_thread(std::thread& thread, std::string_view name) noexcept {
  name_thread(thread.native_handle(), name);
}

std::string this_thread_name() {
#if defined(__linux__)
  std::array<char, kMaxName + 1> buffer{};
  if (pthread_getname_np(pthread_self(), buffer.data(), buffer.size()) == 0) return buffer.data();
#endif
  return {};
}

}  // namespace gpubridge

#pragma once
// Cache-line isolation: data that one thread writes often while other threads use whatever lies
// next to it must not share a cache line with it (false sharing). The line size, and an
// allocator whose blocks start on a line and fill whole lines.
#include <cstddef>
#include <new>

namespace gpubridge {

inline constexpr std::size_t kCacheLine = 64;

template <typename T>
struct CacheLineAllocator {
  using value_type = T;

  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}  // NOLINT: rebinding, as allocators do

  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(bytes(n), std::align_val_t{kCacheLine})); }
  void deallocate(T* p, std::size_t n) noexcept { ::operator delete(p, bytes(n), std::align_val_t{kCacheLine}); }

  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) noexcept { return true; }

 private:
  static std::size_t bytes(std::size_t n) noexcept { return (n * sizeof(T) + kCacheLine - 1) / kCacheLine * kCacheLine; }
};

}  // namespace gpubridge

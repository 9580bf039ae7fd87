#pragma once
// Cache-line isolation for data that one thread writes on every call while other threads read
// whatever lies next to it: the line size, and an allocator whose blocks start on a line and fill
// whole lines, so that they share a line with no other allocation (no false sharing).
#include <cstddef>
#include <new>

namespace gpubridge::runtime::internal {

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

}  // namespace gpubridge::runtime::internal

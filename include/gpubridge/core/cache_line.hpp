#pragma once
// Cache-line isolation: data that one thread writes often while other threads use whatever lies
// next to it must not share a cache line with it (false sharing). The line size, an allocator
// whose blocks start on a line and fill whole lines, and a counter spread over lines by thread.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

namespace gpubridge {

inline constexpr std::size_t kCacheLine = 64;

// Asks this core's caches for every line of [p, p + bytes): a hint that reads nothing and never
// faults, so any address will do. for_write: the lines are about to be written (fetched for
// ownership). Always inlined: GCC judges a function that only prefetches free of effects and
// drops calls to it.
[[gnu::always_inline]] inline void prefetch_lines(const void* p, std::size_t bytes, bool for_write = false) noexcept {
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  for (std::uintptr_t a = start & ~std::uintptr_t{kCacheLine - 1}; a < start + bytes; a += kCacheLine) {
    if (for_write) {
      __builtin_prefetch(reinterpret_cast<const void*>(a), 1);
    } else {
      __builtin_prefetch(reinterpret_cast<const void*>(a), 0);
    }
  }
}

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

// A small number of the calling thread, taken in the order threads first ask; for spreading
// shared counters over stripes.
inline std::size_t thread_ordinal() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

// A counter that many threads add to at once: each adds to the stripe (own cache line) of its
// thread_ordinal(), so adds from different threads rarely touch one line. value() sums the
// stripes (relaxed: a value the counter passed through per stripe). 1 KiB with 16 stripes.
template <std::size_t Stripes = 16>
class StripedCounter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    stripes_[thread_ordinal() % Stripes].value.fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t value() const noexcept {
    std::uint64_t sum = 0;
    for (const Stripe& s : stripes_) sum += s.value.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  struct alignas(kCacheLine) Stripe {
    std::atomic<std::uint64_t> value{0};
  };
  std::array<Stripe, Stripes> stripes_{};
};

}  // namespace gpubridge

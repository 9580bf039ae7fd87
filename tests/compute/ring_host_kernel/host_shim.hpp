#pragma once
// Host shim for the CUDA ring kernel's generated source (cuda_ring_kernel_source): with it the SAME
// source compiles as host C++ and runs on a std::thread against a real RingMemory block.
//  - __device__/__global__/__forceinline__/__align__ become host spellings;
//  - threadIdx is the one thread of each block; blockIdx is the block (= shard) the launching
//    HostKernelServer gave this thread (host_grid.block); each block runs on its own thread, and
//    that thread does its helper lanes' share of an intake itself (the source's GB_RING_HOST_SHIM
//    branches); __shared__ memory is the thread's own;
//  - the kernel's shared-word accesses (gb_ld64/gb_ld32/gb_st64/gb_st32; volatile, i.e. relaxed at
//    system scope, on the device) become relaxed GCC atomics, gb_ld64_acquire (ld.acquire.sys) an
//    acquire load, gb_st64_release (st.release.sys) a release store, gb_fence_release
//    (fence.acq_rel.sys) an acquire-release fence and __threadfence_system() a sequentially
//    consistent fence, so the kernel's own ordering is what orders its slot bodies
//    against the host's atomic_ref accesses (a missing fence is a real race here too);
//  - the device atomics on the server-internal area (atomicCAS/atomicAdd/atomicSub/atomicMax)
//    become sequentially consistent std::atomic_ref operations and __threadfence() a sequentially
//    consistent fence;
//  - __trap() marks the grid trapped and throws HostTrap; GB_RING_GRID_CHECK() throws it in the
//    other blocks' threads (a trap ends the whole grid); GB_RING_IDLE() yields on an empty poll.
// Only generated kernel sources include this header (see kernel_generator.cpp).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "ring_host_kernel/host_trap.hpp"

#define GB_RING_HOST_SHIM 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define GB_RING_IDLE() std::this_thread::yield()

struct gb_host_dim3 {
  unsigned int x, y, z;
};
inline constexpr gb_host_dim3 threadIdx{0, 0, 0};
inline gb_host_dim3 gb_host_block_index() { return {gpubridge::testing::ring_host::host_grid.block, 0, 0}; }
#define blockIdx (gb_host_block_index())

inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void gb_fence_release() { std::atomic_thread_fence(std::memory_order_acq_rel); }
inline unsigned long long gb_now_ns() {
  return static_cast<unsigned long long>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() {
  if (auto* trapped = gpubridge::testing::ring_host::host_grid.trapped) trapped->store(true);
  throw gpubridge::testing::ring_host::HostTrap{};
}
inline void gb_host_grid_check() {
  auto* trapped = gpubridge::testing::ring_host::host_grid.trapped;
  if (trapped != nullptr && trapped->load()) throw gpubridge::testing::ring_host::HostTrap{};
}
#define GB_RING_GRID_CHECK() gb_host_grid_check()

inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long compare, unsigned long long value) {
  std::atomic_ref<unsigned long long>(*p).compare_exchange_strong(compare, value);
  return compare;  // the value seen (== the expected one when it swapped)
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long value) {
  return std::atomic_ref<unsigned long long>(*p).fetch_add(value);
}
inline unsigned int atomicSub(unsigned int* p, unsigned int value) {
  return std::atomic_ref<unsigned int>(*p).fetch_sub(value);
}
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long value) {
  std::atomic_ref<unsigned long long> word(*p);
  unsigned long long seen = word.load();
  while (seen < value && !word.compare_exchange_weak(seen, value)) {
  }
  return seen;
}

// ThreadSanitizer does not model fences (std::atomic_thread_fence): it would report every slot
// body the kernel reads or writes between two fences as a race with the host. Under it, the
// shared-word accesses carry the ordering themselves (acquire loads, release stores) - stronger
// than the device's, so there a missing fence in the kernel goes unseen; the other builds keep the
// device's relaxed accesses, where it shows.
#if defined(__SANITIZE_THREAD__)
#define GB_HOST_SHARED_LOAD __ATOMIC_ACQUIRE
#define GB_HOST_SHARED_STORE __ATOMIC_RELEASE
#else
#define GB_HOST_SHARED_LOAD __ATOMIC_RELAXED
#define GB_HOST_SHARED_STORE __ATOMIC_RELAXED
#endif
inline unsigned long long gb_ld64(const unsigned long long* p) { return __atomic_load_n(p, GB_HOST_SHARED_LOAD); }
inline unsigned int gb_ld32(const unsigned int* p) { return __atomic_load_n(p, GB_HOST_SHARED_LOAD); }
inline unsigned long long gb_ld64_acquire(const unsigned long long* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
// The device's extents (whole 8-byte words), and the alignment the device relies on: a misaligned
// area would fault there, so it fails here too.
inline void gb_copy_inline(unsigned char* dst, const unsigned char* src, unsigned int n) {
  if (((reinterpret_cast<unsigned long long>(dst) | reinterpret_cast<unsigned long long>(src)) & 7ull) != 0) {
    std::fputs("gb_copy_inline: misaligned inline payload area\n", stderr);
    std::abort();
  }
  std::memcpy(dst, src, (n + 7u) / 8u * 8u);
}
// The device copies a whole slot in 16-byte loads: the same alignment is required here.
template <typename Slot>
inline void gb_copy_slot(Slot* dst, const Slot* src) {
  static_assert(sizeof(Slot) % 16 == 0);
  if (((reinterpret_cast<unsigned long long>(dst) | reinterpret_cast<unsigned long long>(src)) & 15ull) != 0) {
    std::fputs("gb_copy_slot: misaligned slot\n", stderr);
    std::abort();
  }
  std::memcpy(static_cast<void*>(dst), static_cast<const void*>(src), sizeof(Slot));
}
// The device's 16-byte stores: the same alignment is required here.
inline void gb_store_chunks(unsigned char* dst, const unsigned long long* words, unsigned int chunks) {
  if ((reinterpret_cast<unsigned long long>(dst) & 15ull) != 0) {
    std::fputs("gb_store_chunks: misaligned destination\n", stderr);
    std::abort();
  }
  std::memcpy(dst, words, chunks * 16u);
}
inline void gb_st64(unsigned long long* p, unsigned long long v) { __atomic_store_n(p, v, GB_HOST_SHARED_STORE); }
inline void gb_st64_release(unsigned long long* p, unsigned long long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline void gb_st32(unsigned int* p, unsigned int v) { __atomic_store_n(p, v, GB_HOST_SHARED_STORE); }

#pragma once
// Host shim for the CUDA ring kernel's generated source (cuda_ring_kernel_source): with it the SAME
// source compiles as host C++ and runs on a std::thread against a real RingMemory block.
//  - __device__/__global__/__forceinline__/__align__ become host spellings;
//  - threadIdx/blockIdx are the one thread of the one block the server launches;
//  - the kernel's shared-word accesses (gb_ld64/gb_ld32/gb_st64/gb_st32; volatile, i.e. relaxed at
//    system scope, on the device) become relaxed GCC atomics, gb_ld64_acquire (ld.acquire.sys) an
//    acquire load, and __threadfence_system() a sequentially consistent fence, so the kernel's own fence placement is what orders its slot
//    bodies against the host's atomic_ref accesses (a missing fence is a real race here too);
//  - __trap() throws HostTrap; GB_RING_IDLE() yields the thread on an empty poll.
// Only generated kernel sources include this header (see kernel_generator.cpp).
#include <atomic>
#include <thread>

#include "ring_host_kernel/host_trap.hpp"

#define GB_RING_HOST_SHIM 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define GB_RING_IDLE() std::this_thread::yield()

struct gb_host_dim3 {
  unsigned int x, y, z;
};
inline constexpr gb_host_dim3 threadIdx{0, 0, 0};
inline constexpr gb_host_dim3 blockIdx{0, 0, 0};

inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() { throw gpubridge::testing::ring_host::HostTrap{}; }

inline unsigned long long gb_ld64(const unsigned long long* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline unsigned int gb_ld32(const unsigned int* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline unsigned long long gb_ld64_acquire(const unsigned long long* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void gb_st64(unsigned long long* p, unsigned long long v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline void gb_st32(unsigned int* p, unsigned int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

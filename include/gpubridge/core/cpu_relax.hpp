#pragma once
// cpu_relax(): the body of a spin-wait loop, a hint to the core that it is spinning (x86 pause,
// Arm yield): it does not starve a sibling hardware thread or flood the memory system with
// speculative loads. Elsewhere a compiler barrier only. Callers yield the time slice themselves
// when they have spun long enough.

namespace gpubridge {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  asm volatile("" ::: "memory");
#endif
}

}  // namespace gpubridge

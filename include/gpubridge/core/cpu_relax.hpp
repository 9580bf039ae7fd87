#pragma once
// cpu_relax(): the body of a spin-wait loop. On x86 the pause instruction (the core spins without
// starving its sibling hyperthread or flooding the memory system with speculative loads);
// elsewhere a yield of the time slice.
#include <thread>

namespace gpubridge {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

}  // namespace gpubridge

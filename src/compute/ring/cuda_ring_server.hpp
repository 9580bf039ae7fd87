#pragma once
// Internal: what the host side of the CUDA ring kernel shares with the generated device source.
#include <cstdint>

namespace gpubridge::compute::ring::detail {

// Entry point of the generated kernel: gb_ring_serve(block, actors, control).
inline constexpr const char* kRingKernelEntry = "gb_ring_serve";

// Why the kernel returned (KernelControl::exit_reason).
enum class KernelExit : std::uint32_t { running = 0, finished = 1, yielded = 2 };

// Server-private words in their own mapped, page-locked allocation (not part of the protocol):
// the host asks the kernel to yield (hot reload) or to abandon a wait for completion space
// (destruction); the kernel counts messages served and says why it returned. The device source
// declares the same layout (gb_kernel_control).
struct KernelControl {
  std::uint32_t yield;        // host: 1 = return after the current message, leave the ring running
  std::uint32_t abandon;      // host: 1 = stop waiting for completion space and return
  std::uint64_t served;       // kernel: messages finished (completed, failed or cancelled)
  std::uint32_t exit_reason;  // kernel: KernelExit
  std::uint32_t reserved;
};
static_assert(sizeof(KernelControl) == 24);

}  // namespace gpubridge::compute::ring::detail

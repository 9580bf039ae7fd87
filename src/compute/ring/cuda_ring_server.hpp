#pragma once
// Internal: what the host side of the CUDA ring kernel shares with the generated device source,
// and the host-side helpers the server and its CPU test harness (tests/compute/ring_host_kernel)
// both use, so the harness drives the kernel through the same words and layouts.
#include <cstddef>
#include <cstdint>
#include <string>

#include "gpubridge/compute/cuda_ring.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::ring::detail {

// Entry point of the generated kernel: gb_ring_serve(block, actors, control, internal).
inline constexpr const char* kRingKernelEntry = "gb_ring_serve";

// Why the kernel returned (KernelControl::exit_reason).
enum class KernelExit : std::uint32_t { running = 0, finished = 1, yielded = 2 };

// Server-private words in their own mapped, page-locked allocation (not part of the protocol):
// the host asks the kernel to yield (hot reload) or to abandon a wait for completion space
// (destruction); the kernel counts what it served, says why it returned and keeps the error of
// the last device-side message that failed (a seqlock: error_sequence is odd while the kernel
// rewrites error_bytes/error_words). The device source declares the same layout (gb_kernel_control).
// Host messages taken are the block's request_dequeue; no per-message word is written for them.
struct KernelControl {
  std::uint32_t yield;        // host: 1 = return after the current message, leave the ring running
  std::uint32_t abandon;      // host: 1 = stop waiting for completion space and return
  std::uint64_t served;       // kernel: completions written (host calls finished)
  std::uint32_t exit_reason;  // kernel: KernelExit
  std::uint32_t error_sequence;
  std::uint64_t internal_messages;  // kernel: served from the internal queue (published when a chain ends)
  std::uint64_t internal_failures;  // kernel: posted messages that failed or were cancelled
  std::uint64_t internal_peak;      // kernel: most messages the internal queue held at once
  std::uint32_t error_bytes;
  std::uint32_t reserved;
  std::uint32_t error_words[kInlinePayloadBytes / 4];  // the error text, little-endian bytes
};
static_assert(sizeof(KernelControl) == 56 + kInlinePayloadBytes);
static_assert(kInlinePayloadBytes % 4 == 0);

// Head of the server-internal queue in device memory (the kernel is its only reader and writer;
// it persists across relaunches, so queued device-side messages survive a hot reload). The
// InternalMessage records follow at kInternalQueueHeaderBytes.
struct InternalQueueHeader {
  std::uint32_t slots;     // capacity in messages
  std::uint32_t max_hops;  // device-side hops per chain
  std::uint64_t head;      // index of the oldest queued message
  std::uint64_t count;     // committed messages
  std::uint64_t reserved;
};
inline constexpr std::size_t kInternalQueueHeaderBytes = 64;
static_assert(sizeof(InternalQueueHeader) <= kInternalQueueHeaderBytes);

inline std::size_t internal_queue_bytes(std::uint32_t slots) {
  return kInternalQueueHeaderBytes + std::size_t{slots} * sizeof(InternalMessage);
}
inline InternalQueueHeader initial_internal_queue(const CudaRingServerOptions& options) {
  return InternalQueueHeader{options.internal_queue_slots, options.max_hops, 0, 0, 0};
}

// invalid_argument for an internal queue or hop limit of 0 or above kMaxRingSlots.
Status validate_options(const CudaRingServerOptions& options);
// The kernel's counters (each word read on its own; host_messages from the block's request_dequeue).
RingServerStats read_kernel_stats(KernelControl& control, RingHeader& header) noexcept;
// The last failed device-side message's error ("" when none has failed); consistent while the
// kernel runs (retries while the kernel rewrites it).
std::string read_kernel_error(KernelControl& control);

}  // namespace gpubridge::compute::ring::detail

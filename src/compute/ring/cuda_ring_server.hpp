#pragma once
// Internal: what the host side of the CUDA ring kernel shares with the generated device source,
// and the host-side helpers the server and its CPU test harness (tests/compute/ring_host_kernel)
// both use, so the harness drives the kernel through the same words and layouts.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gpubridge/compute/cuda_ring.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::ring::detail {

// Entry point of the generated kernel: gb_ring_serve(block, actors, control, internal).
inline constexpr const char* kRingKernelEntry = "gb_ring_serve";

// Why a block of the kernel returned (KernelShardWords::exit_reason).
enum class KernelExit : std::uint32_t { running = 0, finished = 1, yielded = 2 };

// Server-private words in their own mapped, page-locked allocation (not part of the protocol).
// The host asks the kernel to yield (hot reload) or to abandon a wait for completion space
// (destruction). Each shard's block writes only its own KernelShardWords (no atomic RMW on host
// memory): what it served, why it returned, and the error of its last device-side message that
// failed (a seqlock: error_sequence is odd while the block rewrites error_bytes/error_words;
// error_ticket orders failures across shards, 0 = none). The device source declares the same
// layout (gb_kernel_control, gb_shard_words). Host messages taken are each shard's request_dequeue.
struct alignas(64) KernelShardWords {
  std::uint64_t served;             // completions written (host calls finished) by this shard
  std::uint64_t internal_messages;  // served from this shard's internal queue (published when idle
                                    // and before each completion)
  std::uint64_t internal_failures;  // posted messages that failed or were cancelled here
  std::uint64_t internal_peak;      // most messages this shard's internal queue held at once
  std::uint32_t exit_reason;        // KernelExit
  std::uint32_t error_sequence;
  std::uint64_t error_ticket;
  std::uint32_t error_bytes;
  std::uint32_t reserved;
  std::uint32_t error_words[kInlinePayloadBytes / 4];  // the error text, little-endian bytes
};
static_assert(sizeof(KernelShardWords) == 256);
static_assert(kInlinePayloadBytes % 4 == 0);

// A shard's phase timing (CudaRingPhaseTimes, field by field), written by its block only when the
// kernel was compiled with time_phases.
struct alignas(64) KernelShardPhases {
  std::uint64_t words[8];  // idle_polls, idle_poll_ns, takes, take_ns, served, serve_ns, publishes, publish_ns
};
static_assert(sizeof(KernelShardPhases) == 64);

struct KernelControl {
  std::uint32_t yield;    // host: 1 = return after the current message, leave the ring running
  std::uint32_t abandon;  // host: 1 = stop waiting for completion space and return
  std::uint32_t reserved[14];
  KernelShardWords shards[kMaxShards];
  KernelShardPhases phases[kMaxShards];
};
static_assert(offsetof(KernelControl, shards) == 64);

// Server-internal area in device memory (the kernel's blocks are its only readers and writers; it
// persists across relaunches, so queued device-side messages survive a hot reload):
//   [InternalServerWords][shard 0 region]...[shard S-1 region]
// a shard region (internal_region_bytes) = [InternalQueueHead][InternalSlot x slots][InternalClaim x slots].
// Words shared by every block (device-scope atomics: atomicAdd/atomicCAS/atomicSub/atomicMax).
struct InternalServerWords {
  std::uint32_t shard_count;
  std::uint32_t slots;     // internal queue capacity per shard, in messages
  std::uint32_t max_hops;  // device-side hops per chain
  std::uint32_t reserved0;
  alignas(64) std::uint64_t in_flight;       // messages taken and not finished (see CpuRingServer)
  alignas(64) std::uint32_t quiescent;       // 1: drain/stop found nothing left, every block ends
  std::uint32_t unfinished_shards;           // blocks that have not finished for good
  std::uint64_t failure_ticket;              // orders failures across shards
};
static_assert(sizeof(InternalServerWords) == 192);
// One shard's internal queue: many producers claim with atomicCAS on `enqueue`; its block consumes.
struct InternalQueueHead {
  std::uint64_t enqueue;
  alignas(64) std::uint64_t dequeue;  // the shard's block writes
  std::uint64_t peak;                 // atomicMax by producers before they publish
  std::uint32_t finished;             // 1: the shard's block has finished for good
  std::uint32_t reserved;
};
static_assert(sizeof(InternalQueueHead) == 128);
struct InternalSlot {
  std::uint64_t turn;  // Vyukov sequence, as the rings (any capacity: slot = position % slots)
  std::uint32_t dropped;  // 1: its handler failed after staging it; the consumer skips it
  std::uint32_t reserved;
  InternalMessage message;
};
static_assert(sizeof(InternalSlot) == 16 + sizeof(InternalMessage));
// A slot a running handler has claimed (its shard's list, at most `slots` per handler call).
struct InternalClaim {
  std::uint64_t position;
  std::uint32_t shard;
  std::uint32_t reserved;
};

inline std::size_t internal_region_bytes(std::uint32_t slots) {
  const std::size_t bytes = sizeof(InternalQueueHead) + std::size_t{slots} * (sizeof(InternalSlot) + sizeof(InternalClaim));
  return (bytes + 63) / 64 * 64;
}
inline std::size_t internal_area_bytes(std::uint32_t slots, std::uint32_t shards) {
  return sizeof(InternalServerWords) + std::size_t{shards} * internal_region_bytes(slots);
}
// The area's initial image (empty queues, every slot's turn at its index).
std::vector<std::byte> initial_internal_area(const CudaRingServerOptions& options, std::uint32_t shards);

// invalid_argument for an internal queue or hop limit of 0 or above kMaxRingSlots.
Status validate_options(const CudaRingServerOptions& options);
// True when every shard's block has returned with KernelExit::finished.
bool all_shards_finished(KernelControl& control, std::uint32_t shards) noexcept;
// The kernel's counters summed over the shards (each word read on its own; host_messages from
// the block's request_dequeue words; internal_queue_peak the largest shard's).
RingServerStats read_kernel_stats(KernelControl& control, const RingMemory& memory) noexcept;
// The last failed device-side message's error over every shard ("" when none has failed);
// consistent while the kernel runs (retries while a block rewrites it).
std::string read_kernel_error(KernelControl& control, std::uint32_t shards);
// The kernel's phase timing summed over the shards (each word read on its own).
CudaRingPhaseTimes read_phase_times(KernelControl& control, std::uint32_t shards) noexcept;

}  // namespace gpubridge::compute::ring::detail

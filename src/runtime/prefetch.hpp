#pragma once
// Prefetching for the runtime's queues of waiting work.
//
// Work that waits in an activation's queues - callers resumed after a kernel batch (thousands at
// once), calls queued while the activation is busy - waits in frames and messages that
// no core has touched since they were written, often on another core. Run one after another,
// each would start with a chain of cache misses, every address found through the line before
// (the queue link, then the frame, then the frame it continues in). The queues therefore fetch
// ahead while they hand out work: when an entry is taken, the lines of the one behind it that a
// step ago were asked for are now read to ask for what they point to, and so on down the queue
// (each queue says how far). Only entries still queued are read, under the queue's lock; a
// prefetch of an address no longer in use is harmless.
#include <cstddef>

#include "gpubridge/core/cache_line.hpp"
#include "gpubridge/runtime/frame_pool.hpp"
#include "gpubridge/runtime/messaging/message.hpp"

namespace gpubridge::runtime::internal {

// The frame a resumption resumes and the one it is expected to continue in.
inline void prefetch_frames(const Resumption& r) noexcept {
  FramePool::prefetch(r.handle.address());
  FramePool::prefetch(r.continues_in.address());
}

}  // namespace gpubridge::runtime::internal

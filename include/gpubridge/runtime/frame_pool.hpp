#pragma once
// FramePool: the allocator behind every coroutine frame of the runtime (Task<T>, turns, roots).
//
// Frames are recycled through thread-local free lists, one per size class (64, 128, ... 4096
// bytes), so a warm grain call allocates nothing. A frame freed on another thread than the one
// that allocated it joins the freeing thread's list; lists that grow past a cap hand a batch of
// blocks to a process-wide transfer store, and empty lists refill from it (newest batches
// first), so producer/consumer thread pairs still reuse memory.
// New blocks are carved from the frame region: kRegionBytes of address space reserved on first
// use, advised for 2 MiB transparent huge pages, handed to size classes kChunkBytes at a time,
// so that frames scattered by a warm process's frees stay within few TLB entries (the first
// touch of a chunk costs the kernel's zeroing of a 2 MiB page, or compaction to find one). The region's
// memory stays with the pool for the process's life (region_bytes() says how much has been
// handed out); once it is used up, new blocks come from ::operator new, and such blocks are
// given back to the heap when the store is full. Pooled blocks are cache-line aligned and fill
// whole lines, so that a frame one thread writes shares no line with another thread's data.
// Frames larger than kMaxPooledSize go straight to ::operator new / ::operator delete.
//
// Thread-safety: allocate/deallocate may be called from any thread. Blocks cached by a thread
// go to the store when the thread exits.
#include <cstddef>
#include <cstdint>

namespace gpubridge::runtime {

class FramePool {
 public:
  static constexpr std::size_t kMaxPooledSize = 4096;
  static constexpr std::size_t kChunkBytes = std::size_t{2} << 20;
  static constexpr std::size_t kRegionBytes = std::size_t{256} << 20;

  // Returns at least `size` bytes, aligned for any frame (__STDCPP_DEFAULT_NEW_ALIGNMENT__).
  static void* allocate(std::size_t size);
  // `size` must be the value passed to allocate() for `p`.
  static void deallocate(void* p, std::size_t size) noexcept;

  // Blocks that were not recycled - carved from the region or obtained from ::operator new -
  // since the process started (every size class, every thread); a warm steady state leaves this
  // constant.
  static std::uint64_t new_blocks() noexcept;
  // Bytes of the frame region handed to size classes so far (a multiple of kChunkBytes).
  static std::size_t region_bytes() noexcept;
  // True when `p`, a block allocate() returned, was carved from the frame region.
  static bool in_region(const void* p) noexcept;
  // The size class of a block carved from the frame region (the bytes it may use, at least the
  // size it was allocated for), given its start; 0 for any other address.
  static std::size_t block_bytes(const void* p) noexcept;
  // A hint: asks this core's caches for the frame at `frame` (the start of a block allocate()
  // returned, e.g. a coroutine handle's address; null does nothing), about to be resumed: a
  // region block's first block_bytes() up to 1 KiB, 256 bytes of other frames. Reads nothing.
  static void prefetch(const void* frame) noexcept;
};

}  // namespace gpubridge::runtime

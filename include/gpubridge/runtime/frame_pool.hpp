#pragma once
// FramePool: the allocator behind every coroutine frame of the runtime (Task<T>, turns, roots).
//
// Frames are recycled through thread-local free lists, one per size class (64, 128, ... 4096
// bytes), so a warm grain call allocates nothing from the heap. A frame freed on another thread
// than the one that allocated it joins the freeing thread's list; lists that grow past a cap hand
// a batch of blocks to a process-wide transfer store under a mutex, and empty lists refill from
// it, so producer/consumer thread pairs still reuse memory instead of going to the heap.
// Pooled blocks are cache-line aligned and fill whole lines, so that a frame one thread writes
// shares no line with another thread's data. Frames larger than 4096 bytes go straight to
// ::operator new / ::operator delete.
//
// Thread-safety: allocate/deallocate may be called from any thread. Blocks cached by a thread
// are released when the thread exits.
#include <cstddef>
#include <cstdint>

namespace gpubridge::runtime {

class FramePool {
 public:
  static constexpr std::size_t kMaxPooledSize = 4096;

  // Returns at least `size` bytes, aligned for any frame (__STDCPP_DEFAULT_NEW_ALIGNMENT__).
  static void* allocate(std::size_t size);
  // `size` must be the value passed to allocate() for `p`.
  static void deallocate(void* p, std::size_t size) noexcept;

  // Blocks obtained from ::operator new since the process started (every size class, every
  // thread); a warm steady state leaves this constant.
  static std::uint64_t heap_allocations() noexcept;
};

}  // namespace gpubridge::runtime

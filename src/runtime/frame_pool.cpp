#include "gpubridge/runtime/frame_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>

#include "gpubridge/core/cache_line.hpp"
#include "spin_lock.hpp"

namespace gpubridge::runtime {

namespace {

constexpr std::size_t kMinShift = 6;  // smallest class: 64 bytes
constexpr std::size_t kClasses = 7;   // 64 .. 4096
constexpr std::uint32_t kLocalCap = 512;
constexpr std::uint32_t kBatch = 256;
constexpr std::size_t kRecentBatches = 64;
constexpr std::size_t kPrefetchLines = 16;  // of the block the next allocation will take
constexpr std::size_t kPrefetchMaxBytes = 1024;     // FramePool::prefetch: at most this much of a block
constexpr std::size_t kPrefetchUnknownBytes = 256;  // of a frame from outside the region (size unknown)

static_assert((std::size_t{1} << (kMinShift + kClasses - 1)) == FramePool::kMaxPooledSize);
static_assert(FramePool::kChunkBytes >= 64 * (FramePool::kMaxPooledSize + kCacheLine));
static_assert(FramePool::kRegionBytes % FramePool::kChunkBytes == 0);

// A free block; chains of them link through `next`. The head block of a spare batch in the
// transfer store also links the next spare batch and holds its batch's block count.
struct Block {
  Block* next;
  Block* next_batch;
  std::uint32_t count;
};
static_assert(sizeof(Block) <= (std::size_t{1} << kMinShift));

std::size_t class_of(std::size_t size) noexcept {
  if (size <= (std::size_t{1} << kMinShift)) return 0;
  return static_cast<std::size_t>(std::bit_width(size - 1)) - kMinShift;
}

std::size_t class_size(std::size_t cls) noexcept { return std::size_t{1} << (cls + kMinShift); }

// Pooled blocks start on a cache line and, every class size being a multiple of it, fill whole
// lines: a frame, written by whichever thread runs its coroutine, shares no line with another
// frame or allocation that other threads use. 16-byte aligned blocks did, and made a stateless
// worker's pipelined calls run at 6-8 instead of 11-12 M/s in some processes (2 cores).
constexpr std::align_val_t kBlockAlign{kCacheLine};

// The frame region: kRegionBytes of address space reserved once (pages are backed when first
// touched), aligned to and advised for 2 MiB transparent huge pages; size classes carve their
// blocks from it a chunk at a time. Why: a warm process's frames lie wherever their blocks were
// freed, scattered over megabytes, and with 4 KiB pages nearly every frame a call touches then
// costs a TLB miss (a page walk, nested under a hypervisor). Batch grains with 512 callers took
// 0.87-0.95 us per call in a process that had served 8192 callers before, 0.69-0.70 from the
// region (2 cores, bench/results/2026-11-27-xeon2-frame-region).
// Region blocks are never given back to the heap: the region is the pool's memory for the
// process's life, up to kRegionBytes as touched. Past it, blocks come from ::operator new.
class FrameRegion {
 public:
  // A new block of class `cls`; nullptr when the region is used up or could not be reserved.
  void* carve(std::size_t cls) noexcept {
    std::lock_guard lock(mu_);
    if (left_[cls] == 0) {
      if (!reserve() || next_chunk_ == end()) return nullptr;
      cursor_[cls] = next_chunk_;
      left_[cls] = FramePool::kChunkBytes / stride(cls);
      chunk_class_[static_cast<std::size_t>(next_chunk_ - base()) / FramePool::kChunkBytes].store(
          static_cast<std::uint8_t>(cls + 1), std::memory_order_relaxed);
      next_chunk_ += FramePool::kChunkBytes;
      chunk_bytes_.store(static_cast<std::size_t>(next_chunk_ - base()), std::memory_order_relaxed);
    }
    void* p = cursor_[cls];
    cursor_[cls] += stride(cls);
    --left_[cls];
    return p;
  }

  // True for blocks carve() returned. Lock-free: the bounds are set once, before any block of
  // the region exists.
  bool contains(const void* p) const noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t b = base_.load(std::memory_order_relaxed);
    return b != 0 && a >= b && a < b + FramePool::kRegionBytes;
  }

  std::size_t chunk_bytes() const noexcept { return chunk_bytes_.load(std::memory_order_relaxed); }

  // The block size of a region block `p` (any address inside it), 0 outside the region. Relaxed
  // reads: a chunk's class is set before any of its blocks exists, and the caller got `p` from
  // whatever handed it that block.
  std::size_t block_size(const void* p) const noexcept {
    if (!contains(p)) return 0;
    const auto offset = reinterpret_cast<std::uintptr_t>(p) - base_.load(std::memory_order_relaxed);
    const std::uint8_t tagged = chunk_class_[offset / FramePool::kChunkBytes].load(std::memory_order_relaxed);
    return tagged == 0 ? 0 : class_size(tagged - 1u);
  }

 private:
  // Blocks lie one cache line further apart than their size. At exactly their (power-of-two)
  // size, the blocks of a class repeat a few offsets within a 4 KiB page, so frames in use at
  // once collide in the L1 cache's sets and in the CPU's 4 KiB load/store address aliasing:
  // grain calls ran 3-8 % slower than with blocks from the heap, whose headers space them this
  // way (and batch grains with one worker 30 % slower with padding once per 4 KiB only). Costs
  // one line per block (100 % of the 64-byte class, 1.6 % of the 4096-byte one).
  static std::size_t stride(std::size_t cls) noexcept { return class_size(cls) + kCacheLine; }

  char* base() const noexcept { return reinterpret_cast<char*>(base_.load(std::memory_order_relaxed)); }
  char* end() const noexcept { return base() + FramePool::kRegionBytes; }

  // Under mu_. False when the address space could not be had (then the heap serves all frames).
  bool reserve() noexcept {
    if (base_.load(std::memory_order_relaxed) != 0) return true;
    if (failed_) return false;
    constexpr std::size_t kAlign = FramePool::kChunkBytes;
    const std::size_t span = FramePool::kRegionBytes + kAlign;
    void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
      failed_ = true;
      return false;
    }
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (start + kAlign - 1) & ~(std::uintptr_t{kAlign} - 1);
    if (aligned > start) ::munmap(raw, aligned - start);
    const std::uintptr_t tail = aligned + FramePool::kRegionBytes;
    if (start + span > tail) ::munmap(reinterpret_cast<void*>(tail), start + span - tail);
#ifdef MADV_HUGEPAGE
    ::madvise(reinterpret_cast<void*>(aligned), FramePool::kRegionBytes, MADV_HUGEPAGE);  // a hint: 4 KiB pages still work
#endif
    next_chunk_ = reinterpret_cast<char*>(aligned);
    base_.store(aligned, std::memory_order_relaxed);
    return true;
  }

  internal::SpinLock mu_;
  std::atomic<std::uintptr_t> base_{0};
  std::atomic<std::size_t> chunk_bytes_{0};
  bool failed_ = false;
  char* next_chunk_ = nullptr;
  char* cursor_[kClasses] = {};
  std::size_t left_[kClasses] = {};
  std::atomic<std::uint8_t> chunk_class_[FramePool::kRegionBytes / FramePool::kChunkBytes] = {};  // class + 1; 0: not carved
};

FrameRegion& region() {
  static FrameRegion* r = new FrameRegion;  // never destroyed: threads may free after main
  return *r;
}

std::atomic<std::uint64_t> g_new_blocks{0};

void* new_block(std::size_t cls) {
  g_new_blocks.fetch_add(1, std::memory_order_relaxed);
  if (void* p = region().carve(cls)) return p;
  return ::operator new(class_size(cls), kBlockAlign);
}

// Process-wide store of free blocks, per size class:
//   - recent: up to kRecentBatches batches of kBatch blocks, newest taken first. A batch put into
//     a full store evicts the oldest one, not itself: the newest blocks are the ones still in
//     the caches.
//   - spare: the region blocks of evicted batches and of exiting threads, in batches of any size
//     (heap blocks among them go back to the heap); taken when no recent batch is left.
struct Batch {
  Block* chain = nullptr;
  std::uint32_t count = 0;
};

class TransferStore {
 public:
  // Takes ownership of a chain of kBatch blocks.
  void put(std::size_t cls, Block* chain) noexcept {
    Batch evicted;
    {
      std::lock_guard lock(mu_);
      Class& c = classes_[cls];
      c.newest = (c.newest + 1) % kRecentBatches;
      if (c.recent_count == kRecentBatches) {
        evicted = c.recent[c.newest];  // the oldest sits just past the newest
      } else {
        ++c.recent_count;
      }
      c.recent[c.newest] = Batch{chain, kBatch};
    }
    if (evicted.chain != nullptr) keep_spare(cls, evicted.chain);
  }

  // Takes ownership of a null-terminated chain of any length.
  void keep_spare(std::size_t cls, Block* chain) noexcept {
    Batch kept;
    while (chain != nullptr) {
      Block* next = chain->next;
      if (region().contains(chain)) {
        chain->next = kept.chain;
        kept.chain = chain;
        ++kept.count;
      } else {
        ::operator delete(chain, class_size(cls), kBlockAlign);
      }
      chain = next;
    }
    if (kept.chain == nullptr) return;
    kept.chain->count = kept.count;
    std::lock_guard lock(mu_);
    Class& c = classes_[cls];
    kept.chain->next_batch = c.spare;
    c.spare = kept.chain;
  }

  // A batch of free blocks; count 0 when the store has none.
  Batch take(std::size_t cls) noexcept {
    std::lock_guard lock(mu_);
    Class& c = classes_[cls];
    if (c.recent_count != 0) {
      const Batch b = std::exchange(c.recent[c.newest], Batch{});
      c.newest = (c.newest + kRecentBatches - 1) % kRecentBatches;
      --c.recent_count;
      return b;
    }
    if (c.spare != nullptr) {
      Block* head = c.spare;
      c.spare = head->next_batch;
      return Batch{head, head->count};
    }
    return Batch{};
  }

 private:
  struct Class {
    Batch recent[kRecentBatches];  // a ring; `newest` is the slot of the newest batch
    std::size_t newest = 0;
    std::size_t recent_count = 0;
    Block* spare = nullptr;  // batches linked through their head block's next_batch
  };
  internal::SpinLock mu_;  // held for a few pointer operations; heap frees happen outside it
  Class classes_[kClasses];
};

TransferStore& store() {
  static TransferStore* s = new TransferStore;  // never destroyed: threads may exit after main
  return *s;
}

// Trivially destructible so that it stays usable while other thread_locals are destroyed;
// LocalCleanup hands its blocks to the store at thread exit and then routes frees there too.
struct LocalLists {
  Block* head[kClasses];
  std::uint32_t count[kClasses];
  bool armed;    // t_cleanup was touched, so its destructor runs at thread exit
  bool retired;  // t_cleanup ran: frees go to the store's spare batches
};
constinit thread_local LocalLists t_lists{};

struct LocalCleanup {
  ~LocalCleanup() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      store().keep_spare(c, t_lists.head[c]);
      t_lists.head[c] = nullptr;
      t_lists.count[c] = 0;
    }
    t_lists.retired = true;
  }
};
thread_local LocalCleanup t_cleanup;

void arm(LocalLists& l) {
  if (l.armed) return;
  l.armed = true;
  [[maybe_unused]] LocalCleanup& c = t_cleanup;  // odr-use: constructs it and registers its destructor
}

}  // namespace

void* FramePool::allocate(std::size_t size) {
  if (size > kMaxPooledSize) {
    g_new_blocks.fetch_add(1, std::memory_order_relaxed);
    return ::operator new(size);
  }
  const std::size_t cls = class_of(size);
  LocalLists& l = t_lists;
  if (l.retired) return new_block(cls);
  if (l.head[cls] == nullptr) {
    arm(l);
    const Batch batch = store().take(cls);
    if (batch.chain == nullptr) return new_block(cls);
    l.head[cls] = batch.chain;
    l.count[cls] = batch.count;
  }
  Block* b = l.head[cls];
  l.head[cls] = b->next;
  --l.count[cls];
  // Unless a free comes first, the next allocation of this class on this thread takes the next
  // block: fetch its first lines (for writing) now. With thousands of calls in flight a block is
  // reused long after it was freed and is no longer in this core's caches, and the frame's first
  // writes would each wait for a line (batch grains, 8192 callers: 4-9 % less time per request;
  // calls whose few frames stay cached pay 2-3 %).
  if (Block* next = l.head[cls]; next != nullptr) {
    prefetch_lines(next, std::min(kPrefetchLines * kCacheLine, class_size(cls)), /*for_write=*/true);
  }
  return b;
}

void FramePool::deallocate(void* p, std::size_t size) noexcept {
  if (p == nullptr) return;
  if (size > kMaxPooledSize) {
    ::operator delete(p, size);
    return;
  }
  const std::size_t cls = class_of(size);
  auto* b = static_cast<Block*>(p);
  LocalLists& l = t_lists;
  if (l.retired) {
    b->next = nullptr;
    store().keep_spare(cls, b);
    return;
  }
  arm(l);
  b->next = l.head[cls];
  l.head[cls] = b;
  if (++l.count[cls] < kLocalCap) return;
  // Hand the newest kBatch blocks to the transfer store.
  Block* chain = l.head[cls];
  Block* tail = chain;
  for (std::uint32_t i = 1; i < kBatch; ++i) tail = tail->next;
  l.head[cls] = tail->next;
  tail->next = nullptr;
  l.count[cls] -= kBatch;
  store().put(cls, chain);
}

std::uint64_t FramePool::new_blocks() noexcept { return g_new_blocks.load(std::memory_order_relaxed); }

std::size_t FramePool::region_bytes() noexcept { return region().chunk_bytes(); }

bool FramePool::in_region(const void* p) noexcept { return region().contains(p); }

std::size_t FramePool::block_bytes(const void* p) noexcept { return region().block_size(p); }

void FramePool::prefetch(const void* frame) noexcept {
  if (frame == nullptr) return;
  const std::size_t size = region().block_size(frame);
  const std::size_t bytes = size == 0 ? kPrefetchUnknownBytes : std::min(size, kPrefetchMaxBytes);
  prefetch_lines(frame, bytes, /*for_write=*/true);
}

}  // namespace gpubridge::runtime

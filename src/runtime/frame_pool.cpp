#include "gpubridge/runtime/frame_pool.hpp"

#include <atomic>
#include <bit>
#include <mutex>
#include <new>

#include "gpubridge/core/cache_line.hpp"

namespace gpubridge::runtime {

namespace {

constexpr std::size_t kMinShift = 6;  // smallest class: 64 bytes
constexpr std::size_t kClasses = 7;   // 64 .. 4096
constexpr std::uint32_t kLocalCap = 512;
constexpr std::uint32_t kBatch = 256;
constexpr std::size_t kGlobalCapBatches = 64;

static_assert((std::size_t{1} << (kMinShift + kClasses - 1)) == FramePool::kMaxPooledSize);

// A free block. The head block of a batch in the transfer store also links the next batch.
struct Block {
  Block* next;
  Block* next_batch;
};

std::atomic<std::uint64_t> g_heap_allocations{0};

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

void* heap_block(std::size_t cls) {
  g_heap_allocations.fetch_add(1, std::memory_order_relaxed);
  return ::operator new(class_size(cls), kBlockAlign);
}

void free_block(void* p, std::size_t cls) noexcept { ::operator delete(p, class_size(cls), kBlockAlign); }

// Process-wide store of batches of kBatch blocks, per size class.
struct TransferStore {
  std::mutex mu;
  Block* batches[kClasses] = {};
  std::size_t count[kClasses] = {};

  // Takes ownership of a chain of kBatch blocks; frees it when the store is full.
  void put(std::size_t cls, Block* chain) {
    {
      std::lock_guard lock(mu);
      if (count[cls] < kGlobalCapBatches) {
        chain->next_batch = batches[cls];
        batches[cls] = chain;
        ++count[cls];
        return;
      }
    }
    while (chain != nullptr) {
      Block* next = chain->next;
      free_block(chain, cls);
      chain = next;
    }
  }

  Block* take(std::size_t cls) {
    std::lock_guard lock(mu);
    Block* chain = batches[cls];
    if (chain != nullptr) {
      batches[cls] = chain->next_batch;
      --count[cls];
    }
    return chain;
  }
};

TransferStore& store() {
  static TransferStore* s = new TransferStore;  // never destroyed: threads may exit after main
  return *s;
}

// Trivially destructible so that it stays usable while other thread_locals are destroyed;
// LocalCleanup releases its blocks at thread exit and then routes frees to the store.
struct LocalLists {
  Block* head[kClasses];
  std::uint32_t count[kClasses];
  bool armed;    // t_cleanup was touched, so its destructor runs at thread exit
  bool retired;  // t_cleanup ran: frees go to the heap
};
constinit thread_local LocalLists t_lists{};

void release_chain(std::size_t cls, Block* chain) {
  while (chain != nullptr) {
    Block* next = chain->next;
    free_block(chain, cls);
    chain = next;
  }
}

struct LocalCleanup {
  ~LocalCleanup() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      release_chain(c, t_lists.head[c]);
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
    g_heap_allocations.fetch_add(1, std::memory_order_relaxed);
    return ::operator new(size);
  }
  const std::size_t cls = class_of(size);
  LocalLists& l = t_lists;
  if (l.retired) return heap_block(cls);
  if (l.head[cls] == nullptr) {
    arm(l);
    Block* chain = store().take(cls);
    if (chain == nullptr) return heap_block(cls);
    l.head[cls] = chain;
    l.count[cls] = kBatch;
  }
  Block* b = l.head[cls];
  l.head[cls] = b->next;
  --l.count[cls];
  // The next allocation reads that block's link: fetch it now, as a block freed long ago (after
  // a burst of calls) is no longer in this core's caches.
  if (l.head[cls] != nullptr) __builtin_prefetch(l.head[cls], 1);
  return b;
}

void FramePool::deallocate(void* p, std::size_t size) noexcept {
  if (p == nullptr) return;
  if (size > kMaxPooledSize) {
    ::operator delete(p, size);
    return;
  }
  const std::size_t cls = class_of(size);
  LocalLists& l = t_lists;
  if (l.retired) {
    free_block(p, cls);
    return;
  }
  arm(l);
  auto* b = static_cast<Block*>(p);
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
  try {
    store().put(cls, chain);
  } catch (...) {  // the store's mutex failed: free the batch rather than lose it
    release_chain(cls, chain);
  }
}

std::uint64_t FramePool::heap_allocations() noexcept {
  return g_heap_allocations.load(std::memory_order_relaxed);
}

}  // namespace gpubridge::runtime

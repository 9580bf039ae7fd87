// RingClient: host producers on the request ring of each actor's shard (lock-free claims), a
// table of pending calls whose free entries sit on lock-free stacks, a host-side-locked pool of
// large-payload chunks, and dispatcher threads that each consume a fixed subset of the shards'
// completion rings, find a completion's call by the entry index in its request_id, and (thread 0)
// watch every shard's heartbeat.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>

#include "compute/ring/slot_queue.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::compute::ring {

using detail::load_acquire;
using Clock = std::chrono::steady_clock;

namespace {

// First-fit allocator of contiguous chunk runs; offsets are from the block base. Host side only.
class ChunkPool {
 public:
  explicit ChunkPool(const RingHeader& h)
      : pool_offset_(h.pool_offset), chunk_bytes_(h.pool_chunk_bytes), used_(h.pool_chunk_count, 0) {}

  struct Block {
    std::uint64_t offset = 0;  // 0: no block
    std::uint32_t chunks = 0;
  };

  // A block of at least `bytes`; offset 0 when no run of free chunks is long enough.
  Block allocate(std::size_t bytes) {
    const auto needed = static_cast<std::uint32_t>((bytes + chunk_bytes_ - 1) / chunk_bytes_);
    std::lock_guard lock(mutex_);
    std::uint32_t run = 0;
    for (std::uint32_t i = 0; i < used_.size(); ++i) {
      run = used_[i] ? 0 : run + 1;
      if (run == needed) {
        const std::uint32_t first = i + 1 - needed;
        std::fill_n(used_.begin() + first, needed, std::uint8_t{1});
        return Block{pool_offset_ + std::uint64_t{first} * chunk_bytes_, needed};
      }
    }
    return Block{};
  }
  void free(Block block) {
    if (block.offset == 0) return;
    const auto first = static_cast<std::uint32_t>((block.offset - pool_offset_) / chunk_bytes_);
    std::lock_guard lock(mutex_);
    std::fill_n(used_.begin() + first, block.chunks, std::uint8_t{0});
  }

 private:
  std::uint64_t pool_offset_;
  std::uint64_t chunk_bytes_;
  std::mutex mutex_;
  std::vector<std::uint8_t> used_;
};

// Dispatcher threads: empty polls (each yields the core) before sleeping - with calls in flight,
// then short sleeps (back_off); with none, then parking until a sender wakes the thread or
// kParkLimit passes.
constexpr std::uint32_t kPollsWhilePending = 8192;
constexpr std::uint32_t kPollsBeforePark = 64;
constexpr auto kParkLimit = std::chrono::milliseconds(20);

Error ring_error(ErrorCode code, std::string message) {
  return Error(code, std::move(message), "ring client");
}

// Waits between retries: a few yields, then short sleeps.
void back_off(std::uint32_t attempt) {
  if (attempt < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(attempt < 1024 ? 20 : 200));
  }
}

// Where a call's result goes: a callback (the *_async forms) or a promise (the future forms and the
// blocking helpers). Held in place in the call's entry, so a future costs no extra allocation.
using ResultSink = std::variant<std::monostate, ReplyCallback, std::promise<Result<Reply>>>;

void deliver_to(ResultSink& sink, Result<Reply> result) {
  if (auto* callback = std::get_if<ReplyCallback>(&sink)) {
    (*callback)(std::move(result));
  } else if (auto* promise = std::get_if<std::promise<Result<Reply>>>(&sink)) {
    promise->set_value(std::move(result));
  }
}

// The table of pending calls. A call owns one entry from send until delivery; its request_id is
// (generation << 32) | index, so the dispatcher finds the entry by index and recognises a stale
// completion (its call already failed, the entry possibly reused) by a generation that no longer
// matches.
//
// Entry phase (the low bits of the entry's atomic `word`; the generation is in the high bits):
//   free:       on a free list, or taken by a sender that has not yet published its request;
//   pending:    the request is (about to be) published; exactly one of the dispatcher that takes
//               its completion and fail_all() moves it on, by compare-and-swap of
//               (generation, pending) -> (generation, delivering);
//   delivering: the winner reads the result, recycles the entry (generation + 1, free, back on its
//               free list) and then delivers the result to the sink it moved out.
// A completion whose (generation, pending) does not match the word loses that compare-and-swap and
// is dropped, so a call is never delivered twice and a reused entry never gets an older answer.
//
// Free lists: one Treiber stack per stripe (stripe = shard, so senders of different shards and the
// dispatchers of different shards rarely touch the same head); entry i belongs to stripe
// i % stripes and always returns there; a sender whose stripe is empty takes from the others.
// Each head is (tag << 32) | index of the top entry. pop reads the top's next_free and swings the
// head to it by compare-and-swap; the tag, incremented by every pop and push, makes that swap fail
// when the top was popped and pushed again in between (ABA), where next_free may have changed. A
// stale next_free read is harmless for the same reason: the swap that would install it fails. The
// 32-bit tag repeats only after 2^32 operations on one head between a pop's load and its swap.
// Release/acquire on the head publishes next_free and the entry's fields to the next owner.
class CallTable {
 public:
  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::uint32_t kPending = 1;
  static constexpr std::uint32_t kDelivering = 2;
  static constexpr std::uint32_t kPhaseBits = 2;
  static constexpr std::uint32_t kPhaseMask = (1u << kPhaseBits) - 1;
  static constexpr std::uint32_t kGenerationLimit = 1u << (32 - kPhaseBits);  // generations 1..limit-1

  struct alignas(kRegionAlignment) Entry {
    std::atomic<std::uint32_t> word{(1u << kPhaseBits) | kFree};  // (generation << 2) | phase
    std::atomic<std::uint32_t> next_free{kNone};                 // free-list link
    std::uint32_t reply_capacity = 0;
    ChunkPool::Block payload_block;
    ChunkPool::Block reply_block;
    ResultSink sink;
  };

  static std::uint32_t generation_of(std::uint32_t word) { return word >> kPhaseBits; }
  static std::uint32_t phase_of(std::uint32_t word) { return word & kPhaseMask; }
  static std::uint32_t word_of(std::uint32_t generation, std::uint32_t phase) {
    return (generation << kPhaseBits) | phase;
  }
  static std::uint64_t request_id(std::uint32_t index, std::uint32_t generation) {
    return (std::uint64_t{generation} << 32) | index;
  }

  // Throws std::bad_alloc when the table cannot be allocated.
  CallTable(std::uint32_t capacity, std::uint32_t stripes)
      : capacity_(capacity), stripe_count_(stripes), entries_(new Entry[capacity]),
        stripes_(new Stripe[stripes]) {
    // Each stripe's stack holds its entries in increasing index order (the lowest on top).
    std::vector<std::uint32_t> tops(stripes, kNone);
    for (std::uint32_t i = capacity; i-- > 0;) {
      const std::uint32_t s = i % stripes;
      entries_[i].next_free.store(tops[s], std::memory_order_relaxed);
      tops[s] = i;
    }
    for (std::uint32_t s = 0; s < stripes; ++s) stripes_[s].head.store(tops[s], std::memory_order_relaxed);
  }

  std::uint32_t capacity() const noexcept { return capacity_; }
  Entry& entry(std::uint32_t index) noexcept { return entries_[index]; }

  // A free entry, from stripe `preferred` first, then from the others; kNone when every entry is
  // in use. Its phase is free and its generation is the one the call will carry.
  std::uint32_t take(std::uint32_t preferred) noexcept {
    for (std::uint32_t k = 0; k < stripe_count_; ++k) {
      const std::uint32_t s = (preferred + k) % stripe_count_;
      if (const std::uint32_t index = pop(stripes_[s]); index != kNone) {
        stripes_[s].in_use.fetch_add(1, std::memory_order_relaxed);
        return index;
      }
    }
    return kNone;
  }

  // Returns an entry that was taken but never became pending (its generation is unchanged: no
  // request carried it).
  void give_back(std::uint32_t index) noexcept { push(index); }

  // Ends the life of a delivering entry: next generation, free, back on its stripe's stack.
  void recycle(std::uint32_t index) noexcept {
    Entry& e = entries_[index];
    std::uint32_t generation = generation_of(e.word.load(std::memory_order_relaxed)) + 1;
    if (generation == kGenerationLimit) generation = 1;  // request ids stay non-zero
    e.word.store(word_of(generation, kFree), std::memory_order_relaxed);
    push(index);
  }

  std::size_t in_use() const noexcept {
    std::size_t total = 0;
    for (std::uint32_t s = 0; s < stripe_count_; ++s) total += stripes_[s].in_use.load(std::memory_order_acquire);
    return total;
  }

 private:
  struct alignas(kRegionAlignment) Stripe {
    std::atomic<std::uint64_t> head{kNone};     // (tag << 32) | top index
    std::atomic<std::uint64_t> in_use{0};       // entries of this stripe taken and not yet back
  };

  static std::uint32_t index_of(std::uint64_t head) { return static_cast<std::uint32_t>(head); }
  static std::uint64_t next_tag(std::uint64_t head) { return ((head >> 32) + 1) << 32; }

  std::uint32_t pop(Stripe& stripe) noexcept {
    std::uint64_t head = stripe.head.load(std::memory_order_acquire);
    for (;;) {
      const std::uint32_t top = index_of(head);
      if (top == kNone) return kNone;
      const std::uint32_t next = entries_[top].next_free.load(std::memory_order_relaxed);
      if (stripe.head.compare_exchange_weak(head, next_tag(head) | next, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
        return top;
      }
    }
  }

  void push(std::uint32_t index) noexcept {
    Stripe& stripe = stripes_[index % stripe_count_];
    stripe.in_use.fetch_sub(1, std::memory_order_release);
    std::uint64_t head = stripe.head.load(std::memory_order_relaxed);
    for (;;) {
      entries_[index].next_free.store(index_of(head), std::memory_order_relaxed);
      if (stripe.head.compare_exchange_weak(head, next_tag(head) | index, std::memory_order_acq_rel,
                                            std::memory_order_relaxed)) {
        return;
      }
    }
  }

  std::uint32_t capacity_;
  std::uint32_t stripe_count_;
  std::unique_ptr<Entry[]> entries_;
  std::unique_ptr<Stripe[]> stripes_;
};

// The default size of the call table: every slot of every ring holding a call, at most the cap.
std::uint64_t default_pending_calls(const RingHeader& h) {
  const std::uint64_t geometry =
      std::uint64_t{h.shard_count} * (std::uint64_t{h.request_capacity} + h.completion_capacity);
  return std::min<std::uint64_t>(geometry, kMaxPendingCalls);
}

}  // namespace

struct RingClient::Impl {
  RingMemory& memory;
  RingClientOptions options;
  std::uint32_t shard_count;
  std::vector<detail::SlotQueue> requests;     // by shard
  std::vector<detail::SlotQueue> completions;  // by shard
  ChunkPool pool;
  CallTable calls;

  std::mutex actors_mutex;
  std::vector<std::uint8_t> actor_in_use;  // by actor id

  std::atomic<bool> closing{false};
  std::atomic<bool> dead{false};
  // Dispatcher threads asleep on park_cv because no call was in flight; a sender wakes them (see
  // park() and wake_parked()).
  std::atomic<std::uint32_t> parked{0};
  std::mutex park_mutex;
  std::condition_variable park_cv;
  // Dispatcher threads that have seen the server stopped and then found their rings empty.
  std::atomic<std::uint32_t> drained_after_stop{0};
  std::vector<std::thread> dispatchers;

  Impl(RingMemory& m, RingClientOptions o, std::uint32_t table_size)
      : memory(m), options(o), shard_count(m.shard_count()), pool(m.header()),
        calls(table_size, m.shard_count()), actor_in_use(m.header().actor_count, 0) {
    for (std::uint32_t s = 0; s < shard_count; ++s) {
      requests.push_back(detail::request_queue(m, s));
      completions.push_back(detail::completion_queue(m, s));
    }
  }

  RingHeader& header() const { return memory.header(); }
  ServerState server_state() const { return static_cast<ServerState>(load_acquire(header().server_state)); }
  ControlWord control() const { return static_cast<ControlWord>(load_acquire(header().control)); }

  // Why a new message cannot be accepted now, if it cannot.
  std::optional<Error> refusal() const {
    if (dead.load(std::memory_order_acquire)) {
      return ring_error(ErrorCode::unavailable, "ring server dead (no heartbeat)");
    }
    if (closing.load(std::memory_order_acquire)) {
      return ring_error(ErrorCode::cancelled, "ring client closing");
    }
    if (control() != ControlWord::run || server_state() == ServerState::stopped) {
      return ring_error(ErrorCode::unavailable,
                        "ring server is stopping or stopped; not accepting messages");
    }
    return std::nullopt;
  }

  // Calls take() until it returns true, backing off between tries. Fails without a deadline
  // (resource_exhausted, full()), when the server refuses messages, or once the deadline has
  // passed (deadline_exceeded "deadline passed waiting for " + awaited()). Messages are built only
  // on failure.
  template <typename Take, typename Full, typename Awaited>
  Status retry_until(std::optional<Clock::time_point> deadline, Take&& take, Full&& full, Awaited&& awaited) const {
    for (std::uint32_t attempt = 0;; ++attempt) {
      if (take()) return {};
      if (!deadline) return ring_error(ErrorCode::resource_exhausted, full());
      if (auto why = refusal()) return *why;
      if (Clock::now() >= *deadline) {
        return ring_error(ErrorCode::deadline_exceeded, "deadline passed waiting for " + awaited());
      }
      back_off(attempt);
    }
  }

  Status enqueue(std::uint32_t actor_id, std::uint32_t handler_id, std::span<const std::byte> payload,
                 std::optional<Clock::time_point> deadline, std::uint32_t reply_capacity,
                 ResultSink sink) {
    const std::size_t limit = memory.max_payload_bytes();
    if (payload.size() > limit) {
      return ring_error(ErrorCode::invalid_argument,
                        "payload of " + std::to_string(payload.size()) +
                            " bytes exceeds the ring's largest payload of " + std::to_string(limit) + " bytes");
    }
    if (reply_capacity > limit) {
      return ring_error(ErrorCode::invalid_argument,
                        "reply capacity of " + std::to_string(reply_capacity) +
                            " bytes exceeds the ring's largest payload of " + std::to_string(limit) + " bytes");
    }
    if (auto why = refusal()) return *why;
    const std::uint32_t shard = shard_of(actor_id, shard_count);

    // Resources in order: a call entry, pool blocks, then the ring slot (a claimed slot must never
    // wait on anything: the server waits on it). Each failure gives back what was taken.
    std::uint32_t index = CallTable::kNone;
    if (Status s = retry_until(
            deadline, [&] { return (index = calls.take(shard)) != CallTable::kNone; },
            [&] { return "too many calls in flight (" + std::to_string(calls.capacity()) + ")"; },
            [&] { return "a free call entry (" + std::to_string(calls.capacity()) + " calls in flight)"; });
        !s) {
      return s;
    }

    ChunkPool::Block payload_block;
    ChunkPool::Block reply_block;
    auto release_blocks = [&] {
      pool.free(payload_block);
      pool.free(reply_block);
      payload_block = {};
      reply_block = {};
    };
    auto take_blocks = [&] {
      if (payload.size() > kInlinePayloadBytes && payload_block.offset == 0) {
        payload_block = pool.allocate(payload.size());
      }
      if (reply_capacity > kInlinePayloadBytes && reply_block.offset == 0) {
        reply_block = pool.allocate(reply_capacity);
      }
      const bool have_payload = payload.size() <= kInlinePayloadBytes || payload_block.offset != 0;
      const bool have_reply = reply_capacity <= kInlinePayloadBytes || reply_block.offset != 0;
      if (have_payload && have_reply) return true;
      release_blocks();  // a partial allocation goes back so two waiting senders cannot starve each other
      return false;
    };
    if (Status s = retry_until(
            deadline, take_blocks, [] { return std::string("payload pool exhausted"); },
            [] { return std::string("payload pool space"); });
        !s) {
      calls.give_back(index);
      return s;
    }

    std::uint64_t position = 0;
    RingSlot* slot = nullptr;
    detail::SlotQueue& ring = requests[shard];
    if (Status s = retry_until(
            deadline, [&] { return (slot = ring.try_claim(position)) != nullptr; },
            [] { return std::string("ring full"); }, [] { return std::string("a free ring slot"); });
        !s) {
      release_blocks();
      calls.give_back(index);
      return s;
    }

    // The slot is ours and invisible to the server until published: fill it, make the entry
    // pending, publish. The entry's fields are written before its release store of `pending`, and
    // that store comes before the slot's publication, so whoever wins the entry sees them.
    CallTable::Entry& entry = calls.entry(index);
    const std::uint32_t generation = CallTable::generation_of(entry.word.load(std::memory_order_relaxed));
    slot->request_id = CallTable::request_id(index, generation);
    slot->actor_id = actor_id;
    slot->handler_id = handler_id;
    slot->payload_bytes = static_cast<std::uint32_t>(payload.size());
    slot->reply_capacity = reply_capacity;
    slot->reply_offset = reply_block.offset;
    slot->status = 0;
    if (payload_block.offset != 0) {
      slot->flags = kSlotPayloadInPool;
      slot->payload_offset = payload_block.offset;
      if (!payload.empty()) std::memcpy(memory.base() + payload_block.offset, payload.data(), payload.size());
    } else {
      slot->flags = 0;
      slot->payload_offset = 0;
      if (!payload.empty()) std::memcpy(slot->inline_payload, payload.data(), payload.size());
    }
    entry.reply_capacity = reply_capacity;
    entry.payload_block = payload_block;
    entry.reply_block = reply_block;
    entry.sink = std::move(sink);
    entry.word.store(CallTable::word_of(generation, CallTable::kPending), std::memory_order_release);
    detail::SlotQueue::publish(*slot, position);
    wake_parked();
    return {};
  }

  // A dispatcher with no call in flight sleeps (park) rather than polling: a sender, whose call
  // entry is counted in `calls` from calls.take() on, wakes it. The fences pair up (Dekker): either
  // the sender sees the dispatcher parked, or the dispatcher sees the call and does not sleep.
  void wake_parked() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (parked.load(std::memory_order_relaxed) == 0) return;
    { std::lock_guard lock(park_mutex); }  // a dispatcher between its check and its wait is waiting now
    park_cv.notify_all();
  }

  // Sleeps while no call is in flight, up to kParkLimit (lifecycle words are looked at again then).
  void park() {
    parked.fetch_add(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    {
      std::unique_lock lock(park_mutex);
      park_cv.wait_for(lock, kParkLimit,
                       [&] { return calls.in_use() > 0 || closing.load(std::memory_order_acquire); });
    }
    parked.fetch_sub(1, std::memory_order_relaxed);
  }

  // Wakes parked dispatchers for good (the client closes).
  void close() {
    closing.store(true, std::memory_order_release);
    { std::lock_guard lock(park_mutex); }
    park_cv.notify_all();
    for (std::thread& thread : dispatchers) thread.join();
  }

  // Reads one completion into a reply for its pending call.
  Result<Reply> read_completion(const RingSlot& slot, const CallTable::Entry& call) const {
    const auto code = static_cast<ErrorCode>(slot.status);
    if (code != ErrorCode::ok) {
      const std::size_t n = std::min<std::size_t>(slot.payload_bytes, kInlinePayloadBytes);
      return Error(code, std::string(reinterpret_cast<const char*>(slot.inline_payload), n), "ring server");
    }
    if (slot.payload_bytes > call.reply_capacity) {
      return ring_error(ErrorCode::internal, "malformed completion: reply longer than its capacity");
    }
    const std::byte* source = slot.inline_payload;
    if (slot.flags & kSlotPayloadInPool) {
      if (slot.payload_offset != call.reply_block.offset || call.reply_block.offset == 0) {
        return ring_error(ErrorCode::internal, "malformed completion: reply outside its reply block");
      }
      source = memory.base() + slot.payload_offset;
    } else if (slot.payload_bytes > kInlinePayloadBytes) {
      return ring_error(ErrorCode::internal, "malformed completion: inline reply longer than a slot");
    }
    return Reply(source, source + slot.payload_bytes);
  }

  // Finishes an entry this thread won (phase delivering): frees its pool blocks when asked,
  // recycles it, then delivers `result` (after the recycle, so pending_calls() no longer counts
  // the call when its future or callback sees the result).
  void finish(std::uint32_t index, bool free_blocks, Result<Reply> result) {
    CallTable::Entry& entry = calls.entry(index);
    if (free_blocks) {
      pool.free(entry.payload_block);
      pool.free(entry.reply_block);
    }
    ResultSink sink = std::move(entry.sink);
    entry.sink = std::monostate{};
    calls.recycle(index);
    deliver_to(sink, std::move(result));
  }

  // Fails every pending call (those whose completion no dispatcher has taken); frees their pool
  // blocks unless the server may still touch them. Callers: dispatcher thread 0 and the destructor
  // (after the dispatchers have stopped), never two at once.
  void fail_all(const Error& error, bool free_blocks) {
    for (std::uint32_t i = 0; i < calls.capacity(); ++i) {
      std::atomic<std::uint32_t>& word = calls.entry(i).word;
      std::uint32_t seen = word.load(std::memory_order_acquire);
      if (CallTable::phase_of(seen) != CallTable::kPending) continue;
      const std::uint32_t mine = CallTable::word_of(CallTable::generation_of(seen), CallTable::kDelivering);
      if (!word.compare_exchange_strong(seen, mine, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        continue;  // a dispatcher took its completion first
      }
      finish(i, free_blocks, error);
    }
  }

  // Consumes up to `limit` completions of one shard's ring; returns how many.
  std::uint32_t dispatch_shard(std::uint32_t shard, std::uint32_t limit) {
    detail::SlotQueue& ring = completions[shard];
    std::uint32_t taken = 0;
    for (; taken < limit; ++taken) {
      std::uint64_t position = 0;
      RingSlot* slot = ring.try_peek(position);
      if (slot == nullptr) break;
      const std::uint64_t id = slot->request_id;
      const auto index = static_cast<std::uint32_t>(id);
      const auto generation = static_cast<std::uint32_t>(id >> 32);
      bool won = false;
      if (index < calls.capacity() && generation > 0 && generation < CallTable::kGenerationLimit) {
        std::uint32_t expected = CallTable::word_of(generation, CallTable::kPending);
        won = calls.entry(index).word.compare_exchange_strong(
            expected, CallTable::word_of(generation, CallTable::kDelivering), std::memory_order_acq_rel,
            std::memory_order_relaxed);
      }
      if (!won) {  // its caller was already failed (stopped, dead, closing): nothing to deliver
        ring.release(*slot, position);
        continue;
      }
      Result<Reply> reply = read_completion(*slot, calls.entry(index));
      ring.release(*slot, position);
      finish(index, /*free_blocks=*/true, std::move(reply));
    }
    return taken;
  }

  // One pass over the completion rings of dispatcher `thread`'s shards (round robin, up to a batch
  // each); how many were taken.
  std::uint32_t dispatch_pass(std::uint32_t thread) {
    constexpr std::uint32_t kBatchPerShard = 64;
    std::uint32_t taken = 0;
    for (std::uint32_t s = thread; s < shard_count; s += options.dispatcher_threads) {
      taken += dispatch_shard(s, kBatchPerShard);
    }
    return taken;
  }

  // Dispatcher thread `thread`: its shards' completions; thread 0 also the watchdog and the
  // failures of calls that will never complete.
  void run_dispatcher(std::uint32_t thread) {
    const bool watchdog = thread == 0;
    // Watchdog: each shard's last heartbeat and when it last moved.
    std::vector<std::uint64_t> last_heartbeat(watchdog ? shard_count : 0);
    std::vector<Clock::time_point> last_change(last_heartbeat.size(), Clock::now());
    for (std::uint32_t s = 0; s < last_heartbeat.size(); ++s) {
      last_heartbeat[s] = load_acquire(memory.shard(s).heartbeat);
    }
    bool drained = false;
    std::uint32_t idle = 0;
    std::uint32_t busy_passes = 0;
    while (!closing.load(std::memory_order_acquire)) {
      // While completions flow, look at the lifecycle words and heartbeats only every 64 passes.
      const std::uint32_t taken = dispatch_pass(thread);
      if (taken > 0) {
        idle = 0;
        if (++busy_passes % 64 != 0) continue;
      }
      const ServerState state = server_state();
      const ControlWord word = control();
      const bool never_runs = state == ServerState::not_started && word == ControlWord::stop;
      if (state == ServerState::stopped || never_runs) {
        // Every completion was published before `stopped`: take this thread's, then (thread 0,
        // once every thread has taken its own) fail the rest.
        while (dispatch_pass(thread) > 0) {
        }
        if (!drained) {
          drained = true;
          drained_after_stop.fetch_add(1, std::memory_order_acq_rel);
        }
        if (watchdog && drained_after_stop.load(std::memory_order_acquire) == options.dispatcher_threads &&
            calls.in_use() > 0) {
          fail_all(ring_error(ErrorCode::cancelled, "ring server stopped before the message ran"), true);
        }
      } else if (watchdog && state == ServerState::running && !dead.load(std::memory_order_relaxed)) {
        // While calls are pending every shard must beat: a forward chain may complete on any shard.
        const bool waiting = calls.in_use() > 0;
        const Clock::time_point now = Clock::now();
        for (std::uint32_t s = 0; s < shard_count; ++s) {
          const std::uint64_t beat = load_acquire(memory.shard(s).heartbeat);
          if (beat != last_heartbeat[s] || !waiting) {
            last_heartbeat[s] = beat;
            last_change[s] = now;
          } else if (now - last_change[s] > options.dead_after) {
            dead.store(true, std::memory_order_release);
            std::string why = "ring server dead: no heartbeat for " + std::to_string(options.dead_after.count()) + " ms";
            if (shard_count > 1) why += " on shard " + std::to_string(s);
            fail_all(ring_error(ErrorCode::unavailable, why), /*free_blocks=*/false);  // a hung server could still write into them
            break;
          }
        }
      } else if (watchdog) {
        // Not started yet or stepped aside (a persistent kernel returned while its device runs an
        // operation that needs it idle): nothing beats; the window starts again when it runs.
        std::fill(last_change.begin(), last_change.end(), Clock::now());
      }
      if (watchdog && dead.load(std::memory_order_relaxed) && calls.in_use() > 0) {
        fail_all(ring_error(ErrorCode::unavailable, "ring server dead (no heartbeat)"), false);
      }
      if (taken == 0) {
        // With calls in flight a reply is due: poll, yielding the core, for a while before short
        // sleeps. With none, poll briefly (a caller often sends again at once), then sleep until a
        // sender wakes this thread.
        ++idle;
        if (calls.in_use() > 0) {
          if (idle < kPollsWhilePending) {
            std::this_thread::yield();
          } else {
            back_off(64 + (idle - kPollsWhilePending));  // short sleeps first
          }
        } else if (idle < kPollsBeforePark) {
          std::this_thread::yield();
        } else {
          park();
          idle = 0;
        }
      }
    }
  }

  // Actor ids: reserve a free id of a type (checking the initial state's size), free one, or
  // check that one is in use by this client.
  Result<std::uint32_t> reserve_actor(std::uint32_t type_id, std::size_t initial_bytes);
  void set_actor_in_use(std::uint32_t actor_id, bool in_use);
  Status check_active(std::uint32_t actor_id);

  std::size_t pending_calls() const { return calls.in_use(); }

  Result<std::future<Result<Reply>>> send_for_future(std::uint32_t actor_id, std::uint32_t handler_id,
                                                     std::span<const std::byte> payload,
                                                     std::optional<Clock::time_point> deadline,
                                                     std::uint32_t reply_capacity) {
    std::promise<Result<Reply>> promise;
    std::future<Result<Reply>> future = promise.get_future();
    if (Status s = enqueue(actor_id, handler_id, payload, deadline, reply_capacity, std::move(promise)); !s) {
      return s.error();
    }
    return future;
  }

  Result<Reply> call_and_wait(std::uint32_t actor_id, std::uint32_t handler_id,
                              std::span<const std::byte> payload, Clock::time_point deadline,
                              std::uint32_t reply_capacity) {
    auto future = send_for_future(actor_id, handler_id, payload, deadline, reply_capacity);
    if (!future) return future.error();
    return future->get();
  }
};

Result<std::unique_ptr<RingClient>> RingClient::create(RingMemory& memory, RingClientOptions options) {
  const RingHeader& h = memory.header();
  if (h.magic != kRingMagic || h.version != kRingVersion) {
    return ring_error(ErrorCode::invalid_argument,
                      "memory block is not a ring block of version " + std::to_string(kRingVersion));
  }
  if (options.dead_after.count() <= 0) {
    return ring_error(ErrorCode::invalid_argument, "dead_after must be positive");
  }
  if (options.max_pending_calls > kMaxPendingCalls) {
    return ring_error(ErrorCode::invalid_argument,
                      "max_pending_calls = " + std::to_string(options.max_pending_calls) + " is outside 1.." +
                          std::to_string(kMaxPendingCalls) + " (0 picks the default)");
  }
  if (options.dispatcher_threads == 0 || options.dispatcher_threads > h.shard_count) {
    return ring_error(ErrorCode::invalid_argument,
                      "dispatcher_threads = " + std::to_string(options.dispatcher_threads) + " is outside 1.." +
                          std::to_string(h.shard_count) + " (the block's shard count)");
  }
  const auto table_size = static_cast<std::uint32_t>(
      options.max_pending_calls != 0 ? options.max_pending_calls : default_pending_calls(h));
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(memory, options, table_size);
  } catch (const std::bad_alloc&) {
    return ring_error(ErrorCode::resource_exhausted,
                      "cannot allocate a table of " + std::to_string(table_size) + " pending calls");
  }
  try {
    for (std::uint32_t t = 0; t < options.dispatcher_threads; ++t) {
      impl->dispatchers.push_back(
          named_thread("gb-ringc-" + std::to_string(t), [raw = impl.get(), t] { raw->run_dispatcher(t); }));
    }
  } catch (const std::system_error& e) {
    impl->close();
    return ring_error(ErrorCode::resource_exhausted, std::string("cannot start a dispatcher thread: ") + e.what());
  }
  return std::unique_ptr<RingClient>(new RingClient(std::move(impl)));
}

RingClient::RingClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RingClient::~RingClient() {
  impl_->close();
  // The server may still serve these; their blocks stay reserved (the block dies with RingMemory).
  impl_->fail_all(ring_error(ErrorCode::cancelled, "ring client closed"), false);
}

Result<std::future<Result<Reply>>> RingClient::try_send(std::uint32_t actor_id, std::uint32_t handler_id,
                                                        std::span<const std::byte> payload,
                                                        SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  return impl_->send_for_future(actor_id, handler_id, payload, std::nullopt, options.reply_capacity);
}

Result<std::future<Result<Reply>>> RingClient::send(std::uint32_t actor_id, std::uint32_t handler_id,
                                                    std::span<const std::byte> payload,
                                                    Clock::time_point deadline, SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  return impl_->send_for_future(actor_id, handler_id, payload, deadline, options.reply_capacity);
}

Status RingClient::send_async(std::uint32_t actor_id, std::uint32_t handler_id,
                              std::span<const std::byte> payload, Clock::time_point deadline,
                              ReplyCallback callback, SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  if (!callback) return ring_error(ErrorCode::invalid_argument, "send_async needs a callback");
  return impl_->enqueue(actor_id, handler_id, payload, deadline, options.reply_capacity, std::move(callback));
}

Status RingClient::try_send_async(std::uint32_t actor_id, std::uint32_t handler_id,
                                  std::span<const std::byte> payload, ReplyCallback callback,
                                  SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  if (!callback) return ring_error(ErrorCode::invalid_argument, "try_send_async needs a callback");
  return impl_->enqueue(actor_id, handler_id, payload, std::nullopt, options.reply_capacity, std::move(callback));
}

Result<std::uint32_t> RingClient::Impl::reserve_actor(std::uint32_t type_id, std::size_t initial_bytes) {
  const ActorEntry* table = detail::actor_table(memory);
  const std::uint32_t count = header().actor_count;
  bool type_known = false;
  std::lock_guard lock(actors_mutex);
  for (std::uint32_t id = 0; id < count; ++id) {
    if (table[id].type_id != type_id) continue;
    type_known = true;
    if (initial_bytes > table[id].state_bytes) {
      return ring_error(ErrorCode::invalid_argument,
                        "initial state of " + std::to_string(initial_bytes) + " bytes exceeds actor type " +
                            std::to_string(type_id) + "'s state size " + std::to_string(table[id].state_bytes));
    }
    if (actor_in_use[id] == 0) {
      actor_in_use[id] = 1;
      return id;
    }
  }
  if (!type_known) return ring_error(ErrorCode::not_found, "unknown actor type " + std::to_string(type_id));
  return ring_error(ErrorCode::resource_exhausted,
                    "every actor id of type " + std::to_string(type_id) + " is in use");
}

void RingClient::Impl::set_actor_in_use(std::uint32_t actor_id, bool in_use) {
  std::lock_guard lock(actors_mutex);
  actor_in_use[actor_id] = in_use ? 1 : 0;
}

Status RingClient::Impl::check_active(std::uint32_t actor_id) {
  if (actor_id >= header().actor_count) {
    return ring_error(ErrorCode::not_found, "unknown actor id " + std::to_string(actor_id));
  }
  std::lock_guard lock(actors_mutex);
  if (actor_in_use[actor_id] == 0) {
    return ring_error(ErrorCode::failed_precondition, "actor " + std::to_string(actor_id) + " is not active");
  }
  return {};
}

Result<std::uint32_t> RingClient::activate(std::uint32_t type_id, std::span<const std::byte> initial_state,
                                           Clock::time_point deadline) {
  Result<std::uint32_t> picked = impl_->reserve_actor(type_id, initial_state.size());
  if (!picked) return picked.error();
  Result<Reply> done = impl_->call_and_wait(*picked, kActivateHandler, initial_state, deadline, 0);
  if (!done) {
    impl_->set_actor_in_use(*picked, false);
    return done.error();
  }
  return *picked;
}

Status RingClient::try_activate_async(std::uint32_t type_id, std::span<const std::byte> initial_state,
                                      std::function<void(Result<std::uint32_t>)> callback) {
  if (!callback) return ring_error(ErrorCode::invalid_argument, "try_activate_async needs a callback");
  Result<std::uint32_t> picked = impl_->reserve_actor(type_id, initial_state.size());
  if (!picked) return picked.error();
  const std::uint32_t id = *picked;
  Impl* impl = impl_.get();
  Status queued = impl->enqueue(id, kActivateHandler, initial_state, std::nullopt, 0,
                                ReplyCallback([impl, id, callback](Result<Reply> done) {
                                  if (!done) {
                                    impl->set_actor_in_use(id, false);
                                    callback(done.error());
                                    return;
                                  }
                                  callback(id);
                                }));
  if (!queued) impl->set_actor_in_use(id, false);
  return queued;
}

Result<Reply> RingClient::deactivate(std::uint32_t actor_id, Clock::time_point deadline) {
  if (Status s = impl_->check_active(actor_id); !s) return s.error();
  const std::uint32_t state_bytes = detail::actor_table(impl_->memory)[actor_id].state_bytes;
  Result<Reply> state = impl_->call_and_wait(actor_id, kDeactivateHandler, {}, deadline, state_bytes);
  if (state) impl_->set_actor_in_use(actor_id, false);
  return state;
}

Status RingClient::try_deactivate_async(std::uint32_t actor_id, ReplyCallback callback) {
  if (!callback) return ring_error(ErrorCode::invalid_argument, "try_deactivate_async needs a callback");
  if (Status s = impl_->check_active(actor_id); !s) return s;
  const std::uint32_t state_bytes = detail::actor_table(impl_->memory)[actor_id].state_bytes;
  Impl* impl = impl_.get();
  return impl->enqueue(actor_id, kDeactivateHandler, {}, std::nullopt, state_bytes,
                       ReplyCallback([impl, actor_id, callback](Result<Reply> state) {
                         if (state) impl->set_actor_in_use(actor_id, false);
                         callback(std::move(state));
                       }));
}

std::size_t RingClient::pending_calls() const { return impl_->pending_calls(); }

}  // namespace gpubridge::compute::ring

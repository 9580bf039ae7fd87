#pragma once
// Ring protocol for persistent ("resident") actors: a request ring (host -> server) and a completion
// ring (server -> host) in one shared memory block. The CPU server here and the CUDA persistent
// kernel (over cudaHostAlloc(cudaHostAllocMapped) memory) follow the SAME layout and protocol.
//
// Memory block (all fields plain-old-data; every reference is a byte offset from the block base,
// never a pointer; every region starts on a 64-byte boundary; sizes in RingHeader):
//   [RingHeader][RingShardHeader x shard_count]
//   [shard 0: request slots][shard 0: completion slots] ... [shard S-1: request][shard S-1: completion]
//   [actor table][actor states][payload pool]
// Offsets (all from the block base): RingHeader at 0; shard s's RingShardHeader at
//   shard_table_offset + s * sizeof(RingShardHeader) (384 bytes); its request slots at its
//   request_slots_offset and its completion slots at its completion_slots_offset (request_capacity
//   and completion_capacity slots of kSlotBytes, the same for every shard); the actor table at
//   actor_table_offset; each actor's state at its ActorEntry::state_offset; the pool at pool_offset.
// Shards: a block holds shard_count independent (request ring, completion ring) pairs, each with
//   its own counters (one cache line each) and its own heartbeat word. An actor belongs to shard
//   shard_of(actor_id, shard_count) = actor_id % shard_count: every message to it travels on that
//   shard's request ring and only that shard's server thread (or CUDA block) touches its state.
//   Completions are written to the completion ring of the shard that finishes the call (for a
//   forward chain: the shard of the chain's last actor); the client correlates by request_id.
// Slot: 256 bytes (RingSlot). `turn` is the slot's sequence number (Vyukov bounded queue):
//   ring of capacity C (a power of two, all C slots usable), slot i starts with turn = i.
//   Producer claiming position p (slot p & (C-1)): ready to write when turn == p; it claims p by
//   compare-and-swap of the ring's `enqueue` counter p -> p+1 (request ring: many producers),
//   fills the slot, then publishes with a release store turn = p + 1.
//   Consumer at position p: ready to read when turn == p + 1 (acquire load); it copies what it
//   needs, then frees the slot with a release store turn = p + C and advances `dequeue` to p + 1.
//   turn < p for a producer means the ring is full; turn < p + 1 for a consumer means empty.
//   Counters are 64-bit and never wrap in practice; slot index = counter & (C-1).
// Request slot: request_id (caller's correlation number), actor_id, handler_id, payload_bytes;
//   payload inline (<= kInlinePayloadBytes) or, with kSlotPayloadInPool, at payload_offset in the
//   pool. reply_capacity bounds the reply; reply_offset != 0 names a pool block of that capacity
//   reserved by the host for a reply larger than kInlinePayloadBytes. The server never allocates.
// Completion slot: same request_id/actor_id/handler_id, status (ErrorCode), payload_bytes and the
//   reply inline or at payload_offset (the host's reply block). The server frees a request's slot
//   before publishing its completion, so a caller that holds its reply can reuse that slot. On error the payload is the error
//   message text (inline, truncated to kInlinePayloadBytes).
// Actor table: actor_count ActorEntry records (type, state offset/size, active flag). Only the
//   server writes entries and states; activation/deactivation travel through the request ring as
//   reserved handlers (kActivateHandler copies the payload into the state and marks it active;
//   kDeactivateHandler replies with the state and marks it inactive), so they are ordered with
//   the actor's other messages and no lock is shared with the server.
// Liveness and lifecycle words: in RingHeader `control` (host writes: run, drain, stop) and
//   `server_state` (server writes: not_started, running, stopped; stopped once every shard has
//   finished; a persistent kernel's host marks it stepped_aside while the kernel has returned
//   for an operation that needs an idle device, and running again before relaunching it); in each
//   RingShardHeader `heartbeat` (that shard's server increments it every poll iteration; the host
//   watchdog declares the server dead when any shard's heartbeat stops moving while calls are
//   pending and the server is running). Handlers must therefore be shorter than the watchdog's window.
// Device-side messaging (server-internal queues): a handler given a HandlerContext may post()
//   (fire-and-forget) or forward() (tail call: the final reply of the chain answers the original
//   host caller) messages to other actors on the same server, without a host round trip. They are
//   InternalMessage records (plain data, payload inline only) in one bounded queue per shard in
//   server-private memory (device memory for the CUDA kernel). A message goes to the queue of its
//   target's shard, so a queue has many producers (every shard's handlers) and one consumer (its
//   shard): a lock-free Vyukov queue like the rings (claim a position by compare-and-swap, publish
//   with a release store of the slot's turn). post()/forward() claim the slot and write the message
//   at once; the server publishes it when the handler returns success and publishes it as dropped
//   (skipped by the consumer) when the handler fails, so a failed handler's messages never run.
//   Bounds: queue slots per shard and hops per chain (CpuRingServerOptions); a full target queue
//   or a chain over the hop limit fails the post/forward call with resource_exhausted, which the
//   handler may return to its caller.
// Ordering guarantees:
//   - Messages to one actor from the host run in the order they were enqueued on its shard's
//     request ring (one producer's sends to one actor: in send order), one at a time.
//   - A shard serves its internal queue before its next host request, so with shard_count = 1 every
//     effect of a host message's chain is visible to any host message dequeued after that chain's
//     reply (as before sharding).
//   - Across shards: a post to an actor of another shard is served asynchronously by that shard; it
//     may run after the poster's host call has been answered and after later host messages to its
//     target. Messages one handler sends to one shard keep their order; messages from different
//     shards to one shard interleave in the order their slots were claimed.
//   - A forward chain answers its host call only when the chain ends (from the last hop's shard),
//     whichever shards it crosses; hops of one chain run one after another.
//   - drain finishes every queued host message and every device-side message and chain on every
//     shard before any shard stops; stop cancels what is queued on every shard.
// Fences: host side uses std::atomic_ref with acquire loads of turn/control/state/heartbeat and
//   release stores after writing a slot's body; the device side uses volatile loads of control
//   words, acquire loads (system scope) of turns, and a system-scope fence between writing slot
//   bodies and the stores of their turns (and between reading bodies and freeing their slots):
//   see cuda_ring.hpp.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::ring {

inline constexpr std::uint32_t kRingMagic = 0x47425247u;  // "GBRG"
inline constexpr std::uint32_t kRingVersion = 2;  // 2: shards
inline constexpr std::size_t kRegionAlignment = 64;
inline constexpr std::size_t kSlotBytes = 256;
inline constexpr std::size_t kSlotHeaderBytes = 56;
inline constexpr std::size_t kInlinePayloadBytes = kSlotBytes - kSlotHeaderBytes;  // 200
inline constexpr std::uint32_t kMaxRingSlots = 1u << 24;
inline constexpr std::uint32_t kMaxShards = 64;

// The shard that serves `actor_id` in a block of `shard_count` shards (>= 1). The one routing
// rule: the client, the CPU server and the CUDA kernel (GB_SHARD_OF in its source) all use it.
constexpr std::uint32_t shard_of(std::uint32_t actor_id, std::uint32_t shard_count) noexcept {
  return actor_id % shard_count;
}

// Handler ids at or above kFirstReservedHandler belong to the protocol.
inline constexpr std::uint32_t kFirstReservedHandler = 0xFFFFFF00u;
inline constexpr std::uint32_t kActivateHandler = 0xFFFFFFF0u;
inline constexpr std::uint32_t kDeactivateHandler = 0xFFFFFFF1u;

// RingSlot::flags bits.
inline constexpr std::uint32_t kSlotPayloadInPool = 1u;

enum class ControlWord : std::uint32_t { run = 0, drain = 1, stop = 2 };
enum class ServerState : std::uint32_t { not_started = 0, running = 1, stopped = 2, stepped_aside = 3 };

struct alignas(kRegionAlignment) RingSlot {
  std::uint64_t turn;            // sequence number of the slot (see protocol above); atomic
  std::uint64_t request_id;      // correlation number chosen by the host
  std::uint32_t actor_id;
  std::uint32_t handler_id;
  std::uint32_t payload_bytes;
  std::uint32_t flags;           // kSlotPayloadInPool
  std::uint64_t payload_offset;  // pool block of the payload when kSlotPayloadInPool
  std::uint64_t reply_offset;    // request: pool block reserved for the reply (0: inline reply)
  std::uint32_t reply_capacity;  // request: most bytes the reply may hold
  std::uint32_t status;          // completion: ErrorCode
  std::byte inline_payload[kInlinePayloadBytes];
};
static_assert(sizeof(RingSlot) == kSlotBytes);

struct alignas(kRegionAlignment) RingHeader {
  // Geometry: written once when the block is created, read-only afterwards.
  std::uint32_t magic;
  std::uint32_t version;
  std::uint32_t request_capacity;     // slots of each shard's request ring
  std::uint32_t completion_capacity;  // slots of each shard's completion ring
  std::uint32_t shard_count;          // 1..kMaxShards
  std::uint32_t reserved0;
  std::uint64_t shard_table_offset;   // RingShardHeader[shard_count]
  std::uint64_t actor_table_offset;
  std::uint64_t pool_offset;
  std::uint32_t pool_chunk_bytes;
  std::uint32_t pool_chunk_count;
  std::uint32_t actor_count;
  std::uint32_t reserved1;
  std::uint64_t total_bytes;
  // Lifecycle (atomic).
  alignas(kRegionAlignment) std::uint32_t server_state;  // ServerState, server writes
  std::uint32_t control;                                  // ControlWord, host writes
};

// One shard's rings: geometry, then each counter and the heartbeat on its own cache line.
struct alignas(kRegionAlignment) RingShardHeader {
  std::uint64_t request_slots_offset;
  std::uint64_t completion_slots_offset;
  alignas(kRegionAlignment) std::uint64_t request_enqueue;     // host producers (CAS)
  alignas(kRegionAlignment) std::uint64_t request_dequeue;     // this shard's server only
  alignas(kRegionAlignment) std::uint64_t completion_enqueue;  // this shard's server only
  alignas(kRegionAlignment) std::uint64_t completion_dequeue;  // host dispatcher only
  alignas(kRegionAlignment) std::uint64_t heartbeat;           // this shard's server increments
};
static_assert(sizeof(RingShardHeader) == 6 * kRegionAlignment);

struct alignas(32) ActorEntry {
  std::uint64_t state_offset;  // from the block base
  std::uint32_t state_bytes;
  std::uint32_t type_id;
  std::uint32_t active;        // server writes (1 = active)
  std::uint32_t reserved[3];
};
static_assert(sizeof(ActorEntry) == 32);

struct ActorTypeConfig {
  std::uint32_t type_id = 0;
  std::uint32_t state_bytes = 0;  // fixed state size of every actor of this type (> 0)
  std::uint32_t max_actors = 0;   // actor ids of this type are a contiguous range
};

struct RingConfig {
  std::uint32_t shards = 1;               // (request, completion) ring pairs, 1..kMaxShards
  std::uint32_t request_slots = 1024;     // per shard: power of two, 2..kMaxRingSlots
  std::uint32_t completion_slots = 1024;  // per shard: power of two, 2..kMaxRingSlots
  std::uint32_t pool_chunk_bytes = 4096;  // multiple of 64; payloads > inline use whole chunks
  std::uint32_t pool_chunks = 1024;       // 0: no pool (payloads and replies inline only)
  std::vector<ActorTypeConfig> actor_types;
};

// Owns one shared block laid out as above (on the CPU: zeroed, 64-byte aligned host memory).
// Must outlive every client and server attached to it. Not copyable.
class RingMemory {
 public:
  // invalid_argument for shards outside 1..kMaxShards, a zero-sized or non-power-of-two ring, bad
  // pool geometry, a zero state size, or duplicate actor type ids; resource_exhausted when the
  // block cannot be allocated.
  static Result<std::unique_ptr<RingMemory>> create(const RingConfig& config);
  ~RingMemory();
  RingMemory(const RingMemory&) = delete;
  RingMemory& operator=(const RingMemory&) = delete;

  std::byte* base() const noexcept { return base_; }
  std::size_t size_bytes() const noexcept { return size_; }
  RingHeader& header() const noexcept { return *reinterpret_cast<RingHeader*>(base_); }
  std::uint32_t shard_count() const noexcept { return header().shard_count; }
  // Shard `index` (< shard_count()) of the block.
  RingShardHeader& shard(std::uint32_t index) const noexcept {
    return reinterpret_cast<RingShardHeader*>(base_ + header().shard_table_offset)[index];
  }
  const RingConfig& config() const noexcept { return config_; }
  // Largest payload or reply one message can carry (the whole pool, or inline without a pool).
  std::size_t max_payload_bytes() const noexcept;

 private:
  RingMemory(std::byte* base, std::size_t size, RingConfig config)
      : base_(base), size_(size), config_(std::move(config)) {}
  std::byte* base_;
  std::size_t size_;
  RingConfig config_;
};

// One message in the server-internal queue (see device-side messaging above). Plain data.
struct InternalMessage {
  std::uint64_t origin_request_id;      // host call the chain answers (when kInternalRepliesToHost)
  std::uint64_t origin_reply_offset;    // that call's reply block (0: inline reply)
  std::uint32_t origin_reply_capacity;
  std::uint32_t origin_actor_id;        // the actor and handler the host called
  std::uint32_t origin_handler_id;
  std::uint32_t actor_id;               // target of this message
  std::uint32_t handler_id;
  std::uint32_t hops;                   // 1 for a message sent by a handler serving a host message
  std::uint32_t flags;                  // kInternalRepliesToHost
  std::uint32_t payload_bytes;          // <= kInlinePayloadBytes
  std::byte payload[kInlinePayloadBytes];
};
inline constexpr std::uint32_t kInternalRepliesToHost = 1u;

namespace detail {
struct Outbox;
}

// What a messaging handler sees while it serves one message (on the server thread, valid only
// during that call). post()/forward() stage messages that the server commits when the handler
// returns success and drops when it fails. Errors: invalid_argument (reserved handler id, payload
// over kInlinePayloadBytes), failed_precondition (a second forward()), resource_exhausted (the
// internal queue of the target's shard is full, or the chain would exceed the hop limit).
class HandlerContext {
 public:
  HandlerContext(std::uint32_t actor_id, std::uint32_t hops, bool replies_to_host,
                 std::span<std::byte> state, std::span<const std::byte> payload,
                 std::span<std::byte> reply_area, detail::Outbox& outbox) noexcept
      : actor_id_(actor_id), hops_(hops), replies_to_host_(replies_to_host), state_(state),
        payload_(payload), reply_area_(reply_area), outbox_(outbox) {}

  std::uint32_t actor_id() const noexcept { return actor_id_; }
  // 0 for a message from the host; n for the n-th device-side hop of a chain.
  std::uint32_t hops() const noexcept { return hops_; }
  // True when this message's reply (or that of its forward) completes a host call.
  bool replies_to_host() const noexcept { return replies_to_host_; }
  std::span<std::byte> state() const noexcept { return state_; }
  std::span<const std::byte> payload() const noexcept { return payload_; }
  std::span<std::byte> reply_area() const noexcept { return reply_area_; }

  // Fire-and-forget: the target's reply is dropped; its failure is counted in the server's
  // statistics (internal_failures, last_internal_error).
  Status post(std::uint32_t actor_id, std::uint32_t handler_id, std::span<const std::byte> payload);
  // Tail call, at most once per message: this handler's own reply is discarded and the target's
  // reply (or error) answers this message's caller instead (the host call, if there is one).
  Status forward(std::uint32_t actor_id, std::uint32_t handler_id, std::span<const std::byte> payload);
  bool forwarded() const noexcept { return forwarded_; }

 private:
  Status stage(std::uint32_t actor_id, std::uint32_t handler_id, std::span<const std::byte> payload,
               bool forward);
  std::uint32_t actor_id_;
  std::uint32_t hops_;
  bool replies_to_host_;
  bool forwarded_ = false;
  std::span<std::byte> state_;
  std::span<const std::byte> payload_;
  std::span<std::byte> reply_area_;
  detail::Outbox& outbox_;
};

// A handler: reads the payload, may update the actor's state, writes at most payload_out.size()
// bytes of reply and returns how many it wrote. Runs on the server thread, one message at a time.
using HandlerFn = std::function<Result<std::size_t>(std::span<std::byte> actor_state,
                                                    std::span<const std::byte> payload_in,
                                                    std::span<std::byte> payload_out)>;

// A messaging handler: as HandlerFn, with the state, payload and reply area in `context`, and
// device-side messaging through context.post()/forward(). Returns the reply bytes written.
using MessagingHandlerFn = std::function<Result<std::size_t>(HandlerContext& context)>;

struct HandlerSpec {
  std::uint32_t handler_id = 0;
  std::uint32_t actor_type = 0;  // the actor type this handler serves
  HandlerFn fn;                  // exactly one of fn and messaging_fn is set
  MessagingHandlerFn messaging_fn = {};
};

// Handler id -> handler. Built on one thread, then handed to a server (immutable once there).
class HandlerTable {
 public:
  // invalid_argument for a reserved id or an empty function; already_exists for a duplicate id.
  Status add(HandlerSpec spec);
  const HandlerSpec* find(std::uint32_t handler_id) const noexcept;
  std::size_t size() const noexcept { return handlers_.size(); }

 private:
  std::vector<HandlerSpec> handlers_;  // sorted by handler_id
};

// Thrown by a handler to abort the server, as `__trap()` aborts the CUDA ring kernel: the server
// thread leaves its loop at once, without completing the message, updating its state or
// heartbeating again; clients see "ring server dead". For handlers that find the actor table
// corrupted beyond repair (and for the dead-server tests, which use it as the CPU's trap).
struct HandlerTrap {};

struct CpuRingServerOptions {
  std::uint32_t idle_spins = 64;                         // empty polls before sleeping
  std::chrono::microseconds idle_sleep{50};              // sleep between polls when idle
  std::uint32_t internal_queue_slots = 1024;             // per shard: internal queue bound (> 0)
  std::uint32_t max_hops = 64;                           // device-side hops per chain (> 0)
};

// Counters of one server, summed over its shards (relaxed; each field read on its own).
struct RingServerStats {
  std::uint64_t host_messages = 0;        // taken from the request rings
  std::uint64_t internal_messages = 0;    // served from the server-internal queues
  std::uint64_t completions = 0;          // written to the completion rings
  std::uint64_t internal_failures = 0;    // posted messages that failed or were cancelled
  std::uint64_t internal_queue_peak = 0;  // most messages one shard's internal queue held at once
                                          // (the largest over the shards, not a sum)
};

// The CPU stand-in for the persistent kernel: one thread per shard polls that shard's request ring
// and internal queue, runs handlers over its shard's actors and writes completions to its shard's
// completion ring (an actor is only ever touched by its shard's thread). Drain and stop end when
// every shard is idle and no device-side message is queued or being staged anywhere. A HandlerTrap
// in any shard stops every shard's thread at once (no more heartbeats anywhere, no `stopped`).
// Thread-safe: lifecycle calls and reload() may come from any thread; reload() reaches every shard
// between two of its messages. One-shot: after stop/drain it cannot be started again on the block.
class CpuRingServer {
 public:
  // invalid_argument when the block's header is not a ring block of this version.
  static Result<std::unique_ptr<CpuRingServer>> create(RingMemory& memory, HandlerTable handlers,
                                                       CpuRingServerOptions options = {});
  ~CpuRingServer();  // stop() if still running
  CpuRingServer(const CpuRingServer&) = delete;
  CpuRingServer& operator=(const CpuRingServer&) = delete;

  // failed_precondition if already started.
  Status start();
  // Stop now: the message in progress finishes; every other queued message completes with
  // cancelled. Non-blocking; wait() joins.
  void request_stop();
  // Drain: finish every queued message, then stop. Non-blocking; wait() joins.
  void request_drain();
  // Joins the server thread (returns at once if it never started).
  void wait();
  void stop() { request_stop(); wait(); }
  void drain() { request_drain(); wait(); }
  // Swaps the handler table between two messages; actor states and queued messages are kept.
  void reload(HandlerTable handlers);
  // Host messages the server has finished (completed, failed or cancelled).
  std::uint64_t messages_served() const noexcept;
  RingServerStats stats() const noexcept;
  // The error of the last posted message that failed ("" when none has).
  std::string last_internal_error() const;

 private:
  struct Impl;
  explicit CpuRingServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Most calls one client can hold in flight (RingClientOptions::max_pending_calls).
inline constexpr std::uint32_t kMaxPendingCalls = 1u << 20;

struct RingClientOptions {
  // No heartbeat for this long while calls are pending and the server runs: it is declared dead.
  std::chrono::milliseconds dead_after{2000};
  // Calls in flight at once (sent and not yet delivered), 1..kMaxPendingCalls; 0 (default): the
  // block's geometry, shards x (request_slots + completion_slots), capped at kMaxPendingCalls.
  // Each is an entry of a table allocated when the client is created (about 128 bytes each).
  std::uint32_t max_pending_calls = 0;
  // Threads that consume completion rings and run callbacks, 1..the block's shard count: thread t
  // serves the shards s with s % dispatcher_threads == t. Thread 0 also runs the watchdog.
  std::uint32_t dispatcher_threads = 1;
};

struct SendOptions {
  // Most bytes the reply may hold; above kInlinePayloadBytes a pool block is reserved for it.
  std::uint32_t reply_capacity = static_cast<std::uint32_t>(kInlinePayloadBytes);
};

using Reply = std::vector<std::byte>;
using ReplyCallback = std::function<void(Result<Reply>)>;

// Host side: sends requests (many threads at once, lock-free on the ring of the actor's shard,
// shard_of(actor_id, shard_count)); dispatcher threads (RingClientOptions::dispatcher_threads,
// each serving a fixed subset of the shards) poll their shards' completion rings, correlate
// completions by request_id and complete futures or run callbacks.
// Pending calls live in a table of max_pending_calls entries allocated at create(): a send takes a
// free entry without a lock and the request_id names it (entry index, generation), so a
// completion finds its call without a search and a stale one (its call already failed and the
// entry reused) is recognised and dropped. Sending and dispatching allocate nothing per message
// beyond what the API asks for (a callback too large for std::function's inline storage, the Reply,
// a future's shared state). Every call is delivered exactly once: by the dispatcher that takes its
// completion or by the failure of all pending calls (server stopped or dead, client closing).
// The watchdog (on dispatcher thread 0) watches every shard's heartbeat while any call is pending
// (a forward chain's completion may come from any shard): one shard standing still for dead_after
// makes the whole server dead. Callbacks run on the dispatcher thread that took the completion
// (the shard the call completed on decides which; failures run on thread 0, or in the destructor):
// with several dispatcher threads, callbacks of different calls run concurrently. Keep callbacks
// short and never wait in them for another reply or for a free entry (a callback may send with
// try_send_async).
// Failures delivered to a call: the handler's error; not_found (unknown actor or handler),
// failed_precondition (actor not active), cancelled (server stopped), unavailable "ring server
// dead" (watchdog). After a dead server the pool blocks of the failed calls stay reserved (a hung
// device could still write them); the block is not reusable then. Thread-safe.
class RingClient {
 public:
  // invalid_argument for a block that is not a ring block of this version, dead_after <= 0,
  // max_pending_calls above kMaxPendingCalls or dispatcher_threads outside 1..shard count;
  // resource_exhausted when the call table or a thread cannot be created.
  static Result<std::unique_ptr<RingClient>> create(RingMemory& memory,
                                                    RingClientOptions options = {});
  // Stops the dispatcher threads, then fails the pending calls with cancelled (their callbacks run
  // on the destroying thread). No other call on this client may be in progress.
  ~RingClient();
  RingClient(const RingClient&) = delete;
  RingClient& operator=(const RingClient&) = delete;

  // Enqueues without waiting: resource_exhausted "ring full" / "payload pool exhausted" /
  // "too many calls in flight (N)" (every entry of the call table in use);
  // invalid_argument for a payload or reply larger than the block allows or a reserved handler;
  // unavailable when the server is stopping, stopped or dead.
  Result<std::future<Result<Reply>>> try_send(std::uint32_t actor_id, std::uint32_t handler_id,
                                              std::span<const std::byte> payload,
                                              SendOptions options = {});
  // As try_send, but waits (spin, then sleep) for a call entry, ring or pool space until the
  // deadline, then deadline_exceeded.
  Result<std::future<Result<Reply>>> send(std::uint32_t actor_id, std::uint32_t handler_id,
                                          std::span<const std::byte> payload,
                                          std::chrono::steady_clock::time_point deadline,
                                          SendOptions options = {});
  // As send, with the result delivered to `callback` instead (enqueue errors are returned).
  Status send_async(std::uint32_t actor_id, std::uint32_t handler_id,
                    std::span<const std::byte> payload,
                    std::chrono::steady_clock::time_point deadline, ReplyCallback callback,
                    SendOptions options = {});

  // Non-blocking forms for callers that must not wait (grain turns): enqueue errors as try_send
  // (resource_exhausted "ring full" / "payload pool exhausted" / "too many calls in flight (N)"
  // at once); results go to the callback on a dispatcher thread.
  Status try_send_async(std::uint32_t actor_id, std::uint32_t handler_id,
                        std::span<const std::byte> payload, ReplyCallback callback,
                        SendOptions options = {});
  Status try_activate_async(std::uint32_t type_id, std::span<const std::byte> initial_state,
                            std::function<void(Result<std::uint32_t>)> callback);
  Status try_deactivate_async(std::uint32_t actor_id, ReplyCallback callback);

  // Picks a free actor id of `type_id` and activates it with `initial_state` (zero-filled up to
  // the type's state size). not_found for an unknown type, resource_exhausted when all ids of the
  // type are in use, invalid_argument when the state is larger than the type's.
  Result<std::uint32_t> activate(std::uint32_t type_id, std::span<const std::byte> initial_state,
                                 std::chrono::steady_clock::time_point deadline);
  // Copies the actor's state out to the host and frees its id.
  Result<Reply> deactivate(std::uint32_t actor_id, std::chrono::steady_clock::time_point deadline);

  // Calls sent (or being sent) and not yet delivered; a snapshot while calls move.
  std::size_t pending_calls() const;

 private:
  struct Impl;
  explicit RingClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpubridge::compute::ring

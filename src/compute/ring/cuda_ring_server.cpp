// CudaRingServer: the ring protocol's server as a persistent CUDA kernel, one block per shard (see
// gpubridge/compute/cuda_ring.hpp). The device source below follows cpu_ring_server.cpp step by
// step, except that it takes up to 32 requests off the ring at once and publishes completions in
// batches (a trip over the bus costs microseconds); its layout constants are generated from the
// host structs so the two cannot drift apart.
#include "compute/ring/cuda_ring_server.hpp"

#include <cuda_runtime_api.h>
#include <nvrtc.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "compute/cuda/cuda_error.hpp"
#include "compute/cuda/device_idle.hpp"
#include "compute/cuda/nvrtc_program.hpp"  // compile_portable, load_library
#include "compute/ring/kernel_lifecycle.hpp"
#include "gpubridge/compute/cuda_ring.hpp"

namespace gpubridge::compute::ring {

using detail::KernelControl;
using detail::KernelExit;

namespace {

// Threads of each block: lane 0 serves its shard, all of them take messages off its request ring.
constexpr std::uint32_t kIntakeLanes = 32;
// The oldest control word (run, drain, stop) a message taken off the ring may start under.
constexpr std::uint64_t kControlWordAgeNs = 20'000;

Error ring_error(ErrorCode code, std::string message) {
  return Error(code, std::move(message), "cuda ring server");
}

bool is_identifier(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::string define(const char* name, std::uint64_t value) {
  return std::string("#define ") + name + " " + std::to_string(value) + "ull\n";
}

// Layout of the block, from the host structs.
std::string layout_defines() {
  using detail::InternalClaim;
  using detail::InternalQueueHead;
  using detail::InternalServerWords;
  using detail::InternalSlot;
  using detail::KernelShardWords;
  std::string d;
  d += define("GB_SLOT_BYTES", kSlotBytes);
  d += define("GB_SLOT_HEADER_BYTES", kSlotHeaderBytes);
  d += define("GB_INLINE_BYTES", kInlinePayloadBytes);
  d += define("GB_PAYLOAD_IN_POOL", kSlotPayloadInPool);
  d += define("GB_FIRST_RESERVED_HANDLER", kFirstReservedHandler);
  d += define("GB_ACTIVATE_HANDLER", kActivateHandler);
  d += define("GB_DEACTIVATE_HANDLER", kDeactivateHandler);
  d += define("GB_INTERNAL_REPLIES_TO_HOST", kInternalRepliesToHost);
  d += define("GB_MAX_SHARDS", kMaxShards);
  d += define("GB_INTAKE_LANES", kIntakeLanes);
  d += define("GB_CONTROL_WORD_AGE_NS", kControlWordAgeNs);
  d += define("GB_CONTROL_RUN", static_cast<std::uint32_t>(ControlWord::run));
  d += define("GB_CONTROL_STOP", static_cast<std::uint32_t>(ControlWord::stop));
  d += define("GB_STATE_STOPPED", static_cast<std::uint32_t>(ServerState::stopped));
  d += define("GB_EXIT_FINISHED", static_cast<std::uint32_t>(KernelExit::finished));
  d += define("GB_EXIT_YIELDED", static_cast<std::uint32_t>(KernelExit::yielded));
  d += define("GB_OFF_REQUEST_CAPACITY", offsetof(RingHeader, request_capacity));
  d += define("GB_OFF_COMPLETION_CAPACITY", offsetof(RingHeader, completion_capacity));
  d += define("GB_OFF_SHARD_COUNT", offsetof(RingHeader, shard_count));
  d += define("GB_OFF_SHARD_TABLE", offsetof(RingHeader, shard_table_offset));
  d += define("GB_OFF_ACTOR_TABLE", offsetof(RingHeader, actor_table_offset));
  d += define("GB_OFF_POOL", offsetof(RingHeader, pool_offset));
  d += define("GB_OFF_POOL_CHUNK_BYTES", offsetof(RingHeader, pool_chunk_bytes));
  d += define("GB_OFF_POOL_CHUNK_COUNT", offsetof(RingHeader, pool_chunk_count));
  d += define("GB_OFF_ACTOR_COUNT", offsetof(RingHeader, actor_count));
  d += define("GB_OFF_SERVER_STATE", offsetof(RingHeader, server_state));
  d += define("GB_OFF_CONTROL", offsetof(RingHeader, control));
  d += define("GB_SHARD_HEADER_BYTES", sizeof(RingShardHeader));
  d += define("GB_OFF_REQUEST_SLOTS", offsetof(RingShardHeader, request_slots_offset));
  d += define("GB_OFF_COMPLETION_SLOTS", offsetof(RingShardHeader, completion_slots_offset));
  d += define("GB_OFF_REQUEST_ENQUEUE", offsetof(RingShardHeader, request_enqueue));
  d += define("GB_OFF_REQUEST_DEQUEUE", offsetof(RingShardHeader, request_dequeue));
  d += define("GB_OFF_COMPLETION_ENQUEUE", offsetof(RingShardHeader, completion_enqueue));
  d += define("GB_OFF_COMPLETION_DEQUEUE", offsetof(RingShardHeader, completion_dequeue));
  d += define("GB_OFF_HEARTBEAT", offsetof(RingShardHeader, heartbeat));
  d += define("GB_ACTOR_ENTRY_BYTES", sizeof(ActorEntry));
  d += define("GB_CONTROL_BYTES", sizeof(KernelControl));
  d += define("GB_SHARD_WORDS_BYTES", sizeof(KernelShardWords));
  d += define("GB_INTERNAL_MESSAGE_BYTES", sizeof(InternalMessage));
  d += define("GB_SERVER_WORDS_BYTES", sizeof(InternalServerWords));
  d += define("GB_OFF_SW_SHARD_COUNT", offsetof(InternalServerWords, shard_count));
  d += define("GB_OFF_SW_SLOTS", offsetof(InternalServerWords, slots));
  d += define("GB_OFF_SW_MAX_HOPS", offsetof(InternalServerWords, max_hops));
  d += define("GB_OFF_SW_IN_FLIGHT", offsetof(InternalServerWords, in_flight));
  d += define("GB_OFF_SW_QUIESCENT", offsetof(InternalServerWords, quiescent));
  d += define("GB_OFF_SW_UNFINISHED", offsetof(InternalServerWords, unfinished_shards));
  d += define("GB_OFF_SW_FAILURE_TICKET", offsetof(InternalServerWords, failure_ticket));
  d += define("GB_QUEUE_HEAD_BYTES", sizeof(InternalQueueHead));
  d += define("GB_OFF_Q_ENQUEUE", offsetof(InternalQueueHead, enqueue));
  d += define("GB_OFF_Q_DEQUEUE", offsetof(InternalQueueHead, dequeue));
  d += define("GB_OFF_Q_PEAK", offsetof(InternalQueueHead, peak));
  d += define("GB_OFF_Q_FINISHED", offsetof(InternalQueueHead, finished));
  d += define("GB_INTERNAL_SLOT_BYTES", sizeof(InternalSlot));
  d += define("GB_CLAIM_BYTES", sizeof(InternalClaim));
  return d;
}

// The device source declares gb_ring_slot, gb_actor_entry, gb_kernel_control, gb_shard_words,
// gb_internal_message, gb_internal_slot and gb_claim field by field with the same types and order
// (NVRTC has no offsetof); these pin the host layouts they mirror.
static_assert(offsetof(RingSlot, request_id) == 8 && offsetof(RingSlot, actor_id) == 16 &&
              offsetof(RingSlot, handler_id) == 20 && offsetof(RingSlot, payload_bytes) == 24 &&
              offsetof(RingSlot, flags) == 28 && offsetof(RingSlot, payload_offset) == 32 &&
              offsetof(RingSlot, reply_offset) == 40 && offsetof(RingSlot, reply_capacity) == 48 &&
              offsetof(RingSlot, status) == 52 && offsetof(RingSlot, inline_payload) == kSlotHeaderBytes,
              "RingSlot changed: update gb_ring_slot in the device source");
static_assert(offsetof(ActorEntry, state_offset) == 0 && offsetof(ActorEntry, state_bytes) == 8 &&
                  offsetof(ActorEntry, type_id) == 12 && offsetof(ActorEntry, active) == 16,
              "ActorEntry changed: update gb_actor_entry in the device source");
static_assert(offsetof(detail::KernelShardWords, served) == 0 &&
                  offsetof(detail::KernelShardWords, internal_messages) == 8 &&
                  offsetof(detail::KernelShardWords, internal_failures) == 16 &&
                  offsetof(detail::KernelShardWords, internal_peak) == 24 &&
                  offsetof(detail::KernelShardWords, exit_reason) == 32 &&
                  offsetof(detail::KernelShardWords, error_sequence) == 36 &&
                  offsetof(detail::KernelShardWords, error_ticket) == 40 &&
                  offsetof(detail::KernelShardWords, error_bytes) == 48 &&
                  offsetof(detail::KernelShardWords, error_words) == 56,
              "KernelShardWords changed: update gb_shard_words in the device source");
static_assert(offsetof(KernelControl, yield) == 0 && offsetof(KernelControl, abandon) == 4,
              "KernelControl changed: update gb_kernel_control in the device source");
static_assert(offsetof(InternalMessage, origin_request_id) == 0 && offsetof(InternalMessage, origin_reply_offset) == 8 &&
                  offsetof(InternalMessage, origin_reply_capacity) == 16 &&
                  offsetof(InternalMessage, origin_actor_id) == 20 &&
                  offsetof(InternalMessage, origin_handler_id) == 24 && offsetof(InternalMessage, actor_id) == 28 &&
                  offsetof(InternalMessage, handler_id) == 32 && offsetof(InternalMessage, hops) == 36 &&
                  offsetof(InternalMessage, flags) == 40 && offsetof(InternalMessage, payload_bytes) == 44 &&
                  offsetof(InternalMessage, payload) == 48 && sizeof(InternalMessage) % 8 == 0,
              "InternalMessage changed: update gb_internal_message in the device source");
static_assert(offsetof(detail::InternalSlot, turn) == 0 && offsetof(detail::InternalSlot, dropped) == 8 &&
                  offsetof(detail::InternalSlot, message) == 16,
              "InternalSlot changed: update gb_internal_slot in the device source");
static_assert(offsetof(detail::InternalClaim, position) == 0 && offsetof(detail::InternalClaim, shard) == 8 &&
                  sizeof(detail::InternalClaim) == 16,
              "InternalClaim changed: update gb_claim in the device source");

static_assert(kInlinePayloadBytes % 8 == 0 && kSlotHeaderBytes % 8 == 0,
              "gb_copy_inline copies inline payloads in whole 8-byte words");

// How the kernel reaches shared words. On the device: volatile accesses (relaxed, system scope),
// ordered by __threadfence_system(). A host build of the same source (the CPU test harness)
// defines GB_RING_HOST_SHIM and supplies these (and __device__, the fences, GB_RING_IDLE) itself.
constexpr const char* kDevicePlatform = R"GBCU(
#ifndef GB_RING_HOST_SHIM
__device__ __forceinline__ unsigned long long gb_ld64(const unsigned long long* p) {
  return *reinterpret_cast<const volatile unsigned long long*>(p);
}
__device__ __forceinline__ unsigned int gb_ld32(const unsigned int* p) {
  return *reinterpret_cast<const volatile unsigned int*>(p);
}
__device__ __forceinline__ void gb_st64(unsigned long long* p, unsigned long long v) {
  *reinterpret_cast<volatile unsigned long long*>(p) = v;
}
// A load that orders every later access after it (acquire, system scope).
__device__ __forceinline__ unsigned long long gb_ld64_acquire(const unsigned long long* p) {
#if __CUDA_ARCH__ >= 700
  unsigned long long v;
  asm volatile("ld.acquire.sys.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
#else
  const unsigned long long v = *reinterpret_cast<const volatile unsigned long long*>(p);
  __threadfence_system();
  return v;
#endif
}
__device__ __forceinline__ void gb_st32(unsigned int* p, unsigned int v) {
  *reinterpret_cast<volatile unsigned int*>(p) = v;
}
// A store that orders every earlier access before it (release, system scope).
__device__ __forceinline__ void gb_st64_release(unsigned long long* p, unsigned long long v) {
#if __CUDA_ARCH__ >= 700
  asm volatile("st.release.sys.u64 [%0], %1;" : : "l"(p), "l"(v) : "memory");
#else
  __threadfence_system();
  *reinterpret_cast<volatile unsigned long long*>(p) = v;
#endif
}
// Orders this thread's earlier loads and stores before its later stores, as seen from the host
// (fence.acq_rel.sys, the light fence: with relaxed stores after it, a release). Used where a
// slot is freed or published; __threadfence_system() (fence.sc.sys) where every block must agree
// on one order (the drain check).
__device__ __forceinline__ void gb_fence_release() {
#if __CUDA_ARCH__ >= 700
  asm volatile("fence.acq_rel.sys;" : : : "memory");
#else
  __threadfence_system();
#endif
}
// Nanoseconds of the device's global timer (microsecond steps on some devices).
__device__ __forceinline__ unsigned long long gb_now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// Copies an inline payload of n <= GB_INLINE_BYTES bytes between 8-byte aligned areas of
// GB_INLINE_BYTES (a multiple of 8) in whole 8-byte words, so that a slot in mapped host memory
// costs one bus transaction per word rather than one per byte. Every caller's areas are aligned
// by layout: slots, the inline payload's offset in them, and the __align__(8) local buffers.
__device__ __forceinline__ void gb_copy_inline(unsigned char* dst, const unsigned char* src, unsigned int n) {
  unsigned long long* d = reinterpret_cast<unsigned long long*>(dst);
  const unsigned long long* s = reinterpret_cast<const unsigned long long*>(src);
  for (unsigned int i = 0; i < (n + 7u) / 8u; ++i) d[i] = s[i];
}
// Writes 2 * chunks words to a 16-byte aligned area of mapped host memory in 16-byte stores.
__device__ __forceinline__ void gb_store_chunks(unsigned char* dst, const unsigned long long* words, unsigned int chunks) {
  ulonglong2* to = reinterpret_cast<ulonglong2*>(dst);
  for (unsigned int i = 0; i < chunks; ++i) to[i] = make_ulonglong2(words[2 * i], words[2 * i + 1]);
}
// Copies a whole slot (64-byte aligned, a multiple of 16 bytes) out of mapped host memory: every
// 16-byte load is issued before the first store, so their trips over the bus overlap. Field by
// field, each load would wait for the one before (a load is not moved above the store before it
// to local memory, which it might alias).
template <typename Slot>
__device__ __forceinline__ void gb_copy_slot(Slot* dst, const Slot* src) {
  constexpr int kWords = static_cast<int>(sizeof(Slot) / 16);
  const ulonglong2* from = reinterpret_cast<const ulonglong2*>(src);
  ulonglong2 v[kWords];
#pragma unroll
  for (int i = 0; i < kWords; ++i) v[i] = from[i];
  ulonglong2* to = reinterpret_cast<ulonglong2*>(dst);
#pragma unroll
  for (int i = 0; i < kWords; ++i) to[i] = v[i];
}
// An empty poll of the rings (a host build yields its thread here).
#define GB_RING_IDLE() ((void)0)
// A trap ends every block of the grid on a device; a host build checks here whether another
// block trapped and leaves the same way.
#define GB_RING_GRID_CHECK() ((void)0)
#endif
)GBCU";

// What handlers see; part of the public handler contract (cuda_ring.hpp).
constexpr const char* kHandlerPrelude = R"GBCU(
enum gb_ring_code {
  GB_RING_CANCELLED = 1, GB_RING_UNKNOWN = 2, GB_RING_INVALID_ARGUMENT = 3, GB_RING_DEADLINE_EXCEEDED = 4,
  GB_RING_NOT_FOUND = 5, GB_RING_ALREADY_EXISTS = 6, GB_RING_PERMISSION_DENIED = 7,
  GB_RING_RESOURCE_EXHAUSTED = 8, GB_RING_FAILED_PRECONDITION = 9, GB_RING_ABORTED = 10,
  GB_RING_OUT_OF_RANGE = 11, GB_RING_UNIMPLEMENTED = 12, GB_RING_INTERNAL = 13,
  GB_RING_UNAVAILABLE = 14, GB_RING_DATA_LOSS = 15, GB_RING_UNAUTHENTICATED = 16
};
struct gb_ring_outbox;  // server-internal: the messages this call has staged
struct gb_ring_call {
  unsigned int actor_id;
  unsigned int handler_id;
  unsigned char* state;          // the actor's state (device memory)
  unsigned int state_bytes;
  const unsigned char* payload;  // the request's payload
  unsigned int payload_bytes;
  unsigned char* reply;          // write at most reply_capacity bytes
  unsigned int reply_capacity;
  unsigned int hops;             // 0 for a host message, n for the n-th device-side hop
  bool replies_to_host;          // this reply (or that of a forward) completes a host call
  gb_ring_outbox* outbox;        // used by gb_ring_post / gb_ring_forward
};
// Device-side messaging: 0, or -GB_RING_<CODE> when refused (see cuda_ring.hpp).
__device__ int gb_ring_post(const gb_ring_call& call, unsigned int actor_id, unsigned int handler_id,
                            const void* payload, unsigned int payload_bytes);
__device__ int gb_ring_forward(const gb_ring_call& call, unsigned int actor_id, unsigned int handler_id,
                               const void* payload, unsigned int payload_bytes);
// Fails the message with a reason: returns -code, for the handler to return (see cuda_ring.hpp).
__device__ int gb_ring_fail(const gb_ring_call& call, unsigned int code, const char* reason);
#define GB_RING_DISPATCH_OK 0
#define GB_RING_DISPATCH_UNKNOWN_HANDLER 1
#define GB_RING_DISPATCH_WRONG_TYPE 2
)GBCU";

// The persistent loop and device-side messaging. One block per shard (blockIdx.x), whose lane 0
// serves and whose lanes take requests off the ring together (gb_take); shared words of the block
// go through gb_ld/gb_st, ordered by gb_ld64_acquire (a request's turn before its body),
// gb_fence_release (bodies before the turns that free or publish slots) or __threadfence_system()
// (the drain check). The internal area (device memory) is shared
// by the blocks: queues are claimed with atomicCAS, counted with atomicAdd, and ordered with
// __threadfence() (device scope). Actor states are device memory only their shard's block touches.
// It follows cpu_ring_server.cpp (serve_host, serve_internal, finish, complete, nothing_left).
constexpr const char* kServerLoop = R"GBCU(
// The shard of an actor: gpubridge::compute::ring::shard_of, the one routing rule.
#define GB_SHARD_OF(actor_id, shard_count) ((actor_id) % (shard_count))
namespace gb_ring_detail {
typedef unsigned long long gb_u64;
typedef unsigned int gb_u32;
struct __align__(64) gb_ring_slot {
  gb_u64 turn;
  gb_u64 request_id;
  gb_u32 actor_id;
  gb_u32 handler_id;
  gb_u32 payload_bytes;
  gb_u32 flags;
  gb_u64 payload_offset;
  gb_u64 reply_offset;
  gb_u32 reply_capacity;
  gb_u32 status;
  unsigned char inline_payload[GB_INLINE_BYTES];
};
static_assert(sizeof(gb_ring_slot) == GB_SLOT_BYTES, "ring slot size differs from the host");
struct gb_actor_entry {
  gb_u64 state_offset;
  gb_u32 state_bytes;
  gb_u32 type_id;
  gb_u32 active;
  gb_u32 reserved[3];
};
static_assert(sizeof(gb_actor_entry) == GB_ACTOR_ENTRY_BYTES, "actor entry size differs from the host");
struct __align__(64) gb_shard_words {
  gb_u64 served;
  gb_u64 internal_messages;
  gb_u64 internal_failures;
  gb_u64 internal_peak;
  gb_u32 exit_reason;
  gb_u32 error_sequence;
  gb_u64 error_ticket;
  gb_u32 error_bytes;
  gb_u32 reserved;
  gb_u32 error_words[GB_INLINE_BYTES / 4];
};
static_assert(sizeof(gb_shard_words) == GB_SHARD_WORDS_BYTES, "shard words size differs from the host");
struct __align__(64) gb_shard_phases {
  gb_u64 words[8];
};
struct gb_kernel_control {
  gb_u32 yield;
  gb_u32 abandon;
  gb_u32 reserved[14];
  gb_shard_words shards[GB_MAX_SHARDS];
  gb_shard_phases phases[GB_MAX_SHARDS];
};
static_assert(sizeof(gb_kernel_control) == GB_CONTROL_BYTES, "kernel control size differs from the host");
struct gb_internal_message {
  gb_u64 origin_request_id;
  gb_u64 origin_reply_offset;
  gb_u32 origin_reply_capacity;
  gb_u32 origin_actor_id;
  gb_u32 origin_handler_id;
  gb_u32 actor_id;
  gb_u32 handler_id;
  gb_u32 hops;
  gb_u32 flags;
  gb_u32 payload_bytes;
  unsigned char payload[GB_INLINE_BYTES];
};
static_assert(sizeof(gb_internal_message) == GB_INTERNAL_MESSAGE_BYTES, "internal message size differs from the host");
struct gb_internal_slot {
  gb_u64 turn;
  gb_u32 dropped;
  gb_u32 reserved;
  gb_internal_message message;
};
static_assert(sizeof(gb_internal_slot) == GB_INTERNAL_SLOT_BYTES, "internal slot size differs from the host");
struct gb_claim {
  gb_u64 position;
  gb_u32 shard;
  gb_u32 reserved;
};
static_assert(sizeof(gb_claim) == GB_CLAIM_BYTES, "claim size differs from the host");

__device__ __forceinline__ gb_u64* gb_u64_at(unsigned char* base, gb_u64 off) {
  return reinterpret_cast<gb_u64*>(base + off);
}
__device__ __forceinline__ gb_u32* gb_u32_at(unsigned char* base, gb_u64 off) {
  return reinterpret_cast<gb_u32*>(base + off);
}

// Error text (truncated at GB_INLINE_BYTES, the most a completion carries inline).
struct gb_text {
  __align__(8) unsigned char bytes[GB_INLINE_BYTES];
  gb_u32 size;
};
__device__ void gb_put(gb_text& t, const char* s) {
  while (*s != 0 && t.size < GB_INLINE_BYTES) t.bytes[t.size++] = static_cast<unsigned char>(*s++);
}
__device__ void gb_put_u(gb_text& t, gb_u64 v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0 && t.size < GB_INLINE_BYTES) t.bytes[t.size++] = static_cast<unsigned char>(digits[--n]);
}
__device__ void gb_put_text(gb_text& t, const gb_text& more) {
  for (gb_u32 i = 0; i < more.size && t.size < GB_INLINE_BYTES; ++i) t.bytes[t.size++] = more.bytes[i];
}

struct gb_outcome {
  gb_u32 status;       // ErrorCode
  gb_u32 reply_bytes;  // when status == 0
  bool forwarded;      // when status == 0: the forwarded message answers instead
  gb_text message;     // when status != 0
};
__device__ void gb_reset(gb_outcome& o) {
  o.status = 0;
  o.reply_bytes = 0;
  o.forwarded = false;
  o.message.size = 0;
}
__device__ void gb_fail(gb_outcome& o, gb_u32 code, const char* text) {
  o.status = code;
  o.reply_bytes = 0;
  o.forwarded = false;
  o.message.size = 0;
  gb_put(o.message, text);
}

// Read-only geometry of the block, read once per launch (every read of the block crosses the bus).
struct gb_geometry {
  gb_u64 pool_begin;
  gb_u64 pool_end;
  gb_u64 actor_table;
  gb_u32 actor_count;
  gb_u32 shard_count;
  gb_u64 shard_table;
};
__device__ gb_geometry gb_read_geometry(unsigned char* block) {
  gb_geometry g;
  g.pool_begin = gb_ld64(gb_u64_at(block, GB_OFF_POOL));
  g.pool_end = g.pool_begin + static_cast<gb_u64>(gb_ld32(gb_u32_at(block, GB_OFF_POOL_CHUNK_BYTES))) *
                                  gb_ld32(gb_u32_at(block, GB_OFF_POOL_CHUNK_COUNT));
  g.actor_table = gb_ld64(gb_u64_at(block, GB_OFF_ACTOR_TABLE));
  g.actor_count = gb_ld32(gb_u32_at(block, GB_OFF_ACTOR_COUNT));
  g.shard_count = gb_ld32(gb_u32_at(block, GB_OFF_SHARD_COUNT));
  g.shard_table = gb_ld64(gb_u64_at(block, GB_OFF_SHARD_TABLE));
  return g;
}

// A pool reference checked against the pool's bounds (block-relative offsets).
__device__ bool gb_pool_ok(const gb_geometry& g, gb_u64 offset, gb_u64 bytes) {
  return offset >= g.pool_begin && offset <= g.pool_end && bytes <= g.pool_end - offset;
}

// The server-internal area: [server words][shard 0 region]...; a region is
// [queue head][slots x gb_internal_slot][slots x gb_claim], padded to 64 bytes.
struct gb_internal_area {
  unsigned char* base;
  gb_u32 shard_count;
  gb_u32 slots;
  gb_u32 max_hops;
  gb_u64 region_bytes;
};
__device__ gb_internal_area gb_read_area(unsigned char* internal) {
  gb_internal_area a;
  a.base = internal;
  a.shard_count = *gb_u32_at(internal, GB_OFF_SW_SHARD_COUNT);
  a.slots = *gb_u32_at(internal, GB_OFF_SW_SLOTS);
  a.max_hops = *gb_u32_at(internal, GB_OFF_SW_MAX_HOPS);
  const gb_u64 bytes = GB_QUEUE_HEAD_BYTES + static_cast<gb_u64>(a.slots) * (GB_INTERNAL_SLOT_BYTES + GB_CLAIM_BYTES);
  a.region_bytes = (bytes + 63) / 64 * 64;
  return a;
}
__device__ __forceinline__ unsigned char* gb_region(const gb_internal_area& a, gb_u32 shard) {
  return a.base + GB_SERVER_WORDS_BYTES + shard * a.region_bytes;
}
__device__ __forceinline__ gb_internal_slot* gb_queue_slots(unsigned char* region) {
  return reinterpret_cast<gb_internal_slot*>(region + GB_QUEUE_HEAD_BYTES);
}
__device__ __forceinline__ gb_claim* gb_queue_claims(const gb_internal_area& a, unsigned char* region) {
  return reinterpret_cast<gb_claim*>(region + GB_QUEUE_HEAD_BYTES + static_cast<gb_u64>(a.slots) * GB_INTERNAL_SLOT_BYTES);
}
__device__ __forceinline__ gb_u64* gb_in_flight(const gb_internal_area& a) { return gb_u64_at(a.base, GB_OFF_SW_IN_FLIGHT); }

// Claims the next free slot of a shard's queue (many producers); null when it is full.
__device__ gb_internal_slot* gb_queue_claim(const gb_internal_area& a, unsigned char* region, gb_u64& position) {
  gb_u64* enqueue = gb_u64_at(region, GB_OFF_Q_ENQUEUE);
  gb_internal_slot* slots = gb_queue_slots(region);
  gb_u64 pos = gb_ld64(enqueue);
  for (;;) {
    gb_internal_slot* slot = slots + pos % a.slots;
    const gb_u64 turn = gb_ld64(&slot->turn);
    __threadfence();  // acquire: the consumer has finished with the slot before it is rewritten
    const long long lag = static_cast<long long>(turn - pos);
    if (lag == 0) {
      const gb_u64 seen = atomicCAS(enqueue, pos, pos + 1);
      if (seen == pos) {
        position = pos;
        return slot;
      }
      pos = seen;
    } else if (lag < 0) {
      return nullptr;
    } else {
      pos = gb_ld64(enqueue);
    }
  }
}

// Whom a message answers: the host call of its chain (replies_to_host) or nobody (a post).
struct gb_envelope {
  gb_u64 request_id;
  gb_u64 reply_offset;    // the host call's reply block (0: inline)
  gb_u32 reply_capacity;
  gb_u32 actor_id;        // target of this message
  gb_u32 handler_id;
  gb_u32 hops;
  bool replies_to_host;
  gb_u32 origin_actor_id;  // the actor and handler the host called
  gb_u32 origin_handler_id;
};
}  // namespace gb_ring_detail

struct gb_ring_outbox {
  gb_ring_detail::gb_internal_area area;
  gb_ring_detail::gb_claim* claims;  // this shard's list of the slots the running handler claimed
  unsigned int staged;      // claimed, published when the handler returns (dropped on failure)
  unsigned int next_hops;   // hops of the messages this handler sends
  bool forwarded;
  gb_ring_detail::gb_envelope origin;  // the message being served
  unsigned int refused_code;           // why the last post/forward was refused (0: none)
  gb_ring_detail::gb_text refusal;
};

namespace gb_ring_detail {
__device__ int gb_refuse(gb_ring_outbox& o, gb_u32 code, const char* text) {
  o.refused_code = code;
  o.refusal.size = 0;
  gb_put(o.refusal, text);
  return -static_cast<int>(code);
}

// Stages one device-side message: claims a slot in the target shard's queue and writes it (see
// HandlerContext::stage).
__device__ int gb_stage(const gb_ring_call& call, gb_u32 actor_id, gb_u32 handler_id, const void* payload,
                        gb_u32 payload_bytes, bool forward) {
  gb_ring_outbox& o = *call.outbox;
  if (handler_id >= GB_FIRST_RESERVED_HANDLER) {
    const int refused = gb_refuse(o, GB_RING_INVALID_ARGUMENT, "device-side message to reserved handler id ");
    gb_put_u(o.refusal, handler_id);
    return refused;
  }
  if (payload_bytes > GB_INLINE_BYTES) {
    const int refused = gb_refuse(o, GB_RING_INVALID_ARGUMENT, "device-side message payload of ");
    gb_put_u(o.refusal, payload_bytes);
    gb_put(o.refusal, " bytes exceeds the inline limit of ");
    gb_put_u(o.refusal, GB_INLINE_BYTES);
    gb_put(o.refusal, " bytes");
    return refused;
  }
  if (forward && o.forwarded) {
    return gb_refuse(o, GB_RING_FAILED_PRECONDITION, "gb_ring_forward already called for this message");
  }
  if (o.next_hops > o.area.max_hops) {
    const int refused = gb_refuse(o, GB_RING_RESOURCE_EXHAUSTED, "device-side hop limit of ");
    gb_put_u(o.refusal, o.area.max_hops);
    gb_put(o.refusal, " exceeded");
    return refused;
  }
  const gb_u32 shard = GB_SHARD_OF(actor_id, o.area.shard_count);
  gb_u64 position = 0;
  gb_internal_slot* slot = o.staged < o.area.slots ? gb_queue_claim(o.area, gb_region(o.area, shard), position) : nullptr;
  if (slot == nullptr) {
    const int refused = gb_refuse(o, GB_RING_RESOURCE_EXHAUSTED, "server-internal message queue full (");
    gb_put_u(o.refusal, o.area.slots);
    gb_put(o.refusal, " slots)");
    if (o.area.shard_count > 1) {
      gb_put(o.refusal, " on shard ");
      gb_put_u(o.refusal, shard);
    }
    return refused;
  }
  atomicAdd(gb_in_flight(o.area), 1ull);
  o.claims[o.staged].position = position;
  o.claims[o.staged].shard = shard;
  ++o.staged;
  gb_internal_message& m = slot->message;
  m.origin_request_id = 0;
  m.origin_reply_offset = 0;
  m.origin_reply_capacity = 0;
  m.origin_actor_id = 0;
  m.origin_handler_id = 0;
  m.actor_id = actor_id;
  m.handler_id = handler_id;
  m.hops = o.next_hops;
  m.flags = 0;
  m.payload_bytes = payload_bytes;
  const unsigned char* bytes = static_cast<const unsigned char*>(payload);
  for (gb_u32 i = 0; i < payload_bytes; ++i) m.payload[i] = bytes[i];
  if (forward && o.origin.replies_to_host) {
    m.flags = GB_INTERNAL_REPLIES_TO_HOST;
    m.origin_request_id = o.origin.request_id;
    m.origin_reply_offset = o.origin.reply_offset;
    m.origin_reply_capacity = o.origin.reply_capacity;
    m.origin_actor_id = o.origin.origin_actor_id;
    m.origin_handler_id = o.origin.origin_handler_id;
  }
  if (forward) o.forwarded = true;
  return 0;
}
}  // namespace gb_ring_detail

__device__ int gb_ring_post(const gb_ring_call& call, unsigned int actor_id, unsigned int handler_id,
                            const void* payload, unsigned int payload_bytes) {
  return gb_ring_detail::gb_stage(call, actor_id, handler_id, payload, payload_bytes, false);
}
__device__ int gb_ring_forward(const gb_ring_call& call, unsigned int actor_id, unsigned int handler_id,
                               const void* payload, unsigned int payload_bytes) {
  return gb_ring_detail::gb_stage(call, actor_id, handler_id, payload, payload_bytes, true);
}
// The reason travels as a refusal does: it follows "failed with code <n>: " when the handler
// returns this code. A code outside the ErrorCode values fails as internal, naming the code.
__device__ int gb_ring_fail(const gb_ring_call& call, unsigned int code, const char* reason) {
  gb_ring_outbox& o = *call.outbox;
  if (code == 0 || code > 16) {
    const int refused = gb_ring_detail::gb_refuse(o, GB_RING_INTERNAL, "gb_ring_fail with code ");
    gb_ring_detail::gb_put_u(o.refusal, code);
    gb_ring_detail::gb_put(o.refusal, ", not an ErrorCode: ");
    gb_ring_detail::gb_put(o.refusal, reason);
    return refused;
  }
  return gb_ring_detail::gb_refuse(o, code, reason);
}

namespace gb_ring_detail {
// Host messages taken off the request ring at once (the block's shared memory): the serving lane
// copies the first slot, the other lanes of the block the following ones, each lane its own, so
// that up to GB_INTAKE_LANES slots cross the bus in the time of one.
struct gb_intake {
  gb_ring_slot slots[GB_INTAKE_LANES];
  gb_u32 ready[GB_INTAKE_LANES];  // 1: slots[i] holds the published message at position first + i
  const gb_ring_slot* requests;
  gb_u64 capacity;
  gb_u64 first;                   // ring position of slots[0]
  gb_u32 count;                   // positions to take; 0 tells the helper lanes to leave
};

// Everything the serving lane carries between messages (local memory).
struct gb_server {
  unsigned char* block;
  unsigned char* actors;  // device mirror of the block from actor_table_offset on
  gb_kernel_control* control;
  gb_shard_words* words;  // this shard's words in the control block
  gb_u32 shard;
  gb_geometry geometry;
  gb_ring_slot* requests;
  gb_ring_slot* completions;
  gb_u64 request_capacity;
  gb_u64 completion_capacity;
  gb_u64* request_dequeue;
  gb_u64* completion_enqueue;
  gb_u64* completion_dequeue;  // the host's: every completion slot before it is free again
  gb_u64* heartbeat;
  gb_u32* control_word;
  gb_u64 next_request;
  gb_u64 next_completion;
  gb_u64 published_completion;  // completions before this position have their turn published
  gb_u64 completion_credit;  // completion slots before this one are known to be free
  gb_u64 beat;
  gb_u64 served;
  gb_u64 internal_messages;
  gb_u64 published_internal_messages;  // last value written to the control block
  gb_u64 internal_failures;
  gb_u64 published_peak;
  gb_internal_area area;
  unsigned char* queue;  // this shard's region of the internal area
  gb_u64 internal_next;  // its next position to serve (its dequeue word; only this block moves it)
  gb_ring_outbox outbox;
  gb_outcome outcome;
  gb_intake* intake;             // host messages taken off the ring (copies; their slots are free)
  gb_u32 taken;                  // messages in intake->slots, ...
  gb_u32 next_taken;             // ... of which those before this one have been served
  gb_u32 intake_word;            // the control word they are served under, ...
  gb_u64 intake_word_ns;         // ... read at this time (gb_now_ns)
  gb_internal_message internal;  // the device-side message being served (a copy; its slot is free)
#ifdef GB_RING_TIME_PHASES
  gb_u64 phase[8];  // this shard's gb_shard_phases, carried across launches
#endif
  __align__(8) unsigned char inline_reply[GB_INLINE_BYTES];
};

// Phase timing (time_phases): a phase's count and nanoseconds, kept in the serving lane's
// registers and written to the control block with each publish (gb_write_phases). A publication
// inside another phase (a message's completion that fills a round of GB_INTAKE_LANES or waits for
// completion space publishes first) counts as a publication only: the phase leaves its time out.
enum { GB_PHASE_IDLE_POLL = 0, GB_PHASE_TAKE = 1, GB_PHASE_SERVE = 2, GB_PHASE_PUBLISH = 3 };
#ifdef GB_RING_TIME_PHASES
#define GB_PHASE_BEGIN(t) const gb_u64 t = gb_now_ns(), t##_published = s.phase[2 * GB_PHASE_PUBLISH + 1]
#define GB_PHASE_END(s, k, t)                                                         \
  ((s).phase[2 * (k)] += 1,                                                           \
   (s).phase[2 * (k) + 1] += gb_now_ns() - (t) -                                      \
                             ((s).phase[2 * GB_PHASE_PUBLISH + 1] - t##_published))
#else
#define GB_PHASE_BEGIN(t) ((void)0)
#define GB_PHASE_END(s, k, t) ((void)0)
#endif

__device__ __forceinline__ unsigned char* gb_shard_header(unsigned char* block, const gb_geometry& g, gb_u32 shard) {
  return block + g.shard_table + static_cast<gb_u64>(shard) * GB_SHARD_HEADER_BYTES;
}

// Counters carry on from a previous launch (hot reload): the ring's and the kernel's own.
__device__ void gb_init(gb_server& s, unsigned char* block, unsigned char* actors, unsigned char* control,
                        unsigned char* internal, gb_u32 shard, gb_intake* intake) {
  s.block = block;
  s.actors = actors;
  s.control = reinterpret_cast<gb_kernel_control*>(control);
  s.words = &s.control->shards[shard];
  s.shard = shard;
  s.geometry = gb_read_geometry(block);
  unsigned char* sh = gb_shard_header(block, s.geometry, shard);
  s.requests = reinterpret_cast<gb_ring_slot*>(block + gb_ld64(gb_u64_at(sh, GB_OFF_REQUEST_SLOTS)));
  s.completions = reinterpret_cast<gb_ring_slot*>(block + gb_ld64(gb_u64_at(sh, GB_OFF_COMPLETION_SLOTS)));
  s.request_capacity = gb_ld32(gb_u32_at(block, GB_OFF_REQUEST_CAPACITY));
  s.completion_capacity = gb_ld32(gb_u32_at(block, GB_OFF_COMPLETION_CAPACITY));
  s.request_dequeue = gb_u64_at(sh, GB_OFF_REQUEST_DEQUEUE);
  s.completion_enqueue = gb_u64_at(sh, GB_OFF_COMPLETION_ENQUEUE);
  s.completion_dequeue = gb_u64_at(sh, GB_OFF_COMPLETION_DEQUEUE);
  s.heartbeat = gb_u64_at(sh, GB_OFF_HEARTBEAT);
  s.control_word = gb_u32_at(block, GB_OFF_CONTROL);
  s.next_request = gb_ld64(s.request_dequeue);
  s.next_completion = gb_ld64(s.completion_enqueue);
  s.published_completion = s.next_completion;
  s.completion_credit = 0;  // read when the first completion is written
  s.beat = gb_ld64(s.heartbeat);
  s.served = gb_ld64(&s.words->served);
  s.internal_messages = gb_ld64(&s.words->internal_messages);
  s.published_internal_messages = s.internal_messages;
  s.internal_failures = gb_ld64(&s.words->internal_failures);
  s.published_peak = gb_ld64(&s.words->internal_peak);
  s.area = gb_read_area(internal);
  s.queue = gb_region(s.area, shard);
  s.internal_next = gb_ld64(gb_u64_at(s.queue, GB_OFF_Q_DEQUEUE));
  s.outbox.area = s.area;
  s.outbox.claims = gb_queue_claims(s.area, s.queue);
  s.outbox.staged = 0;
  s.intake = intake;
  s.intake->requests = s.requests;
  s.intake->capacity = s.request_capacity;
  s.taken = 0;
  s.next_taken = 0;
  s.intake_word = GB_CONTROL_RUN;
  s.intake_word_ns = 0;
#ifdef GB_RING_TIME_PHASES
  for (int i = 0; i < 8; ++i) s.phase[i] = gb_ld64(&s.control->phases[shard].words[i]);
#endif
}

__device__ __forceinline__ void gb_write_phases(gb_server& s) {
#ifdef GB_RING_TIME_PHASES
  for (int i = 0; i < 8; ++i) gb_st64(&s.control->phases[s.shard].words[i], s.phase[i]);
#else
  (void)s;
#endif
}

__device__ __forceinline__ void gb_heartbeat(gb_server& s) { gb_st64(s.heartbeat, ++s.beat); }

// Device-side counters cross no bus per message: they reach the host when the shard's queue is
// empty and before each completion it writes.
// `peak`: the queue's peak word, read by the caller (gb_publish_counts reads it itself).
__device__ __forceinline__ void gb_publish_counts_with(gb_server& s, gb_u64 peak) {
  if (s.internal_messages != s.published_internal_messages) {
    s.published_internal_messages = s.internal_messages;
    gb_st64(&s.words->internal_messages, s.internal_messages);
  }
  if (peak != s.published_peak) {
    s.published_peak = peak;
    gb_st64(&s.words->internal_peak, peak);
  }
}
__device__ __forceinline__ void gb_publish_counts(gb_server& s) {
  gb_publish_counts_with(s, gb_ld64(gb_u64_at(s.queue, GB_OFF_Q_PEAK)));
}

// Reply area of a message: the host call's pool block, or the inline buffer; false when the
// pool reference is out of bounds.
__device__ bool gb_reply_area(gb_server& s, const gb_envelope& env, unsigned char*& reply, gb_u32& capacity) {
  if (env.reply_offset != 0) {
    if (!gb_pool_ok(s.geometry, env.reply_offset, env.reply_capacity)) return false;
    reply = s.block + env.reply_offset;
    capacity = env.reply_capacity;
    return true;
  }
  reply = s.inline_reply;
  capacity = env.reply_capacity < GB_INLINE_BYTES ? env.reply_capacity : static_cast<gb_u32>(GB_INLINE_BYTES);
  return true;
}

// Runs one message against the actor table into s.outcome (already reset).
__device__ void gb_serve(gb_server& s, const gb_envelope& env, const unsigned char* payload, gb_u32 payload_bytes,
                         unsigned char* reply, gb_u32 reply_capacity) {
  gb_outcome& o = s.outcome;
  if (env.actor_id >= s.geometry.actor_count) {
    gb_fail(o, GB_RING_NOT_FOUND, "unknown actor id ");
    gb_put_u(o.message, env.actor_id);
    return;
  }
  gb_actor_entry* actor = reinterpret_cast<gb_actor_entry*>(s.actors) + env.actor_id;
  unsigned char* state = s.actors + (actor->state_offset - s.geometry.actor_table);
  const gb_u32 state_bytes = actor->state_bytes;

  if (env.handler_id == GB_ACTIVATE_HANDLER) {
    if (actor->active != 0) {
      gb_fail(o, GB_RING_ALREADY_EXISTS, "actor ");
      gb_put_u(o.message, env.actor_id);
      gb_put(o.message, " is already active");
      return;
    }
    if (payload_bytes > state_bytes) {
      gb_fail(o, GB_RING_INVALID_ARGUMENT, "initial state of ");
      gb_put_u(o.message, payload_bytes);
      gb_put(o.message, " bytes exceeds the actor's state size ");
      gb_put_u(o.message, state_bytes);
      return;
    }
    for (gb_u32 i = 0; i < state_bytes; ++i) state[i] = i < payload_bytes ? payload[i] : 0;
    actor->active = 1;
    return;
  }
  if (actor->active == 0) {
    gb_fail(o, GB_RING_FAILED_PRECONDITION, "actor ");
    gb_put_u(o.message, env.actor_id);
    gb_put(o.message, " is not active");
    return;
  }
  if (env.handler_id == GB_DEACTIVATE_HANDLER) {
    if (reply_capacity < state_bytes) {
      gb_fail(o, GB_RING_INVALID_ARGUMENT, "reply capacity too small for the actor's state");
      return;
    }
    for (gb_u32 i = 0; i < state_bytes; ++i) reply[i] = state[i];
    actor->active = 0;
    o.reply_bytes = state_bytes;
    return;
  }

  gb_ring_outbox& box = s.outbox;
  box.next_hops = env.hops + 1;
  box.forwarded = false;
  box.origin = env;
  box.refused_code = 0;
  box.refusal.size = 0;
  gb_ring_call call;
  call.actor_id = env.actor_id;
  call.handler_id = env.handler_id;
  call.state = state;
  call.state_bytes = state_bytes;
  call.payload = payload;
  call.payload_bytes = payload_bytes;
  call.reply = reply;
  call.reply_capacity = reply_capacity;
  call.hops = env.hops;
  call.replies_to_host = env.replies_to_host;
  call.outbox = &box;
  int written = 0;
  const int dispatched = gb_ring_dispatch(env.handler_id, actor->type_id, call, written);
  if (dispatched == GB_RING_DISPATCH_UNKNOWN_HANDLER) {
    gb_fail(o, GB_RING_NOT_FOUND, "unknown handler id ");
    gb_put_u(o.message, env.handler_id);
    return;
  }
  if (dispatched == GB_RING_DISPATCH_WRONG_TYPE) {
    gb_fail(o, GB_RING_INVALID_ARGUMENT, "handler ");
    gb_put_u(o.message, env.handler_id);
    gb_put(o.message, " serves actor type ");
    gb_put_u(o.message, gb_ring_handler_type(env.handler_id));
    gb_put(o.message, ", actor ");
    gb_put_u(o.message, env.actor_id);
    gb_put(o.message, " is of type ");
    gb_put_u(o.message, actor->type_id);
    return;
  }
  if (written < 0) {
    const gb_u32 code = static_cast<gb_u32>(-(written + 1)) + 1u;  // no overflow at INT_MIN
    gb_fail(o, code >= 1 && code <= 16 ? code : static_cast<gb_u32>(GB_RING_INTERNAL), "handler ");
    gb_put_u(o.message, env.handler_id);
    gb_put(o.message, " failed with code ");
    gb_put_u(o.message, code);
    if (box.refused_code != 0 && box.refused_code == code) {
      gb_put(o.message, ": ");
      gb_put_text(o.message, box.refusal);
    }
    return;
  }
  if (box.forwarded) {
    o.forwarded = true;  // the handler's own reply is discarded
    return;
  }
  if (static_cast<gb_u32>(written) > reply_capacity) {
    gb_fail(o, GB_RING_INTERNAL, "handler reported ");
    gb_put_u(o.message, static_cast<gb_u64>(written));
    gb_put(o.message, " reply bytes, more than the capacity ");
    gb_put_u(o.message, reply_capacity);
    return;
  }
  o.reply_bytes = static_cast<gb_u32>(written);
}

// Publishes the completions written since the last call: counters first (exact once a caller holds
// its reply), one system fence for every body, then their turns in ring order.
__device__ void gb_publish_completions(gb_server& s) {
  if (s.published_completion == s.next_completion) return;
  GB_PHASE_BEGIN(started);
  gb_publish_counts(s);
  gb_st64(&s.words->served, s.served);  // counted before the callers can see their replies
  gb_fence_release();
  for (gb_u64 p = s.published_completion; p < s.next_completion; ++p) {
    gb_st64(&(s.completions + (p & (s.completion_capacity - 1)))->turn, p + 1);
  }
  gb_st64(s.completion_enqueue, s.next_completion);
  s.published_completion = s.next_completion;
  GB_PHASE_END(s, GB_PHASE_PUBLISH, started);
  gb_write_phases(s);
}

// Writes s.outcome as the completion of env's host call on this shard's completion ring, waiting
// (heartbeating) for a free slot. False when the host abandoned the kernel meanwhile. The turn is
// published later, with others (gb_publish_completions): before the server looks at the request
// ring again, once GB_INTAKE_LANES are written, and before it waits for a free slot or ends.
__device__ bool gb_complete(gb_server& s, const gb_envelope& env) {
  gb_ring_slot* out = s.completions + (s.next_completion & (s.completion_capacity - 1));
  // The slot is free once the host's dequeue counter passed its previous lap. One read of the
  // counter vouches for every slot up to a ring's length beyond it, so the bus is crossed once per
  // many completions rather than for each (acquire: the host has finished reading the slot's
  // previous body - it releases the counter after that - before this one is written). The host
  // frees only slots it has seen published: those written go out before the wait.
  if (s.next_completion >= s.completion_credit) gb_publish_completions(s);
  while (s.next_completion >= s.completion_credit) {
    s.completion_credit = gb_ld64_acquire(s.completion_dequeue) + s.completion_capacity;
    if (s.next_completion < s.completion_credit) break;
    GB_RING_GRID_CHECK();
    gb_heartbeat(s);
    if (gb_ld32(&s.control->abandon) != 0) return false;
    GB_RING_IDLE();
  }
  // The body after turn and request_id (offsets 16 to 56) and an inline payload after it, composed
  // here and written in whole 16-byte chunks: each store to mapped memory is a transaction on the
  // bus, so a few wide ones rather than one per field (the turn is written when published).
  const gb_outcome& o = s.outcome;
  gb_u32 flags = 0;
  gb_u32 bytes = o.reply_bytes;
  gb_u64 payload_offset = 0;
  const unsigned char* inline_bytes = s.inline_reply;
  if (o.status != 0) {
    inline_bytes = o.message.bytes;
    bytes = o.message.size;
  } else if (env.reply_offset != 0) {
    flags = GB_PAYLOAD_IN_POOL;
    payload_offset = env.reply_offset;
    inline_bytes = nullptr;
  }
  __align__(16) gb_u64 body[(GB_SLOT_BYTES - 16) / 8];
  body[0] = static_cast<gb_u64>(env.origin_actor_id) | (static_cast<gb_u64>(env.origin_handler_id) << 32);
  body[1] = static_cast<gb_u64>(bytes) | (static_cast<gb_u64>(flags) << 32);
  body[2] = payload_offset;
  body[3] = 0;                                   // reply_offset
  body[4] = static_cast<gb_u64>(o.status) << 32;  // reply_capacity 0, status
  gb_u32 words = 5;
  if (inline_bytes != nullptr) {
    const gb_u64* from = reinterpret_cast<const gb_u64*>(inline_bytes);
    for (gb_u32 i = 0; i < (bytes + 7u) / 8u; ++i) body[words++] = from[i];
  }
  if (words % 2 != 0) body[words++] = 0;
  out->request_id = env.request_id;
  gb_store_chunks(reinterpret_cast<unsigned char*>(out) + 16, body, words / 2);
  ++s.served;
  ++s.next_completion;
  if (s.next_completion - s.published_completion >= GB_INTAKE_LANES) gb_publish_completions(s);
  return true;
}

// A posted message failed: keep its error for the host (seqlock, see KernelShardWords), then count
// it - in that order, so that a host that sees the count can read the error.
__device__ void gb_record_failure(gb_server& s, const gb_envelope& env) {
  gb_shard_words* w = s.words;
  gb_text t;
  t.size = 0;
  gb_put(t, "actor ");
  gb_put_u(t, env.actor_id);
  gb_put(t, " handler ");
  gb_put_u(t, env.handler_id);
  gb_put(t, ": ");
  gb_put_text(t, s.outcome.message);
  const gb_u64 ticket = atomicAdd(gb_u64_at(s.area.base, GB_OFF_SW_FAILURE_TICKET), 1ull) + 1;
  const gb_u32 sequence = gb_ld32(&w->error_sequence);
  gb_st32(&w->error_sequence, sequence + 1);  // odd: being rewritten
  __threadfence_system();
  for (gb_u32 i = 0; i * 4 < t.size; ++i) {
    gb_u32 word = 0;
    for (gb_u32 b = 0; b < 4 && i * 4 + b < t.size; ++b) word |= static_cast<gb_u32>(t.bytes[i * 4 + b]) << (8 * b);
    gb_st32(&w->error_words[i], word);
  }
  gb_st32(&w->error_bytes, t.size);
  gb_st64(&w->error_ticket, ticket);
  __threadfence_system();
  gb_st32(&w->error_sequence, sequence + 2);
  gb_st64(&w->internal_failures, ++s.internal_failures);  // after the fence: ordered after the error
}

// Publishes the messages the handler claimed: as they are when it succeeded, dropped otherwise.
// Each target queue's peak is raised first (its claims are all still unconsumed then).
__device__ void gb_publish_outbox(gb_server& s, bool commit) {
  gb_ring_outbox& o = s.outbox;
  if (commit) {
    for (gb_u32 i = 0; i < o.staged; ++i) {
      unsigned char* region = gb_region(s.area, o.claims[i].shard);
      const gb_u64 held = gb_ld64(gb_u64_at(region, GB_OFF_Q_ENQUEUE)) - gb_ld64(gb_u64_at(region, GB_OFF_Q_DEQUEUE));
      atomicMax(gb_u64_at(region, GB_OFF_Q_PEAK), held);
    }
  }
  for (gb_u32 i = 0; i < o.staged; ++i) {
    unsigned char* region = gb_region(s.area, o.claims[i].shard);
    gb_internal_slot* slot = gb_queue_slots(region) + o.claims[i].position % s.area.slots;
    slot->dropped = commit ? 0u : 1u;
    __threadfence();  // release: the message before its turn
    gb_st64(&slot->turn, o.claims[i].position + 1);
  }
  o.staged = 0;
}

// After a message ran (or was cancelled): publishes its staged messages (dropped unless it
// succeeded), then answers its host call unless it forwarded. False when the host abandoned the kernel.
__device__ bool gb_finish(gb_server& s, const gb_envelope& env) {
  gb_publish_outbox(s, s.outcome.status == 0);
  if (s.outcome.status == 0 && s.outcome.forwarded) return true;
  if (env.replies_to_host) return gb_complete(s, env);
  if (s.outcome.status != 0) gb_record_failure(s, env);
  return true;
}

// A host message taken off the ring (its slot already freed).
__device__ bool gb_serve_host(gb_server& s, const gb_ring_slot& r, gb_u32 word) {
  gb_envelope env;
  env.request_id = r.request_id;
  env.reply_offset = r.reply_offset;
  env.reply_capacity = r.reply_capacity;
  env.actor_id = r.actor_id;
  env.handler_id = r.handler_id;
  env.hops = 0;
  env.replies_to_host = true;
  env.origin_actor_id = r.actor_id;
  env.origin_handler_id = r.handler_id;
  gb_reset(s.outcome);
  s.outbox.staged = 0;
  if (word == GB_CONTROL_STOP) {
    gb_fail(s.outcome, GB_RING_CANCELLED, "ring server stopped before the message ran");
    return gb_finish(s, env);
  }
  const unsigned char* payload = r.inline_payload;
  if (r.flags & GB_PAYLOAD_IN_POOL) {
    if (!gb_pool_ok(s.geometry, r.payload_offset, r.payload_bytes)) {
      gb_fail(s.outcome, GB_RING_INVALID_ARGUMENT, "payload reference outside the pool");
      return gb_finish(s, env);
    }
    payload = s.block + r.payload_offset;
  } else if (r.payload_bytes > GB_INLINE_BYTES) {
    gb_fail(s.outcome, GB_RING_INVALID_ARGUMENT, "inline payload longer than a slot holds");
    return gb_finish(s, env);
  }
  unsigned char* reply = s.inline_reply;
  gb_u32 reply_capacity = 0;
  if (!gb_reply_area(s, env, reply, reply_capacity)) {
    gb_fail(s.outcome, GB_RING_INVALID_ARGUMENT, "reply reference outside the pool");
    return gb_finish(s, env);
  }
  gb_serve(s, env, payload, r.payload_bytes, reply, reply_capacity);
  return gb_finish(s, env);
}

// The device-side message in `slot` at `position` of this shard's queue (published).
__device__ bool gb_serve_internal(gb_server& s, gb_internal_slot* slot, gb_u64 position, gb_u32 word) {
  s.internal = slot->message;
  const bool dropped = slot->dropped != 0;
  __threadfence();  // the body is read before the slot is freed
  gb_st64(&slot->turn, position + s.area.slots);
  gb_st64(gb_u64_at(s.queue, GB_OFF_Q_DEQUEUE), position + 1);
  s.internal_next = position + 1;
  if (dropped) return true;  // its handler failed after staging it: it never runs
  ++s.internal_messages;
  const gb_internal_message& m = s.internal;
  gb_envelope env;
  env.actor_id = m.actor_id;
  env.handler_id = m.handler_id;
  env.hops = m.hops;
  env.replies_to_host = (m.flags & GB_INTERNAL_REPLIES_TO_HOST) != 0;
  if (env.replies_to_host) {
    env.request_id = m.origin_request_id;
    env.reply_offset = m.origin_reply_offset;
    env.reply_capacity = m.origin_reply_capacity;
    env.origin_actor_id = m.origin_actor_id;
    env.origin_handler_id = m.origin_handler_id;
  } else {  // a post: the reply is dropped
    env.request_id = 0;
    env.reply_offset = 0;
    env.reply_capacity = GB_INLINE_BYTES;
    env.origin_actor_id = m.actor_id;
    env.origin_handler_id = m.handler_id;
  }
  gb_reset(s.outcome);
  s.outbox.staged = 0;
  unsigned char* reply = s.inline_reply;
  gb_u32 reply_capacity = 0;
  if (word == GB_CONTROL_STOP) {
    gb_fail(s.outcome, GB_RING_CANCELLED, "ring server stopped before the message ran");
  } else if (!gb_reply_area(s, env, reply, reply_capacity)) {
    gb_fail(s.outcome, GB_RING_INVALID_ARGUMENT, "reply reference outside the pool");
  } else {
    const gb_u32 bytes = m.payload_bytes < GB_INLINE_BYTES ? m.payload_bytes : static_cast<gb_u32>(GB_INLINE_BYTES);
    gb_serve(s, env, m.payload, bytes, reply, reply_capacity);
  }
  return gb_finish(s, env);
}

// True when nothing is left to serve anywhere (see CpuRingServer's nothing_left): every shard's
// request ring is empty, then no message is taken and unfinished (in_flight).
// The fence first: the control word (drain or stop) was read before, relaxed; after the fence these
// loads see every message the host had enqueued before it wrote that word.
__device__ bool gb_nothing_left(gb_server& s) {
  __threadfence_system();
  for (gb_u32 t = 0; t < s.geometry.shard_count; ++t) {
    unsigned char* sh = gb_shard_header(s.block, s.geometry, t);
    if (gb_ld64(gb_u64_at(sh, GB_OFF_REQUEST_ENQUEUE)) != gb_ld64(gb_u64_at(sh, GB_OFF_REQUEST_DEQUEUE))) return false;
  }
  __threadfence_system();
  return gb_ld64(gb_in_flight(s.area)) == 0;
}

// This block ends for good: the last block to finish says the server stopped.
__device__ void gb_finish_shard(gb_server& s) {
  gb_publish_completions(s);
  gb_publish_counts(s);
  gb_write_phases(s);
  gb_st32(gb_u32_at(s.queue, GB_OFF_Q_FINISHED), 1u);
  gb_st32(&s.words->exit_reason, GB_EXIT_FINISHED);
  __threadfence_system();
  if (atomicSub(gb_u32_at(s.area.base, GB_OFF_SW_UNFINISHED), 1u) == 1u) {
    __threadfence_system();  // every block's completions before `stopped`
    gb_st32(gb_u32_at(s.block, GB_OFF_SERVER_STATE), GB_STATE_STOPPED);
  }
}

// One lane's share of an intake: positions first + i for i = from, from + stride, ... below count,
// each copied when its turn says it is published (acquire: the body is read after the turn). A
// helper lane fences its copies: the serving lane frees the slots once every lane is done.
__device__ void gb_intake_lane(gb_intake& in, gb_u32 from, gb_u32 stride) {
  bool copied = false;
  for (gb_u32 i = from; i < in.count; i += stride) {
    const gb_u64 position = in.first + i;
    const gb_ring_slot* slot = in.requests + (position & (in.capacity - 1));
    const bool ready = gb_ld64_acquire(&slot->turn) == position + 1;
    if (ready) {
      gb_copy_slot(&in.slots[i], slot);
      copied = true;
    }
    in.ready[i] = ready ? 1u : 0u;
  }
  if (copied) gb_fence_release();
}

#ifndef GB_RING_HOST_SHIM
// Lanes 1.. of a block: take their slot whenever the serving lane asks (gb_take), until it says
// to leave (count 0). Each order is a pair of warp barriers: the order, then the copies done.
__device__ void gb_intake_helper(gb_intake& in, gb_u32 lane) {
  for (;;) {
    __syncwarp();
    if (*reinterpret_cast<volatile gb_u32*>(&in.count) == 0) return;
    gb_intake_lane(in, lane, GB_INTAKE_LANES);
    __syncwarp();
  }
}
#endif

// Takes the host messages published from s.next_request on (the poll acquired the first one's
// turn; `enqueued` is the producers' claim counter read with it): the first alone when it is the
// only one claimed, else up to GB_INTAKE_LANES with the helper lanes (on a host build this thread
// takes them all). Only a run of published ones from the first counts: a slot still being written
// is taken by a later round. They are counted in flight before their slots are freed and the
// dequeue counter moves (a block that sees the new count in gb_nothing_left sees them in flight).
__device__ void gb_take(gb_server& s, const gb_ring_slot* first, gb_u64 enqueued, gb_u32 word) {
  gb_intake& in = *s.intake;
  const gb_u64 claimed = enqueued > s.next_request ? enqueued - s.next_request : 1;
  in.first = s.next_request;
  in.count = claimed < GB_INTAKE_LANES ? static_cast<gb_u32>(claimed) : static_cast<gb_u32>(GB_INTAKE_LANES);
  in.ready[0] = 1u;
  if (in.count > 1) {
#ifdef GB_RING_HOST_SHIM
    gb_intake_lane(in, 1, 1);
#else
    __syncwarp();  // the order: the helper lanes copy positions 1.. while this one copies the first
#endif
  }
  gb_copy_slot(&in.slots[0], first);
#ifndef GB_RING_HOST_SHIM
  if (in.count > 1) __syncwarp();  // their copies are done (and fenced)
#endif
  gb_u32 taken = 1;
  while (taken < in.count && in.ready[taken] != 0) ++taken;
  atomicAdd(gb_in_flight(s.area), static_cast<gb_u64>(taken));
  // The bodies are read and the messages counted before the slots are freed and the dequeue
  // counter moves: one fence orders every store below after them.
  gb_fence_release();
  for (gb_u32 i = 0; i < taken; ++i) {
    const gb_u64 position = in.first + i;
    gb_st64(&(s.requests + (position & (s.request_capacity - 1)))->turn, position + s.request_capacity);
  }
  gb_st64(s.request_dequeue, s.next_request + taken);
  s.next_request += taken;
  s.taken = taken;
  s.next_taken = 0;
  s.intake_word = word;
  s.intake_word_ns = gb_now_ns();
}

// The slot of the next device-side message of this shard's queue (published or not yet).
__device__ __forceinline__ gb_internal_slot* gb_next_internal(gb_server& s) {
  return gb_queue_slots(s.queue) + s.internal_next % s.area.slots;
}

// Serves the message in `message` (gb_next_internal) if `turn`, its turn as the caller read it,
// says it is published: true when it did (`going` false when the host abandoned the kernel meanwhile).
__device__ bool gb_serve_queued_internal(gb_server& s, gb_internal_slot* message, gb_u64 turn, gb_u32 word,
                                         bool& going) {
  const gb_u64 position = s.internal_next;
  if (turn != position + 1) return false;
  gb_heartbeat(s);
  __threadfence();  // acquire: the message after its turn
  going = gb_serve_internal(s, message, position, word);
  atomicAdd(gb_in_flight(s.area), ~0ull);  // finished (its own messages were counted when claimed)
  return true;
}

// The serving lane's loop over one shard: device-side messages first (on one shard a host
// message's whole chain runs before the next host message), then the host messages taken, then
// - with nothing in hand, the completions written published - a look at the request ring.
__device__ void gb_serve_shard(unsigned char* block, unsigned char* actors, unsigned char* control,
                               unsigned char* internal, gb_u32 shard, gb_intake* intake) {
  gb_server s;
  gb_init(s, block, actors, control, internal, shard, intake);
  if (gb_ld32(gb_u32_at(s.queue, GB_OFF_Q_FINISHED)) != 0) {  // finished in an earlier launch
    gb_st32(&s.words->exit_reason, GB_EXIT_FINISHED);
    return;
  }
  gb_u32* quiescent = gb_u32_at(s.area.base, GB_OFF_SW_QUIESCENT);
  unsigned char* shard_header = gb_shard_header(block, s.geometry, shard);
  for (;;) {
    GB_RING_GRID_CHECK();
    // (No block finds the server quiescent while this one holds messages: they are in flight.)
    if (s.next_taken < s.taken) {
      if (s.next_taken % 8 == 0) gb_heartbeat(s);  // a store over the bus: every 8th message in hand
      // Host messages in hand, served under a control word at most GB_CONTROL_WORD_AGE_NS old at
      // their start: a stop while a handler runs long cancels the ones after it, as it cancels
      // those still on the ring; a fast round of them costs no extra trip over the bus.
      if (gb_now_ns() - s.intake_word_ns > GB_CONTROL_WORD_AGE_NS) {
        s.intake_word = gb_ld32(s.control_word);
        s.intake_word_ns = gb_now_ns();
      }
      bool going = true;
      gb_internal_slot* next_internal = gb_next_internal(s);
      if (!gb_serve_queued_internal(s, next_internal, gb_ld64(&next_internal->turn), s.intake_word, going)) {
        GB_PHASE_BEGIN(serving);
        going = gb_serve_host(s, s.intake->slots[s.next_taken++], s.intake_word);
        GB_PHASE_END(s, GB_PHASE_SERVE, serving);
        atomicAdd(gb_in_flight(s.area), ~0ull);
      }
      if (!going) break;
      continue;
    }
    gb_publish_completions(s);
    GB_PHASE_BEGIN(polling);
    // The words this round looks at, read back to back before any is used, so that their trips
    // (over the bus, about a microsecond each from a GPU; to device memory) overlap instead of
    // following one another: this server's device words first, then the host's. The slot's turn
    // last, as an acquire load: the slot's body is read after it without a system-wide fence.
    const gb_ring_slot* slot = s.requests + (s.next_request & (s.request_capacity - 1));
    const gb_u32 quiet = gb_ld32(quiescent);
    gb_internal_slot* next_internal = gb_next_internal(s);
    const gb_u64 internal_turn = gb_ld64(&next_internal->turn);
    const gb_u64 peak = gb_ld64(gb_u64_at(s.queue, GB_OFF_Q_PEAK));
    const gb_u32 yield = gb_ld32(&s.control->yield);
    const gb_u32 abandon = gb_ld32(&s.control->abandon);
    const gb_u32 word = gb_ld32(s.control_word);
    const gb_u64 enqueued = gb_ld64(gb_u64_at(shard_header, GB_OFF_REQUEST_ENQUEUE));
    const gb_u64 turn = gb_ld64_acquire(&slot->turn);
    if (quiet != 0) break;
    if (yield != 0) {
      gb_publish_counts(s);
      gb_write_phases(s);
      gb_st32(&s.words->exit_reason, GB_EXIT_YIELDED);
      return;
    }
    bool going = true;
    if (gb_serve_queued_internal(s, next_internal, internal_turn, word, going)) {
      if (!going) break;
      continue;
    }
    gb_publish_counts_with(s, peak);
    if (turn != s.next_request + 1) {
      // The heartbeat where no message waits: a store over the bus still on its way would hold
      // up the fence of the next take (the in-hand path beats right after a take).
      gb_heartbeat(s);
      // drain/stop end once nothing is queued, being enqueued or in flight on any shard.
      if (word != GB_CONTROL_RUN && gb_nothing_left(s)) {
        gb_st32(quiescent, 1u);
        break;
      }
      if (abandon != 0) break;
      GB_PHASE_END(s, GB_PHASE_IDLE_POLL, polling);
      GB_RING_IDLE();
      continue;
    }
    GB_PHASE_BEGIN(taking);
    gb_take(s, slot, enqueued, word);
    GB_PHASE_END(s, GB_PHASE_TAKE, taking);
  }
  gb_finish_shard(s);
}

}  // namespace gb_ring_detail

// One block per shard, GB_INTAKE_LANES threads each: lane 0 serves, every lane takes messages
// off the request ring (gb_take). Handlers run on lane 0 alone, one message at a time.
extern "C" __global__ void gb_ring_serve(unsigned char* block, unsigned char* actors, unsigned char* control,
                                         unsigned char* internal) {
  using namespace gb_ring_detail;
  const gb_u32 shard = blockIdx.x;
  if (shard >= gb_ld32(gb_u32_at(block, GB_OFF_SHARD_COUNT))) return;
  __shared__ gb_intake intake;
#ifndef GB_RING_HOST_SHIM
  if (threadIdx.x != 0) {
    gb_intake_helper(intake, threadIdx.x);
    return;
  }
#endif
  gb_serve_shard(block, actors, control, internal, shard, &intake);
#ifndef GB_RING_HOST_SHIM
  intake.count = 0;
  __syncwarp();  // the helper lanes leave
#endif
}
)GBCU";

// The highest architecture NVRTC supports that the device runs: a cubin when it matches the
// device exactly, else PTX (JIT-compiled by the driver).
Result<std::string> pick_target(int compute_capability) {
  int count = 0;
  if (nvrtcResult r = nvrtcGetNumSupportedArchs(&count); r != NVRTC_SUCCESS) {
    return cuda::to_error(r, "nvrtcGetNumSupportedArchs");
  }
  std::vector<int> archs(static_cast<std::size_t>(count));
  if (nvrtcResult r = nvrtcGetSupportedArchs(archs.data()); r != NVRTC_SUCCESS) {
    return cuda::to_error(r, "nvrtcGetSupportedArchs");
  }
  int best = -1;
  for (int a : archs) {
    if (a <= compute_capability && a > best) best = a;
  }
  if (best < 0) {
    return ring_error(ErrorCode::failed_precondition,
                      "NVRTC cannot target compute capability " + std::to_string(compute_capability / 10) + "." +
                          std::to_string(compute_capability % 10));
  }
  return (best == compute_capability ? "sm_" : "compute_") + std::to_string(best);
}

// A loaded ring kernel. Loaded (kernel included, not at its first launch) and unloaded with the
// device's persistent kernels - other rings', and this server's own - stepped aside: a load may
// wait for the device to go idle, which a persistent kernel never is (device_idle.hpp).
struct LoadedKernel {
  cudaLibrary_t library = nullptr;
  cudaKernel_t kernel = nullptr;
  int device = 0;
  LoadedKernel() = default;
  LoadedKernel(const LoadedKernel&) = delete;
  LoadedKernel& operator=(const LoadedKernel&) = delete;
  ~LoadedKernel() {
    // Teardown: an unload error is ignored.
    if (library != nullptr) cuda::DeviceIdle::run(device, [&] { cudaLibraryUnload(library); });
  }
};

Result<std::unique_ptr<LoadedKernel>> load_kernel(const std::vector<char>& image, int device) {
  auto loaded = std::make_unique<LoadedKernel>();
  loaded->device = device;
  auto library = cuda::load_library(device, image);
  if (!library) return library.error();
  loaded->library = *library;
  if (cudaError_t e = cudaLibraryGetKernel(&loaded->kernel, loaded->library, detail::kRingKernelEntry);
      e != cudaSuccess) {
    return cuda::to_error(e, "cudaLibraryGetKernel(gb_ring_serve)");
  }
  return loaded;
}

// Restores the calling thread's current CUDA device on scope exit: stepping a ring aside and
// relaunching it happen on whichever thread needed the device idle.
class CurrentDeviceKept {
 public:
  CurrentDeviceKept() {
    if (cudaGetDevice(&device_) != cudaSuccess) device_ = -1;
  }
  ~CurrentDeviceKept() {
    if (device_ >= 0) cudaSetDevice(device_);
  }
  CurrentDeviceKept(const CurrentDeviceKept&) = delete;
  CurrentDeviceKept& operator=(const CurrentDeviceKept&) = delete;

 private:
  int device_ = -1;
};

}  // namespace

Result<std::string> cuda_ring_kernel_source(const CudaHandlerSource& handlers, bool time_phases) {
  std::set<std::uint32_t> ids;
  for (const CudaHandler& h : handlers.handlers) {
    if (h.handler_id >= kFirstReservedHandler) {
      return ring_error(ErrorCode::invalid_argument,
                        "handler id " + std::to_string(h.handler_id) + " is reserved by the protocol");
    }
    if (!ids.insert(h.handler_id).second) {
      return ring_error(ErrorCode::invalid_argument,
                        "handler id " + std::to_string(h.handler_id) + " is registered twice");
    }
    if (!is_identifier(h.function)) {
      return ring_error(ErrorCode::invalid_argument, "handler " + std::to_string(h.handler_id) +
                                                         ": function name '" + h.function +
                                                         "' is not a C identifier");
    }
  }
  std::string source = "// Generated by gpubridge CudaRingServer.\n";
  if (time_phases) source += "#define GB_RING_TIME_PHASES 1\n";
  source += layout_defines();
  source += kDevicePlatform;
  source += kHandlerPrelude;
  source += "// ---- user handlers ----\n#line 1 \"handlers.cu\"\n";
  source += handlers.source;
  source += "\n#line 1 \"gpubridge_ring_server.cu\"\n// ---- generated dispatch ----\n";
  source += "__device__ int gb_ring_dispatch(unsigned int handler_id, unsigned int actor_type, "
            "const gb_ring_call& call, int& written) {\n"
            "  (void)actor_type;  // unused when no handler is registered\n  (void)call;\n  (void)written;\n"
            "  switch (handler_id) {\n";
  for (const CudaHandler& h : handlers.handlers) {
    source += "    case " + std::to_string(h.handler_id) + "u:\n      if (actor_type != " +
              std::to_string(h.actor_type) + "u) return GB_RING_DISPATCH_WRONG_TYPE;\n      written = " +
              h.function + "(call);\n      return GB_RING_DISPATCH_OK;\n";
  }
  source += "    default: return GB_RING_DISPATCH_UNKNOWN_HANDLER;\n  }\n}\n";
  source += "__device__ unsigned int gb_ring_handler_type(unsigned int handler_id) {\n  switch (handler_id) {\n";
  for (const CudaHandler& h : handlers.handlers) {
    source += "    case " + std::to_string(h.handler_id) + "u: return " + std::to_string(h.actor_type) + "u;\n";
  }
  source += "    default: return 0u;\n  }\n}\n";
  source += kServerLoop;
  return source;
}

// The device side of the kernel's lifecycle (detail::KernelLifecycle runs it).
struct CudaRingServer::Impl final : detail::KernelPlatform {
  RingMemory& memory;
  CudaRingServerOptions options;
  CudaRingMode mode;
  bool registered = false;            // cudaHostRegister of the block succeeded
  std::byte* block_device = nullptr;  // device view of the block
  KernelControl* control_words = nullptr;  // mapped, page-locked (cudaHostAlloc)
  KernelControl* control_device = nullptr;
  std::byte* actors_device = nullptr;  // mirror of [actor_table_offset, pool_offset)
  std::size_t actors_bytes = 0;
  std::byte* internal_device = nullptr;  // the internal area (InternalServerWords, per-shard queues)
  const std::uint32_t shards;
  cudaStream_t stream = nullptr;
  std::unique_ptr<LoadedKernel> loaded;  // under lifecycle.mutex() once started
  detail::KernelLifecycle lifecycle;

  Impl(RingMemory& m, CudaRingServerOptions o)
      : memory(m), options(o), shards(m.header().shard_count), lifecycle(*this, m, o.device, shards) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Releases whatever was acquired (with every persistent kernel stepped aside: frees may wait
  // for the devices to go idle); errors at teardown are reported on stderr and otherwise ignored.
  ~Impl() override {
    cuda::DeviceIdle::run(cuda::DeviceIdle::kEveryDevice, [&] {
      if (cudaSetDevice(options.device) != cudaSuccess) cudaGetLastError();
      loaded.reset();
      if (stream != nullptr) cudaStreamDestroy(stream);
      if (actors_device != nullptr) cudaFree(actors_device);
      if (internal_device != nullptr) cudaFree(internal_device);
      if (control_words != nullptr) cudaFreeHost(control_words);
      if (registered) {
        if (cudaError_t e = cudaHostUnregister(memory.base()); e != cudaSuccess) {
          std::fprintf(stderr, "gpubridge: cudaHostUnregister of the ring block failed: %s\n",
                       cuda::describe(e).c_str());
        }
      }
    });
  }

  // NVRTC only (no CUDA context work): safe while the kernel runs. From the disk cache of
  // compiled kernels when the same program was compiled before (a restart, a reload back).
  Result<cuda::CachedImage> compile(const CudaHandlerSource& handlers, bool recompile = false) const {
    auto source = cuda_ring_kernel_source(handlers, options.time_phases);
    if (!source) return source.error();
    return cuda::cached_image(*source, DType::f32, mode.target, recompile);
  }
  // Loads a compiled program; a cached image that does not load is compiled again, once.
  Result<std::unique_ptr<LoadedKernel>> load(const CudaHandlerSource& handlers, const cuda::CachedImage& image) const {
    auto kernel = load_kernel(image.image, options.device);
    if (kernel || !image.from_cache) return kernel;
    auto fresh = compile(handlers, true);
    if (!fresh) return fresh.error();
    return load_kernel(fresh->image, options.device);
  }

  // KernelPlatform. launch() and copy_back() may run on any thread that needed the device idle:
  // they leave its current device as they found it.
  Status launch() override {
    CurrentDeviceKept kept;
    GB_CUDA_TRY(cudaSetDevice(options.device));
    void* block_arg = block_device;
    void* actors_arg = actors_device;
    void* control_arg = control_device;
    void* internal_arg = internal_device;
    void* args[] = {&block_arg, &actors_arg, &control_arg, &internal_arg};
    GB_CUDA_TRY(cudaLaunchKernel(reinterpret_cast<const void*>(loaded->kernel), dim3(shards), dim3(kIntakeLanes), args, 0, stream));
    return {};
  }
  Status wait_returned() override {
    if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess) return cuda::to_error(e, "ring kernel");
    return {};
  }
  std::optional<Status> wait_returned_for(std::chrono::milliseconds limit) override {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (std::uint32_t polls = 0;; ++polls) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return Status{};
      if (e != cudaErrorNotReady) return Status(cuda::to_error(e, "ring kernel"));
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      if (polls < 1024) {
        std::this_thread::yield();  // a block returns after its current message: usually soon
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
  Status copy_back() override {
    if (actors_bytes == 0) return {};
    CurrentDeviceKept kept;
    GB_CUDA_TRY(cudaSetDevice(options.device));
    GB_CUDA_TRY(cudaMemcpy(memory.base() + memory.header().actor_table_offset, actors_device, actors_bytes,
                           cudaMemcpyDeviceToHost));
    return {};
  }
  Status poll() const override {
    const cudaError_t e = cudaStreamQuery(stream);
    if (e == cudaSuccess || e == cudaErrorNotReady) return {};
    return cuda::to_error(e, "ring kernel");
  }
  KernelControl& control() override { return *control_words; }

  static void write_control(std::uint32_t& word, std::uint32_t value) {
    std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_release);
  }
};

Result<std::unique_ptr<CudaRingServer>> CudaRingServer::create(RingMemory& memory, CudaHandlerSource handlers,
                                                               CudaRingServerOptions options) {
  const RingHeader& h = memory.header();
  if (h.magic != kRingMagic || h.version != kRingVersion) {
    return ring_error(ErrorCode::invalid_argument,
                      "memory block is not a ring block of version " + std::to_string(kRingVersion));
  }
  if (std::atomic_ref<std::uint32_t>(memory.header().server_state).load(std::memory_order_acquire) !=
      static_cast<std::uint32_t>(ServerState::not_started)) {
    return ring_error(ErrorCode::failed_precondition, "the ring block has already been served");
  }
  if (Status valid = detail::validate_options(options); !valid) return valid.error();
  if (auto source = cuda_ring_kernel_source(handlers); !source) return source.error();

  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) return cuda::to_error(e, "cudaGetDeviceCount");
  if (options.device < 0 || options.device >= count) {
    return ring_error(ErrorCode::unavailable, "no CUDA device " + std::to_string(options.device) + " (" +
                                                  std::to_string(count) + " present)");
  }
  auto impl = std::make_unique<Impl>(memory, options);
  GB_CUDA_TRY(cudaSetDevice(options.device));
  cudaDeviceProp prop{};
  GB_CUDA_TRY(cudaGetDeviceProperties(&prop, options.device));
  if (prop.canMapHostMemory == 0) {
    return ring_error(ErrorCode::failed_precondition,
                      std::string("device ") + prop.name + " cannot map host memory");
  }
  int native_atomics = 0;
  GB_CUDA_TRY(cudaDeviceGetAttribute(&native_atomics, cudaDevAttrHostNativeAtomicSupported, options.device));
  impl->mode.device_name = prop.name;
  impl->mode.compute_capability = prop.major * 10 + prop.minor;
  impl->mode.host_native_atomics = native_atomics != 0;

  auto target = pick_target(impl->mode.compute_capability);
  if (!target) return target.error();
  impl->mode.target = *target;
  auto image = impl->compile(handlers);
  if (!image) return image.error();
  auto loaded = impl->load(handlers, *image);
  if (!loaded) return loaded.error();
  impl->loaded = std::move(loaded).value();
  impl->mode.description = "persistent kernel (" + std::to_string(h.shard_count) + " block(s) of " + std::to_string(kIntakeLanes) +
                           " threads, one per shard, taking up to " + std::to_string(kIntakeLanes) + " messages at once) on " + impl->mode.device_name + " (" +
                           impl->mode.target + ") over mapped host memory with system fences; host native atomics: " +
                           (impl->mode.host_native_atomics ? "yes (not needed)" : "no (not needed)");

  // Page-locked registrations and allocations may wait for every device to go idle.
  Status acquired = cuda::DeviceIdle::run(cuda::DeviceIdle::kEveryDevice, [&]() -> Status {
    GB_CUDA_TRY(cudaSetDevice(options.device));
    if (cudaError_t e = cudaHostRegister(memory.base(), memory.size_bytes(),
                                         cudaHostRegisterMapped | cudaHostRegisterPortable);
        e != cudaSuccess) {
      if (e == cudaErrorHostMemoryAlreadyRegistered) {
        cudaGetLastError();
        return ring_error(ErrorCode::failed_precondition,
                          "the ring block's pages are already registered with CUDA (another registration "
                          "shares a page with it)");
      }
      return cuda::to_error(e, "cudaHostRegister(ring block)");
    }
    impl->registered = true;
    void* device_view = nullptr;
    GB_CUDA_TRY(cudaHostGetDevicePointer(&device_view, memory.base(), 0));
    impl->block_device = static_cast<std::byte*>(device_view);

    void* control = nullptr;
    GB_CUDA_TRY(cudaHostAlloc(&control, sizeof(KernelControl), cudaHostAllocMapped | cudaHostAllocPortable));
    impl->control_words = static_cast<KernelControl*>(control);
    *impl->control_words = KernelControl{};
    void* control_view = nullptr;
    GB_CUDA_TRY(cudaHostGetDevicePointer(&control_view, control, 0));
    impl->control_device = static_cast<KernelControl*>(control_view);

    impl->actors_bytes = h.pool_offset - h.actor_table_offset;
    if (impl->actors_bytes > 0) {
      void* actors = nullptr;
      GB_CUDA_TRY(cudaMalloc(&actors, impl->actors_bytes));
      impl->actors_device = static_cast<std::byte*>(actors);
    }
    void* internal = nullptr;
    GB_CUDA_TRY(cudaMalloc(&internal, detail::internal_area_bytes(options.internal_queue_slots, impl->shards)));
    impl->internal_device = static_cast<std::byte*>(internal);
    // The highest priority: a (re)launched ring kernel's blocks are dispatched before blocks of
    // executor kernels queued earlier, which could otherwise hold every SM for a while.
    int least = 0, greatest = 0;
    GB_CUDA_TRY(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    GB_CUDA_TRY(cudaStreamCreateWithPriority(&impl->stream, cudaStreamNonBlocking, greatest));
    return {};
  });
  if (!acquired) return acquired.error();
  return std::unique_ptr<CudaRingServer>(new CudaRingServer(std::move(impl)));
}

CudaRingServer::CudaRingServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CudaRingServer::~CudaRingServer() {
  request_stop();
  impl_->write_control(impl_->control_words->abandon, 1);
  if (Status s = wait(); !s) {
    std::fprintf(stderr, "gpubridge: ring kernel ended with an error: %s\n", s.error().to_string().c_str());
  }
  impl_->lifecycle.leave();
}

Status CudaRingServer::start() {
  Impl& impl = *impl_;
  return impl.lifecycle.start([&]() -> Status {
    RingMemory& memory = impl.memory;
    CurrentDeviceKept kept;
    GB_CUDA_TRY(cudaSetDevice(impl.options.device));
    // On the kernel's own stream, so that its launch is ordered after them: a copy from pageable
    // memory may return before its data landed, and the kernel's non-blocking stream is not
    // ordered after the legacy default stream.
    if (impl.actors_bytes > 0) {
      GB_CUDA_TRY(cudaMemcpyAsync(impl.actors_device, memory.base() + memory.header().actor_table_offset,
                                  impl.actors_bytes, cudaMemcpyHostToDevice, impl.stream));
    }
    const std::vector<std::byte> area = detail::initial_internal_area(impl.options, impl.shards);
    GB_CUDA_TRY(cudaMemcpyAsync(impl.internal_device, area.data(), area.size(), cudaMemcpyHostToDevice, impl.stream));
    GB_CUDA_TRY(cudaStreamSynchronize(impl.stream));  // `area` goes out of scope; copy errors surface here
    return {};
  });
}

void CudaRingServer::request_stop() {
  std::atomic_ref<std::uint32_t>(impl_->memory.header().control)
      .store(static_cast<std::uint32_t>(ControlWord::stop), std::memory_order_release);
}

void CudaRingServer::request_drain() {
  // A stop already requested wins over a later drain.
  std::atomic_ref<std::uint32_t> control(impl_->memory.header().control);
  auto expected = static_cast<std::uint32_t>(ControlWord::run);
  control.compare_exchange_strong(expected, static_cast<std::uint32_t>(ControlWord::drain), std::memory_order_acq_rel);
}

Status CudaRingServer::wait() { return impl_->lifecycle.wait(); }

Status CudaRingServer::reload(CudaHandlerSource handlers) {
  // Compile while the old kernel serves; load and install with every persistent kernel of the
  // device stepped aside, this server's included (see detail::KernelLifecycle::reload).
  auto image = impl_->compile(handlers);
  if (!image) return image.error();
  return impl_->lifecycle.reload([&]() -> Status {
    auto kernel = impl_->load(handlers, *image);
    if (!kernel) return kernel.error();
    std::lock_guard lock(impl_->lifecycle.mutex());
    impl_->loaded = std::move(kernel).value();  // the old code is unloaded here, on an idle device
    return {};
  });
}

Status CudaRingServer::kernel_status() const { return impl_->lifecycle.status(); }

std::uint64_t CudaRingServer::messages_served() const noexcept {
  return detail::read_kernel_stats(*impl_->control_words, impl_->memory).completions;
}

RingServerStats CudaRingServer::stats() const noexcept {
  return detail::read_kernel_stats(*impl_->control_words, impl_->memory);
}

std::string CudaRingServer::last_internal_error() const {
  return detail::read_kernel_error(*impl_->control_words, impl_->shards);
}

CudaRingPhaseTimes CudaRingServer::phase_times() const noexcept {
  return detail::read_phase_times(*impl_->control_words, impl_->shards);
}

const CudaRingMode& CudaRingServer::mode() const noexcept { return impl_->mode; }

void with_rings_stepped_aside(int device, const std::function<void()>& fn) { cuda::DeviceIdle::run(device, fn); }

namespace detail {

Status validate_options(const CudaRingServerOptions& options) {
  if (options.internal_queue_slots == 0 || options.internal_queue_slots > kMaxRingSlots) {
    return ring_error(ErrorCode::invalid_argument, "internal_queue_slots must be in 1.." +
                                                       std::to_string(kMaxRingSlots) + ", got " +
                                                       std::to_string(options.internal_queue_slots));
  }
  if (options.max_hops == 0 || options.max_hops > kMaxRingSlots) {
    return ring_error(ErrorCode::invalid_argument, "max_hops must be in 1.." + std::to_string(kMaxRingSlots) +
                                                       ", got " + std::to_string(options.max_hops));
  }
  return {};
}

std::vector<std::byte> initial_internal_area(const CudaRingServerOptions& options, std::uint32_t shards) {
  std::vector<std::byte> area(internal_area_bytes(options.internal_queue_slots, shards));
  InternalServerWords words{};
  words.shard_count = shards;
  words.slots = options.internal_queue_slots;
  words.max_hops = options.max_hops;
  words.unfinished_shards = shards;
  std::memcpy(area.data(), &words, sizeof words);
  const std::size_t region = internal_region_bytes(options.internal_queue_slots);
  for (std::uint32_t shard = 0; shard < shards; ++shard) {
    std::byte* base = area.data() + sizeof(InternalServerWords) + shard * region;
    for (std::uint32_t i = 0; i < options.internal_queue_slots; ++i) {
      const std::uint64_t turn = i;
      std::memcpy(base + sizeof(InternalQueueHead) + std::size_t{i} * sizeof(InternalSlot) + offsetof(InternalSlot, turn),
                  &turn, sizeof turn);
    }
  }
  return area;
}

bool all_shards_finished(KernelControl& control, std::uint32_t shards) noexcept {
  for (std::uint32_t i = 0; i < shards; ++i) {
    if (std::atomic_ref<std::uint32_t>(control.shards[i].exit_reason).load(std::memory_order_acquire) !=
        static_cast<std::uint32_t>(KernelExit::finished)) {
      return false;
    }
  }
  return true;
}

RingServerStats read_kernel_stats(KernelControl& control, const RingMemory& memory) noexcept {
  auto load = [](std::uint64_t& word) { return std::atomic_ref<std::uint64_t>(word).load(std::memory_order_acquire); };
  RingServerStats s;
  for (std::uint32_t i = 0; i < memory.shard_count(); ++i) {
    KernelShardWords& w = control.shards[i];
    s.host_messages += load(memory.shard(i).request_dequeue);
    s.internal_messages += load(w.internal_messages);
    s.completions += load(w.served);
    s.internal_failures += load(w.internal_failures);
    s.internal_queue_peak = std::max(s.internal_queue_peak, load(w.internal_peak));
  }
  return s;
}

CudaRingPhaseTimes read_phase_times(KernelControl& control, std::uint32_t shards) noexcept {
  std::uint64_t sum[8] = {};
  for (std::uint32_t shard = 0; shard < shards; ++shard) {
    for (int i = 0; i < 8; ++i) {
      sum[i] += std::atomic_ref<std::uint64_t>(control.phases[shard].words[i]).load(std::memory_order_relaxed);
    }
  }
  return {sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], sum[6], sum[7]};
}

std::string read_kernel_error(KernelControl& control, std::uint32_t shards) {
  auto load32 = [](std::uint32_t& word, std::memory_order order) { return std::atomic_ref<std::uint32_t>(word).load(order); };
  auto load64 = [](std::uint64_t& word) { return std::atomic_ref<std::uint64_t>(word).load(std::memory_order_relaxed); };
  std::string latest;
  std::uint64_t latest_ticket = 0;
  for (std::uint32_t shard = 0; shard < shards; ++shard) {
    KernelShardWords& w = control.shards[shard];
    for (;;) {
      const std::uint32_t before = load32(w.error_sequence, std::memory_order_acquire);
      if ((before & 1u) != 0) {
        std::this_thread::yield();
        continue;
      }
      const std::uint64_t ticket = load64(w.error_ticket);
      const std::size_t size = std::min<std::size_t>(load32(w.error_bytes, std::memory_order_relaxed), kInlinePayloadBytes);
      std::string text(size, '\0');
      for (std::size_t i = 0; i * 4 < size; ++i) {
        const std::uint32_t word = load32(w.error_words[i], std::memory_order_relaxed);
        for (std::size_t b = 0; b < 4 && i * 4 + b < size; ++b) text[i * 4 + b] = static_cast<char>((word >> (8 * b)) & 0xFFu);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (load32(w.error_sequence, std::memory_order_relaxed) != before) continue;
      if (ticket > latest_ticket) {
        latest_ticket = ticket;
        latest = std::move(text);
      }
      break;
    }
  }
  return latest;
}

}  // namespace detail

}  // namespace gpubridge::compute::ring

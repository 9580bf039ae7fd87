// CudaRingServer: the ring protocol's server as one persistent CUDA thread (see
// gpubridge/compute/cuda_ring.hpp). The device source below mirrors cpu_ring_server.cpp step by
// step; its layout constants are generated from the host structs so the two cannot drift apart.
#include "compute/ring/cuda_ring_server.hpp"

#include <cuda_runtime_api.h>
#include <nvrtc.h>

#include <atomic>
#include <cctype>
#include <cstddef>
#include <cstdio>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "compute/cuda/cuda_error.hpp"
#include "compute/cuda/nvrtc_program.hpp"  // compile_portable
#include "gpubridge/compute/cuda_ring.hpp"

namespace gpubridge::compute::ring {

using detail::KernelControl;
using detail::KernelExit;

namespace {

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
  std::string d;
  d += define("GB_SLOT_BYTES", kSlotBytes);
  d += define("GB_SLOT_HEADER_BYTES", kSlotHeaderBytes);
  d += define("GB_INLINE_BYTES", kInlinePayloadBytes);
  d += define("GB_PAYLOAD_IN_POOL", kSlotPayloadInPool);
  d += define("GB_ACTIVATE_HANDLER", kActivateHandler);
  d += define("GB_DEACTIVATE_HANDLER", kDeactivateHandler);
  d += define("GB_CONTROL_RUN", static_cast<std::uint32_t>(ControlWord::run));
  d += define("GB_CONTROL_STOP", static_cast<std::uint32_t>(ControlWord::stop));
  d += define("GB_STATE_STOPPED", static_cast<std::uint32_t>(ServerState::stopped));
  d += define("GB_EXIT_FINISHED", static_cast<std::uint32_t>(KernelExit::finished));
  d += define("GB_EXIT_YIELDED", static_cast<std::uint32_t>(KernelExit::yielded));
  d += define("GB_OFF_REQUEST_CAPACITY", offsetof(RingHeader, request_capacity));
  d += define("GB_OFF_COMPLETION_CAPACITY", offsetof(RingHeader, completion_capacity));
  d += define("GB_OFF_REQUEST_SLOTS", offsetof(RingHeader, request_slots_offset));
  d += define("GB_OFF_COMPLETION_SLOTS", offsetof(RingHeader, completion_slots_offset));
  d += define("GB_OFF_ACTOR_TABLE", offsetof(RingHeader, actor_table_offset));
  d += define("GB_OFF_POOL", offsetof(RingHeader, pool_offset));
  d += define("GB_OFF_POOL_CHUNK_BYTES", offsetof(RingHeader, pool_chunk_bytes));
  d += define("GB_OFF_POOL_CHUNK_COUNT", offsetof(RingHeader, pool_chunk_count));
  d += define("GB_OFF_ACTOR_COUNT", offsetof(RingHeader, actor_count));
  d += define("GB_OFF_REQUEST_ENQUEUE", offsetof(RingHeader, request_enqueue));
  d += define("GB_OFF_REQUEST_DEQUEUE", offsetof(RingHeader, request_dequeue));
  d += define("GB_OFF_COMPLETION_ENQUEUE", offsetof(RingHeader, completion_enqueue));
  d += define("GB_OFF_HEARTBEAT", offsetof(RingHeader, heartbeat));
  d += define("GB_OFF_SERVER_STATE", offsetof(RingHeader, server_state));
  d += define("GB_OFF_CONTROL", offsetof(RingHeader, control));
  d += define("GB_ACTOR_ENTRY_BYTES", sizeof(ActorEntry));
  d += define("GB_CONTROL_BYTES", sizeof(KernelControl));
  return d;
}

// The device source declares gb_ring_slot, gb_actor_entry and gb_kernel_control field by field
// with the same types and order (NVRTC has no offsetof); these pin the host layouts they mirror.
static_assert(offsetof(RingSlot, request_id) == 8 && offsetof(RingSlot, actor_id) == 16 &&
              offsetof(RingSlot, handler_id) == 20 && offsetof(RingSlot, payload_bytes) == 24 &&
              offsetof(RingSlot, flags) == 28 && offsetof(RingSlot, payload_offset) == 32 &&
              offsetof(RingSlot, reply_offset) == 40 && offsetof(RingSlot, reply_capacity) == 48 &&
              offsetof(RingSlot, status) == 52 && offsetof(RingSlot, inline_payload) == kSlotHeaderBytes,
              "RingSlot changed: update gb_ring_slot in the device source");
static_assert(offsetof(ActorEntry, state_offset) == 0 && offsetof(ActorEntry, state_bytes) == 8 &&
                  offsetof(ActorEntry, type_id) == 12 && offsetof(ActorEntry, active) == 16,
              "ActorEntry changed: update gb_actor_entry in the device source");
static_assert(offsetof(KernelControl, yield) == 0 && offsetof(KernelControl, abandon) == 4 &&
                  offsetof(KernelControl, served) == 8 && offsetof(KernelControl, exit_reason) == 16,
              "KernelControl changed: update gb_kernel_control in the device source");

// What handlers see; part of the public handler contract (cuda_ring.hpp).
constexpr const char* kHandlerPrelude = R"GBCU(
enum gb_ring_code {
  GB_RING_CANCELLED = 1, GB_RING_UNKNOWN = 2, GB_RING_INVALID_ARGUMENT = 3, GB_RING_DEADLINE_EXCEEDED = 4,
  GB_RING_NOT_FOUND = 5, GB_RING_ALREADY_EXISTS = 6, GB_RING_PERMISSION_DENIED = 7,
  GB_RING_RESOURCE_EXHAUSTED = 8, GB_RING_FAILED_PRECONDITION = 9, GB_RING_ABORTED = 10,
  GB_RING_OUT_OF_RANGE = 11, GB_RING_UNIMPLEMENTED = 12, GB_RING_INTERNAL = 13,
  GB_RING_UNAVAILABLE = 14, GB_RING_DATA_LOSS = 15, GB_RING_UNAUTHENTICATED = 16
};
struct gb_ring_call {
  unsigned int actor_id;
  unsigned int handler_id;
  unsigned char* state;          // the actor's state (device memory)
  unsigned int state_bytes;
  const unsigned char* payload;  // the request's payload
  unsigned int payload_bytes;
  unsigned char* reply;          // write at most reply_capacity bytes
  unsigned int reply_capacity;
};
#define GB_RING_DISPATCH_UNKNOWN_HANDLER (-100000)
#define GB_RING_DISPATCH_WRONG_TYPE (-100001)
)GBCU";

// The persistent loop. One thread; every shared word is read with a volatile load and published
// with a volatile store after __threadfence_system() (the protocol's release/acquire).
constexpr const char* kServerLoop = R"GBCU(
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
struct gb_kernel_control {
  gb_u32 yield;
  gb_u32 abandon;
  gb_u64 served;
  gb_u32 exit_reason;
  gb_u32 reserved;
};
static_assert(sizeof(gb_kernel_control) == GB_CONTROL_BYTES, "kernel control size differs from the host");

__device__ __forceinline__ volatile gb_u64* gb_u64_at(unsigned char* base, gb_u64 off) {
  return reinterpret_cast<volatile gb_u64*>(base + off);
}
__device__ __forceinline__ volatile gb_u32* gb_u32_at(unsigned char* base, gb_u64 off) {
  return reinterpret_cast<volatile gb_u32*>(base + off);
}

// Error text builder into the completion's inline payload (truncated at GB_INLINE_BYTES).
struct gb_text {
  unsigned char bytes[GB_INLINE_BYTES];
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

struct gb_outcome {
  gb_u32 status;        // ErrorCode
  gb_u32 reply_bytes;   // when status == 0
  bool reply_in_pool;
  gb_text message;      // when status != 0
};
__device__ void gb_fail(gb_outcome& o, gb_u32 code, const char* text) {
  o.status = code;
  o.message.size = 0;
  gb_put(o.message, text);
}

// Read-only geometry of the block, read once per launch (every read of the block crosses the bus).
struct gb_geometry {
  gb_u64 pool_begin;
  gb_u64 pool_end;
  gb_u64 actor_table;
  gb_u32 actor_count;
};
__device__ gb_geometry gb_read_geometry(unsigned char* block) {
  gb_geometry g;
  g.pool_begin = *gb_u64_at(block, GB_OFF_POOL);
  g.pool_end = g.pool_begin + static_cast<gb_u64>(*gb_u32_at(block, GB_OFF_POOL_CHUNK_BYTES)) *
                                  *gb_u32_at(block, GB_OFF_POOL_CHUNK_COUNT);
  g.actor_table = *gb_u64_at(block, GB_OFF_ACTOR_TABLE);
  g.actor_count = *gb_u32_at(block, GB_OFF_ACTOR_COUNT);
  return g;
}

// A pool reference checked against the pool's bounds (block-relative offsets).
__device__ bool gb_pool_ok(const gb_geometry& g, gb_u64 offset, gb_u64 bytes) {
  return offset >= g.pool_begin && offset <= g.pool_end && bytes <= g.pool_end - offset;
}

// Serves one request (a local copy; its ring slot is already free). `actors` is the device
// mirror of the block from actor_table_offset on.
__device__ void gb_serve(unsigned char* block, const gb_geometry& g, unsigned char* actors, const gb_ring_slot& request,
                         unsigned char* inline_reply, gb_outcome& o) {
  o.status = 0;
  o.reply_bytes = 0;
  o.reply_in_pool = false;
  o.message.size = 0;
  const unsigned char* payload = request.inline_payload;
  if (request.flags & GB_PAYLOAD_IN_POOL) {
    if (!gb_pool_ok(g, request.payload_offset, request.payload_bytes)) {
      gb_fail(o, GB_RING_INVALID_ARGUMENT, "payload reference outside the pool");
      return;
    }
    payload = block + request.payload_offset;
  } else if (request.payload_bytes > GB_INLINE_BYTES) {
    gb_fail(o, GB_RING_INVALID_ARGUMENT, "inline payload longer than a slot holds");
    return;
  }
  unsigned char* reply = inline_reply;
  gb_u32 reply_capacity = request.reply_capacity < GB_INLINE_BYTES ? request.reply_capacity
                                                                   : static_cast<gb_u32>(GB_INLINE_BYTES);
  if (request.reply_offset != 0) {
    if (!gb_pool_ok(g, request.reply_offset, request.reply_capacity)) {
      gb_fail(o, GB_RING_INVALID_ARGUMENT, "reply reference outside the pool");
      return;
    }
    reply = block + request.reply_offset;
    reply_capacity = request.reply_capacity;
  }
  if (request.actor_id >= g.actor_count) {
    gb_fail(o, GB_RING_NOT_FOUND, "unknown actor id ");
    gb_put_u(o.message, request.actor_id);
    return;
  }
  gb_actor_entry* actor = reinterpret_cast<gb_actor_entry*>(actors) + request.actor_id;
  unsigned char* state = actors + (actor->state_offset - g.actor_table);
  const gb_u32 state_bytes = actor->state_bytes;

  if (request.handler_id == GB_ACTIVATE_HANDLER) {
    if (actor->active != 0) {
      gb_fail(o, GB_RING_ALREADY_EXISTS, "actor ");
      gb_put_u(o.message, request.actor_id);
      gb_put(o.message, " is already active");
      return;
    }
    if (request.payload_bytes > state_bytes) {
      gb_fail(o, GB_RING_INVALID_ARGUMENT, "initial state of ");
      gb_put_u(o.message, request.payload_bytes);
      gb_put(o.message, " bytes exceeds the actor's state size ");
      gb_put_u(o.message, state_bytes);
      return;
    }
    for (gb_u32 i = 0; i < state_bytes; ++i) state[i] = i < request.payload_bytes ? payload[i] : 0;
    actor->active = 1;
    return;
  }
  if (actor->active == 0) {
    gb_fail(o, GB_RING_FAILED_PRECONDITION, "actor ");
    gb_put_u(o.message, request.actor_id);
    gb_put(o.message, " is not active");
    return;
  }
  if (request.handler_id == GB_DEACTIVATE_HANDLER) {
    if (reply_capacity < state_bytes) {
      gb_fail(o, GB_RING_INVALID_ARGUMENT, "reply capacity too small for the actor's state");
      return;
    }
    for (gb_u32 i = 0; i < state_bytes; ++i) reply[i] = state[i];
    actor->active = 0;
    o.reply_bytes = state_bytes;
    o.reply_in_pool = request.reply_offset != 0;
    return;
  }

  gb_ring_call call;
  call.actor_id = request.actor_id;
  call.handler_id = request.handler_id;
  call.state = state;
  call.state_bytes = state_bytes;
  call.payload = payload;
  call.payload_bytes = request.payload_bytes;
  call.reply = reply;
  call.reply_capacity = reply_capacity;
  const int written = gb_ring_dispatch(request.handler_id, actor->type_id, call);
  if (written == GB_RING_DISPATCH_UNKNOWN_HANDLER) {
    gb_fail(o, GB_RING_NOT_FOUND, "unknown handler id ");
    gb_put_u(o.message, request.handler_id);
    return;
  }
  if (written == GB_RING_DISPATCH_WRONG_TYPE) {
    gb_fail(o, GB_RING_INVALID_ARGUMENT, "handler ");
    gb_put_u(o.message, request.handler_id);
    gb_put(o.message, " serves actor type ");
    gb_put_u(o.message, gb_ring_handler_type(request.handler_id));
    gb_put(o.message, ", actor ");
    gb_put_u(o.message, request.actor_id);
    gb_put(o.message, " is of type ");
    gb_put_u(o.message, actor->type_id);
    return;
  }
  if (written < 0) {
    const int code = -written;
    gb_fail(o, code >= 1 && code <= 16 ? static_cast<gb_u32>(code) : GB_RING_INTERNAL, "handler ");
    gb_put_u(o.message, request.handler_id);
    gb_put(o.message, " failed with code ");
    gb_put_u(o.message, static_cast<gb_u64>(code));
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
  o.reply_in_pool = request.reply_offset != 0;
}

}  // namespace gb_ring_detail

extern "C" __global__ void gb_ring_serve(unsigned char* block, unsigned char* actors, unsigned char* control) {
  using namespace gb_ring_detail;
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  gb_kernel_control* ctl = reinterpret_cast<gb_kernel_control*>(control);
  volatile gb_u32* yield = &ctl->yield;
  volatile gb_u32* abandon = &ctl->abandon;
  volatile gb_u64* served_word = &ctl->served;
  volatile gb_u32* exit_word = &ctl->exit_reason;

  gb_ring_slot* requests = reinterpret_cast<gb_ring_slot*>(block + *gb_u64_at(block, GB_OFF_REQUEST_SLOTS));
  gb_ring_slot* completions = reinterpret_cast<gb_ring_slot*>(block + *gb_u64_at(block, GB_OFF_COMPLETION_SLOTS));
  const gb_u64 request_capacity = *gb_u32_at(block, GB_OFF_REQUEST_CAPACITY);
  const gb_u64 completion_capacity = *gb_u32_at(block, GB_OFF_COMPLETION_CAPACITY);
  volatile gb_u64* request_enqueue = gb_u64_at(block, GB_OFF_REQUEST_ENQUEUE);
  volatile gb_u64* request_dequeue = gb_u64_at(block, GB_OFF_REQUEST_DEQUEUE);
  volatile gb_u64* completion_enqueue = gb_u64_at(block, GB_OFF_COMPLETION_ENQUEUE);
  volatile gb_u64* heartbeat = gb_u64_at(block, GB_OFF_HEARTBEAT);
  volatile gb_u32* control_word = gb_u32_at(block, GB_OFF_CONTROL);

  const gb_geometry geometry = gb_read_geometry(block);
  // Counters carry on from a previous launch (hot reload).
  gb_u64 beat = *heartbeat;
  gb_u64 next_request = *request_dequeue;
  gb_u64 next_completion = *completion_enqueue;
  gb_u64 served = *served_word;
  gb_ring_slot request;
  gb_outcome outcome;
  unsigned char inline_reply[GB_INLINE_BYTES];

  for (;;) {
    *heartbeat = ++beat;
    if (*yield != 0) {
      *exit_word = GB_EXIT_YIELDED;
      return;
    }
    const gb_u32 word = *control_word;
    volatile gb_ring_slot* slot = requests + (next_request & (request_capacity - 1));
    if (slot->turn != next_request + 1) {
      // drain/stop end once nothing is queued or being enqueued.
      if (word != GB_CONTROL_RUN && *request_enqueue == next_request) break;
      if (*abandon != 0) break;
      continue;
    }
    __threadfence_system();  // acquire: the slot's body after its turn
    const gb_ring_slot* body = requests + (next_request & (request_capacity - 1));
    request.request_id = body->request_id;
    request.actor_id = body->actor_id;
    request.handler_id = body->handler_id;
    request.payload_bytes = body->payload_bytes;
    request.flags = body->flags;
    request.payload_offset = body->payload_offset;
    request.reply_offset = body->reply_offset;
    request.reply_capacity = body->reply_capacity;
    if ((request.flags & GB_PAYLOAD_IN_POOL) == 0) {
      const gb_u32 n = request.payload_bytes < GB_INLINE_BYTES ? request.payload_bytes
                                                               : static_cast<gb_u32>(GB_INLINE_BYTES);
      for (gb_u32 i = 0; i < n; ++i) request.inline_payload[i] = body->inline_payload[i];
    }
    __threadfence_system();  // the body is read before the slot is freed
    slot->turn = next_request + request_capacity;
    *request_dequeue = next_request + 1;
    ++next_request;

    if (word == GB_CONTROL_STOP) {
      gb_fail(outcome, GB_RING_CANCELLED, "ring server stopped before the message ran");
      outcome.reply_bytes = 0;
      outcome.reply_in_pool = false;
    } else {
      gb_serve(block, geometry, actors, request, inline_reply, outcome);
    }

    // Wait for completion space (the host dispatcher frees slots), heartbeating.
    volatile gb_ring_slot* done = completions + (next_completion & (completion_capacity - 1));
    bool abandoned = false;
    while (done->turn != next_completion) {
      *heartbeat = ++beat;
      if (*abandon != 0) {
        abandoned = true;
        break;
      }
    }
    if (abandoned) break;
    gb_ring_slot* out = completions + (next_completion & (completion_capacity - 1));
    out->request_id = request.request_id;
    out->actor_id = request.actor_id;
    out->handler_id = request.handler_id;
    out->status = outcome.status;
    out->flags = 0;
    out->payload_offset = 0;
    out->reply_offset = 0;
    out->reply_capacity = 0;
    if (outcome.status != 0) {
      for (gb_u32 i = 0; i < outcome.message.size; ++i) out->inline_payload[i] = outcome.message.bytes[i];
      out->payload_bytes = outcome.message.size;
    } else if (outcome.reply_in_pool) {
      out->flags = GB_PAYLOAD_IN_POOL;
      out->payload_offset = request.reply_offset;
      out->payload_bytes = outcome.reply_bytes;
    } else {
      for (gb_u32 i = 0; i < outcome.reply_bytes; ++i) out->inline_payload[i] = inline_reply[i];
      out->payload_bytes = outcome.reply_bytes;
    }
    __threadfence_system();  // release: the body (and any pool reply) before the turn
    done->turn = next_completion + 1;
    *completion_enqueue = next_completion + 1;
    ++next_completion;
    *served_word = ++served;
  }
  __threadfence_system();
  *gb_u32_at(block, GB_OFF_SERVER_STATE) = GB_STATE_STOPPED;
  *exit_word = GB_EXIT_FINISHED;
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

// A loaded ring kernel. Loading and unloading happen only while no ring kernel of this server
// runs: with lazy module loading a load may wait for the context to be idle, which a persistent
// kernel never is.
struct LoadedKernel {
  cudaLibrary_t library = nullptr;
  cudaKernel_t kernel = nullptr;
  LoadedKernel() = default;
  LoadedKernel(const LoadedKernel&) = delete;
  LoadedKernel& operator=(const LoadedKernel&) = delete;
  ~LoadedKernel() {
    if (library != nullptr) cudaLibraryUnload(library);  // teardown: an unload error is ignored
  }
};

Result<std::unique_ptr<LoadedKernel>> load_kernel(std::vector<char> image) {
  auto loaded = std::make_unique<LoadedKernel>();
  GB_CUDA_TRY(cudaLibraryLoadData(&loaded->library, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0));
  if (cudaError_t e = cudaLibraryGetKernel(&loaded->kernel, loaded->library, detail::kRingKernelEntry);
      e != cudaSuccess) {
    return cuda::to_error(e, "cudaLibraryGetKernel(gb_ring_serve)");
  }
  return loaded;
}

}  // namespace

Result<std::string> cuda_ring_kernel_source(const CudaHandlerSource& handlers) {
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
  source += layout_defines();
  source += kHandlerPrelude;
  source += "// ---- user handlers ----\n#line 1 \"handlers.cu\"\n";
  source += handlers.source;
  source += "\n#line 1 \"gpubridge_ring_server.cu\"\n// ---- generated dispatch ----\n";
  source += "__device__ int gb_ring_dispatch(unsigned int handler_id, unsigned int actor_type, "
            "const gb_ring_call& call) {\n  switch (handler_id) {\n";
  for (const CudaHandler& h : handlers.handlers) {
    source += "    case " + std::to_string(h.handler_id) + "u: return actor_type == " +
              std::to_string(h.actor_type) + "u ? " + h.function + "(call) : GB_RING_DISPATCH_WRONG_TYPE;\n";
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

struct CudaRingServer::Impl {
  enum class Phase { created, running, finished };

  RingMemory& memory;
  CudaRingServerOptions options;
  CudaRingMode mode;
  bool registered = false;            // cudaHostRegister of the block succeeded
  std::byte* block_device = nullptr;  // device view of the block
  KernelControl* control = nullptr;   // mapped, page-locked (cudaHostAlloc)
  KernelControl* control_device = nullptr;
  std::byte* actors_device = nullptr;  // mirror of [actor_table_offset, pool_offset)
  std::size_t actors_bytes = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<LoadedKernel> loaded;

  mutable std::mutex mutex;  // phase, launches, loaded, kernel_error
  Phase phase = Phase::created;
  std::uint64_t launches = 0;
  std::optional<Error> kernel_error;

  Impl(RingMemory& m, CudaRingServerOptions o) : memory(m), options(o) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Releases whatever was acquired; errors at teardown are reported on stderr and otherwise ignored.
  ~Impl() {
    if (cudaSetDevice(options.device) != cudaSuccess) cudaGetLastError();
    loaded.reset();
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (actors_device != nullptr) cudaFree(actors_device);
    if (control != nullptr) cudaFreeHost(control);
    if (registered) {
      if (cudaError_t e = cudaHostUnregister(memory.base()); e != cudaSuccess) {
        std::fprintf(stderr, "gpubridge: cudaHostUnregister of the ring block failed: %s\n",
                     cuda::describe(e).c_str());
      }
    }
  }

  // NVRTC only (no CUDA context work): safe while the kernel runs. A PTX image is NUL-terminated.
  Result<std::vector<char>> compile(const CudaHandlerSource& handlers) const {
    auto source = cuda_ring_kernel_source(handlers);
    if (!source) return source.error();
    auto image = cuda::compile_portable(*source, DType::f32, mode.target);
    if (!image) return image.error();
    if (mode.target.rfind("compute_", 0) == 0) image->push_back('\0');
    return image;
  }

  static std::uint32_t read_control(std::uint32_t& word) {
    return std::atomic_ref<std::uint32_t>(word).load(std::memory_order_acquire);
  }
  static void write_control(std::uint32_t& word, std::uint32_t value) {
    std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_release);
  }

  // Caller holds `mutex`.
  Status launch_locked() {
    GB_CUDA_TRY(cudaSetDevice(options.device));
    write_control(control->exit_reason, static_cast<std::uint32_t>(KernelExit::running));
    void* block_arg = block_device;
    void* actors_arg = actors_device;
    void* control_arg = control_device;
    void* args[] = {&block_arg, &actors_arg, &control_arg};
    GB_CUDA_TRY(cudaLaunchKernel(reinterpret_cast<const void*>(loaded->kernel), dim3(1), dim3(1), args, 0, stream));
    ++launches;
    return {};
  }

  // The kernel has returned for good: copy the device states back into the block. Caller holds `mutex`.
  Status finish_locked() {
    phase = Phase::finished;
    if (actors_bytes == 0) return {};
    GB_CUDA_TRY(cudaSetDevice(options.device));
    GB_CUDA_TRY(cudaMemcpy(memory.base() + memory.header().actor_table_offset, actors_device, actors_bytes,
                           cudaMemcpyDeviceToHost));
    return {};
  }

  // Caller holds `mutex`; records a dead kernel's error.
  Status synchronize_locked() {
    if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess) {
      kernel_error = cuda::to_error(e, "ring kernel");
      phase = Phase::finished;
      return *kernel_error;
    }
    return {};
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
  auto loaded = load_kernel(std::move(image).value());
  if (!loaded) return loaded.error();
  impl->loaded = std::move(loaded).value();
  impl->mode.description = "persistent kernel (1 thread) on " + impl->mode.device_name + " (" +
                           impl->mode.target + ") over mapped host memory with system fences; host native atomics: " +
                           (impl->mode.host_native_atomics ? "yes (not needed)" : "no (not needed)");

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
  impl->control = static_cast<KernelControl*>(control);
  *impl->control = KernelControl{};
  void* control_view = nullptr;
  GB_CUDA_TRY(cudaHostGetDevicePointer(&control_view, control, 0));
  impl->control_device = static_cast<KernelControl*>(control_view);

  impl->actors_bytes = h.pool_offset - h.actor_table_offset;
  if (impl->actors_bytes > 0) {
    void* actors = nullptr;
    GB_CUDA_TRY(cudaMalloc(&actors, impl->actors_bytes));
    impl->actors_device = static_cast<std::byte*>(actors);
  }
  GB_CUDA_TRY(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  return std::unique_ptr<CudaRingServer>(new CudaRingServer(std::move(impl)));
}

CudaRingServer::CudaRingServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CudaRingServer::~CudaRingServer() {
  request_stop();
  impl_->write_control(impl_->control->abandon, 1);
  if (Status s = wait(); !s) {
    std::fprintf(stderr, "gpubridge: ring kernel ended with an error: %s\n", s.error().to_string().c_str());
  }
}

Status CudaRingServer::start() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->phase != Impl::Phase::created) {
    return ring_error(ErrorCode::failed_precondition, "ring server already started");
  }
  RingMemory& memory = impl_->memory;
  GB_CUDA_TRY(cudaSetDevice(impl_->options.device));
  if (impl_->actors_bytes > 0) {
    GB_CUDA_TRY(cudaMemcpy(impl_->actors_device, memory.base() + memory.header().actor_table_offset,
                           impl_->actors_bytes, cudaMemcpyHostToDevice));
  }
  std::atomic_ref<std::uint32_t>(memory.header().server_state)
      .store(static_cast<std::uint32_t>(ServerState::running), std::memory_order_release);
  if (Status s = impl_->launch_locked(); !s) {
    std::atomic_ref<std::uint32_t>(memory.header().server_state)
        .store(static_cast<std::uint32_t>(ServerState::stopped), std::memory_order_release);
    impl_->phase = Impl::Phase::finished;
    return s;
  }
  impl_->phase = Impl::Phase::running;
  return {};
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

Status CudaRingServer::wait() {
  for (;;) {
    std::uint64_t launch = 0;
    {
      std::lock_guard lock(impl_->mutex);
      if (impl_->phase == Impl::Phase::created) return {};
      if (impl_->phase == Impl::Phase::finished) {
        return impl_->kernel_error ? Status(*impl_->kernel_error) : Status{};
      }
      launch = impl_->launches;
    }
    // Without the lock, so that reload() can relaunch meanwhile.
    const cudaError_t synced = cudaStreamSynchronize(impl_->stream);
    std::lock_guard lock(impl_->mutex);
    if (impl_->phase == Impl::Phase::finished) continue;
    if (synced != cudaSuccess) {
      impl_->kernel_error = cuda::to_error(synced, "ring kernel");
      impl_->phase = Impl::Phase::finished;
      continue;
    }
    if (impl_->launches != launch) continue;  // reload relaunched: wait for the new kernel
    if (impl_->read_control(impl_->control->exit_reason) == static_cast<std::uint32_t>(KernelExit::finished)) {
      if (Status s = impl_->finish_locked(); !s) impl_->kernel_error = s.error();
    } else {
      impl_->kernel_error = ring_error(ErrorCode::internal, "ring kernel returned without finishing");
      impl_->phase = Impl::Phase::finished;
    }
  }
}

Status CudaRingServer::reload(CudaHandlerSource handlers) {
  // Compile while the old kernel serves; load only once it has returned (see LoadedKernel).
  auto image = impl_->compile(handlers);
  if (!image) return image.error();
  std::lock_guard lock(impl_->mutex);
  GB_CUDA_TRY(cudaSetDevice(impl_->options.device));
  if (impl_->phase != Impl::Phase::running) {
    auto loaded = load_kernel(std::move(image).value());
    if (!loaded) return loaded.error();
    impl_->loaded = std::move(loaded).value();
    return {};
  }
  Impl::write_control(impl_->control->yield, 1);
  if (Status s = impl_->synchronize_locked(); !s) return s;
  Impl::write_control(impl_->control->yield, 0);
  const std::uint32_t exit = Impl::read_control(impl_->control->exit_reason);
  if (exit == static_cast<std::uint32_t>(KernelExit::finished)) {
    // It stopped (stop/drain) before it saw the request: nothing to relaunch.
    auto loaded = load_kernel(std::move(image).value());
    if (loaded) impl_->loaded = std::move(loaded).value();
    if (Status s = impl_->finish_locked(); !s) return s;
    return loaded ? Status{} : Status(loaded.error());
  }
  auto loaded = load_kernel(std::move(image).value());
  // After a failed load the old kernel is relaunched and the load error returned.
  Status relaunched = loaded ? Status{} : Status(loaded.error());
  if (loaded) impl_->loaded = std::move(loaded).value();
  if (Status s = impl_->launch_locked(); !s) {
    // Nothing serves the ring any more: callers see a stopped server instead of waiting.
    impl_->kernel_error = s.error();
    impl_->phase = Impl::Phase::finished;
    std::atomic_ref<std::uint32_t>(impl_->memory.header().server_state)
        .store(static_cast<std::uint32_t>(ServerState::stopped), std::memory_order_release);
    return s;
  }
  return relaunched;
}

Status CudaRingServer::kernel_status() const {
  std::lock_guard lock(impl_->mutex);
  if (impl_->kernel_error) return *impl_->kernel_error;
  if (impl_->phase != Impl::Phase::running) return {};
  const cudaError_t e = cudaStreamQuery(impl_->stream);
  if (e == cudaSuccess || e == cudaErrorNotReady) return {};
  return cuda::to_error(e, "ring kernel");
}

std::uint64_t CudaRingServer::messages_served() const noexcept {
  return std::atomic_ref<std::uint64_t>(impl_->control->served).load(std::memory_order_acquire);
}

const CudaRingMode& CudaRingServer::mode() const noexcept { return impl_->mode; }

}  // namespace gpubridge::compute::ring

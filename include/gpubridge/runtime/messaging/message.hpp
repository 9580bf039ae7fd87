#pragma once
// Message: one grain call (or one lifecycle step / timer tick of an activation), the unit that
// Runtime::dispatch() routes and an activation's mailbox queues.
//
// Ownership: a call's Message lives in the caller's coroutine frame (the Task returned by
// GrainRef::call), together with the argument tuple and the result slot it points to; nothing
// is copied or allocated to send it. The frame stays suspended until the runtime resumes it
// through `reply`, so the Message outlives every use the receiver makes of it. After the reply
// the runtime never touches the Message again.
//
// In-process calls carry C++ values. MethodInfo's encode/decode functions exist only for
// methods declared remote-capable and are used only where a call leaves the process.
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include "gpubridge/core/result.hpp"
#include "gpubridge/runtime/grain_id.hpp"
#include "gpubridge/runtime/request_context.hpp"

namespace gpubridge::runtime {

class Grain;
struct Message;

namespace internal {
class Activation;
struct TurnPromise;
}  // namespace internal

// An intrusive unit of work: linked into the scheduler's queue without allocation. The owner of
// the object keeps it alive until run(item) has been called.
struct WorkItem {
  WorkItem* next = nullptr;
  void (*run)(WorkItem*) = nullptr;
};

// A suspended coroutine and the turn it belongs to; queued to resume it in its context.
struct Resumption : WorkItem {
  std::coroutine_handle<> handle;
  Message* turn = nullptr;  // the turn of the resumed code (null outside grains)
  // Outside grains: the request context of the resumed code (null: the resuming thread's own).
  RequestContext* context = nullptr;
  // Where the resumed code is expected to continue once `handle` returns (a call's reply: the
  // code that awaited the call), when known. Only a hint for fetching that frame ahead of time
  // (src/runtime/prefetch.hpp); nothing resumes it through here.
  std::coroutine_handle<> continues_in;
};

enum class MessageKind : std::uint8_t {
  call,        // a grain method call: the only kind that goes through Runtime::dispatch()
  tick,        // a timer tick, run as a turn of its activation
  activate,    // the activation's on_activate()
  deactivate,  // the activation's on_deactivate()
};

// Static description of one grain method, one object per method (see internal/method.hpp).
struct MethodInfo {
  std::string_view name;  // "Class::method"
  std::size_t arity = 0;
  bool always_interleave = false;  // may start while other turns of the activation are pending
  bool remote_capable = false;     // argument and result types have a Codec
  // Creates the turn coroutine (suspended) that runs the method on `grain` for `message`.
  std::coroutine_handle<internal::TurnPromise> (*start)(Grain& grain, Message& message) = nullptr;
  // Remote-capable methods only (null otherwise); never called for in-process calls.
  void (*encode_arguments)(const void* arguments, std::string& out) = nullptr;
  Status (*decode_arguments)(std::string_view in, void* arguments) = nullptr;
  void (*encode_result)(const void* result, std::string& out) = nullptr;
  Status (*decode_result)(std::string_view in, void* result) = nullptr;
};

struct Message {
  MessageKind kind = MessageKind::call;
  bool abandoned = false;  // stop() answered the caller already; the turn must not touch it
  // A one-way call (GrainRef::send): nobody waits for it, so it belongs to no call chain (no
  // parent, no sender) and never starts inside the code that sent it.
  bool one_way = false;
  const GrainId* target = nullptr;
  const MethodInfo* method = nullptr;  // calls only
  const void* grain_class = nullptr;   // calls: the C++ class the caller expects (type_key), or null
  void* arguments = nullptr;           // std::tuple of the method's arguments, in the caller's frame
  void* result = nullptr;              // result slot, in the caller's frame (null for void)
  std::exception_ptr error;            // set when the call fails; rethrown in the caller
  Message* parent = nullptr;           // the turn that sent this call; null for a top-level caller
  internal::Activation* sender = nullptr;    // where the caller resumes; null: anywhere
  internal::Activation* receiver = nullptr;  // set when routed
  Message* next = nullptr;                   // mailbox link
  // The receiver's running turns, a list through their messages (no allocation, O(1) removal).
  Message* running_prev = nullptr;
  Message* running_next = nullptr;
  std::coroutine_handle<> turn_frame;        // the running turn, while it runs
  void* owner = nullptr;                     // ticks: the timer
  // Calls: the callee's request context, a copy of the caller's made by the caller (GrainRef
  // does it; the cluster layer fills it from the wire); the turn's current context while it runs.
  RequestContext context;
  // Resumes the caller when the call completes. reply.context: the caller's context, for a
  // caller outside any grain (GrainRef sets it; null: the resuming thread's own).
  Resumption reply;
};

}  // namespace gpubridge::runtime

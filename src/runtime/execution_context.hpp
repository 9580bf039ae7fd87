#pragma once
// What the current thread is running: set by workers (core) and by activation slices
// (activation and turn). Read by dispatch() to record who is calling.
#include "gpubridge/runtime/runtime.hpp"

namespace gpubridge::runtime::internal {

class Activation;

struct ExecutionContext {
  Runtime::Core* core = nullptr;     // set on the runtime's workers
  Activation* activation = nullptr;  // the activation whose turn is running
  Message* turn = nullptr;           // that turn
  // The request context of the running code: &turn->context in a turn, a root's own context,
  // or null (the thread's own; see RequestContext::current()).
  RequestContext* request = nullptr;
  std::size_t counter_slot = 0;      // workers: 1 + index (Core::call_counters); others 0
  // The activation whose slice this thread runs (also while a caller resumed inline by one of
  // its turns runs): calls that code makes to a reentrant stateless worker prefer it (route()).
  Activation* slice = nullptr;
  // A call started by route() on this thread inside its caller's dispatch (see
  // Activation::admit): its end must not resume the caller inline. Depth bounds nesting.
  Message* inline_call = nullptr;
  int inline_depth = 0;
  // An activation this thread took over for a step of its slice (Activation::resume_here): a
  // turn of it runs nested in the step; the slice releases it when the step returns.
  Activation* claimed = nullptr;
};

// Nesting bound of calls started inside their caller's dispatch (each adds a few stack frames).
inline constexpr int kMaxInlineDepth = 4;

constinit inline thread_local ExecutionContext t_context{};

}  // namespace gpubridge::runtime::internal

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
};

constinit inline thread_local ExecutionContext t_context{};

}  // namespace gpubridge::runtime::internal

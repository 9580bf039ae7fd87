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
};

constinit inline thread_local ExecutionContext t_context{};

}  // namespace gpubridge::runtime::internal

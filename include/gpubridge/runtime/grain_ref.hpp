#pragma once
// GrainRef<G>: a typed reference to a grain, obtained from Runtime::get<G>(key) (the grain
// factory). It names the grain; it does not own or pin an activation. Callers never create or
// destroy grains: the first call activates the grain, idle activations are collected.
//
//   GrainRef<Counter> c = runtime.get<Counter>("c1");
//   int v = co_await c.call<&Counter::add>(5);   // Task<int>; the grain's exception rethrows here
//   c.send<&Counter::add>(1);                     // one-way: not awaited, errors are reported
//
// call<M>() is type-checked at compile time: M must be a method of G (or a base) returning
// Task<R>, and the arguments must convert to its parameters. Arguments are moved into the
// returned Task's frame and passed to the method by reference or by move: an in-process call
// copies nothing else, serializes nothing and (warm) allocates nothing.
//
// Thread-safety: a GrainRef is an immutable value; copy it freely across threads. The Task
// returned by call() must be awaited (or run) before the Runtime is destroyed.
// A call holds its target's id while it runs: a copy of this thread's own record of the id
// (GrainId::thread_copy), so that callers on many threads calling through copies of one GrainRef
// do not all count references on one cache line.
#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>

#include "gpubridge/runtime/grain_id.hpp"
#include "gpubridge/runtime/internal/method.hpp"
#include "gpubridge/runtime/messaging/message.hpp"
#include "gpubridge/runtime/request_context.hpp"
#include "gpubridge/runtime/task.hpp"

namespace gpubridge::runtime {

class Runtime;

namespace internal {

// Runtime::dispatch() and Runtime::spawn(), reachable without the Runtime's definition.
bool dispatch(Runtime& runtime, Message& message) noexcept;
bool spawn(Runtime& runtime, Task<void> task);
[[noreturn]] void throw_unbound_ref();

struct DispatchAwaiter {
  Runtime& runtime;
  Message& message;
  bool await_ready() const noexcept { return false; }
  // Suspends unless dispatch failed at once. After dispatch() returns true another thread may
  // already have resumed the caller, so nothing here touches the frame afterwards.
  template <typename P>
  bool await_suspend(std::coroutine_handle<P> caller) const noexcept {
    message.reply.handle = caller;
    message.reply.continues_in = caller.promise().continuation();
    return dispatch(runtime, message);
  }
  void await_resume() const noexcept {}
};

template <auto M>
Task<result_of<M>> call_grain(Runtime* runtime, const void* grain_class, GrainId id,
                              typename traits_of<M>::arguments args) {
  using R = result_of<M>;
  if (runtime == nullptr) throw_unbound_ref();
  ResultSlot<R> slot;
  Message m;
  m.target = &id;
  m.method = &method_info<M>;
  m.grain_class = grain_class;
  m.arguments = &args;
  if constexpr (!std::is_void_v<R>) m.result = &slot;
  RequestContext& caller_context = RequestContext::current();
  m.context = caller_context;
  m.reply.context = &caller_context;
  co_await DispatchAwaiter{*runtime, m};
  if (m.error) std::rethrow_exception(m.error);
  if constexpr (!std::is_void_v<R>) co_return std::move(*slot.value);
}

template <typename T>
Task<void> discard_result(Task<T> task) {
  co_await std::move(task);
}

// Reports a failed one-way call to the runtime's unhandled-error handler.
void report_failed_send(Runtime& runtime, const Message& message) noexcept;

// A one-way call's own frame: started at once, it dispatches the call from the sending thread
// and frees itself when the call completes (a failure is reported). Nothing else holds it.
struct OneWayCall {
  struct promise_type : PooledFrame {
    OneWayCall get_return_object() const noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
    std::coroutine_handle<> continuation() const noexcept { return {}; }
  };
};

// Dispatches like DispatchAwaiter and stores whether the runtime took the call in `*dispatched`
// (written before the sending code continues; the frame may be gone by then).
struct OneWayDispatch {
  Runtime& runtime;
  Message& message;
  bool* dispatched;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<OneWayCall::promise_type> frame) const noexcept {
    message.reply.handle = frame;
    bool* const out = dispatched;  // not through `this`, which lives in the frame
    const bool taken = dispatch(runtime, message);
    *out = taken;
    return taken;
  }
  void await_resume() const noexcept {}
};

template <auto M>
OneWayCall send_grain(Runtime& runtime, const void* grain_class, GrainId id, typename traits_of<M>::arguments args,
                      bool* dispatched) {
  using R = result_of<M>;
  ResultSlot<R> slot;  // the callee's result, dropped
  Message m;
  m.one_way = true;
  m.target = &id;
  m.method = &method_info<M>;
  m.grain_class = grain_class;
  m.arguments = &args;
  if constexpr (!std::is_void_v<R>) m.result = &slot;
  m.context = RequestContext::current();
  m.reply.context = &m.context;
  co_await OneWayDispatch{runtime, m, dispatched};
  if (m.error) report_failed_send(runtime, m);
}

}  // namespace internal

template <typename G>
class GrainRef {
 public:
  GrainRef() = default;  // unbound: calls fail with failed_precondition
  GrainRef(Runtime* runtime, GrainId id) : runtime_(runtime), id_(std::move(id)) {}

  const GrainId& id() const noexcept { return id_; }
  Runtime* runtime() const noexcept { return runtime_; }
  explicit operator bool() const noexcept { return runtime_ != nullptr && id_.valid(); }

  template <auto M, typename... A>
  Task<internal::result_of<M>> call(A&&... args) const {
    check_call<M, A...>();
    return internal::call_grain<M>(runtime_, internal::type_key<G>(), id_.thread_copy(),
                                   typename internal::traits_of<M>::arguments(std::forward<A>(args)...));
  }

  // One-way call: dispatched now from this thread (no task is spawned for it) and not awaited;
  // the result is dropped, and a failure - the grain's exception, or a refusal - goes to the
  // runtime's unhandled-error handler. False when the runtime refused the call at once (stopped,
  // type not registered, ...). It is not part of the sending turn's call chain.
  template <auto M, typename... A>
  bool send(A&&... args) const {
    check_call<M, A...>();
    if (runtime_ == nullptr) internal::throw_unbound_ref();
    bool dispatched = false;
    internal::send_grain<M>(*runtime_, internal::type_key<G>(), id_.thread_copy(),
                            typename internal::traits_of<M>::arguments(std::forward<A>(args)...), &dispatched);
    return dispatched;
  }

  friend bool operator==(const GrainRef& a, const GrainRef& b) noexcept {
    return a.runtime_ == b.runtime_ && a.id_ == b.id_;
  }

 private:
  template <auto M, typename... A>
  static constexpr void check_call() {
    static_assert(internal::check_method<M>());
    using Traits = internal::traits_of<M>;
    static_assert(std::is_base_of_v<typename Traits::grain_type, G>, "the method does not belong to this grain type");
    static_assert(sizeof...(A) == Traits::arity, "wrong number of arguments for this grain method");
    static_assert(std::is_constructible_v<typename Traits::arguments, A&&...>,
                  "arguments do not convert to this grain method's parameters");
  }

  Runtime* runtime_ = nullptr;
  GrainId id_;
};

}  // namespace gpubridge::runtime

#pragma once
// Call filters (interceptors): code that runs before and after every grain call, in the
// callee's turn. Telemetry (spans, durations) and tenancy (quotas, identity) hook in here.
//
// Order: filters run in the order they were added for before(), and in reverse order for
// after() (an onion). after() runs only for filters whose before() ran. A filter that throws in
// before() fails the call with that exception and the method does not run; a filter that throws
// in after() fails the call with that exception. Timer ticks and lifecycle hooks are not calls
// and are not filtered.
//
// Per-call state: CallContext::state is one word per filter and call: what a filter's before()
// leaves there, its after() finds there (the runtime only stores it; it starts null). A filter
// whose before() throws gets no after(), so it must not leave owned state behind then. Calls that
// stop() abandons never reach after().
//
// RequestContext::current() in before()/after() is the callee turn's context (see
// request_context.hpp): a filter may read and change it for the method it wraps.
//
// Thread-safety: a filter is shared by all workers; before()/after() run concurrently for
// different calls and must be thread-safe. Filters are added with Runtime::add_call_filter (at
// most kMaxCallFilters) and kept until the runtime is destroyed.
#include <chrono>
#include <cstddef>
#include <exception>
#include <string_view>

#include "gpubridge/runtime/grain_id.hpp"

namespace gpubridge::runtime {

inline constexpr std::size_t kMaxCallFilters = 16;
// Least time between two timed calls on one thread once calls come faster (see CallContext).
inline constexpr std::chrono::microseconds kTimedCallGap{10};

struct CallContext {
  const GrainId& grain;
  std::string_view method;  // "Class::method", in static storage: its address identifies the method
  std::size_t argument_count = 0;
  // Set before after() when `timed`: wall time from before the first filter to after the
  // method's end. Timing costs two cycle-clock reads, so the runtime bounds it per worker thread:
  // every call is timed while a thread runs fewer than about 100k filtered calls per second; above
  // that, a random sample of about one call per kTimedCallGap on that thread (so timing stays
  // under about 0.3 % of the thread's time whatever the call rate). Counts must not rely on it.
  bool timed = false;
  std::chrono::nanoseconds duration{0};
  // Set before after(): what the call is about to throw to the caller (null on success).
  std::exception_ptr exception;
  // This filter's per-call word (see above).
  void* state = nullptr;
};

class CallFilter {
 public:
  virtual ~CallFilter() = default;
  virtual void before(CallContext& context) = 0;
  virtual void after(CallContext& context) = 0;
};

}  // namespace gpubridge::runtime

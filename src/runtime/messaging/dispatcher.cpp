// The single dispatch point (Runtime::dispatch), routing to activations, and the answer path.
#include <memory>
#include <string>
#include <vector>

#include "activation/activation.hpp"
#include "execution_context.hpp"
#include "runtime_core.hpp"

namespace gpubridge::runtime {

using internal::Activation;
using internal::make_error;
using internal::Phase;

namespace {

// True when `a` already runs a turn of m's call chain that m cannot interleave with: m would
// wait for a turn that waits for m.
bool blocks_chain(const Activation& a, const Message& m) noexcept {
  for (const Message* p = m.parent; p != nullptr; p = p->parent) {
    if (p->receiver != &a) continue;
    if (p->kind == MessageKind::activate || p->kind == MessageKind::deactivate) return true;
    if (!a.type().options.reentrant && !m.method->always_interleave) return true;
  }
  return false;
}

std::string chain_text(const Message& m) {
  std::string text;
  std::vector<const Message*> chain;
  for (const Message* p = &m; p != nullptr; p = p->parent) chain.push_back(p);
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const Message& c = **it;
    if (!text.empty()) text += " -> ";
    text += c.target->to_string();
    switch (c.kind) {
      case MessageKind::call: text += " (" + std::string(c.method->name) + ")"; break;
      case MessageKind::tick: text += " (timer tick)"; break;
      case MessageKind::activate: text += " (on_activate)"; break;
      case MessageKind::deactivate: text += " (on_deactivate)"; break;
    }
  }
  return text;
}

std::exception_ptr deadlock_error(const Message& m) {
  return make_error(ErrorCode::aborted,
                    "deadlock: call chain " + chain_text(m) + " re-enters " + m.target->to_string() +
                        ", which is still in a turn of this chain and cannot interleave; make the grain type "
                        "reentrant or its method always_interleave");
}

}  // namespace

bool Runtime::dispatch(Message& m) noexcept {
  Core& c = *core_;
  const internal::ExecutionContext& ctx = internal::t_context;
  const bool ours = ctx.core == &c;
  m.kind = MessageKind::call;
  m.abandoned = false;
  m.error = nullptr;
  m.receiver = nullptr;
  m.parent = ours && !m.one_way ? ctx.turn : nullptr;
  m.sender = ours && !m.one_way ? ctx.activation : nullptr;
  m.reply.turn = m.parent;
  m.reply.run = &internal::resume_outside;
  const Phase phase = c.phase.load(std::memory_order_acquire);
  if (phase != Phase::running && (phase != Phase::draining || m.parent == nullptr)) {
    m.error = make_error(ErrorCode::unavailable, "runtime stopped");
    c.count_call(/*failed=*/true);
    return false;
  }
  if (c.route(m)) return true;
  c.count_call(/*failed=*/true);
  return false;
}

// Stateless worker: which activation of `list` (the id's activations, shard locked) takes m.
// Activations in m's call chain are skipped (they wait for m). When none is in the chain, the
// activation whose slice runs on this thread (`home`) takes the call outright when it is idle,
// and for a reentrant type on all but one in kSampleEvery calls of the thread: reading another
// worker's counters costs a cache miss on every call (bench_runtime pipelined/stateless, 2 cores,
// interleaved A/B: 7.3-8.0 -> 11.0-11.9 M calls/s), and the sampled calls keep the load spread.
// Otherwise two candidates are looked at - home and one picked at random - instead of every
// activation (power of two choices): with one activation per worker, a scan would read every
// worker's counters on every call, under the shard lock. The idler of the two takes the call
// (home when it holds at most twice the other's load + 1: its mailbox stays in this core's cache
// and the call needs no post to another worker); when both are busy a new activation is created,
// up to the type's maximum. A call chain that already entered this id scans every activation.
// Null (with m.error set) for a deadlock; null with `needs_writer` set when a new activation is
// due but the shard is only read-locked (!may_create).
constexpr std::uint32_t kSampleEvery = 8;

Activation* Runtime::Core::pick_stateless(internal::ActivationTable::Slot& listing, const internal::GrainType& type,
                                          Message& m, const Activation* home_candidate, bool may_create,
                                          bool& needs_writer) {
  const std::vector<Activation*>& list = *listing.workers;
  bool chain_entered = false;
  for (const Message* p = m.parent; p != nullptr && !chain_entered; p = p->parent) {
    chain_entered = *p->target == *m.target;
  }
  Activation* best = nullptr;
  Activation* home = nullptr;
  bool skipped = false;
  if (!chain_entered) {
    for (Activation* a : list) {  // pointer comparisons only: home's counters are local
      if (a == home_candidate) home = a->accepting() ? a : nullptr;
    }
    thread_local std::uint32_t calls = 0;
    if (home != nullptr && (home->load() == 0 || (type.options.reentrant && ++calls % kSampleEvery != 0))) {
      return home;
    }
    thread_local std::uint32_t rng = 0x9E3779B9u;
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    Activation* other = list[rng % list.size()];
    if (other == home_candidate || !other->accepting()) other = nullptr;
    best = other;
    if (home != nullptr && (best == nullptr || home->load() < best->load())) best = home;
  } else {
    for (Activation* a : list) {
      if (!a->accepting()) continue;
      if (blocks_chain(*a, m)) {
        skipped = true;
        continue;
      }
      if (a == home_candidate) home = a;
      if (best == nullptr || a->load() < best->load()) best = a;
      if (best->load() == 0) break;
    }
  }
  if ((best == nullptr || best->load() > 0) && list.size() < type.max_activations) {
    if (!may_create) {
      needs_writer = true;
      return nullptr;
    }
    auto fresh = std::make_unique<Activation>(*this, type, *m.target);
    internal::ActivationTable::add_worker(listing, fresh.get());
    activations_created.fetch_add(1, std::memory_order_relaxed);
    return fresh.release();
  }
  if (home != nullptr && best != nullptr && type.options.reentrant && home->load() <= 2 * best->load() + 1) {
    best = home;
  }
  if (best == nullptr) {
    if (skipped) {
      m.error = deadlock_error(m);
      return nullptr;
    }
    // None sampled is accepting: any accepting one, else the first (all deactivating: the call
    // waits and is forwarded).
    for (Activation* a : list) {
      if (a->accepting()) return a;
    }
    best = list.front();
  }
  return best;
}

namespace {

enum class RouteStep { admitted, failed, needs_writer };

// route() with `shard` locked: as a reader (may_create false: needs_writer when an activation must
// be created) or as a writer. May throw bad_alloc. failed: m.error says why.
RouteStep route_locked(Runtime::Core& core, internal::ActivationDirectory::Shard& shard, Message& m,
                       const Activation* home_candidate, bool may_create, Activation*& chosen,
                       Activation::Admission& admission) {
  const internal::ExecutionContext& ctx = internal::t_context;
  if (core.phase.load(std::memory_order_acquire) >= Phase::closing) {
    m.error = make_error(ErrorCode::unavailable, "runtime stopped");
    return RouteStep::failed;
  }
  internal::ActivationTable::Slot* listing = shard.table.find(*m.target);
  if (listing == nullptr && !may_create) return RouteStep::needs_writer;
  const internal::GrainType* type = listing != nullptr ? &listing->first->type() : core.find_type(m.target->type());
  if (type == nullptr) {
    m.error = make_error(ErrorCode::not_found, "grain type '" + std::string(m.target->type()) + "' is not registered");
    return RouteStep::failed;
  }
  if (m.grain_class != nullptr && m.grain_class != type->key) {
    m.error = make_error(ErrorCode::invalid_argument,
                         "grain type '" + type->name + "' is registered for another C++ class than the GrainRef "
                         "it is called through; give one of the classes its own GrainOptions::type_name");
    return RouteStep::failed;
  }
  if (listing == nullptr) {
    auto fresh = std::make_unique<Activation>(core, *type, *m.target);
    shard.table.add(*m.target, fresh.get(), type->options.stateless_worker);
    chosen = fresh.release();
    core.activations_created.fetch_add(1, std::memory_order_relaxed);
  } else if (!type->options.stateless_worker) {
    chosen = listing->first;
    if (m.parent != nullptr && blocks_chain(*chosen, m)) {
      m.error = deadlock_error(m);
      return RouteStep::failed;
    }
  } else {
    bool needs_writer = false;
    chosen = core.pick_stateless(*listing, *type, m, home_candidate, may_create, needs_writer);
    if (needs_writer) return RouteStep::needs_writer;
    if (chosen == nullptr) return RouteStep::failed;  // m.error says why
  }
  m.receiver = chosen;
  // Started right here only by the thread that runs the chosen activation's slice, for a
  // caller outside any turn that waits for it, within the nesting bound.
  const bool may_start_here = chosen == home_candidate && m.parent == nullptr && !m.one_way &&
                              ctx.inline_depth < internal::kMaxInlineDepth;
  admission = chosen->admit(m, may_start_here);
  return RouteStep::admitted;
}

}  // namespace

bool Runtime::Core::route(Message& m) noexcept {
  const internal::ExecutionContext& ctx = internal::t_context;
  const Activation* const home_candidate = ctx.core == this ? ctx.slice : nullptr;
  auto& shard = directory.shard_for(*m.target);
  Activation* chosen = nullptr;
  Activation::Admission admission = Activation::Admission::queued;
  try {
    // A reader first (the id is known: every call but the first); a writer to create an activation.
    RouteStep step;
    {
      internal::SharedSlotLock read(shard.mu, ctx.core == this ? ctx.counter_slot : 0);
      step = route_locked(*this, shard, m, home_candidate, /*may_create=*/false, chosen, admission);
    }
    if (step == RouteStep::needs_writer) {
      std::lock_guard write(shard.mu);
      step = route_locked(*this, shard, m, home_candidate, /*may_create=*/true, chosen, admission);
    }
    if (step != RouteStep::admitted) return false;  // m.error says why
  } catch (...) {  // allocation failure creating an activation, or a failed mutex
    m.error = std::current_exception();
    return false;
  }
  if (admission == Activation::Admission::queued_post) chosen->post();
  if (admission == Activation::Admission::start_here) chosen->start_admitted(m);
  return true;
}

std::coroutine_handle<> Runtime::Core::complete_call(Message& m, bool allow_inline) noexcept {
  // Read everything first: once the caller is resumed, `m` (in its frame) may be gone.
  Activation* sender = m.sender;
  Resumption& reply = m.reply;
  const std::coroutine_handle<> caller = reply.handle;
  count_call(/*failed=*/m.error != nullptr);
  if (sender != nullptr) {
    if (allow_inline) {
      if (std::coroutine_handle<> here = sender->resume_here(reply)) {
        count(&internal::CallCounters::replies_in_place);
        return here;
      }
    }
    sender->post_ready(reply);
    return std::noop_coroutine();
  }
  if (allow_inline) return caller;
  scheduler->post(&reply);
  return std::noop_coroutine();
}

void Runtime::Core::fail_call(Message& m, std::exception_ptr error) noexcept {
  m.error = std::move(error);
  complete_call(m, /*allow_inline=*/false);
}

void Runtime::Core::notify_progress() noexcept {
  { std::lock_guard lock(stop_mu); }
  stop_cv.notify_all();
}

}  // namespace gpubridge::runtime

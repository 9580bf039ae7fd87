// CpuRingServer: one thread standing in for the persistent kernel. It follows the protocol in
// gpubridge/compute/ring.hpp exactly as the device will: poll the request ring, serve one message
// at a time against the actor table, write a completion, heartbeat every iteration.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "compute/ring/slot_queue.hpp"
#include "gpubridge/compute/ring.hpp"

namespace gpubridge::compute::ring {

using detail::load_acquire;
using detail::store_release;

namespace detail {

// Messages one handler staged (HandlerContext), committed to the server-internal queue when the
// handler returns success. Server thread only.
struct Outbox {
  std::vector<InternalMessage> staged;
  std::size_t free_slots = 0;      // internal queue space when the handler started
  std::uint32_t queue_slots = 0;   // the queue's bound (for messages)
  std::uint32_t next_hops = 0;     // hops of the messages this handler sends
  std::uint32_t max_hops = 0;
  bool replies_to_host = false;    // the serving message answers a host call
  std::uint64_t origin_request_id = 0;
  std::uint64_t origin_reply_offset = 0;
  std::uint32_t origin_reply_capacity = 0;
  std::uint32_t origin_actor_id = 0;
  std::uint32_t origin_handler_id = 0;
};

}  // namespace detail

Status HandlerContext::post(std::uint32_t actor_id, std::uint32_t handler_id,
                            std::span<const std::byte> payload) {
  return stage(actor_id, handler_id, payload, false);
}

Status HandlerContext::forward(std::uint32_t actor_id, std::uint32_t handler_id,
                               std::span<const std::byte> payload) {
  return stage(actor_id, handler_id, payload, true);
}

Status HandlerContext::stage(std::uint32_t actor_id, std::uint32_t handler_id,
                             std::span<const std::byte> payload, bool forward) {
  auto refuse = [](ErrorCode code, std::string message) {
    return Error(code, std::move(message), "ring server");
  };
  if (handler_id >= kFirstReservedHandler) {
    return refuse(ErrorCode::invalid_argument,
                  "device-side message to reserved handler id " + std::to_string(handler_id));
  }
  if (payload.size() > kInlinePayloadBytes) {
    return refuse(ErrorCode::invalid_argument,
                  "device-side message payload of " + std::to_string(payload.size()) +
                      " bytes exceeds the inline limit of " + std::to_string(kInlinePayloadBytes) + " bytes");
  }
  if (forward && forwarded_) {
    return refuse(ErrorCode::failed_precondition, "forward() already called for this message");
  }
  if (outbox_.next_hops > outbox_.max_hops) {
    return refuse(ErrorCode::resource_exhausted,
                  "device-side hop limit of " + std::to_string(outbox_.max_hops) + " exceeded");
  }
  if (outbox_.staged.size() >= outbox_.free_slots) {
    return refuse(ErrorCode::resource_exhausted,
                  "server-internal message queue full (" + std::to_string(outbox_.queue_slots) + " slots)");
  }
  InternalMessage& m = outbox_.staged.emplace_back();
  std::memset(&m, 0, sizeof(m));
  m.actor_id = actor_id;
  m.handler_id = handler_id;
  m.hops = outbox_.next_hops;
  m.payload_bytes = static_cast<std::uint32_t>(payload.size());
  if (!payload.empty()) std::memcpy(m.payload, payload.data(), payload.size());
  if (forward && outbox_.replies_to_host) {
    m.flags = kInternalRepliesToHost;
    m.origin_request_id = outbox_.origin_request_id;
    m.origin_reply_offset = outbox_.origin_reply_offset;
    m.origin_reply_capacity = outbox_.origin_reply_capacity;
    m.origin_actor_id = outbox_.origin_actor_id;
    m.origin_handler_id = outbox_.origin_handler_id;
  }
  if (forward) forwarded_ = true;
  return {};
}

struct CpuRingServer::Impl {
  RingMemory& memory;
  CpuRingServerOptions options;
  detail::SlotQueue requests;
  detail::SlotQueue completions;

  std::mutex table_mutex;  // guards `table`; the server re-reads it when `table_generation` moves
  std::shared_ptr<const HandlerTable> table;
  std::atomic<std::uint64_t> table_generation{0};

  std::mutex lifecycle_mutex;  // start/wait
  std::thread thread;
  bool started = false;
  std::atomic<bool> abandon{false};  // destructor: give up waiting for completion space
  std::atomic<std::uint64_t> served{0};  // completions written
  std::atomic<std::uint64_t> host_messages{0};
  std::atomic<std::uint64_t> internal_served{0};
  std::atomic<std::uint64_t> internal_failures{0};
  std::atomic<std::uint64_t> internal_peak{0};
  mutable std::mutex error_mutex;
  std::string last_internal_error;

  // Server-internal FIFO (server thread only): a ring buffer of InternalMessage.
  std::vector<InternalMessage> internal;
  std::size_t internal_head = 0;
  std::size_t internal_count = 0;
  detail::Outbox outbox;

  Impl(RingMemory& m, HandlerTable handlers, CpuRingServerOptions o)
      : memory(m), options(o), requests(detail::request_queue(m)),
        completions(detail::completion_queue(m)),
        table(std::make_shared<const HandlerTable>(std::move(handlers))),
        internal(o.internal_queue_slots) {
    outbox.queue_slots = o.internal_queue_slots;
    outbox.max_hops = o.max_hops;
  }

  RingHeader& header() const { return memory.header(); }

  // Who a message answers: the host call it belongs to (replies_to_host) or nobody (a post).
  struct Envelope {
    std::uint32_t actor_id = 0;
    std::uint32_t handler_id = 0;
    std::uint32_t hops = 0;
    bool replies_to_host = false;
    std::uint64_t request_id = 0;
    std::uint64_t reply_offset = 0;
    std::uint32_t reply_capacity = 0;
    std::uint32_t origin_actor_id = 0;
    std::uint32_t origin_handler_id = 0;
  };

  struct Outcome {
    ErrorCode code = ErrorCode::ok;
    std::string message;           // when code != ok
    std::size_t reply_bytes = 0;   // when ok
    bool forwarded = false;        // when ok: the reply comes from the forwarded message
  };

  static Outcome failure(ErrorCode code, std::string message) {
    Outcome out;
    out.code = code;
    out.message = std::move(message);
    return out;
  }

  // A pool reference from a slot, checked against the pool's bounds; false when invalid.
  bool pool_span(std::uint64_t offset, std::uint64_t bytes, std::span<std::byte>& span) const {
    const RingHeader& h = header();
    const std::uint64_t pool_begin = h.pool_offset;
    const std::uint64_t pool_end = pool_begin + std::uint64_t{h.pool_chunk_bytes} * h.pool_chunk_count;
    if (offset < pool_begin || offset > pool_end || bytes > pool_end - offset) return false;
    span = std::span<std::byte>(memory.base() + offset, bytes);
    return true;
  }

  // Reply area of a message: a host-reserved pool block, or the inline buffer.
  bool reply_area_for(const Envelope& env, std::span<std::byte, kInlinePayloadBytes> inline_reply,
                      std::span<std::byte>& area) const {
    if (env.reply_offset != 0) return pool_span(env.reply_offset, env.reply_capacity, area);
    area = std::span<std::byte>(inline_reply).first(
        std::min<std::size_t>(env.reply_capacity, kInlinePayloadBytes));
    return true;
  }

  Outcome serve(const Envelope& env, std::span<const std::byte> payload, std::span<std::byte> reply_area,
                const HandlerTable& handlers) {
    const RingHeader& h = header();
    if (env.actor_id >= h.actor_count) {
      return failure(ErrorCode::not_found, "unknown actor id " + std::to_string(env.actor_id));
    }
    ActorEntry& actor = detail::actor_table(memory)[env.actor_id];
    std::span<std::byte> state(memory.base() + actor.state_offset, actor.state_bytes);
    const std::string actor_name = "actor " + std::to_string(env.actor_id);

    if (env.handler_id == kActivateHandler) {
      if (actor.active != 0) return failure(ErrorCode::already_exists, actor_name + " is already active");
      if (payload.size() > state.size()) {
        return failure(ErrorCode::invalid_argument,
                       "initial state of " + std::to_string(payload.size()) + " bytes exceeds " +
                           actor_name + "'s state size " + std::to_string(state.size()));
      }
      std::memcpy(state.data(), payload.data(), payload.size());
      std::memset(state.data() + payload.size(), 0, state.size() - payload.size());
      actor.active = 1;
      return Outcome{};
    }
    if (actor.active == 0) return failure(ErrorCode::failed_precondition, actor_name + " is not active");
    if (env.handler_id == kDeactivateHandler) {
      if (reply_area.size() < state.size()) {
        return failure(ErrorCode::invalid_argument, "reply capacity too small for " + actor_name + "'s state");
      }
      std::memcpy(reply_area.data(), state.data(), state.size());
      actor.active = 0;
      Outcome out;
      out.reply_bytes = state.size();
      return out;
    }

    const HandlerSpec* handler = handlers.find(env.handler_id);
    if (handler == nullptr) {
      return failure(ErrorCode::not_found, "unknown handler id " + std::to_string(env.handler_id));
    }
    if (handler->actor_type != actor.type_id) {
      return failure(ErrorCode::invalid_argument,
                     "handler " + std::to_string(env.handler_id) + " serves actor type " +
                         std::to_string(handler->actor_type) + ", " + actor_name + " is of type " +
                         std::to_string(actor.type_id));
    }
    bool forwarded = false;
    Result<std::size_t> written = [&]() -> Result<std::size_t> {
      try {
        if (handler->messaging_fn) {
          prepare_outbox(env);
          HandlerContext context(env.actor_id, env.hops, env.replies_to_host, state, payload,
                                 reply_area, outbox);
          Result<std::size_t> r = handler->messaging_fn(context);
          forwarded = context.forwarded();
          return r;
        }
        return handler->fn(state, payload, reply_area);
      } catch (const HandlerTrap&) {
        throw;
      } catch (const std::exception& e) {
        return Error(ErrorCode::internal, std::string("handler threw: ") + e.what());
      } catch (...) {
        return Error(ErrorCode::internal, "handler threw a non-standard exception");
      }
    }();
    if (!written) return failure(written.error().code(), written.error().to_string());
    if (!forwarded && *written > reply_area.size()) {
      return failure(ErrorCode::internal, "handler reported " + std::to_string(*written) +
                                              " reply bytes, more than the capacity " +
                                              std::to_string(reply_area.size()));
    }
    Outcome out;
    out.reply_bytes = forwarded ? 0 : *written;
    out.forwarded = forwarded;
    return out;
  }

  void prepare_outbox(const Envelope& env) {
    outbox.free_slots = internal.size() - internal_count;
    outbox.next_hops = env.hops + 1;
    outbox.replies_to_host = env.replies_to_host;
    outbox.origin_request_id = env.request_id;
    outbox.origin_reply_offset = env.reply_offset;
    outbox.origin_reply_capacity = env.reply_capacity;
    outbox.origin_actor_id = env.origin_actor_id;
    outbox.origin_handler_id = env.origin_handler_id;
  }

  void commit_outbox() {
    for (const InternalMessage& m : outbox.staged) {  // free space was checked when staging
      internal[(internal_head + internal_count) % internal.size()] = m;
      ++internal_count;
    }
    outbox.staged.clear();
    if (internal_count > internal_peak.load(std::memory_order_relaxed)) {
      internal_peak.store(internal_count, std::memory_order_relaxed);
    }
  }

  // Waits for a free completion slot; nullptr when the server is being abandoned.
  RingSlot* claim_completion(std::uint64_t& position) {
    for (std::uint32_t spins = 0;; ++spins) {
      if (RingSlot* slot = completions.try_claim(position)) return slot;
      if (abandon.load(std::memory_order_acquire)) return nullptr;
      heartbeat();
      if (spins < options.idle_spins) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(options.idle_sleep);
      }
    }
  }

  bool complete(const Envelope& env, const Outcome& outcome, std::span<const std::byte> inline_reply) {
    std::uint64_t position = 0;
    RingSlot* slot = claim_completion(position);
    if (slot == nullptr) return false;
    slot->request_id = env.request_id;
    slot->actor_id = env.origin_actor_id;
    slot->handler_id = env.origin_handler_id;
    slot->status = static_cast<std::uint32_t>(outcome.code);
    slot->flags = 0;
    slot->payload_offset = 0;
    slot->reply_offset = 0;
    slot->reply_capacity = 0;
    if (outcome.code != ErrorCode::ok) {
      const std::size_t n = std::min(outcome.message.size(), kInlinePayloadBytes);
      std::memcpy(slot->inline_payload, outcome.message.data(), n);
      slot->payload_bytes = static_cast<std::uint32_t>(n);
    } else if (env.reply_offset != 0) {
      slot->flags = kSlotPayloadInPool;
      slot->payload_offset = env.reply_offset;
      slot->payload_bytes = static_cast<std::uint32_t>(outcome.reply_bytes);
    } else {
      std::memcpy(slot->inline_payload, inline_reply.data(), outcome.reply_bytes);
      slot->payload_bytes = static_cast<std::uint32_t>(outcome.reply_bytes);
    }
    // Counted before the completion is published, so a caller holding its reply sees it counted.
    served.fetch_add(1, std::memory_order_relaxed);
    detail::SlotQueue::publish(*slot, position);
    return true;
  }

  // After a message ran (or was cancelled): commits its handler's messages on success, then
  // answers its host call unless it forwarded. False when the server is being abandoned.
  bool finish(const Envelope& env, const Outcome& outcome, std::span<const std::byte> inline_reply) {
    if (outcome.code == ErrorCode::ok) {
      commit_outbox();
    } else {
      outbox.staged.clear();
    }
    if (outcome.code == ErrorCode::ok && outcome.forwarded) return true;
    if (env.replies_to_host) return complete(env, outcome, inline_reply);
    if (outcome.code != ErrorCode::ok) {
      internal_failures.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(error_mutex);
      last_internal_error = "actor " + std::to_string(env.actor_id) + " handler " +
                            std::to_string(env.handler_id) + ": " + outcome.message;
    }
    return true;
  }

  void heartbeat() {
    std::atomic_ref<std::uint64_t>(header().heartbeat).fetch_add(1, std::memory_order_release);
  }

  ControlWord control() const { return static_cast<ControlWord>(load_acquire(header().control)); }

  bool serve_host(RingSlot& request, std::uint64_t position, ControlWord word,
                  std::span<std::byte, kInlinePayloadBytes> inline_reply, const HandlerTable& handlers) {
    Envelope env;
    env.actor_id = env.origin_actor_id = request.actor_id;
    env.handler_id = env.origin_handler_id = request.handler_id;
    env.replies_to_host = true;
    env.request_id = request.request_id;
    env.reply_offset = request.reply_offset;
    env.reply_capacity = request.reply_capacity;
    outbox.staged.clear();
    Outcome outcome;
    if (word == ControlWord::stop) {
      outcome = failure(ErrorCode::cancelled, "ring server stopped before the message ran");
    } else {
      std::span<const std::byte> payload;
      std::span<std::byte> reply_area;
      bool valid = true;
      if (request.flags & kSlotPayloadInPool) {
        std::span<std::byte> in;
        valid = pool_span(request.payload_offset, request.payload_bytes, in);
        if (!valid) outcome = failure(ErrorCode::invalid_argument, "payload reference outside the pool");
        payload = in;
      } else if (request.payload_bytes > kInlinePayloadBytes) {
        valid = false;
        outcome = failure(ErrorCode::invalid_argument, "inline payload longer than a slot holds");
      } else {
        payload = std::span<const std::byte>(request.inline_payload, request.payload_bytes);
      }
      if (valid && !reply_area_for(env, inline_reply, reply_area)) {
        valid = false;
        outcome = failure(ErrorCode::invalid_argument, "reply reference outside the pool");
      }
      if (valid) outcome = serve(env, payload, reply_area, handlers);
    }
    // Free the request slot before completing: a caller that sees its reply may reuse it.
    requests.release(request, position);
    host_messages.fetch_add(1, std::memory_order_relaxed);
    return finish(env, outcome, inline_reply);
  }

  bool serve_internal(ControlWord word, std::span<std::byte, kInlinePayloadBytes> inline_reply,
                      const HandlerTable& handlers) {
    const InternalMessage message = internal[internal_head];
    internal_head = (internal_head + 1) % internal.size();
    --internal_count;
    internal_served.fetch_add(1, std::memory_order_relaxed);
    Envelope env;
    env.actor_id = message.actor_id;
    env.handler_id = message.handler_id;
    env.hops = message.hops;
    env.replies_to_host = (message.flags & kInternalRepliesToHost) != 0;
    if (env.replies_to_host) {
      env.request_id = message.origin_request_id;
      env.reply_offset = message.origin_reply_offset;
      env.reply_capacity = message.origin_reply_capacity;
      env.origin_actor_id = message.origin_actor_id;
      env.origin_handler_id = message.origin_handler_id;
    } else {
      env.reply_capacity = static_cast<std::uint32_t>(kInlinePayloadBytes);  // the reply is dropped
    }
    outbox.staged.clear();
    Outcome outcome;
    std::span<std::byte> reply_area;
    if (word == ControlWord::stop) {
      outcome = failure(ErrorCode::cancelled, "ring server stopped before the message ran");
    } else if (!reply_area_for(env, inline_reply, reply_area)) {
      outcome = failure(ErrorCode::invalid_argument, "reply reference outside the pool");
    } else {
      const std::span<const std::byte> payload(message.payload,
                                               std::min<std::size_t>(message.payload_bytes, kInlinePayloadBytes));
      outcome = serve(env, payload, reply_area, handlers);
    }
    return finish(env, outcome, inline_reply);
  }

  void run() {
    std::shared_ptr<const HandlerTable> handlers;
    std::uint64_t seen_generation = ~std::uint64_t{0};
    auto refresh_handlers = [&] {
      if (const std::uint64_t g = table_generation.load(std::memory_order_acquire); g != seen_generation) {
        std::lock_guard lock(table_mutex);
        handlers = table;
        seen_generation = table_generation.load(std::memory_order_relaxed);
      }
    };
    std::array<std::byte, kInlinePayloadBytes> inline_reply{};
    std::uint32_t idle = 0;
    try {
      for (;;) {
        heartbeat();
        const ControlWord word = control();
        // Device-side messages first: a host message's whole chain runs before the next one.
        if (internal_count > 0) {
          idle = 0;
          refresh_handlers();
          if (!serve_internal(word, inline_reply, *handlers)) break;
          continue;
        }
        std::uint64_t position = 0;
        RingSlot* request = requests.try_peek(position);
        if (request == nullptr) {
          // drain/stop end once nothing is queued or being enqueued.
          if (word != ControlWord::run && requests.empty()) break;
          if (abandon.load(std::memory_order_acquire)) break;
          if (++idle < options.idle_spins) {
            std::this_thread::yield();
          } else {
            std::this_thread::sleep_for(options.idle_sleep);
          }
          continue;
        }
        idle = 0;
        refresh_handlers();
        if (!serve_host(*request, position, word, inline_reply, *handlers)) break;
      }
    } catch (const HandlerTrap&) {
      return;  // a trap: no completion, no state change, no more heartbeats
    }
    store_release(header().server_state, static_cast<std::uint32_t>(ServerState::stopped));
  }
};

Result<std::unique_ptr<CpuRingServer>> CpuRingServer::create(RingMemory& memory,
                                                             HandlerTable handlers,
                                                             CpuRingServerOptions options) {
  const RingHeader& h = memory.header();
  if (h.magic != kRingMagic || h.version != kRingVersion) {
    return Error(ErrorCode::invalid_argument, "memory block is not a ring block of version " +
                                                  std::to_string(kRingVersion), "ring server");
  }
  if (options.internal_queue_slots == 0 || options.max_hops == 0) {
    return Error(ErrorCode::invalid_argument, "internal_queue_slots and max_hops must be positive",
                 "ring server");
  }
  if (load_acquire(memory.header().server_state) != static_cast<std::uint32_t>(ServerState::not_started)) {
    return Error(ErrorCode::failed_precondition, "the ring block has already been served",
                 "ring server");
  }
  return std::unique_ptr<CpuRingServer>(
      new CpuRingServer(std::make_unique<Impl>(memory, std::move(handlers), options)));
}

CpuRingServer::CpuRingServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CpuRingServer::~CpuRingServer() {
  request_stop();
  impl_->abandon.store(true, std::memory_order_release);
  wait();
}

Status CpuRingServer::start() {
  std::lock_guard lock(impl_->lifecycle_mutex);
  if (impl_->started) {
    return Error(ErrorCode::failed_precondition, "ring server already started", "ring server");
  }
  impl_->started = true;
  store_release(impl_->header().server_state, static_cast<std::uint32_t>(ServerState::running));
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
  return {};
}

void CpuRingServer::request_stop() {
  store_release(impl_->header().control, static_cast<std::uint32_t>(ControlWord::stop));
}

void CpuRingServer::request_drain() {
  // A stop already requested wins over a later drain.
  std::atomic_ref<std::uint32_t> control(impl_->header().control);
  auto expected = static_cast<std::uint32_t>(ControlWord::run);
  control.compare_exchange_strong(expected, static_cast<std::uint32_t>(ControlWord::drain),
                                  std::memory_order_acq_rel);
}

void CpuRingServer::wait() {
  std::lock_guard lock(impl_->lifecycle_mutex);
  if (impl_->thread.joinable()) impl_->thread.join();
}

void CpuRingServer::reload(HandlerTable handlers) {
  auto next = std::make_shared<const HandlerTable>(std::move(handlers));
  std::lock_guard lock(impl_->table_mutex);
  impl_->table = std::move(next);
  impl_->table_generation.fetch_add(1, std::memory_order_release);
}

std::uint64_t CpuRingServer::messages_served() const noexcept {
  return impl_->served.load(std::memory_order_relaxed);
}

RingServerStats CpuRingServer::stats() const noexcept {
  RingServerStats s;
  s.host_messages = impl_->host_messages.load(std::memory_order_relaxed);
  s.internal_messages = impl_->internal_served.load(std::memory_order_relaxed);
  s.completions = impl_->served.load(std::memory_order_relaxed);
  s.internal_failures = impl_->internal_failures.load(std::memory_order_relaxed);
  s.internal_queue_peak = impl_->internal_peak.load(std::memory_order_relaxed);
  return s;
}

std::string CpuRingServer::last_internal_error() const {
  std::lock_guard lock(impl_->error_mutex);
  return impl_->last_internal_error;
}

}  // namespace gpubridge::compute::ring

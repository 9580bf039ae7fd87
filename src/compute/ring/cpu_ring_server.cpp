// CpuRingServer: one thread per shard standing in for the persistent kernel's blocks. Each follows
// the protocol in gpubridge/compute/ring.hpp exactly as a device block will: poll its shard's
// internal queue and request ring, serve one message at a time against its shard's actors, write a
// completion to its shard's completion ring, heartbeat every iteration.
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
#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::compute::ring {

using detail::load_acquire;
using detail::store_release;

namespace detail {

// One slot of a shard's internal queue: the Vyukov turn, whether the message was dropped (its
// handler failed after staging it), and the message.
struct InternalSlot {
  std::uint64_t turn;
  std::uint32_t dropped;
  std::uint32_t reserved;
  InternalMessage message;
};

// A shard's bounded internal queue: many producers (every shard's handlers), one consumer (its
// shard's thread). The ring protocol's turn scheme with any capacity (slot = position % capacity):
// a producer claims position p when the slot's turn is p (CAS on `enqueue`), writes the message and
// publishes turn = p + 1; the consumer reads at turn = p + 1 and frees with turn = p + capacity.
class InternalQueue {
 public:
  explicit InternalQueue(std::uint32_t capacity) : slots_(capacity), capacity_(capacity) {
    for (std::uint32_t i = 0; i < capacity; ++i) slots_[i].turn = i;
  }
  InternalQueue(const InternalQueue&) = delete;
  InternalQueue& operator=(const InternalQueue&) = delete;

  // A slot to write at `position`; nullptr when every slot is claimed or unread (full).
  InternalSlot* try_claim(std::uint64_t& position) {
    std::uint64_t pos = enqueue_.load(std::memory_order_relaxed);
    for (;;) {
      InternalSlot& slot = slots_[pos % capacity_];
      const auto lag = static_cast<std::int64_t>(load_acquire(slot.turn) - pos);
      if (lag == 0) {
        if (enqueue_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          position = pos;
          return &slot;
        }
      } else if (lag < 0) {
        return nullptr;
      } else {
        pos = enqueue_.load(std::memory_order_relaxed);
      }
    }
  }
  static void publish(InternalSlot& slot, std::uint64_t position, bool dropped) {
    slot.dropped = dropped ? 1u : 0u;
    store_release(slot.turn, position + 1);
  }
  // The next published slot (consumer only); nullptr when the next position is free or still
  // being written by its producer.
  InternalSlot* try_peek(std::uint64_t& position) {
    const std::uint64_t pos = dequeue_.load(std::memory_order_relaxed);
    InternalSlot& slot = slots_[pos % capacity_];
    if (load_acquire(slot.turn) != pos + 1) return nullptr;
    position = pos;
    return &slot;
  }
  void release(InternalSlot& slot, std::uint64_t position) {
    store_release(slot.turn, position + capacity_);
    dequeue_.store(position + 1, std::memory_order_release);
  }
  // Messages claimed and not yet consumed.
  std::uint64_t size() const {
    return enqueue_.load(std::memory_order_acquire) - dequeue_.load(std::memory_order_acquire);
  }
  std::uint32_t capacity() const { return static_cast<std::uint32_t>(capacity_); }

 private:
  std::vector<InternalSlot> slots_;
  std::uint64_t capacity_;
  alignas(kRegionAlignment) std::atomic<std::uint64_t> enqueue_{0};
  alignas(kRegionAlignment) std::atomic<std::uint64_t> dequeue_{0};
};

// Messages one handler staged (HandlerContext): claimed slots in their targets' internal queues,
// published when the handler returns success and published as dropped when it fails. Owned by one
// shard's thread.
struct Outbox {
  struct Claim {
    InternalQueue* queue;
    InternalSlot* slot;
    std::uint64_t position;
    std::uint32_t shard;  // the target's shard
  };
  std::vector<Claim> staged;
  std::vector<InternalQueue*>* queues = nullptr;  // every shard's queue, by shard
  std::atomic<std::int64_t>* in_flight = nullptr;  // the server's count of unfinished messages
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
  std::vector<detail::InternalQueue*>& queues = *outbox_.queues;
  const std::uint32_t shard = shard_of(actor_id, static_cast<std::uint32_t>(queues.size()));
  detail::InternalQueue& queue = *queues[shard];
  std::uint64_t position = 0;
  // A handler stages at most one queue's worth of messages (the CUDA kernel keeps that many claims).
  detail::InternalSlot* slot = outbox_.staged.size() < queue.capacity() ? queue.try_claim(position) : nullptr;
  if (slot == nullptr) {
    std::string text = "server-internal message queue full (" + std::to_string(queue.capacity()) + " slots)";
    if (queues.size() > 1) text += " on shard " + std::to_string(shard);
    return refuse(ErrorCode::resource_exhausted, std::move(text));
  }
  outbox_.in_flight->fetch_add(1, std::memory_order_seq_cst);
  outbox_.staged.push_back({&queue, slot, position, shard});
  InternalMessage& m = slot->message;
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
  // One shard: its rings, its internal queue, its thread's working state and its counters.
  struct Shard {
    std::uint32_t index = 0;
    detail::SlotQueue requests;
    detail::SlotQueue completions;
    detail::InternalQueue internal;
    detail::Outbox outbox;
    std::thread thread;
    alignas(kRegionAlignment) std::atomic<std::uint64_t> served{0};  // completions written
    std::atomic<std::uint64_t> host_messages{0};
    std::atomic<std::uint64_t> internal_served{0};
    std::atomic<std::uint64_t> internal_failures{0};
    std::atomic<std::uint64_t> internal_peak{0};

    Shard(const RingMemory& memory, std::uint32_t i, std::uint32_t queue_slots)
        : index(i), requests(detail::request_queue(memory, i)),
          completions(detail::completion_queue(memory, i)), internal(queue_slots) {}
  };

  RingMemory& memory;
  CpuRingServerOptions options;
  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<detail::InternalQueue*> queues;  // shards[i]->internal, for routing

  std::mutex table_mutex;  // guards `table`; a shard re-reads it when `table_generation` moves
  std::shared_ptr<const HandlerTable> table;
  std::atomic<std::uint64_t> table_generation{0};

  std::mutex lifecycle_mutex;  // start/wait
  bool started = false;
  std::atomic<bool> abandon{false};     // destructor: give up waiting for completion space
  std::atomic<bool> trapped{false};     // a handler trapped: every shard leaves at once
  std::atomic<bool> quiescent{false};   // drain/stop found nothing left anywhere: every shard ends
  std::atomic<std::uint32_t> running_shards{0};
  // Messages taken and not finished: host messages being served and device-side messages from
  // their claim until their consumer has finished them (dropped ones included). Zero with every
  // request ring empty means nothing is left to serve anywhere.
  std::atomic<std::int64_t> in_flight{0};
  mutable std::mutex error_mutex;
  std::string last_internal_error;

  Impl(RingMemory& m, HandlerTable handlers, CpuRingServerOptions o)
      : memory(m), options(o), table(std::make_shared<const HandlerTable>(std::move(handlers))) {
    const std::uint32_t count = m.shard_count();
    for (std::uint32_t i = 0; i < count; ++i) {
      shards.push_back(std::make_unique<Shard>(m, i, o.internal_queue_slots));
      queues.push_back(&shards.back()->internal);
    }
    for (auto& shard : shards) {
      shard->outbox.queues = &queues;
      shard->outbox.in_flight = &in_flight;
      shard->outbox.max_hops = o.max_hops;
    }
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

  Outcome serve(Shard& shard, const Envelope& env, std::span<const std::byte> payload,
                std::span<std::byte> reply_area, const HandlerTable& handlers) {
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
          prepare_outbox(shard.outbox, env);
          HandlerContext context(env.actor_id, env.hops, env.replies_to_host, state, payload,
                                 reply_area, shard.outbox);
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

  static void prepare_outbox(detail::Outbox& outbox, const Envelope& env) {
    outbox.next_hops = env.hops + 1;
    outbox.replies_to_host = env.replies_to_host;
    outbox.origin_request_id = env.request_id;
    outbox.origin_reply_offset = env.reply_offset;
    outbox.origin_reply_capacity = env.reply_capacity;
    outbox.origin_actor_id = env.origin_actor_id;
    outbox.origin_handler_id = env.origin_handler_id;
  }

  // Publishes the staged messages: as they are when the handler succeeded, dropped (skipped by
  // their consumers) when it failed. Each target queue's peak is raised first, while every claim
  // of this handler is still unconsumed.
  void publish_outbox(Shard& shard, bool commit) {
    detail::Outbox& outbox = shard.outbox;
    if (commit) {
      for (const detail::Outbox::Claim& claim : outbox.staged) {
        const std::uint64_t held = claim.queue->size();
        std::atomic<std::uint64_t>& peak = shards[claim.shard]->internal_peak;
        std::uint64_t seen = peak.load(std::memory_order_relaxed);
        while (held > seen && !peak.compare_exchange_weak(seen, held, std::memory_order_relaxed)) {
        }
      }
    }
    for (const detail::Outbox::Claim& claim : outbox.staged) {
      detail::InternalQueue::publish(*claim.slot, claim.position, !commit);
    }
    outbox.staged.clear();
  }

  bool stop_waiting() const {
    return abandon.load(std::memory_order_acquire) || trapped.load(std::memory_order_acquire);
  }

  // Waits for a free completion slot; nullptr when the server is abandoned or trapped meanwhile.
  RingSlot* claim_completion(Shard& shard, std::uint64_t& position) {
    for (std::uint32_t spins = 0;; ++spins) {
      if (RingSlot* slot = shard.completions.try_claim(position)) return slot;
      if (stop_waiting()) return nullptr;
      heartbeat(shard);
      if (spins < options.idle_spins) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(options.idle_sleep);
      }
    }
  }

  bool complete(Shard& shard, const Envelope& env, const Outcome& outcome,
                std::span<const std::byte> inline_reply) {
    std::uint64_t position = 0;
    RingSlot* slot = claim_completion(shard, position);
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
    shard.served.fetch_add(1, std::memory_order_relaxed);
    detail::SlotQueue::publish(*slot, position);
    return true;
  }

  // After a message ran (or was cancelled): publishes its handler's messages (dropped unless it
  // succeeded), then answers its host call unless it forwarded. False when the server is
  // abandoned or trapped.
  bool finish(Shard& shard, const Envelope& env, const Outcome& outcome, std::span<const std::byte> inline_reply) {
    publish_outbox(shard, outcome.code == ErrorCode::ok);
    if (outcome.code == ErrorCode::ok && outcome.forwarded) return true;
    if (env.replies_to_host) return complete(shard, env, outcome, inline_reply);
    if (outcome.code != ErrorCode::ok) {
      {
        std::lock_guard lock(error_mutex);
        last_internal_error = "actor " + std::to_string(env.actor_id) + " handler " +
                              std::to_string(env.handler_id) + ": " + outcome.message;
      }
      // Counted after the error is kept: a reader that sees the count (acquire) reads the error.
      shard.internal_failures.fetch_add(1, std::memory_order_release);
    }
    return true;
  }

  void heartbeat(Shard& shard) {
    std::atomic_ref<std::uint64_t>(memory.shard(shard.index).heartbeat).fetch_add(1, std::memory_order_release);
  }

  ControlWord control() const { return static_cast<ControlWord>(load_acquire(header().control)); }

  // True when nothing is left to serve anywhere: every request ring is empty (nothing queued or
  // being enqueued) and no message is being served or queued inside the server. A shard takes a
  // request (in_flight + 1) before it frees the request's slot, and a handler claims a device-side
  // message (in_flight + 1) before its own message is finished (in_flight - 1), so reading the rings
  // first and then in_flight cannot miss work that moves from one to the other.
  bool nothing_left() const {
    for (const auto& shard : shards) {
      if (!shard->requests.empty()) return false;
    }
    return in_flight.load(std::memory_order_seq_cst) == 0;
  }

  bool serve_host(Shard& shard, RingSlot& request, std::uint64_t position, ControlWord word,
                  std::span<std::byte, kInlinePayloadBytes> inline_reply, const HandlerTable& handlers) {
    in_flight.fetch_add(1, std::memory_order_seq_cst);  // before the slot is freed (nothing_left)
    Envelope env;
    env.actor_id = env.origin_actor_id = request.actor_id;
    env.handler_id = env.origin_handler_id = request.handler_id;
    env.replies_to_host = true;
    env.request_id = request.request_id;
    env.reply_offset = request.reply_offset;
    env.reply_capacity = request.reply_capacity;
    shard.outbox.staged.clear();
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
      if (valid) outcome = serve(shard, env, payload, reply_area, handlers);
    }
    // Free the request slot before completing: a caller that sees its reply may reuse it.
    shard.requests.release(request, position);
    shard.host_messages.fetch_add(1, std::memory_order_relaxed);
    const bool going = finish(shard, env, outcome, inline_reply);
    in_flight.fetch_sub(1, std::memory_order_seq_cst);
    return going;
  }

  bool serve_internal(Shard& shard, detail::InternalSlot& slot, std::uint64_t position, ControlWord word,
                      std::span<std::byte, kInlinePayloadBytes> inline_reply, const HandlerTable& handlers) {
    const InternalMessage message = slot.message;
    const bool dropped = slot.dropped != 0;
    shard.internal.release(slot, position);
    if (dropped) {  // its handler failed after staging it: it never runs
      in_flight.fetch_sub(1, std::memory_order_seq_cst);
      return true;
    }
    shard.internal_served.fetch_add(1, std::memory_order_relaxed);
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
    shard.outbox.staged.clear();
    Outcome outcome;
    std::span<std::byte> reply_area;
    if (word == ControlWord::stop) {
      outcome = failure(ErrorCode::cancelled, "ring server stopped before the message ran");
    } else if (!reply_area_for(env, inline_reply, reply_area)) {
      outcome = failure(ErrorCode::invalid_argument, "reply reference outside the pool");
    } else {
      const std::span<const std::byte> payload(message.payload,
                                               std::min<std::size_t>(message.payload_bytes, kInlinePayloadBytes));
      outcome = serve(shard, env, payload, reply_area, handlers);
    }
    const bool going = finish(shard, env, outcome, inline_reply);
    in_flight.fetch_sub(1, std::memory_order_seq_cst);
    return going;
  }

  // One shard's loop.
  void run(Shard& shard) {
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
        if (trapped.load(std::memory_order_acquire)) return;  // another shard trapped: die with it
        if (quiescent.load(std::memory_order_acquire)) break;
        heartbeat(shard);
        const ControlWord word = control();
        // Device-side messages first: on one shard a host message's whole chain runs before the next.
        std::uint64_t position = 0;
        if (detail::InternalSlot* message = shard.internal.try_peek(position)) {
          idle = 0;
          refresh_handlers();
          if (!serve_internal(shard, *message, position, word, inline_reply, *handlers)) break;
          continue;
        }
        RingSlot* request = shard.requests.try_peek(position);
        if (request == nullptr) {
          // drain/stop end once nothing is queued, being enqueued or in flight on any shard.
          if (word != ControlWord::run && nothing_left()) {
            quiescent.store(true, std::memory_order_release);
            break;
          }
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
        if (!serve_host(shard, *request, position, word, inline_reply, *handlers)) break;
      }
    } catch (const HandlerTrap&) {
      trapped.store(true, std::memory_order_release);
      return;  // a trap: no completion, no state change, no more heartbeats on any shard
    }
    if (trapped.load(std::memory_order_acquire)) return;
    // The last shard to leave says the server stopped: every completion was published before.
    if (running_shards.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      store_release(header().server_state, static_cast<std::uint32_t>(ServerState::stopped));
    }
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
  impl_->running_shards.store(static_cast<std::uint32_t>(impl_->shards.size()), std::memory_order_release);
  std::size_t shard_index = 0;
  for (auto& shard : impl_->shards) {
    shard->thread = named_thread("gb-ring-" + std::to_string(shard_index++),
                                 [impl = impl_.get(), s = shard.get()] { impl->run(*s); });
  }
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
  for (auto& shard : impl_->shards) {
    if (shard->thread.joinable()) shard->thread.join();
  }
}

void CpuRingServer::reload(HandlerTable handlers) {
  auto next = std::make_shared<const HandlerTable>(std::move(handlers));
  std::lock_guard lock(impl_->table_mutex);
  impl_->table = std::move(next);
  impl_->table_generation.fetch_add(1, std::memory_order_release);
}

std::uint64_t CpuRingServer::messages_served() const noexcept {
  std::uint64_t served = 0;
  for (const auto& shard : impl_->shards) served += shard->served.load(std::memory_order_relaxed);
  return served;
}

RingServerStats CpuRingServer::stats() const noexcept {
  RingServerStats s;
  for (const auto& shard : impl_->shards) {
    s.host_messages += shard->host_messages.load(std::memory_order_relaxed);
    s.internal_messages += shard->internal_served.load(std::memory_order_relaxed);
    s.completions += shard->served.load(std::memory_order_relaxed);
    s.internal_failures += shard->internal_failures.load(std::memory_order_acquire);
    s.internal_queue_peak = std::max(s.internal_queue_peak, shard->internal_peak.load(std::memory_order_relaxed));
  }
  return s;
}

std::string CpuRingServer::last_internal_error() const {
  std::lock_guard lock(impl_->error_mutex);
  return impl_->last_internal_error;
}

}  // namespace gpubridge::compute::ring

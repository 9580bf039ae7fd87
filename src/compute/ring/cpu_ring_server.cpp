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

#include "compute/ring/slot_queue.hpp"
#include "gpubridge/compute/ring.hpp"

namespace gpubridge::compute::ring {

using detail::load_acquire;
using detail::store_release;

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
  std::atomic<std::uint64_t> served{0};

  Impl(RingMemory& m, HandlerTable handlers, CpuRingServerOptions o)
      : memory(m), options(o), requests(detail::request_queue(m)),
        completions(detail::completion_queue(m)),
        table(std::make_shared<const HandlerTable>(std::move(handlers))) {}

  RingHeader& header() const { return memory.header(); }

  struct Outcome {
    ErrorCode code = ErrorCode::ok;
    std::string message;           // when code != ok
    std::size_t reply_bytes = 0;   // when ok
    bool reply_in_pool = false;
  };

  static Outcome failure(ErrorCode code, std::string message) {
    Outcome out;
    out.code = code;
    out.message = std::move(message);
    return out;
  }

  // A pool reference from a slot, checked against the pool's bounds; empty span when invalid.
  bool pool_span(std::uint64_t offset, std::uint64_t bytes, std::span<std::byte>& span) const {
    const RingHeader& h = header();
    const std::uint64_t pool_begin = h.pool_offset;
    const std::uint64_t pool_end = pool_begin + std::uint64_t{h.pool_chunk_bytes} * h.pool_chunk_count;
    if (offset < pool_begin || offset > pool_end || bytes > pool_end - offset) return false;
    span = std::span<std::byte>(memory.base() + offset, bytes);
    return true;
  }

  Outcome serve(RingSlot& request, std::span<std::byte, kInlinePayloadBytes> inline_reply,
                std::span<std::byte>& reply_area, const HandlerTable& handlers) {
    const RingHeader& h = header();
    // Input payload.
    std::span<const std::byte> payload;
    if (request.flags & kSlotPayloadInPool) {
      std::span<std::byte> in;
      if (!pool_span(request.payload_offset, request.payload_bytes, in)) {
        return failure(ErrorCode::invalid_argument, "payload reference outside the pool");
      }
      payload = in;
    } else {
      if (request.payload_bytes > kInlinePayloadBytes) {
        return failure(ErrorCode::invalid_argument, "inline payload longer than a slot holds");
      }
      payload = std::span<const std::byte>(request.inline_payload, request.payload_bytes);
    }
    // Reply area: a host-reserved pool block, or the inline buffer.
    if (request.reply_offset != 0) {
      if (!pool_span(request.reply_offset, request.reply_capacity, reply_area)) {
        return failure(ErrorCode::invalid_argument, "reply reference outside the pool");
      }
    } else {
      reply_area = inline_reply.first(std::min<std::size_t>(request.reply_capacity, kInlinePayloadBytes));
    }

    if (request.actor_id >= h.actor_count) {
      return failure(ErrorCode::not_found, "unknown actor id " + std::to_string(request.actor_id));
    }
    ActorEntry& actor = detail::actor_table(memory)[request.actor_id];
    std::span<std::byte> state(memory.base() + actor.state_offset, actor.state_bytes);
    const std::string actor_name = "actor " + std::to_string(request.actor_id);

    if (request.handler_id == kActivateHandler) {
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
    if (request.handler_id == kDeactivateHandler) {
      if (reply_area.size() < state.size()) {
        return failure(ErrorCode::invalid_argument, "reply capacity too small for " + actor_name + "'s state");
      }
      std::memcpy(reply_area.data(), state.data(), state.size());
      actor.active = 0;
      Outcome out;
      out.reply_bytes = state.size();
      out.reply_in_pool = request.reply_offset != 0;
      return out;
    }

    const HandlerSpec* handler = handlers.find(request.handler_id);
    if (handler == nullptr) {
      return failure(ErrorCode::not_found, "unknown handler id " + std::to_string(request.handler_id));
    }
    if (handler->actor_type != actor.type_id) {
      return failure(ErrorCode::invalid_argument,
                     "handler " + std::to_string(request.handler_id) + " serves actor type " +
                         std::to_string(handler->actor_type) + ", " + actor_name + " is of type " +
                         std::to_string(actor.type_id));
    }
    Result<std::size_t> written = [&]() -> Result<std::size_t> {
      try {
        return handler->fn(state, payload, reply_area);
      } catch (const SimulatedServerCrash&) {
        throw;
      } catch (const std::exception& e) {
        return Error(ErrorCode::internal, std::string("handler threw: ") + e.what());
      } catch (...) {
        return Error(ErrorCode::internal, "handler threw a non-standard exception");
      }
    }();
    if (!written) return failure(written.error().code(), written.error().to_string());
    if (*written > reply_area.size()) {
      return failure(ErrorCode::internal, "handler reported " + std::to_string(*written) +
                                              " reply bytes, more than the capacity " +
                                              std::to_string(reply_area.size()));
    }
    Outcome out;
    out.reply_bytes = *written;
    out.reply_in_pool = request.reply_offset != 0;
    return out;
  }

  // Waits for a free completion slot; false when the server is being abandoned.
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

  // `request` is a copy of the served request's header (its slot is already free).
  bool complete(const RingSlot& request, const Outcome& outcome,
                std::span<const std::byte> inline_reply) {
    std::uint64_t position = 0;
    RingSlot* slot = claim_completion(position);
    if (slot == nullptr) return false;
    slot->request_id = request.request_id;
    slot->actor_id = request.actor_id;
    slot->handler_id = request.handler_id;
    slot->status = static_cast<std::uint32_t>(outcome.code);
    slot->flags = 0;
    slot->payload_offset = 0;
    slot->reply_offset = 0;
    slot->reply_capacity = 0;
    if (outcome.code != ErrorCode::ok) {
      const std::size_t n = std::min(outcome.message.size(), kInlinePayloadBytes);
      std::memcpy(slot->inline_payload, outcome.message.data(), n);
      slot->payload_bytes = static_cast<std::uint32_t>(n);
    } else if (outcome.reply_in_pool) {
      slot->flags = kSlotPayloadInPool;
      slot->payload_offset = request.reply_offset;
      slot->payload_bytes = static_cast<std::uint32_t>(outcome.reply_bytes);
    } else {
      std::memcpy(slot->inline_payload, inline_reply.data(), outcome.reply_bytes);
      slot->payload_bytes = static_cast<std::uint32_t>(outcome.reply_bytes);
    }
    detail::SlotQueue::publish(*slot, position);
    served.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void heartbeat() {
    std::atomic_ref<std::uint64_t>(header().heartbeat).fetch_add(1, std::memory_order_release);
  }

  ControlWord control() const { return static_cast<ControlWord>(load_acquire(header().control)); }

  void run() {
    std::shared_ptr<const HandlerTable> handlers;
    std::uint64_t seen_generation = ~std::uint64_t{0};
    std::array<std::byte, kInlinePayloadBytes> inline_reply{};
    std::uint32_t idle = 0;
    try {
      for (;;) {
        heartbeat();
        const ControlWord word = control();
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
        if (const std::uint64_t g = table_generation.load(std::memory_order_acquire); g != seen_generation) {
          std::lock_guard lock(table_mutex);
          handlers = table;
          seen_generation = table_generation.load(std::memory_order_relaxed);
        }
        std::span<std::byte> reply_area;
        const Outcome outcome =
            word == ControlWord::stop
                ? failure(ErrorCode::cancelled, "ring server stopped before the message ran")
                : serve(*request, inline_reply, reply_area, *handlers);
        // Free the request slot before completing: a caller that sees its reply may reuse it.
        RingSlot served_request{};
        std::memcpy(&served_request, request, kSlotHeaderBytes);
        requests.release(*request, position);
        if (!complete(served_request, outcome, inline_reply)) break;
      }
    } catch (const SimulatedServerCrash&) {
      return;  // a dead kernel: no completion, no state change, no more heartbeats
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

}  // namespace gpubridge::compute::ring

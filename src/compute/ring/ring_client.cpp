// RingClient: host producers on the request ring of each actor's shard (lock-free claims), a
// host-side-locked pool of large-payload chunks, and one dispatcher thread that consumes every
// shard's completion ring in turn, correlates completions to pending calls by request_id and
// watches every shard's heartbeat.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "compute/ring/slot_queue.hpp"
#include "gpubridge/compute/ring.hpp"

namespace gpubridge::compute::ring {

using detail::load_acquire;
using Clock = std::chrono::steady_clock;

namespace {

// First-fit allocator of contiguous chunk runs; offsets are from the block base. Host side only.
class ChunkPool {
 public:
  explicit ChunkPool(const RingHeader& h)
      : pool_offset_(h.pool_offset), chunk_bytes_(h.pool_chunk_bytes), used_(h.pool_chunk_count, 0) {}

  struct Block {
    std::uint64_t offset = 0;  // 0: no block
    std::uint32_t chunks = 0;
  };

  // A block of at least `bytes`; offset 0 when no run of free chunks is long enough.
  Block allocate(std::size_t bytes) {
    const auto needed = static_cast<std::uint32_t>((bytes + chunk_bytes_ - 1) / chunk_bytes_);
    std::lock_guard lock(mutex_);
    std::uint32_t run = 0;
    for (std::uint32_t i = 0; i < used_.size(); ++i) {
      run = used_[i] ? 0 : run + 1;
      if (run == needed) {
        const std::uint32_t first = i + 1 - needed;
        std::fill_n(used_.begin() + first, needed, std::uint8_t{1});
        return Block{pool_offset_ + std::uint64_t{first} * chunk_bytes_, needed};
      }
    }
    return Block{};
  }
  void free(Block block) {
    if (block.offset == 0) return;
    const auto first = static_cast<std::uint32_t>((block.offset - pool_offset_) / chunk_bytes_);
    std::lock_guard lock(mutex_);
    std::fill_n(used_.begin() + first, block.chunks, std::uint8_t{0});
  }

 private:
  std::uint64_t pool_offset_;
  std::uint64_t chunk_bytes_;
  std::mutex mutex_;
  std::vector<std::uint8_t> used_;
};

Error ring_error(ErrorCode code, std::string message) {
  return Error(code, std::move(message), "ring client");
}

// Waits between retries: a few yields, then short sleeps.
void back_off(std::uint32_t attempt) {
  if (attempt < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(attempt < 1024 ? 20 : 200));
  }
}

}  // namespace

struct RingClient::Impl {
  RingMemory& memory;
  RingClientOptions options;
  std::uint32_t shard_count;
  std::vector<detail::SlotQueue> requests;     // by shard
  std::vector<detail::SlotQueue> completions;  // by shard
  ChunkPool pool;
  std::atomic<std::uint64_t> next_request_id{1};

  struct Pending {
    ReplyCallback callback;
    ChunkPool::Block payload_block;
    ChunkPool::Block reply_block;
    std::uint32_t reply_capacity = 0;
  };
  mutable std::mutex pending_mutex;
  std::unordered_map<std::uint64_t, Pending> pending;

  std::mutex actors_mutex;
  std::vector<std::uint8_t> actor_in_use;  // by actor id

  std::atomic<bool> closing{false};
  std::atomic<bool> dead{false};
  std::thread dispatcher;

  Impl(RingMemory& m, RingClientOptions o)
      : memory(m), options(o), shard_count(m.shard_count()), pool(m.header()),
        actor_in_use(m.header().actor_count, 0) {
    for (std::uint32_t s = 0; s < shard_count; ++s) {
      requests.push_back(detail::request_queue(m, s));
      completions.push_back(detail::completion_queue(m, s));
    }
  }

  RingHeader& header() const { return memory.header(); }
  ServerState server_state() const { return static_cast<ServerState>(load_acquire(header().server_state)); }
  ControlWord control() const { return static_cast<ControlWord>(load_acquire(header().control)); }

  // Why a new message cannot be accepted now, if it cannot.
  std::optional<Error> refusal() const {
    if (dead.load(std::memory_order_acquire)) {
      return ring_error(ErrorCode::unavailable, "ring server dead (no heartbeat)");
    }
    if (closing.load(std::memory_order_acquire)) {
      return ring_error(ErrorCode::cancelled, "ring client closing");
    }
    if (control() != ControlWord::run || server_state() == ServerState::stopped) {
      return ring_error(ErrorCode::unavailable,
                        "ring server is stopping or stopped; not accepting messages");
    }
    return std::nullopt;
  }

  Status enqueue(std::uint32_t actor_id, std::uint32_t handler_id, std::span<const std::byte> payload,
                 std::optional<Clock::time_point> deadline, std::uint32_t reply_capacity,
                 ReplyCallback callback) {
    const std::size_t limit = memory.max_payload_bytes();
    if (payload.size() > limit) {
      return ring_error(ErrorCode::invalid_argument,
                        "payload of " + std::to_string(payload.size()) +
                            " bytes exceeds the ring's largest payload of " + std::to_string(limit) + " bytes");
    }
    if (reply_capacity > limit) {
      return ring_error(ErrorCode::invalid_argument,
                        "reply capacity of " + std::to_string(reply_capacity) +
                            " bytes exceeds the ring's largest payload of " + std::to_string(limit) + " bytes");
    }
    if (auto why = refusal()) return *why;

    // Pool blocks first: a claimed slot must never wait on anything (the server is waiting on it).
    ChunkPool::Block payload_block;
    ChunkPool::Block reply_block;
    auto release_blocks = [&] {
      pool.free(payload_block);
      pool.free(reply_block);
    };
    for (std::uint32_t attempt = 0;; ++attempt) {
      if (payload.size() > kInlinePayloadBytes && payload_block.offset == 0) {
        payload_block = pool.allocate(payload.size());
      }
      if (reply_capacity > kInlinePayloadBytes && reply_block.offset == 0) {
        reply_block = pool.allocate(reply_capacity);
      }
      const bool have_payload = payload.size() <= kInlinePayloadBytes || payload_block.offset != 0;
      const bool have_reply = reply_capacity <= kInlinePayloadBytes || reply_block.offset != 0;
      if (have_payload && have_reply) break;
      // Give back a partial allocation so two waiting senders cannot starve each other.
      release_blocks();
      payload_block = {};
      reply_block = {};
      if (!deadline) return ring_error(ErrorCode::resource_exhausted, "payload pool exhausted");
      if (auto why = refusal()) return *why;
      if (Clock::now() >= *deadline) {
        return ring_error(ErrorCode::deadline_exceeded, "deadline passed waiting for payload pool space");
      }
      back_off(attempt);
    }

    std::uint64_t position = 0;
    RingSlot* slot = nullptr;
    detail::SlotQueue& ring = requests[shard_of(actor_id, shard_count)];
    for (std::uint32_t attempt = 0;; ++attempt) {
      slot = ring.try_claim(position);
      if (slot != nullptr) break;
      if (!deadline) {
        release_blocks();
        return ring_error(ErrorCode::resource_exhausted, "ring full");
      }
      if (auto why = refusal()) {
        release_blocks();
        return *why;
      }
      if (Clock::now() >= *deadline) {
        release_blocks();
        return ring_error(ErrorCode::deadline_exceeded, "deadline passed waiting for a free ring slot");
      }
      back_off(attempt);
    }

    // The slot is ours and invisible to the server until published: register, fill, publish.
    const std::uint64_t request_id = next_request_id.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(pending_mutex);
      pending.emplace(request_id, Pending{std::move(callback), payload_block, reply_block, reply_capacity});
    }
    slot->request_id = request_id;
    slot->actor_id = actor_id;
    slot->handler_id = handler_id;
    slot->payload_bytes = static_cast<std::uint32_t>(payload.size());
    slot->reply_capacity = reply_capacity;
    slot->reply_offset = reply_block.offset;
    slot->status = 0;
    if (payload_block.offset != 0) {
      slot->flags = kSlotPayloadInPool;
      slot->payload_offset = payload_block.offset;
      if (!payload.empty()) std::memcpy(memory.base() + payload_block.offset, payload.data(), payload.size());
    } else {
      slot->flags = 0;
      slot->payload_offset = 0;
      if (!payload.empty()) std::memcpy(slot->inline_payload, payload.data(), payload.size());
    }
    detail::SlotQueue::publish(*slot, position);
    return {};
  }

  // Reads one completion into a reply for its pending call.
  Result<Reply> read_completion(const RingSlot& slot, const Pending& call) const {
    const auto code = static_cast<ErrorCode>(slot.status);
    if (code != ErrorCode::ok) {
      const std::size_t n = std::min<std::size_t>(slot.payload_bytes, kInlinePayloadBytes);
      return Error(code, std::string(reinterpret_cast<const char*>(slot.inline_payload), n), "ring server");
    }
    if (slot.payload_bytes > call.reply_capacity) {
      return ring_error(ErrorCode::internal, "malformed completion: reply longer than its capacity");
    }
    const std::byte* source = slot.inline_payload;
    if (slot.flags & kSlotPayloadInPool) {
      if (slot.payload_offset != call.reply_block.offset || call.reply_block.offset == 0) {
        return ring_error(ErrorCode::internal, "malformed completion: reply outside its reply block");
      }
      source = memory.base() + slot.payload_offset;
    } else if (slot.payload_bytes > kInlinePayloadBytes) {
      return ring_error(ErrorCode::internal, "malformed completion: inline reply longer than a slot");
    }
    return Reply(source, source + slot.payload_bytes);
  }

  // Fails every pending call; frees their pool blocks unless the server may still touch them.
  void fail_all(const Error& error, bool free_blocks) {
    std::unordered_map<std::uint64_t, Pending> failed;
    {
      std::lock_guard lock(pending_mutex);
      failed.swap(pending);
    }
    for (auto& [id, call] : failed) {
      if (free_blocks) {
        pool.free(call.payload_block);
        pool.free(call.reply_block);
      }
      call.callback(error);
    }
  }

  // Consumes up to `limit` completions of one shard's ring; returns how many.
  std::uint32_t dispatch_shard(std::uint32_t shard, std::uint32_t limit) {
    detail::SlotQueue& ring = completions[shard];
    std::uint32_t taken = 0;
    for (; taken < limit; ++taken) {
      std::uint64_t position = 0;
      RingSlot* slot = ring.try_peek(position);
      if (slot == nullptr) break;
      std::optional<Pending> call;
      {
        std::lock_guard lock(pending_mutex);
        if (auto it = pending.find(slot->request_id); it != pending.end()) {
          call = std::move(it->second);
          pending.erase(it);
        }
      }
      if (!call) {  // its caller was already failed (client closing); nothing to deliver
        ring.release(*slot, position);
        continue;
      }
      Result<Reply> reply = read_completion(*slot, *call);
      ring.release(*slot, position);
      pool.free(call->payload_block);
      pool.free(call->reply_block);
      call->callback(std::move(reply));
    }
    return taken;
  }

  // One pass over every shard's completion ring (round robin, up to a batch each); how many were
  // taken.
  std::uint32_t dispatch_pass() {
    constexpr std::uint32_t kBatchPerShard = 64;
    std::uint32_t taken = 0;
    for (std::uint32_t s = 0; s < shard_count; ++s) taken += dispatch_shard(s, kBatchPerShard);
    return taken;
  }

  void run_dispatcher() {
    // Watchdog: each shard's last heartbeat and when it last moved.
    std::vector<std::uint64_t> last_heartbeat(shard_count);
    std::vector<Clock::time_point> last_change(shard_count, Clock::now());
    for (std::uint32_t s = 0; s < shard_count; ++s) last_heartbeat[s] = load_acquire(memory.shard(s).heartbeat);
    std::uint32_t idle = 0;
    while (!closing.load(std::memory_order_acquire)) {
      if (dispatch_pass() > 0) {
        idle = 0;
        continue;
      }
      const ServerState state = server_state();
      const ControlWord word = control();
      const bool never_runs = state == ServerState::not_started && word == ControlWord::stop;
      if (state == ServerState::stopped || never_runs) {
        // Every completion was published before `stopped`: drain them, then fail the rest.
        while (dispatch_pass() > 0) {
        }
        if (pending_calls() > 0) {
          fail_all(ring_error(ErrorCode::cancelled, "ring server stopped before the message ran"), true);
        }
      } else if (state == ServerState::running && !dead.load(std::memory_order_relaxed)) {
        // While calls are pending every shard must beat: a forward chain may complete on any shard.
        const bool waiting = pending_calls() > 0;
        const Clock::time_point now = Clock::now();
        for (std::uint32_t s = 0; s < shard_count; ++s) {
          const std::uint64_t beat = load_acquire(memory.shard(s).heartbeat);
          if (beat != last_heartbeat[s] || !waiting) {
            last_heartbeat[s] = beat;
            last_change[s] = now;
          } else if (now - last_change[s] > options.dead_after) {
            dead.store(true, std::memory_order_release);
            std::string why = "ring server dead: no heartbeat for " + std::to_string(options.dead_after.count()) + " ms";
            if (shard_count > 1) why += " on shard " + std::to_string(s);
            fail_all(ring_error(ErrorCode::unavailable, why), /*free_blocks=*/false);  // a hung server could still write into them
            break;
          }
        }
      }
      if (dead.load(std::memory_order_relaxed) && pending_calls() > 0) {
        fail_all(ring_error(ErrorCode::unavailable, "ring server dead (no heartbeat)"), false);
      }
      back_off(++idle);
    }
  }

  // Actor ids: reserve a free id of a type (checking the initial state's size), free one, or
  // check that one is in use by this client.
  Result<std::uint32_t> reserve_actor(std::uint32_t type_id, std::size_t initial_bytes);
  void set_actor_in_use(std::uint32_t actor_id, bool in_use);
  Status check_active(std::uint32_t actor_id);

  std::size_t pending_calls() const {
    std::lock_guard lock(pending_mutex);
    return pending.size();
  }

  Result<Reply> call_and_wait(std::uint32_t actor_id, std::uint32_t handler_id,
                              std::span<const std::byte> payload, Clock::time_point deadline,
                              std::uint32_t reply_capacity) {
    auto promise = std::make_shared<std::promise<Result<Reply>>>();
    std::future<Result<Reply>> future = promise->get_future();
    if (auto s = enqueue(actor_id, handler_id, payload, deadline, reply_capacity,
                         [promise](Result<Reply> r) { promise->set_value(std::move(r)); });
        !s) {
      return s.error();
    }
    return future.get();
  }
};

Result<std::unique_ptr<RingClient>> RingClient::create(RingMemory& memory, RingClientOptions options) {
  const RingHeader& h = memory.header();
  if (h.magic != kRingMagic || h.version != kRingVersion) {
    return ring_error(ErrorCode::invalid_argument,
                      "memory block is not a ring block of version " + std::to_string(kRingVersion));
  }
  if (options.dead_after.count() <= 0) {
    return ring_error(ErrorCode::invalid_argument, "dead_after must be positive");
  }
  auto impl = std::make_unique<Impl>(memory, options);
  impl->dispatcher = std::thread([raw = impl.get()] { raw->run_dispatcher(); });
  return std::unique_ptr<RingClient>(new RingClient(std::move(impl)));
}

RingClient::RingClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RingClient::~RingClient() {
  impl_->closing.store(true, std::memory_order_release);
  impl_->dispatcher.join();
  // The server may still serve these; their blocks stay reserved (the block dies with RingMemory).
  impl_->fail_all(ring_error(ErrorCode::cancelled, "ring client closed"), false);
}

Result<std::future<Result<Reply>>> RingClient::try_send(std::uint32_t actor_id, std::uint32_t handler_id,
                                                        std::span<const std::byte> payload,
                                                        SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  auto promise = std::make_shared<std::promise<Result<Reply>>>();
  std::future<Result<Reply>> future = promise->get_future();
  if (auto s = impl_->enqueue(actor_id, handler_id, payload, std::nullopt, options.reply_capacity,
                              [promise](Result<Reply> r) { promise->set_value(std::move(r)); });
      !s) {
    return s.error();
  }
  return future;
}

Result<std::future<Result<Reply>>> RingClient::send(std::uint32_t actor_id, std::uint32_t handler_id,
                                                    std::span<const std::byte> payload,
                                                    Clock::time_point deadline, SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  auto promise = std::make_shared<std::promise<Result<Reply>>>();
  std::future<Result<Reply>> future = promise->get_future();
  if (auto s = impl_->enqueue(actor_id, handler_id, payload, deadline, options.reply_capacity,
                              [promise](Result<Reply> r) { promise->set_value(std::move(r)); });
      !s) {
    return s.error();
  }
  return future;
}

Status RingClient::send_async(std::uint32_t actor_id, std::uint32_t handler_id,
                              std::span<const std::byte> payload, Clock::time_point deadline,
                              ReplyCallback callback, SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  if (!callback) return ring_error(ErrorCode::invalid_argument, "send_async needs a callback");
  return impl_->enqueue(actor_id, handler_id, payload, deadline, options.reply_capacity, std::move(callback));
}

Status RingClient::try_send_async(std::uint32_t actor_id, std::uint32_t handler_id,
                                  std::span<const std::byte> payload, ReplyCallback callback,
                                  SendOptions options) {
  if (handler_id >= kFirstReservedHandler) {
    return ring_error(ErrorCode::invalid_argument, "handler id " + std::to_string(handler_id) + " is reserved");
  }
  if (!callback) return ring_error(ErrorCode::invalid_argument, "try_send_async needs a callback");
  return impl_->enqueue(actor_id, handler_id, payload, std::nullopt, options.reply_capacity, std::move(callback));
}

Result<std::uint32_t> RingClient::Impl::reserve_actor(std::uint32_t type_id, std::size_t initial_bytes) {
  const ActorEntry* table = detail::actor_table(memory);
  const std::uint32_t count = header().actor_count;
  bool type_known = false;
  std::lock_guard lock(actors_mutex);
  for (std::uint32_t id = 0; id < count; ++id) {
    if (table[id].type_id != type_id) continue;
    type_known = true;
    if (initial_bytes > table[id].state_bytes) {
      return ring_error(ErrorCode::invalid_argument,
                        "initial state of " + std::to_string(initial_bytes) + " bytes exceeds actor type " +
                            std::to_string(type_id) + "'s state size " + std::to_string(table[id].state_bytes));
    }
    if (actor_in_use[id] == 0) {
      actor_in_use[id] = 1;
      return id;
    }
  }
  if (!type_known) return ring_error(ErrorCode::not_found, "unknown actor type " + std::to_string(type_id));
  return ring_error(ErrorCode::resource_exhausted,
                    "every actor id of type " + std::to_string(type_id) + " is in use");
}

void RingClient::Impl::set_actor_in_use(std::uint32_t actor_id, bool in_use) {
  std::lock_guard lock(actors_mutex);
  actor_in_use[actor_id] = in_use ? 1 : 0;
}

Status RingClient::Impl::check_active(std::uint32_t actor_id) {
  if (actor_id >= header().actor_count) {
    return ring_error(ErrorCode::not_found, "unknown actor id " + std::to_string(actor_id));
  }
  std::lock_guard lock(actors_mutex);
  if (actor_in_use[actor_id] == 0) {
    return ring_error(ErrorCode::failed_precondition, "actor " + std::to_string(actor_id) + " is not active");
  }
  return {};
}

Result<std::uint32_t> RingClient::activate(std::uint32_t type_id, std::span<const std::byte> initial_state,
                                           Clock::time_point deadline) {
  Result<std::uint32_t> picked = impl_->reserve_actor(type_id, initial_state.size());
  if (!picked) return picked.error();
  Result<Reply> done = impl_->call_and_wait(*picked, kActivateHandler, initial_state, deadline, 0);
  if (!done) {
    impl_->set_actor_in_use(*picked, false);
    return done.error();
  }
  return *picked;
}

Status RingClient::try_activate_async(std::uint32_t type_id, std::span<const std::byte> initial_state,
                                      std::function<void(Result<std::uint32_t>)> callback) {
  if (!callback) return ring_error(ErrorCode::invalid_argument, "try_activate_async needs a callback");
  Result<std::uint32_t> picked = impl_->reserve_actor(type_id, initial_state.size());
  if (!picked) return picked.error();
  const std::uint32_t id = *picked;
  Impl* impl = impl_.get();
  Status queued = impl->enqueue(id, kActivateHandler, initial_state, std::nullopt, 0,
                                [impl, id, callback](Result<Reply> done) {
                                  if (!done) {
                                    impl->set_actor_in_use(id, false);
                                    callback(done.error());
                                    return;
                                  }
                                  callback(id);
                                });
  if (!queued) impl->set_actor_in_use(id, false);
  return queued;
}

Result<Reply> RingClient::deactivate(std::uint32_t actor_id, Clock::time_point deadline) {
  if (Status s = impl_->check_active(actor_id); !s) return s.error();
  const std::uint32_t state_bytes = detail::actor_table(impl_->memory)[actor_id].state_bytes;
  Result<Reply> state = impl_->call_and_wait(actor_id, kDeactivateHandler, {}, deadline, state_bytes);
  if (state) impl_->set_actor_in_use(actor_id, false);
  return state;
}

Status RingClient::try_deactivate_async(std::uint32_t actor_id, ReplyCallback callback) {
  if (!callback) return ring_error(ErrorCode::invalid_argument, "try_deactivate_async needs a callback");
  if (Status s = impl_->check_active(actor_id); !s) return s;
  const std::uint32_t state_bytes = detail::actor_table(impl_->memory)[actor_id].state_bytes;
  Impl* impl = impl_.get();
  return impl->enqueue(actor_id, kDeactivateHandler, {}, std::nullopt, state_bytes,
                       [impl, actor_id, callback](Result<Reply> state) {
                         if (state) impl->set_actor_in_use(actor_id, false);
                         callback(std::move(state));
                       });
}

std::size_t RingClient::pending_calls() const { return impl_->pending_calls(); }

}  // namespace gpubridge::compute::ring

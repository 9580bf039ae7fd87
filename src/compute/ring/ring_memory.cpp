// The shared block of the ring protocol: validation of the geometry, layout and initialisation,
// and the handler table.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <unordered_set>
#include <vector>

#include "compute/ring/slot_queue.hpp"
#include "gpubridge/compute/ring.hpp"

namespace gpubridge::compute::ring {
namespace {

constexpr std::size_t align_up(std::size_t value, std::size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

bool is_power_of_two(std::uint32_t value) { return value != 0 && (value & (value - 1)) == 0; }

Status validate_ring_size(std::uint32_t slots, const char* which) {
  if (slots == 0) {
    return Error(ErrorCode::invalid_argument,
                 std::string("zero-sized ring: ") + which + " must be at least 2", "ring config");
  }
  if (!is_power_of_two(slots) || slots < 2 || slots > kMaxRingSlots) {
    return Error(ErrorCode::invalid_argument,
                 std::string(which) + " = " + std::to_string(slots) +
                     " is not a power of two in [2, " + std::to_string(kMaxRingSlots) + "]",
                 "ring config");
  }
  return {};
}

Status validate(const RingConfig& config) {
  if (config.shards == 0 || config.shards > kMaxShards) {
    return Error(ErrorCode::invalid_argument,
                 "shards = " + std::to_string(config.shards) + " is outside 1.." + std::to_string(kMaxShards),
                 "ring config");
  }
  if (auto s = validate_ring_size(config.request_slots, "request_slots"); !s) return s;
  if (auto s = validate_ring_size(config.completion_slots, "completion_slots"); !s) return s;
  if (config.pool_chunks > 0 &&
      (config.pool_chunk_bytes == 0 || config.pool_chunk_bytes % kRegionAlignment != 0)) {
    return Error(ErrorCode::invalid_argument,
                 "pool_chunk_bytes = " + std::to_string(config.pool_chunk_bytes) +
                     " must be a non-zero multiple of 64",
                 "ring config");
  }
  std::unordered_set<std::uint32_t> type_ids;
  std::uint64_t actors = 0;
  for (const ActorTypeConfig& type : config.actor_types) {
    if (!type_ids.insert(type.type_id).second) {
      return Error(ErrorCode::invalid_argument,
                   "duplicate actor type id " + std::to_string(type.type_id), "ring config");
    }
    if (type.state_bytes == 0) {
      return Error(ErrorCode::invalid_argument,
                   "actor type " + std::to_string(type.type_id) + " has a zero state size",
                   "ring config");
    }
    actors += type.max_actors;
  }
  if (actors > 0xFFFFFFFFull) {
    return Error(ErrorCode::invalid_argument, "more than 2^32-1 actors", "ring config");
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<RingMemory>> RingMemory::create(const RingConfig& config) {
  if (auto s = validate(config); !s) return s.error();

  std::uint64_t actor_count = 0;
  for (const ActorTypeConfig& type : config.actor_types) actor_count += type.max_actors;

  std::size_t offset = align_up(sizeof(RingHeader), kRegionAlignment);
  const std::size_t shard_table_offset = offset;
  offset += std::size_t{config.shards} * sizeof(RingShardHeader);
  std::vector<std::size_t> request_slots_offsets(config.shards);
  std::vector<std::size_t> completion_slots_offsets(config.shards);
  for (std::uint32_t s = 0; s < config.shards; ++s) {
    request_slots_offsets[s] = offset;
    offset += std::size_t{config.request_slots} * kSlotBytes;
    completion_slots_offsets[s] = offset;
    offset += std::size_t{config.completion_slots} * kSlotBytes;
  }
  const std::size_t actor_table_offset = offset;
  offset = align_up(offset + actor_count * sizeof(ActorEntry), kRegionAlignment);
  const std::size_t states_offset = offset;
  for (const ActorTypeConfig& type : config.actor_types) {
    offset += std::size_t{type.max_actors} * align_up(type.state_bytes, kRegionAlignment);
  }
  const std::size_t pool_offset = offset;
  offset += std::size_t{config.pool_chunks} * config.pool_chunk_bytes;
  const std::size_t total = align_up(offset, kRegionAlignment);

  // Whole pages of its own: a GPU server pins the block (cudaHostRegister), which fails for a
  // page another registered block already holds.
  constexpr std::size_t kPage = 4096;
  const std::size_t allocated = align_up(total, kPage);
  void* raw = std::aligned_alloc(kPage, allocated);
  if (raw == nullptr) {
    return Error(ErrorCode::resource_exhausted,
                 "cannot allocate a ring block of " + std::to_string(total) + " bytes", "ring");
  }
  auto* base = static_cast<std::byte*>(raw);
  std::memset(base, 0, allocated);

  auto* header = new (base) RingHeader{};
  header->magic = kRingMagic;
  header->version = kRingVersion;
  header->request_capacity = config.request_slots;
  header->completion_capacity = config.completion_slots;
  header->shard_count = config.shards;
  header->shard_table_offset = shard_table_offset;
  header->actor_table_offset = actor_table_offset;
  header->pool_offset = pool_offset;
  header->pool_chunk_bytes = config.pool_chunks > 0 ? config.pool_chunk_bytes : 0;
  header->pool_chunk_count = config.pool_chunks;
  header->actor_count = static_cast<std::uint32_t>(actor_count);
  header->total_bytes = total;
  header->server_state = static_cast<std::uint32_t>(ServerState::not_started);
  header->control = static_cast<std::uint32_t>(ControlWord::run);

  auto init_slots = [&](std::size_t slots_offset, std::uint32_t count) {
    auto* slots = reinterpret_cast<RingSlot*>(base + slots_offset);
    for (std::uint32_t i = 0; i < count; ++i) {
      RingSlot* slot = new (&slots[i]) RingSlot{};
      slot->turn = i;
    }
  };
  auto* shards = reinterpret_cast<RingShardHeader*>(base + shard_table_offset);
  for (std::uint32_t s = 0; s < config.shards; ++s) {
    RingShardHeader* shard = new (&shards[s]) RingShardHeader{};
    shard->request_slots_offset = request_slots_offsets[s];
    shard->completion_slots_offset = completion_slots_offsets[s];
    init_slots(request_slots_offsets[s], config.request_slots);
    init_slots(completion_slots_offsets[s], config.completion_slots);
  }

  auto* actors = reinterpret_cast<ActorEntry*>(base + actor_table_offset);
  std::size_t state_offset = states_offset;
  std::uint32_t actor_id = 0;
  for (const ActorTypeConfig& type : config.actor_types) {
    for (std::uint32_t i = 0; i < type.max_actors; ++i, ++actor_id) {
      ActorEntry* entry = new (&actors[actor_id]) ActorEntry{};
      entry->state_offset = state_offset;
      entry->state_bytes = type.state_bytes;
      entry->type_id = type.type_id;
      state_offset += align_up(type.state_bytes, kRegionAlignment);
    }
  }
  // Other threads see this initialisation through the handoff that gives them the block (a thread
  // start, a mutex, or for a device the launch that follows).
  return std::unique_ptr<RingMemory>(new RingMemory(base, total, config));
}

RingMemory::~RingMemory() { std::free(base_); }

std::size_t RingMemory::max_payload_bytes() const noexcept {
  const RingHeader& h = header();
  return std::max<std::size_t>(kInlinePayloadBytes,
                               std::size_t{h.pool_chunk_bytes} * h.pool_chunk_count);
}

Status HandlerTable::add(HandlerSpec spec) {
  if (spec.handler_id >= kFirstReservedHandler) {
    return Error(ErrorCode::invalid_argument,
                 "handler id " + std::to_string(spec.handler_id) + " is reserved by the protocol",
                 "handler table");
  }
  if (!spec.fn && !spec.messaging_fn) {
    return Error(ErrorCode::invalid_argument,
                 "handler " + std::to_string(spec.handler_id) + " has no function",
                 "handler table");
  }
  if (spec.fn && spec.messaging_fn) {
    return Error(ErrorCode::invalid_argument,
                 "handler " + std::to_string(spec.handler_id) +
                     " has both a plain and a messaging function; set one",
                 "handler table");
  }
  auto at = std::lower_bound(handlers_.begin(), handlers_.end(), spec.handler_id,
                             [](const HandlerSpec& h, std::uint32_t id) { return h.handler_id < id; });
  if (at != handlers_.end() && at->handler_id == spec.handler_id) {
    return Error(ErrorCode::already_exists,
                 "handler id " + std::to_string(spec.handler_id) + " is already registered",
                 "handler table");
  }
  handlers_.insert(at, std::move(spec));
  return {};
}

const HandlerSpec* HandlerTable::find(std::uint32_t handler_id) const noexcept {
  auto at = std::lower_bound(handlers_.begin(), handlers_.end(), handler_id,
                             [](const HandlerSpec& h, std::uint32_t id) { return h.handler_id < id; });
  return at != handlers_.end() && at->handler_id == handler_id ? &*at : nullptr;
}

}  // namespace gpubridge::compute::ring

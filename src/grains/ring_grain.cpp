#include "gpubridge/grains/ring_grain.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gpubridge/grains/gpu_services.hpp"

namespace gpubridge::grains {

namespace ring = compute::ring;

std::string_view to_string(RingPlacement placement) noexcept {
  switch (placement) {
    case RingPlacement::automatic: return "auto";
    case RingPlacement::cpu: return "cpu";
    case RingPlacement::cuda: return "cuda";
  }
  return "auto";
}

std::optional<RingPlacement> parse_ring_placement(std::string_view text) noexcept {
  if (text == "auto") return RingPlacement::automatic;
  if (text == "cpu") return RingPlacement::cpu;
  if (text == "cuda") return RingPlacement::cuda;
  return std::nullopt;
}

std::string_view to_string(RingBackend backend) noexcept {
  return backend == RingBackend::cuda ? "cuda" : "cpu";
}

Status validate_ring_program(const RingProgram& program) {
  auto invalid = [](std::string message) { return Error(ErrorCode::invalid_argument, "ring program: " + std::move(message)); };
  if (program.actor_types.empty()) return invalid("no actor types");
  std::set<std::string> names;
  std::set<std::uint32_t> type_ids;
  for (const RingActorType& t : program.actor_types) {
    const std::string label = "actor type " + std::to_string(t.type_id);
    if (t.name.empty()) return invalid(label + " has no name");
    if (!names.insert(t.name).second) return invalid("actor type name '" + t.name + "' is used twice");
    if (!type_ids.insert(t.type_id).second) return invalid(label + " is declared twice");
    if (t.state_bytes == 0) return invalid("actor type '" + t.name + "': state_bytes must be > 0");
    if (t.max_actors == 0) return invalid("actor type '" + t.name + "': max_actors must be > 0");
  }
  if (program.cuda_handlers) {
    std::set<std::uint32_t> cuda_ids;
    for (const ring::CudaHandler& h : program.cuda_handlers->handlers) {
      const std::string label = "CUDA handler " + std::to_string(h.handler_id);
      if (!cuda_ids.insert(h.handler_id).second) return invalid(label + " is registered twice");
      const ring::HandlerSpec* cpu = program.cpu_handlers.find(h.handler_id);
      if (cpu == nullptr) return invalid(label + " has no CPU handler of the same id");
      if (cpu->actor_type != h.actor_type) {
        return invalid(label + " serves actor type " + std::to_string(h.actor_type) + ", its CPU handler type " +
                       std::to_string(cpu->actor_type));
      }
      if (type_ids.count(h.actor_type) == 0) {
        return invalid(label + " serves actor type " + std::to_string(h.actor_type) + ", which the program does not declare");
      }
    }
    if (cuda_ids.size() != program.cpu_handlers.size()) {
      return invalid(std::to_string(program.cpu_handlers.size() - cuda_ids.size()) +
                     " CPU handler(s) have no CUDA handler of the same id (the two must serve the same ids)");
    }
  }
  return {};
}

namespace {

template <typename T>
T load_acquire(T& word) {
  return std::atomic_ref<T>(word).load(std::memory_order_acquire);
}

using TypeShape = std::vector<std::pair<std::uint32_t, std::uint32_t>>;  // (type id, state bytes), sorted

TypeShape shape_of(const std::vector<RingActorType>& types) {
  TypeShape shape;
  for (const RingActorType& t : types) shape.emplace_back(t.type_id, t.state_bytes);
  std::sort(shape.begin(), shape.end());
  return shape;
}

}  // namespace

Result<std::unique_ptr<RingHost>> RingHost::create(RingHostOptions options, RingProgram program) {
  const std::string where = "ring '" + options.name + "'";
  if (Status s = validate_ring_program(program); !s) return s.error().with_context(where);
  if (!options.ring.actor_types.empty()) {
    return Error(ErrorCode::invalid_argument,
                 "RingHostOptions::ring.actor_types must be empty: the ring's actor types come from its program", where);
  }
  for (const RingActorType& t : program.actor_types) {
    options.ring.actor_types.push_back({t.type_id, t.state_bytes, t.max_actors});
  }
  std::unique_ptr<RingHost> host(new RingHost());
  host->name_ = options.name;
  host->actor_types_ = program.actor_types;
  RingHostPlacement& placed = host->placement_;
  placed.requested = options.placement;

  // Geometry errors are the caller's, wherever the ring would run: report them before placing.
  auto memory = ring::RingMemory::create(options.ring);
  if (!memory) return memory.error().with_context(where);
  host->memory_ = std::move(memory).value();

  if (options.placement != RingPlacement::cpu) {
    std::string reason, detail;
    if (!options.cuda_enabled) {
      reason = kRingReasonDisabled;
      detail = "CUDA is disabled by configuration";
    } else if (!program.cuda_handlers) {
      reason = kRingReasonHandlersMissing;
      detail = "the program has no CUDA handlers";
    }
    if (!reason.empty() && options.placement == RingPlacement::cuda) {
      return Error(ErrorCode::failed_precondition, "placement cuda: " + detail, where);
    }
    if (reason.empty()) {
      if (Status s = host->start_cuda(options, *program.cuda_handlers); !s) {
        if (options.placement == RingPlacement::cuda) return s.error().with_context(where + ": placement cuda");
        reason = s.error().code() == ErrorCode::unavailable ? kRingReasonNoDevice : kRingReasonDeviceError;
        detail = s.error().to_string();
        // The block may have been registered with CUDA or touched by the kernel: start afresh.
        auto fresh = ring::RingMemory::create(options.ring);
        if (!fresh) return fresh.error().with_context(where);
        host->memory_ = std::move(fresh).value();
      }
    }
    placed.fallback_reason = std::move(reason);
    placed.detail = std::move(detail);
  }
  if (!host->cuda_server_) {
    if (Status s = host->start_cpu(options, std::move(program.cpu_handlers)); !s) return s.error().with_context(where);
  }
  if (placed.fell_back()) {
    std::fprintf(stderr, "gpubridge: ring '%s': placement %s runs on %s (%s: %s)\n", host->name_.c_str(),
                 std::string(to_string(placed.requested)).c_str(), placed.device.c_str(), placed.fallback_reason.c_str(),
                 placed.detail.c_str());
  }
  return host;
}

Status RingHost::start_cpu(const RingHostOptions& options, ring::HandlerTable handlers) {
  auto server = ring::CpuRingServer::create(*memory_, std::move(handlers), options.cpu_server);
  if (!server) return server.error();
  cpu_server_ = std::move(server).value();
  auto client = ring::RingClient::create(*memory_, options.client);
  if (!client) return client.error();
  client_ = std::move(client).value();
  if (Status s = cpu_server_->start(); !s) return s;
  placement_.backend = RingBackend::cpu;
  placement_.device = "cpu";
  return {};
}

Status RingHost::start_cuda(const RingHostOptions& options, const ring::CudaHandlerSource& handlers) {
#if defined(GPUBRIDGE_HAVE_CUDA)
  auto server = ring::CudaRingServer::create(*memory_, handlers, options.cuda_server);
  if (!server) return server.error();
  std::unique_ptr<ring::CudaRingServer> cuda = std::move(server).value();
  auto client = ring::RingClient::create(*memory_, options.client);
  if (!client) return client.error();
  if (Status s = cuda->start(); !s) {
    client.value().reset();
    return s;
  }
  cuda_server_ = std::move(cuda);
  client_ = std::move(client).value();
  placement_.backend = RingBackend::cuda;
  placement_.device = "cuda:" + std::to_string(options.cuda_server.device) + " (" + cuda_server_->mode().device_name + ")";
  return {};
#else
  (void)options;
  (void)handlers;
  return Error(ErrorCode::unavailable, "this build has no CUDA support (GPUBRIDGE_WITH_CUDA off or no toolkit)");
#endif
}

RingHost::~RingHost() {
  {
    std::lock_guard lock(lifecycle_mutex_);
    if (Status s = stop_locked(false); !s) {
      // Destructors do not fail: the kernel's error is reported here and dropped.
      std::fprintf(stderr, "gpubridge: ring '%s' stopped with an error: %s\n", name_.c_str(), s.error().to_string().c_str());
    }
  }
  client_.reset();  // its dispatcher fails what is still pending
  cpu_server_.reset();
  cuda_server_.reset();  // copies the final states back into the block, then unregisters it
}

Status RingHost::stop_locked(bool drain) {
  if (stopped_) return {};
  stopped_ = true;
  if (cpu_server_) {
    if (drain) {
      cpu_server_->drain();
    } else {
      cpu_server_->stop();
    }
    return {};
  }
  if (cuda_server_) {
    Status s = drain ? cuda_server_->drain() : cuda_server_->stop();
    if (!s) return s.error().with_context("ring '" + name_ + "'");
  }
  return {};
}

Status RingHost::stop() {
  std::lock_guard lock(lifecycle_mutex_);
  return stop_locked(false);
}

Status RingHost::drain() {
  std::lock_guard lock(lifecycle_mutex_);
  return stop_locked(true);
}

bool RingHost::stopped() const {
  std::lock_guard lock(lifecycle_mutex_);
  return stopped_;
}

Status RingHost::reload(RingProgram program) {
  const std::string where = "ring '" + name_ + "': reload";
  if (Status s = validate_ring_program(program); !s) return s.error().with_context(where);
  if (shape_of(program.actor_types) != shape_of(actor_types_)) {
    return Error(ErrorCode::invalid_argument,
                 "the program's actor types (ids and state sizes) differ from the running ring's; a reload keeps "
                 "the actor table, so they must match",
                 where);
  }
  std::lock_guard lock(lifecycle_mutex_);
  if (stopped_) return Error(ErrorCode::failed_precondition, "the ring is stopped", where);
  if (cpu_server_) {
    cpu_server_->reload(std::move(program.cpu_handlers));
    return {};
  }
  if (!program.cuda_handlers) {
    return Error(ErrorCode::failed_precondition, "the ring runs on CUDA and the program has no CUDA handlers", where);
  }
  if (Status s = cuda_server_->reload(std::move(*program.cuda_handlers)); !s) return s.error().with_context(where);
  return {};
}

Status RingHost::server_status(std::chrono::milliseconds window) const {
  const std::string where = "ring '" + name_ + "'";
  if (stopped()) return Error(ErrorCode::unavailable, "the ring server is stopped", where);
  if (cuda_server_) {
    if (Status s = cuda_server_->kernel_status(); !s) return s.error().with_context(where + ": the ring kernel died");
  }
  ring::RingHeader& header = memory_->header();
  const auto state_now = [&] { return static_cast<ring::ServerState>(load_acquire(header.server_state)); };
  const ring::ServerState state = state_now();
  // A kernel stepped aside (its device runs an operation that needs it idle) is alive, not beating.
  if (state == ring::ServerState::stepped_aside) return {};
  if (state != ring::ServerState::running) {
    return Error(ErrorCode::unavailable,
                 state == ring::ServerState::stopped ? "the ring server has stopped" : "the ring server has not started",
                 where);
  }
  // Every shard's server must beat within the window.
  const std::uint32_t shards = memory_->shard_count();
  std::vector<std::uint64_t> first(shards);
  for (std::uint32_t s = 0; s < shards; ++s) first[s] = load_acquire(memory_->shard(s).heartbeat);
  const auto deadline = std::chrono::steady_clock::now() + window;
  for (std::uint32_t s = 0; s < shards; ++s) {
    while (load_acquire(memory_->shard(s).heartbeat) == first[s]) {
      if (state_now() == ring::ServerState::stepped_aside) return {};
      if (std::chrono::steady_clock::now() >= deadline) {
        if (stopped()) return Error(ErrorCode::unavailable, "the ring server is stopped", where);
        std::string why = "ring server dead: no heartbeat for " + std::to_string(window.count()) + " ms";
        if (shards > 1) why += " on shard " + std::to_string(s);
        return Error(ErrorCode::unavailable, why, where);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  return {};
}

std::uint64_t RingHost::messages_served() const noexcept {
  if (cpu_server_) return cpu_server_->messages_served();
  if (cuda_server_) return cuda_server_->messages_served();
  return 0;
}

void RingHost::park_state(const std::string& grain, std::vector<std::byte> state) {
  std::lock_guard lock(parked_mutex_);
  parked_[grain] = std::move(state);
}

std::optional<std::vector<std::byte>> RingHost::take_parked_state(const std::string& grain) {
  std::lock_guard lock(parked_mutex_);
  auto it = parked_.find(grain);
  if (it == parked_.end()) return std::nullopt;
  std::vector<std::byte> state = std::move(it->second);
  parked_.erase(it);
  return state;
}

std::size_t RingHost::parked_count() const {
  std::lock_guard lock(parked_mutex_);
  return parked_.size();
}

runtime::Task<void> RingGrain::on_activate() {
  std::optional<std::vector<std::byte>> parked = host_.take_parked_state(id().to_string());
  const std::span<const std::byte> initial = parked ? std::span<const std::byte>(*parked)
                                                    : std::span<const std::byte>(kind_.initial_state);
  try {
    actor_ = co_await CompletionAwaiter<std::uint32_t>(
        [this, initial](std::function<void(Result<std::uint32_t>)> done) {
          if (Status s = host_.client().try_activate_async(kind_.actor_type, initial, done); !s) done(s.error());
        });
  } catch (...) {
    // The activation fails; the parked state waits for the next one.
    if (parked) host_.park_state(id().to_string(), std::move(*parked));
    throw;
  }
}

runtime::Task<void> RingGrain::on_deactivate() {
  if (!actor_) co_return;
  const std::uint32_t actor = *actor_;
  actor_.reset();
  std::vector<std::byte> state = co_await CompletionAwaiter<ring::Reply>(
      [this, actor](std::function<void(Result<ring::Reply>)> done) {
        if (Status s = host_.client().try_deactivate_async(actor, done); !s) done(s.error());
      });
  host_.park_state(id().to_string(), std::move(state));
}

runtime::Task<std::vector<std::byte>> RingGrain::send(std::uint32_t handler_id, std::span<const std::byte> payload,
                                                       std::uint32_t reply_capacity) {
  if (!actor_) {
    throw ErrorException(Error(ErrorCode::failed_precondition, id().to_string() + " has no active ring actor"));
  }
  const std::uint32_t actor = *actor_;
  co_return co_await CompletionAwaiter<ring::Reply>(
      [this, actor, handler_id, payload, reply_capacity](std::function<void(Result<ring::Reply>)> done) {
        ring::SendOptions options;
        options.reply_capacity = reply_capacity;
        if (Status s = host_.client().try_send_async(actor, handler_id, payload, done, options); !s) {
          done(s.error());
        }
      });
}

runtime::Task<std::vector<std::byte>> RingGrain::call(std::uint32_t handler_id, std::vector<std::byte> payload,
                                                       std::uint32_t reply_capacity) {
  co_return co_await send(handler_id, payload, reply_capacity);
}

runtime::Task<std::uint32_t> RingGrain::actor_id() {
  if (!actor_) {
    throw ErrorException(Error(ErrorCode::failed_precondition, id().to_string() + " has no active ring actor"));
  }
  co_return *actor_;
}

runtime::Task<void> RingGrain::evict() {
  deactivate_on_idle();
  co_return;
}

}  // namespace gpubridge::grains

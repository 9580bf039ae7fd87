#include "gpubridge/grains/ring_grain.hpp"

#include <utility>

#include "gpubridge/grains/gpu_services.hpp"

namespace gpubridge::grains {

namespace ring = compute::ring;

Result<std::unique_ptr<RingHost>> RingHost::create(RingHostOptions options, ring::HandlerTable handlers) {
  std::unique_ptr<RingHost> host(new RingHost());
  auto memory = ring::RingMemory::create(options.ring);
  if (!memory) return memory.error();
  host->memory_ = std::move(memory).value();
  auto server = ring::CpuRingServer::create(*host->memory_, std::move(handlers), options.server);
  if (!server) return server.error();
  host->server_ = std::move(server).value();
  auto client = ring::RingClient::create(*host->memory_, options.client);
  if (!client) return client.error();
  host->client_ = std::move(client).value();
  if (Status s = host->server_->start(); !s) return s.error();
  return host;
}

RingHost::~RingHost() {
  if (server_) server_->stop();
  client_.reset();  // its dispatcher fails what is still pending
  server_.reset();
}

void RingHost::stop() { server_->stop(); }

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

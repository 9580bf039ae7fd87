#pragma once
// Ring grains: grains whose state and message handlers live in a ring server (the CPU server
// today; a CUDA persistent kernel later, same protocol — see gpubridge/compute/ring.hpp).
//
// RingHost owns one ring (RingMemory + server + RingClient) and the handler table, and keeps the
// host copies of states parked by deactivated grains. Grains of any kind share one host.
//
// RingGrain: activation reserves an actor id of its kind's actor type and activates it in the
// server with a parked state (the last deactivation of the same grain id) or the kind's initial
// state; each call is one ring message (handler id + payload) awaited inside the grain's turn —
// the worker is released while the server runs it, and the reply resumes the turn; deactivation
// copies the state back to the host, parks it and frees the actor id. Enqueueing never waits:
// a full ring or payload pool fails the call at once (resource_exhausted, the ring's message),
// as do a stopped server (unavailable), a dead one (unavailable, after the client's watchdog
// window for calls in flight), an unknown handler (not_found) and handler errors; each reaches
// the caller as ErrorException. If the server is gone at deactivation the state is lost and the
// error goes to the runtime's unhandled-error handler.
//
// Thread-safety: RingHost is thread-safe. RingGrain follows the grain rules (one turn at a time,
// non-reentrant, so calls to one grain reach its actor in the order the grain runs them). The
// host must outlive every runtime whose ring grains use it (stop those runtimes first).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"
#include "gpubridge/runtime/grain.hpp"

namespace gpubridge::grains {

struct RingHostOptions {
  compute::ring::RingConfig ring;  // ring geometry and actor types (ids, state sizes, how many)
  compute::ring::CpuRingServerOptions server;
  compute::ring::RingClientOptions client;
};

class RingHost {
 public:
  // Creates the block, starts the server with `handlers` and attaches a client. Errors as
  // RingMemory::create, CpuRingServer::create/start and RingClient::create.
  static Result<std::unique_ptr<RingHost>> create(RingHostOptions options, compute::ring::HandlerTable handlers);
  ~RingHost();  // stops the server; calls still in flight fail with cancelled
  RingHost(const RingHost&) = delete;
  RingHost& operator=(const RingHost&) = delete;

  compute::ring::RingClient& client() noexcept { return *client_; }
  compute::ring::CpuRingServer& server() noexcept { return *server_; }
  compute::ring::RingMemory& memory() noexcept { return *memory_; }

  // Stops the server now: queued messages are cancelled, later calls fail with unavailable.
  void stop();

  // Host copies of states of deactivated grains, by grain id (process memory, not durable).
  void park_state(const std::string& grain, std::vector<std::byte> state);
  std::optional<std::vector<std::byte>> take_parked_state(const std::string& grain);
  std::size_t parked_count() const;

 private:
  RingHost() = default;
  std::unique_ptr<compute::ring::RingMemory> memory_;
  std::unique_ptr<compute::ring::CpuRingServer> server_;
  std::unique_ptr<compute::ring::RingClient> client_;
  mutable std::mutex parked_mutex_;
  std::map<std::string, std::vector<std::byte>> parked_;
};

// What a ring grain class is on the ring: its actor type and the state a new grain starts with
// (zero-filled up to the type's state size).
struct RingGrainKind {
  std::uint32_t actor_type = 0;
  std::vector<std::byte> initial_state;
};

// A grain backed by one ring actor. Usable as is through call(), or as a base class whose typed
// methods co_await send().
class RingGrain : public runtime::Grain {
 public:
  RingGrain(RingHost& host, RingGrainKind kind) : host_(host), kind_(std::move(kind)) {}

  runtime::Task<void> on_activate() override;    // activates the actor (parked or initial state)
  runtime::Task<void> on_deactivate() override;  // copies the state out and parks it

  // One message to this grain's actor; the handler's reply (at most reply_capacity bytes).
  runtime::Task<std::vector<std::byte>> call(std::uint32_t handler_id, std::vector<std::byte> payload,
                                             std::uint32_t reply_capacity = static_cast<std::uint32_t>(
                                                 compute::ring::kInlinePayloadBytes));
  // The actor id this activation occupies (other actors address it in device-side messages).
  runtime::Task<std::uint32_t> actor_id();
  // Deactivates the grain once this call returns (its state is parked until the next call).
  runtime::Task<void> evict();

 protected:
  // For typed methods of subclasses: as call(); `payload` must stay valid until the task ends.
  runtime::Task<std::vector<std::byte>> send(std::uint32_t handler_id, std::span<const std::byte> payload,
                                             std::uint32_t reply_capacity = static_cast<std::uint32_t>(
                                                 compute::ring::kInlinePayloadBytes));
  RingHost& host() const noexcept { return host_; }

 private:
  RingHost& host_;
  RingGrainKind kind_;
  std::optional<std::uint32_t> actor_;  // set while the actor is active in the server
};

}  // namespace gpubridge::grains

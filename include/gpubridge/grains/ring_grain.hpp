#pragma once
// Ring grains: grains whose state and message handlers live in a ring server — the CPU server
// (a thread) or the CUDA persistent kernel, which serve the same protocol
// (gpubridge/compute/ring.hpp, gpubridge/compute/cuda_ring.hpp).
//
// A RingProgram is what a ring runs: its actor types, the handlers as C++ functions for the CPU
// server and, optionally, the same handler ids as CUDA source for the persistent kernel.
//
// RingHost owns one ring (RingMemory + one server + RingClient) serving one program, and keeps the
// host copies of states parked by deactivated grains. Grains of any kind share one host.
// Placement: `cpu` runs the CPU server; `cuda` runs the CUDA kernel or fails create() (never a
// silent CPU ring); `automatic` runs the CUDA kernel when the program has CUDA handlers and a CUDA
// device takes it (CudaRingServer::create and start succeed), else the CPU server. Whenever the
// ring runs somewhere other than asked, or automatic could not use CUDA, placement() names the
// reason (and create() writes one line to stderr).
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
// Thread-safety: RingHost is thread-safe (lifecycle calls serialise on an internal mutex).
// RingGrain follows the grain rules (one turn at a time, non-reentrant, so calls to one grain
// reach its actor in the order the grain runs them). The host must outlive every runtime whose
// ring grains use it, and those runtimes must stop (deactivating their grains) before the host
// stops if the states are to be parked.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/compute/cuda_ring.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"
#include "gpubridge/runtime/grain.hpp"

namespace gpubridge::grains {

// Where a ring should run (what the user asks for).
enum class RingPlacement : std::uint8_t {
  automatic,  // CUDA when the program has CUDA handlers and a device takes it, else the CPU
  cpu,        // the CPU ring server
  cuda,       // the CUDA persistent kernel, or an error
};
std::string_view to_string(RingPlacement placement) noexcept;  // "auto", "cpu", "cuda"
std::optional<RingPlacement> parse_ring_placement(std::string_view text) noexcept;

// Where a ring runs.
enum class RingBackend : std::uint8_t { cpu, cuda };
std::string_view to_string(RingBackend backend) noexcept;

// Why a ring runs somewhere other than asked (or automatic could not use CUDA). Stable words, used
// as metric labels.
inline constexpr std::string_view kRingReasonNoDevice = "no_device";            // no CUDA device / CUDA not built
inline constexpr std::string_view kRingReasonHandlersMissing = "handlers_missing";  // no CUDA handlers
inline constexpr std::string_view kRingReasonDisabled = "disabled";             // CUDA disabled by configuration
inline constexpr std::string_view kRingReasonDeviceError = "device_error";      // CUDA failed (compile, load, launch)

// One actor type of a program: `name` is how configuration refers to it (its count of actors).
struct RingActorType {
  std::string name;
  std::uint32_t type_id = 0;
  std::uint32_t state_bytes = 0;  // > 0
  std::uint32_t max_actors = 0;   // > 0: actor ids reserved for this type
};

// What a ring runs. cuda_handlers, when set, must serve exactly the handler ids of cpu_handlers,
// each for the same actor type (the two are the same program for two servers).
struct RingProgram {
  std::vector<RingActorType> actor_types;
  compute::ring::HandlerTable cpu_handlers;
  std::optional<compute::ring::CudaHandlerSource> cuda_handlers;
};

// invalid_argument naming the problem: no actor types, an empty or duplicate type name, a duplicate
// type id, a zero state size or actor count, CUDA handlers whose ids or actor types differ from the
// CPU handlers'.
Status validate_ring_program(const RingProgram& program);

// Where a host's ring runs and, when not where asked, why. Fixed once create() returns.
struct RingHostPlacement {
  RingPlacement requested = RingPlacement::automatic;
  RingBackend backend = RingBackend::cpu;
  std::string device;           // "cpu", or "cuda:<ordinal> (<device name>)"
  std::string fallback_reason;  // empty when it runs where asked; else one of kRingReason*
  std::string detail;           // the reason in words (the CUDA error, ...); empty with no reason
  bool fell_back() const noexcept { return !fallback_reason.empty(); }
};

struct RingHostOptions {
  std::string name = "ring";  // names the ring in errors, logs and placement lines
  RingPlacement placement = RingPlacement::automatic;
  bool cuda_enabled = true;  // false: automatic uses the CPU (reason "disabled"); cuda is an error
  // Ring geometry. actor_types must be left empty: they come from the program.
  compute::ring::RingConfig ring;
  compute::ring::CpuRingServerOptions cpu_server;
  compute::ring::CudaRingServerOptions cuda_server;
  compute::ring::RingClientOptions client;
};

class RingHost {
 public:
  // Validates the program, places the ring (see the header comment), creates the block, starts
  // the server and attaches a client. Errors: invalid_argument (program, actor_types set in
  // options, geometry as RingMemory::create); with placement cuda: failed_precondition when CUDA is
  // disabled or the program has no CUDA handlers, and CudaRingServer::create/start's error
  // (unavailable without a CUDA device) in context "ring '<name>': placement cuda"; otherwise as
  // CpuRingServer::create/start and RingClient::create.
  static Result<std::unique_ptr<RingHost>> create(RingHostOptions options, RingProgram program);
  ~RingHost();  // stops the server; calls still in flight fail with cancelled
  RingHost(const RingHost&) = delete;
  RingHost& operator=(const RingHost&) = delete;

  const std::string& name() const noexcept { return name_; }
  const RingHostPlacement& placement() const noexcept { return placement_; }
  compute::ring::RingClient& client() noexcept { return *client_; }
  compute::ring::RingMemory& memory() noexcept { return *memory_; }
  // The server in use: exactly one is non-null (cpu_server() while placement().backend is cpu).
  compute::ring::CpuRingServer* cpu_server() noexcept { return cpu_server_.get(); }
  compute::ring::CudaRingServer* cuda_server() noexcept { return cuda_server_.get(); }

  // Stop now: queued messages are cancelled, later calls fail with unavailable. The CUDA kernel's
  // error if it had died. Idempotent (later calls return ok).
  Status stop();
  // Finish every queued message, then stop (as stop() afterwards). Idempotent.
  Status drain();
  // Swaps the handlers between two messages, keeping actor states and queued messages: the CPU
  // table on the CPU server, the CUDA source on the kernel (compiled first; on error the old one
  // keeps serving). invalid_argument when the program is invalid or its actor types (ids, state
  // sizes) differ from the running ones; failed_precondition after stop/drain or when the ring runs
  // on CUDA and the program has no CUDA handlers; the kernel's reload error.
  Status reload(RingProgram program);
  bool stopped() const;
  // ok while the server serves. unavailable when it was stopped, when its kernel died (the CUDA
  // error), or when its heartbeat does not move within `window` (a dead server or a handler
  // overrunning the watchdog); ok for a kernel stepped aside for an operation that needs its device
  // idle. Waits at most `window`, only when the heartbeat stands still.
  Status server_status(std::chrono::milliseconds window) const;
  // Host messages the server has finished (completed, failed or cancelled).
  std::uint64_t messages_served() const noexcept;

  // Host copies of states of deactivated grains, by grain id as GrainId::to_string() writes it
  // ("Type/key", e.g. "Counter/a"); process memory, not durable.
  void park_state(const std::string& grain, std::vector<std::byte> state);
  std::optional<std::vector<std::byte>> take_parked_state(const std::string& grain);
  std::size_t parked_count() const;

 private:
  RingHost() = default;
  // Bring the ring up on one server over memory_ (client attached, server started).
  Status start_cpu(const RingHostOptions& options, compute::ring::HandlerTable handlers);
  Status start_cuda(const RingHostOptions& options, const compute::ring::CudaHandlerSource& handlers);
  Status stop_locked(bool drain);  // lifecycle_mutex_ held

  std::string name_;
  RingHostPlacement placement_;
  std::vector<RingActorType> actor_types_;  // as running (for reload checks)
  std::unique_ptr<compute::ring::RingMemory> memory_;
  std::unique_ptr<compute::ring::CpuRingServer> cpu_server_;
  std::unique_ptr<compute::ring::CudaRingServer> cuda_server_;
  std::unique_ptr<compute::ring::RingClient> client_;
  mutable std::mutex lifecycle_mutex_;
  bool stopped_ = false;  // guarded by lifecycle_mutex_
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
  // The actor id this activation occupies (other actors address it in device-side messages). It
  // belongs to the activation: deactivation (also by idle collection) frees it and a later
  // activation of any grain may take it, so hand it only to peers that stay active.
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

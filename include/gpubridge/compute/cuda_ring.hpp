#pragma once
// The CUDA persistent ring kernel: the device-side server of the ring protocol in
// gpubridge/compute/ring.hpp, driven by the unchanged RingClient.
//
// Handlers are CUDA device functions in a source string the user registers. The server wraps them
// in a generated kernel (a switch over handler ids around the user's functions), compiles it with
// NVRTC and launches it once, as one block of 32 threads per shard of the block (blockIdx.x = the
// shard; RingConfig::shards), resident until it stops: lane 0 of each block polls its shard's
// request ring with volatile loads and the protocol's sequence numbers; when more than one
// message is claimed, the block's lanes copy up to 32 published slots into shared memory at once
// (one trip over the bus for all of them), and lane 0 frees them behind one fence and serves them
// one at a time; completions are written as they finish and published together behind one fence
// (at most 32 at a time, and all of them before lane 0 looks at the request ring again, waits for
// a completion slot or ends). Every body access is ordered against the turn that guards it
// (an acquire load of a request's turn before its body is read, a system-scope acquire-release
// fence, fence.acq_rel.sys, before the stores that free or publish slots; an acquire load of the host's completion counter before
// a completion slot is rewritten), and lane 0
// increments its shard's heartbeat every poll. The kernel uses no atomic read-modify-write on
// host memory (each block writes only its own shard's words; the blocks coordinate through device
// memory with device-scope atomics), so devices without host-native atomics run the same mapped-memory + fence path
// (mode() says which the device has). The generated source is plain CUDA C++: defining
// GB_RING_HOST_SHIM (with a shim for __device__, the fences and the shared-word loads/stores)
// compiles the same kernel as host C++, which is how its logic is tested without a GPU.
//
// Handler contract (device code, one thread):
//   __device__ int my_handler(const gb_ring_call& call);
// gb_ring_call has actor_id, handler_id, state / state_bytes (the actor's state, in device memory),
// payload / payload_bytes (read-only: the block's shared memory for an inline host payload, mapped
// host memory for one in the pool, device memory for a device-side message), reply / reply_capacity, hops (0 for a host message, n for the n-th device-side
// hop of a chain) and replies_to_host (this message's reply, or that of its forward, completes a
// host call). Return the number of reply bytes written (0..reply_capacity), or -GB_RING_<CODE>
// (e.g. -GB_RING_INVALID_ARGUMENT, values of gpubridge::ErrorCode) to fail the call; the host sees
// "handler <id> failed with code <n>", followed by ": <reason>" when the code is that of a refused
// gb_ring_post/gb_ring_forward or of
//   __device__ int gb_ring_fail(const gb_ring_call& call, unsigned int code, const char* reason);
// which returns -code for the handler to return (`return gb_ring_fail(c, GB_RING_OUT_OF_RANGE,
// "index past the table");`; a code that is no ErrorCode fails as internal, naming it). Reasons are
// cut at the inline payload size. A handler must return well within the client's watchdog window
// (no heartbeat while it runs).
//
// Device-side messaging (same semantics as HandlerContext::post/forward on the CPU server):
//   __device__ int gb_ring_post(const gb_ring_call& call, unsigned int actor_id,
//                               unsigned int handler_id, const void* payload, unsigned int bytes);
//   __device__ int gb_ring_forward(...same parameters...);
// post is fire-and-forget (the target's reply is dropped, its failure counted in stats() and
// last_internal_error()); forward is a tail call, at most once per message: the handler's own reply
// is discarded and the target's reply or error answers this message's caller (the host call, if
// any; a reply larger than inline travels in the host's reply block). Both copy the payload
// (at most kInlinePayloadBytes) into a bounded FIFO in device memory and return 0, or
// -GB_RING_INVALID_ARGUMENT (reserved handler id, payload over the inline limit),
// -GB_RING_FAILED_PRECONDITION (a second forward) or -GB_RING_RESOURCE_EXHAUSTED (internal queue
// full, or the chain would exceed max_hops); the handler may return that code to its caller.
// Staged messages are committed only when the handler returns success. The kernel serves the
// internal queue before the next host request, so a host message's whole chain finishes before
// any later host message runs, and before drain completes; on stop, queued device-side messages
// complete with cancelled. Queued device-side messages survive a hot reload (served by the new code).
// With several shards each shard has its own queue (many producers: atomicCAS claims in device
// memory), a post to another shard's actor runs asynchronously there, and drain ends when no shard
// has anything queued or in flight (the ordering rules of ring.hpp). A handler stages at most
// internal_queue_slots messages per call. A trap in any block ends the whole grid, and, as any
// device fault, leaves the CUDA context unusable for every other user of the device in the process
// (other rings, the executor). A handler that never returns stops its ring (callers get "ring
// server dead" from the client's watchdog), and the kernel cannot step aside: operations that need
// the device idle, a drain and a stop wait for it (stderr says so every 10 s while a step aside waits).
// `payload` may be null when `bytes` is 0.
//
// Memory: the RingMemory block is page-locked and mapped with cudaHostRegister (RingMemory owns
// its allocation), so the same block serves RingClient and the kernel. Actor table and states are
// mirrored in device memory while the server runs and copied back into the block when the kernel
// has finished for good (stop, drain, destruction), so the block holds the final states. The
// internal message queues live in device memory (per shard: options.internal_queue_slots records of
// about sizeof(InternalMessage), and as many claim records); the kernel's counters in a mapped
// block of its own (one set per shard).
// The RingMemory must outlive the server; a block is served once (as with CpuRingServer).
// The kernel occupies one SM per shard (at most) until it stops; all its blocks must be resident at
// once (shards <= the SMs available). While it runs, avoid CUDA calls that wait for an idle
// device in this process (cudaDeviceSynchronize, and with lazy module loading the first launch of
// another module's kernel): they would wait forever. The server itself loads its module only while
// its kernel is not running (at create, and during reload after the old kernel has returned), so
// run one persistent kernel per device per process, or set CUDA_MODULE_LOADING=EAGER.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::ring {

struct CudaHandler {
  std::uint32_t handler_id = 0;  // below kFirstReservedHandler, unique
  std::uint32_t actor_type = 0;  // the actor type this handler serves
  std::string function;          // name of a __device__ function in CudaHandlerSource::source
};

struct CudaHandlerSource {
  std::string source;  // CUDA C++ with the handlers' device functions (no includes needed)
  std::vector<CudaHandler> handlers;
};

struct CudaRingServerOptions {
  int device = 0;                            // CUDA device ordinal
  std::uint32_t internal_queue_slots = 1024;  // device-side message queue bound per shard (1..kMaxRingSlots)
  std::uint32_t max_hops = 64;                // device-side hops per chain (1..kMaxRingSlots)
  // Diagnostics: the kernel times its own phases with the device's global timer (phase_times()).
  // Costs a few timer reads per message and a few stores over the bus per published batch.
  bool time_phases = false;
};

// Where the serving kernel's time goes (CudaRingServerOptions::time_phases), summed over its
// blocks since the server was created; each count goes with the nanoseconds after it. A phase
// leaves out the publications made inside it (they count as publishes). Written by the kernel
// each time it publishes completions and when a block ends: a snapshot, not exact to the
// message. All zero without time_phases.
struct CudaRingPhaseTimes {
  std::uint64_t idle_polls = 0;  // looks at the request ring that found nothing to take
  std::uint64_t idle_poll_ns = 0;
  std::uint64_t takes = 0;       // host messages taken off the request ring, in rounds of 1..32
  std::uint64_t take_ns = 0;     // copying them into hand (the look that found them not included)
  std::uint64_t served = 0;      // host messages served: the handler and its completion's body
  std::uint64_t serve_ns = 0;    // (waits for completion space included)
  std::uint64_t publishes = 0;   // completions published (their fence and turns), in rounds; they
                                 // include the replies of device-side chains to host calls
  std::uint64_t publish_ns = 0;
};

// What the server runs on and how it reaches the host.
struct CudaRingMode {
  std::string device_name;
  int compute_capability = 0;      // major * 10 + minor
  bool host_native_atomics = false;  // cudaDevAttrHostNativeAtomicSupported
  std::string target;              // NVRTC target of the loaded kernel ("sm_90" or "compute_89")
  std::string description;         // one line for logs and benchmark output
};

// The persistent kernel's host side. Thread-safe: lifecycle calls and reload() may come from any
// thread (they serialise on an internal mutex; wait() blocks until the kernel has returned).
// One-shot like CpuRingServer: after stop/drain it cannot be started again on the same block.
class CudaRingServer {
 public:
  // invalid_argument: not a ring block of this version, bad options (internal_queue_slots or
  // max_hops out of range), or bad handlers (reserved or duplicate id, a function name that is not
  // an identifier); failed_precondition: the block was already served
  // or the device cannot map host memory; unavailable: no such CUDA device; internal: NVRTC errors
  // (with the compiler log), other CUDA errors.
  static Result<std::unique_ptr<CudaRingServer>> create(RingMemory& memory, CudaHandlerSource handlers,
                                                        CudaRingServerOptions options = {});
  ~CudaRingServer();  // stop, wait for the kernel, copy states back, release CUDA resources
  CudaRingServer(const CudaRingServer&) = delete;
  CudaRingServer& operator=(const CudaRingServer&) = delete;

  // Launches the kernel. failed_precondition if already started; CUDA errors otherwise.
  Status start();
  // As CpuRingServer: stop now (message in progress finishes, queued ones complete cancelled) or
  // drain (finish queued messages, then stop). Non-blocking; wait() blocks until the kernel ends.
  void request_stop();
  void request_drain();
  // Blocks until the kernel has returned (at once if it never started); copies the actor states
  // back into the block. Returns the kernel's error if it died (e.g. a trap in a handler).
  Status wait();
  Status stop() { request_stop(); return wait(); }
  Status drain() { request_drain(); return wait(); }
  // Hot reload: compiles the new handlers with NVRTC first (on error the old kernel keeps serving),
  // then asks the kernel to return after its current message (every ring kernel of the device
  // steps aside while a module loads, see with_rings_stepped_aside), loads the new module and
  // relaunches on the same block and device state. Queued messages and actor states are kept; the host client
  // sees a pause of one module load. If the load fails the old kernel is relaunched and the error
  // returned.
  Status reload(CudaHandlerSource handlers);
  // ok while the kernel runs or has finished cleanly; the CUDA error once it has died.
  Status kernel_status() const;
  // Host calls the kernel has finished (completed, failed or cancelled).
  std::uint64_t messages_served() const noexcept;
  // The kernel's counters, as CpuRingServer::stats() (each field read on its own). The device-side
  // counters are published when a chain ends: exact once a later host call has been answered.
  RingServerStats stats() const noexcept;
  // The error of the last device-side message that failed ("" when none has).
  std::string last_internal_error() const;
  // The kernel's own phase timing (all zero unless options.time_phases).
  CudaRingPhaseTimes phase_times() const noexcept;
  const CudaRingMode& mode() const noexcept;

 private:
  struct Impl;
  explicit CudaRingServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The full kernel source generated around `handlers` (pure string work, needs no GPU), with the
// phase timing of CudaRingServerOptions::time_phases compiled in when asked.
// invalid_argument for bad handler specs, as create().
Result<std::string> cuda_ring_kernel_source(const CudaHandlerSource& handlers, bool time_phases = false);

// For your own CUDA work in a process that serves CUDA rings: runs fn with every ring kernel on
// CUDA device `device` stepped aside - each returns after the message it is serving and is
// relaunched when fn returns, states and queued messages kept. Use it around operations that may
// wait for an idle device (cudaMalloc/cudaFree, page-locked allocations, loading a module, a
// kernel's first launch under lazy loading), which beside a serving ring would wait until the ring
// stops. GpuBridge's own such operations already do this. A call inside fn runs its fn at once.
void with_rings_stepped_aside(int device, const std::function<void()>& fn);

}  // namespace gpubridge::compute::ring

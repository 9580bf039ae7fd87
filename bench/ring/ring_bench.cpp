// bench_ring: host -> resident actor -> host round trips through the ring protocol against a raw
// one-slot mailbox doing the same exchange, measured in the same run; and messages per second with
// many producers and many actors.
//
// Goal (issue 4, on an H100): round trip p50 at most 4 us (the raw mailbox there is about 2.4 us);
// at least 20M messages/s with many producers and actors.
//
// Measured (backend cpu always; cuda when a device is present, else skipped with the reason):
//   ring_rtt/<b>/mailbox  the reference: one slot of mapped (cuda) or plain (cpu) memory, a sequence
//                         word each way; the server side (a kernel written here / a thread) spins on
//                         it and echoes the payload, the caller spins on the reply. No protocol, no
//                         correlation, no actor state. Runs first.
//   ring_rtt/<b>/ring_spin one actor, one caller: RingClient::send_async(8-byte payload) whose
//                         callback (on the client's dispatcher thread) publishes the 8-byte reply to
//                         the caller, which spins on it - waiting as the mailbox's caller does; one
//                         round trip per iteration. callback_p50_us / callback_p99_us: from the send
//                         to the callback's start (the round trip less the hop from the dispatcher
//                         thread to the caller); send_p50_us / send_p99_us: send_async itself. cpu: CpuRingServer (a thread); cuda:
//                         CudaRingServer (the persistent kernel over mapped memory).
//   ring_rtt/<b>/ring     the same with RingClient::send and a blocking wait on its future (the
//                         caller sleeps until the dispatcher thread wakes it).
//   ring_rtt/<b>/ring_sporadic
//                         as ring, one call after each 2 ms of quiet (200 calls; the pauses are not
//                         timed): what a sporadic caller waits, waking included.
//   ring_rtt/<b>/grain    the same 8-byte echo as a RingGrain method: a runtime::Runtime (1 worker)
//                         over its own RingHost (placement cpu / cuda, the same handler as the ring
//                         case), one caller: Runtime::run(grain.call<&RingGrain::call>(echo, 8 bytes))
//                         per iteration, awaited to the reply. What a caller outside the runtime pays
//                         per call to a resident actor through the actor model (ring + runtime).
//   ring_throughput/<b>/ring/shards:S/producers:P/actors:A/dispatchers:D
//                         P producer threads send_async 8-byte messages round-robin to A actors of
//                         a ring block of S shards (RingConfig::shards: S request/completion ring
//                         pairs, served by S server threads on the CPU, S blocks of the persistent
//                         kernel on CUDA; 4096 slots per ring), a client with D dispatcher threads
//                         (RingClientOptions::dispatcher_threads: thread t takes the completions of
//                         shards s % D == t and runs their callbacks); one iteration = 131072
//                         messages, all completed (the producer threads live for the whole case). S = 1 is the unsharded server; compare
//                         msgs_per_s across S and D. cpu: (S, D) = (1, 1), (4, 1), (4, 2);
//                         cuda: (1, 1), (4, 1), (4, 2), (16, 1), (16, 4), (32, 4), (64, 8).
//   ring_rtt/cuda/ring_spin_timed, ring_throughput/cuda/ring_timed/...
//                         the same over a kernel compiled with CudaRingServerOptions::time_phases,
//                         which adds its own account (means over the case): idle_poll_ns (one look
//                         at the rings that found nothing), take_ns (taking messages into hand),
//                         serve_ns (one message: handler and completion body), publish_ns (one
//                         publication of completions), msgs_per_take, msgs_per_publish.
// Counters: p50_us / p99_us (round trips, timed one by one with steady_clock), msgs_per_s.
// The ratio table (see common/ratio_report.hpp) pairs ring_spin with mailbox (the ring's cost over
// raw memory: mean, p50 and p99, the goal being on p50), ring with ring_spin (a blocking wait's
// cost) and grain with ring (the runtime's cost on top of the ring).
// A round trip not answered within kReplyLimit fails its case instead of hanging the run, and a
// CUDA ring case that failed so skips the later CUDA ring cases with its reason.
// The CUDA mode in use (host-native atomics or not, NVRTC target) is the benchmark's label.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/ratio_report.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/error.hpp"
#include "gpubridge/grains/ring_grain.hpp"
#include "gpubridge/runtime/runtime.hpp"

#if GPUBRIDGE_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "compute/cuda/cuda_error.hpp"
#include "compute/cuda/nvrtc_program.hpp"
#include "gpubridge/compute/cuda_ring.hpp"
#endif

namespace gpubridge::bench {
namespace {

namespace ring = compute::ring;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kActorType = 1;
constexpr std::uint32_t kEcho = 1;
constexpr std::uint32_t kMaxActors = 256;
constexpr std::uint32_t kEchoStateBytes = 64;
constexpr std::uint32_t kGrainActors = 16;
constexpr std::size_t kThroughputMessages = 131072;
constexpr auto kReplyLimit = std::chrono::seconds(5);            // one round trip
constexpr auto kThroughputLimit = std::chrono::seconds(30);      // one throughput iteration

Clock::time_point deadline() { return Clock::now() + std::chrono::seconds(30); }

// Why the CUDA ring cases are skipped from now on (a case whose ring stopped answering); empty
// while they run. Checked by the CUDA rigs.
std::string& cuda_ring_failure() {
  static std::string why;
  return why;
}

std::uint64_t u64_of(const std::vector<std::byte>& bytes) {
  std::uint64_t v = 0;
  std::memcpy(&v, bytes.data(), std::min(bytes.size(), sizeof v));
  return v;
}

// Round-trip latencies of one benchmark run, reported as percentiles.
struct Latencies {
  std::vector<double> us;
  void add(Clock::duration d) { us.push_back(std::chrono::duration<double, std::micro>(d).count()); }
  // Counters <prefix>p50_us and <prefix>p99_us.
  void report(benchmark::State& state, const std::string& prefix = "") {
    if (us.empty()) return;
    std::sort(us.begin(), us.end());
    auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * (us.size() - 1) + 0.5))]; };
    state.counters[prefix + "p50_us"] = at(0.50);
    state.counters[prefix + "p99_us"] = at(0.99);
  }
};

// Fails the case with `why`; a CUDA ring that failed so is not used again (cuda_ring_failure).
void fail_case(benchmark::State& state, bool cuda, const std::string& why) {
  if (cuda && cuda_ring_failure().empty()) cuda_ring_failure() = why;
  state.SkipWithError(why.c_str());
}

// A ring block, its server and client; kept for the rest of the run.
struct RingRig {
  std::unique_ptr<ring::RingMemory> memory;
  std::unique_ptr<ring::CpuRingServer> cpu_server;
#if GPUBRIDGE_HAVE_CUDA
  std::unique_ptr<ring::CudaRingServer> cuda_server;
#endif
  std::unique_ptr<ring::RingClient> client;
  std::vector<std::uint32_t> actors;
  std::string label;
  std::uint32_t shards = 1;       // the block's RingConfig::shards
  std::uint32_t dispatchers = 1;  // the client's RingClientOptions::dispatcher_threads
  bool cuda = false;              // served by a persistent kernel
  bool timed = false;             // ... compiled with CudaRingServerOptions::time_phases
  ~RingRig() {
    client.reset();
    cpu_server.reset();
#if GPUBRIDGE_HAVE_CUDA
    cuda_server.reset();
#endif
  }
};

// The kernel's own account of a timed case (RingRig::timed): the means of its phases between
// two snapshots of CudaRingServer::phase_times(), as counters. Nothing for other rigs.
struct PhaseSnapshot {
  ring::CudaRingPhaseTimes at;
  static PhaseSnapshot of(const RingRig& r) {
    PhaseSnapshot p;
#if GPUBRIDGE_HAVE_CUDA
    if (r.timed) p.at = r.cuda_server->phase_times();
#else
    (void)r;
#endif
    return p;
  }
  void report_since(benchmark::State& state, const RingRig& r, const PhaseSnapshot& before) const {
    if (!r.timed) return;
    const ring::CudaRingPhaseTimes& a = at;
    const ring::CudaRingPhaseTimes& b = before.at;
    auto mean = [](std::uint64_t ns, std::uint64_t n) { return n == 0 ? 0.0 : static_cast<double>(ns) / static_cast<double>(n); };
    state.counters["idle_poll_ns"] = mean(a.idle_poll_ns - b.idle_poll_ns, a.idle_polls - b.idle_polls);
    state.counters["take_ns"] = mean(a.take_ns - b.take_ns, a.takes - b.takes);
    state.counters["serve_ns"] = mean(a.serve_ns - b.serve_ns, a.served - b.served);
    state.counters["publish_ns"] = mean(a.publish_ns - b.publish_ns, a.publishes - b.publishes);
    state.counters["msgs_per_take"] = mean(a.served - b.served, a.takes - b.takes);
    state.counters["msgs_per_publish"] = mean(a.served - b.served, a.publishes - b.publishes);
  }
};

ring::RingConfig ring_config(std::uint32_t shards = 1) {
  ring::RingConfig config;
  config.shards = shards;
  config.request_slots = 4096;
  config.completion_slots = 4096;
  config.pool_chunks = 16;
  config.actor_types = {{kActorType, kEchoStateBytes, kMaxActors}};
  return config;
}

Status activate_all(RingRig& rig) {
  for (std::uint32_t i = 0; i < kMaxActors; ++i) {
    auto id = rig.client->activate(kActorType, {}, deadline());
    if (!id) return id.error();
    rig.actors.push_back(*id);
  }
  return {};
}

// The echo handler on the CPU server: counts calls in the actor state, copies the payload back.
Result<ring::HandlerTable> cpu_echo_handlers() {
  ring::HandlerTable table;
  Status added = table.add({kEcho, kActorType,
                            [](std::span<std::byte> state, std::span<const std::byte> in,
                               std::span<std::byte> out) -> Result<std::size_t> {
                              if (in.size() > out.size()) {
                                return Error(ErrorCode::out_of_range, "echo payload exceeds reply capacity");
                              }
                              std::uint64_t count = 0;
                              std::memcpy(&count, state.data(), sizeof count);
                              ++count;
                              std::memcpy(state.data(), &count, sizeof count);
                              std::memcpy(out.data(), in.data(), in.size());
                              return in.size();
                            }});
  if (!added) return added.error();
  return table;
}

ring::RingClientOptions client_options(std::uint32_t dispatchers) {
  ring::RingClientOptions options;
  options.dispatcher_threads = dispatchers;
  return options;
}

// The CPU rig of `shards` shards and a client with `dispatchers` dispatcher threads; one at a time
// (a rig of another shape is released first, so idle threads do not compete with the measured ones).
Result<RingRig*> cpu_rig_with(std::uint32_t shards, std::uint32_t dispatchers) {
  static RingRig* rig = nullptr;
  if (rig != nullptr && rig->shards == shards && rig->dispatchers == dispatchers) return rig;
  delete rig;
  rig = nullptr;
  auto owned = std::make_unique<RingRig>();
  owned->shards = shards;
  owned->dispatchers = dispatchers;
  auto memory = ring::RingMemory::create(ring_config(shards));
  if (!memory) return memory.error();
  owned->memory = std::move(memory).value();
  auto table = cpu_echo_handlers();
  if (!table) return table.error();
  auto server = ring::CpuRingServer::create(*owned->memory, std::move(table).value());
  if (!server) return server.error();
  owned->cpu_server = std::move(server).value();
  auto client = ring::RingClient::create(*owned->memory, client_options(dispatchers));
  if (!client) return client.error();
  owned->client = std::move(client).value();
  if (Status s = owned->cpu_server->start(); !s) return s.error();
  if (Status s = activate_all(*owned); !s) return s.error();
  owned->label = "cpu ring server (" + std::to_string(shards) + " shard thread(s)), " +
                 std::to_string(dispatchers) + " dispatcher thread(s)";
  rig = owned.release();
  static bool registered = false;
  if (!registered) {
    registered = true;
    on_shutdown([] {
      delete rig;
      rig = nullptr;
    });
  }
  return rig;
}
Result<RingRig*> cpu_rig() { return cpu_rig_with(1, 1); }

// A RingHost serving the echo program and a runtime whose RingGrain calls it; kept for the rest of
// the run. Runtime first at teardown: its grain deactivates (parks its state) into the host.
struct GrainRig {
  std::unique_ptr<grains::RingHost> host;
  std::unique_ptr<runtime::Runtime> rt;
  runtime::GrainRef<grains::RingGrain> echo;
  std::string label;
  ~GrainRig() {
    rt.reset();
    host.reset();
  }
};

// One echo call through the runtime from this (non-worker) thread: the reply's 8 bytes as a value,
// or the call's error (the runtime rethrows it as ErrorException).
Result<std::uint64_t> grain_echo(GrainRig& rig, std::uint64_t value) {
  std::vector<std::byte> payload(sizeof value);
  std::memcpy(payload.data(), &value, sizeof value);
  try {
    const std::vector<std::byte> reply = rig.rt->run(
        rig.echo.call<&grains::RingGrain::call>(kEcho, std::move(payload), std::uint32_t{sizeof value}));
    if (reply.size() != sizeof value) {
      return Error(ErrorCode::internal, "grain echo replied " + std::to_string(reply.size()) + " bytes, expected 8");
    }
    return u64_of(reply);
  } catch (const ErrorException& e) {
    return e.error();
  }
}

// The echo program on a RingHost placed as asked (cuda: CudaRingServer or an error), one runtime
// worker (one caller needs no more), and the echo grain activated by a first call.
Result<std::unique_ptr<GrainRig>> make_grain_rig(grains::RingPlacement placement,
                                                 std::optional<ring::CudaHandlerSource> cuda_handlers) {
  grains::RingProgram program;
  program.actor_types = {{"echo", kActorType, kEchoStateBytes, kGrainActors}};
  auto table = cpu_echo_handlers();
  if (!table) return table.error();
  program.cpu_handlers = std::move(table).value();
  program.cuda_handlers = std::move(cuda_handlers);
  grains::RingHostOptions options;
  options.name = "bench_grain_echo";
  options.placement = placement;
  options.ring.request_slots = 256;
  options.ring.completion_slots = 256;
  options.ring.pool_chunks = 16;
  auto host = grains::RingHost::create(std::move(options), std::move(program));
  if (!host) return host.error();
  auto rig = std::make_unique<GrainRig>();
  rig->host = std::move(host).value();
  auto rt = runtime::Runtime::create({.worker_threads = 1});
  if (!rt) return rt.error();
  rig->rt = std::move(rt).value();
  grains::RingHost& ring_host = *rig->host;
  auto make_grain = [&ring_host] {
    return std::make_unique<grains::RingGrain>(ring_host, grains::RingGrainKind{kActorType, {}});
  };
  if (Status s = rig->rt->register_grain<grains::RingGrain>({}, make_grain); !s) {
    return s.error();
  }
  rig->echo = rig->rt->get<grains::RingGrain>("echo");
  auto first = grain_echo(*rig, 1);
  if (!first) return first.error();
  if (*first != 1) return Error(ErrorCode::internal, "grain echo reply mismatch on activation");
  const std::string server = ring_host.cuda_server() != nullptr
                                 ? ring_host.cuda_server()->mode().description
                                 : ring_host.placement().device + " ring server (1 thread)";
  rig->label = "runtime (1 worker, run() per call) over " + server;
  return rig;
}

Result<GrainRig*> cpu_grain_rig() {
  static GrainRig* rig = nullptr;
  if (rig != nullptr) return rig;
  auto owned = make_grain_rig(grains::RingPlacement::cpu, std::nullopt);
  if (!owned) return owned.error();
  rig = std::move(owned).value().release();
  on_shutdown([] {
    delete rig;
    rig = nullptr;
  });
  return rig;
}

#if GPUBRIDGE_HAVE_CUDA
// The ring's echo handler as device code (state counter + copy of the payload).
constexpr const char* kEchoHandlerSource = R"(
__device__ int bench_echo(const gb_ring_call& c) {
  ++*reinterpret_cast<unsigned long long*>(c.state);
  if (c.payload_bytes > c.reply_capacity) return -GB_RING_OUT_OF_RANGE;
  for (unsigned int i = 0; i < c.payload_bytes; ++i) c.reply[i] = c.payload[i];
  return static_cast<int>(c.payload_bytes);
}
)";

Status cuda_present() {
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) return compute::cuda::to_error(e, "cudaGetDeviceCount");
  if (count == 0) return Error(ErrorCode::unavailable, "no CUDA device");
  return {};
}

// A device is present and no CUDA ring case has failed yet.
Status cuda_usable() {
  if (Status s = cuda_present(); !s) return s;
  if (!cuda_ring_failure().empty()) {
    return Error(ErrorCode::unavailable, "skipped: an earlier CUDA ring case failed: " + cuda_ring_failure());
  }
  return {};
}

// One persistent kernel at a time: loading or freeing while another spins may wait for an idle
// context (lazy module loading), so each CUDA fixture releases the others before it starts.
RingRig* g_cuda_rig = nullptr;
struct CudaMailbox;
CudaMailbox* g_cuda_mailbox = nullptr;
GrainRig* g_cuda_grain_rig = nullptr;
void release_cuda_rig();
void release_cuda_mailbox();
void release_cuda_grain_rig();

// The CUDA rig of `shards` shards and a client with `dispatchers` dispatcher threads (one
// persistent kernel per device at a time: a rig of another shape is released first).
Result<RingRig*> cuda_rig_shaped(std::uint32_t shards, std::uint32_t dispatchers, bool timed) {
  if (g_cuda_rig != nullptr && g_cuda_rig->shards == shards && g_cuda_rig->dispatchers == dispatchers &&
      g_cuda_rig->timed == timed) {
    return g_cuda_rig;
  }
  release_cuda_rig();
  if (Status s = cuda_usable(); !s) return s.error();
  release_cuda_mailbox();
  release_cuda_grain_rig();
  auto owned = std::make_unique<RingRig>();
  owned->shards = shards;
  owned->dispatchers = dispatchers;
  owned->cuda = true;
  owned->timed = timed;
  auto memory = ring::RingMemory::create(ring_config(shards));
  if (!memory) return memory.error();
  owned->memory = std::move(memory).value();
  ring::CudaRingServerOptions options;
  options.time_phases = timed;
  auto server =
      ring::CudaRingServer::create(*owned->memory, {kEchoHandlerSource, {{kEcho, kActorType, "bench_echo"}}}, options);
  if (!server) return server.error();
  owned->cuda_server = std::move(server).value();
  auto client = ring::RingClient::create(*owned->memory, client_options(dispatchers));
  if (!client) return client.error();
  owned->client = std::move(client).value();
  if (Status s = owned->cuda_server->start(); !s) return s.error();
  if (Status s = activate_all(*owned); !s) return s.error();
  owned->label = owned->cuda_server->mode().description + ", " + std::to_string(dispatchers) +
                 " dispatcher thread(s)" + (timed ? ", kernel phases timed" : "");
  g_cuda_rig = owned.release();
  return g_cuda_rig;
}
Result<RingRig*> cuda_rig_with(std::uint32_t shards, std::uint32_t dispatchers) {
  return cuda_rig_shaped(shards, dispatchers, false);
}
Result<RingRig*> cuda_timed_rig_with(std::uint32_t shards, std::uint32_t dispatchers) {
  return cuda_rig_shaped(shards, dispatchers, true);
}
Result<RingRig*> cuda_timed_rig() { return cuda_timed_rig_with(1, 1); }
Result<RingRig*> cuda_rig() { return cuda_rig_with(1, 1); }

void release_cuda_rig() {
  delete g_cuda_rig;
  g_cuda_rig = nullptr;
}

// The echo program with the ring case's device handler, placement cuda (never a CPU fallback).
Result<GrainRig*> cuda_grain_rig() {
  if (g_cuda_grain_rig != nullptr) return g_cuda_grain_rig;
  if (Status s = cuda_usable(); !s) return s.error();
  release_cuda_rig();
  release_cuda_mailbox();
  auto owned = make_grain_rig(grains::RingPlacement::cuda,
                              ring::CudaHandlerSource{kEchoHandlerSource, {{kEcho, kActorType, "bench_echo"}}});
  if (!owned) return owned.error();
  g_cuda_grain_rig = std::move(owned).value().release();
  return g_cuda_grain_rig;
}

void release_cuda_grain_rig() {
  delete g_cuda_grain_rig;
  g_cuda_grain_rig = nullptr;
}

// The raw reference: one 8-byte request and reply in mapped page-locked memory, a kernel that
// spins on the request's sequence word. Words on separate 64-byte lines: request seq + payload,
// reply seq + reply, stop.
constexpr const char* kMailboxSource = R"(
extern "C" __global__ void bench_mailbox(volatile unsigned long long* box) {
  unsigned long long seen = 0;
  for (;;) {
    const unsigned long long seq = box[0];
    const unsigned long long stop = box[16];  // read together with seq: one trip over the bus, not two
    if (seq == seen) {
      if (stop != 0) return;
      continue;
    }
    __threadfence_system();
    const unsigned long long value = box[1];
    box[9] = value;
    __threadfence_system();
    box[8] = seq;
    seen = seq;
  }
}
)";

struct CudaMailbox {
  std::uint64_t* box = nullptr;  // host view, 24 words
  std::uint64_t next = 1;
  cudaStream_t stream = nullptr;
  std::shared_ptr<compute::cuda::NvrtcProgram> program;
  ~CudaMailbox() {
    if (box != nullptr) {
      std::atomic_ref<std::uint64_t>(box[16]).store(1, std::memory_order_release);
      if (stream != nullptr) cudaStreamSynchronize(stream);
    }
    if (stream != nullptr) cudaStreamDestroy(stream);
    program.reset();
    if (box != nullptr) cudaFreeHost(box);
  }
};

Result<CudaMailbox*> cuda_mailbox() {
  if (g_cuda_mailbox != nullptr) return g_cuda_mailbox;
  if (Status s = cuda_present(); !s) return s.error();
  release_cuda_rig();
  release_cuda_grain_rig();
  auto owned = std::make_unique<CudaMailbox>();
  cudaDeviceProp prop{};
  GB_CUDA_TRY(cudaSetDevice(0));
  GB_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  auto program = compute::cuda::NvrtcProgram::build(kMailboxSource, compute::DType::f32, 0, prop.major * 10 + prop.minor);
  if (!program) return program.error();
  owned->program = std::move(program).value();
  auto kernel = owned->program->kernel("bench_mailbox");
  if (!kernel) return kernel.error();
  void* box = nullptr;
  GB_CUDA_TRY(cudaHostAlloc(&box, 24 * sizeof(std::uint64_t), cudaHostAllocMapped | cudaHostAllocPortable));
  owned->box = static_cast<std::uint64_t*>(box);
  std::memset(box, 0, 24 * sizeof(std::uint64_t));
  void* device_box = nullptr;
  GB_CUDA_TRY(cudaHostGetDevicePointer(&device_box, box, 0));
  GB_CUDA_TRY(cudaStreamCreateWithFlags(&owned->stream, cudaStreamNonBlocking));
  void* args[] = {&device_box};
  GB_CUDA_TRY(cudaLaunchKernel(reinterpret_cast<const void*>(*kernel), dim3(1), dim3(1), args, 0, owned->stream));
  g_cuda_mailbox = owned.release();
  return g_cuda_mailbox;
}

void release_cuda_mailbox() {
  delete g_cuda_mailbox;
  g_cuda_mailbox = nullptr;
}

void rtt_cuda_mailbox(benchmark::State& state) {
  auto mailbox = cuda_mailbox();
  if (!mailbox) {
    state.SkipWithError(("no cuda device: " + mailbox.error().to_string()).c_str());
    return;
  }
  CudaMailbox& m = **mailbox;
  Latencies latencies;
  for (auto _ : state) {
    const Clock::time_point start = Clock::now();
    const std::uint64_t seq = m.next++;
    std::atomic_ref<std::uint64_t>(m.box[1]).store(seq * 3, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(m.box[0]).store(seq, std::memory_order_release);
    while (std::atomic_ref<std::uint64_t>(m.box[8]).load(std::memory_order_acquire) != seq) {
    }
    const std::uint64_t reply = std::atomic_ref<std::uint64_t>(m.box[9]).load(std::memory_order_relaxed);
    latencies.add(Clock::now() - start);
    if (reply != seq * 3) {
      state.SkipWithError("mailbox reply mismatch");
      return;
    }
  }
  latencies.report(state);
  state.SetLabel("raw one-slot mapped-memory mailbox kernel");
}
#endif

// The CPU reference: a thread spinning on a one-slot mailbox in plain memory (joined on destruction).
struct CpuMailbox {
  alignas(64) std::atomic<std::uint64_t> request{0};
  std::atomic<std::uint64_t> payload{0};
  alignas(64) std::atomic<std::uint64_t> reply_seq{0};
  std::atomic<std::uint64_t> reply{0};
  alignas(64) std::atomic<bool> stop{false};
  std::uint64_t next = 1;
  std::thread server;
  CpuMailbox() {
    server = std::thread([this] {
      std::uint64_t seen = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t seq = request.load(std::memory_order_acquire);
        if (seq == seen) continue;
        reply.store(payload.load(std::memory_order_relaxed), std::memory_order_relaxed);
        reply_seq.store(seq, std::memory_order_release);
        seen = seq;
      }
    });
  }
  ~CpuMailbox() {
    stop.store(true);
    server.join();
  }
};

// The mailbox lives for one benchmark run only: its thread never sleeps, and on a small machine
// it would take a core from the benchmarks that run after it.
void rtt_cpu_mailbox(benchmark::State& state) {
  auto mailbox = std::make_unique<CpuMailbox>();
  Latencies latencies;
  for (auto _ : state) {
    const Clock::time_point start = Clock::now();
    const std::uint64_t seq = mailbox->next++;
    mailbox->payload.store(seq * 3, std::memory_order_relaxed);
    mailbox->request.store(seq, std::memory_order_release);
    while (mailbox->reply_seq.load(std::memory_order_acquire) != seq) {
    }
    const std::uint64_t reply = mailbox->reply.load(std::memory_order_relaxed);
    latencies.add(Clock::now() - start);
    if (reply != seq * 3) {
      state.SkipWithError("mailbox reply mismatch");
      return;
    }
  }
  latencies.report(state);
  state.SetLabel("raw one-slot mailbox thread");
}

// One call at a time through RingClient::send, the caller blocking on its future (at most
// kReplyLimit). With a `pause`, each call follows that much quiet, as sporadic callers send: the round
// trip then includes waking whatever went to sleep meanwhile (timed by hand, pauses excluded).
void rtt_ring(benchmark::State& state, Result<RingRig*> (*get)(), std::chrono::milliseconds pause) {
  auto rig = get();
  if (!rig) {
    state.SkipWithError(rig.error().to_string().c_str());
    return;
  }
  RingRig& r = **rig;
  Latencies latencies;
  std::uint64_t value = 0;
  for (auto _ : state) {
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
    const Clock::time_point start = Clock::now();
    ++value;
    auto sent = r.client->send(r.actors[0], kEcho,
                               std::span<const std::byte>(reinterpret_cast<const std::byte*>(&value), sizeof value),
                               deadline());
    if (!sent) return fail_case(state, r.cuda, sent.error().to_string());
    if (sent->wait_for(kReplyLimit) != std::future_status::ready) {
      return fail_case(state, r.cuda, "no reply within " + std::to_string(kReplyLimit.count()) + " s");
    }
    Result<ring::Reply> reply = sent->get();
    const Clock::duration took = Clock::now() - start;
    latencies.add(took);
    if (pause.count() > 0) state.SetIterationTime(std::chrono::duration<double>(took).count());
    if (!reply || u64_of(*reply) != value) {
      return fail_case(state, r.cuda, reply ? "ring reply mismatch" : reply.error().to_string());
    }
  }
  latencies.report(state);
  state.SetLabel(pause.count() > 0
                     ? r.label + ", one call after each " + std::to_string(pause.count()) + " ms of quiet"
                     : r.label);
}

constexpr auto kQuietPause = std::chrono::milliseconds(2);  // ring_sporadic

// What a send_async callback hands to a spinning caller: the reply's value (or an error) and a
// sequence number published last.
struct SpinReply {
  alignas(64) std::atomic<std::uint64_t> seq{0};
  std::uint64_t value = 0;
  Clock::time_point delivered;  // when the callback ran (on the client's dispatcher thread)
  std::string error;
};

void rtt_ring_spin(benchmark::State& state, Result<RingRig*> (*get)()) {
  auto rig = get();
  if (!rig) {
    state.SkipWithError(rig.error().to_string().c_str());
    return;
  }
  RingRig& r = **rig;
  auto box = std::make_shared<SpinReply>();  // shared: a late callback after a failed case finds it alive
  Latencies latencies;
  Latencies to_callback;  // send to the callback's start: the round trip less the hop to the caller
  Latencies sending;      // send_async itself: the claim, the slot, the publication
  std::uint64_t value = 0;
  const PhaseSnapshot phases_before = PhaseSnapshot::of(r);
  for (auto _ : state) {
    const Clock::time_point start = Clock::now();
    ++value;
    const std::uint64_t seq = value;
    Status sent = r.client->send_async(r.actors[0], kEcho,
                                       std::span<const std::byte>(reinterpret_cast<const std::byte*>(&value), sizeof value),
                                       deadline(), [box, seq](Result<ring::Reply> reply) {
                                         box->delivered = Clock::now();
                                         if (reply) {
                                           box->value = u64_of(*reply);
                                         } else {
                                           box->error = reply.error().to_string();
                                         }
                                         box->seq.store(seq, std::memory_order_release);
                                       });
    if (!sent) return fail_case(state, r.cuda, sent.error().to_string());
    sending.add(Clock::now() - start);
    const Clock::time_point limit = start + kReplyLimit;
    std::uint32_t polls = 0;
    while (box->seq.load(std::memory_order_acquire) != seq) {
      if (++polls % 4096 == 0 && Clock::now() > limit) {
        return fail_case(state, r.cuda, "no reply within " + std::to_string(kReplyLimit.count()) + " s");
      }
    }
    latencies.add(Clock::now() - start);
    to_callback.add(box->delivered - start);
    if (!box->error.empty()) return fail_case(state, r.cuda, box->error);
    if (box->value != value) return fail_case(state, r.cuda, "ring reply mismatch");
  }
  latencies.report(state);
  to_callback.report(state, "callback_");
  sending.report(state, "send_");
  PhaseSnapshot::of(r).report_since(state, r, phases_before);
  state.SetLabel(r.label + ", caller spins on the reply");
}

void rtt_grain(benchmark::State& state, Result<GrainRig*> (*get)()) {
  auto rig = get();
  if (!rig) {
    state.SkipWithError(rig.error().to_string().c_str());
    return;
  }
  GrainRig& g = **rig;
  Latencies latencies;
  std::uint64_t value = 1;  // 1 was the activating call
  for (auto _ : state) {
    const Clock::time_point start = Clock::now();
    ++value;
    Result<std::uint64_t> reply = grain_echo(g, value);
    latencies.add(Clock::now() - start);
    if (!reply || *reply != value) {
      state.SkipWithError(reply ? "grain reply mismatch" : reply.error().to_string().c_str());
      return;
    }
  }
  latencies.report(state);
  state.SetLabel(g.label);
}

void throughput_ring(benchmark::State& state,
                     Result<RingRig*> (*get)(std::uint32_t shards, std::uint32_t dispatchers)) {
  auto rig = get(static_cast<std::uint32_t>(state.range(0)), static_cast<std::uint32_t>(state.range(3)));
  if (!rig) {
    state.SkipWithError(rig.error().to_string().c_str());
    return;
  }
  RingRig& r = **rig;
  const auto producers = static_cast<std::size_t>(state.range(1));
  const auto actors = static_cast<std::size_t>(state.range(2));
  // What one iteration's callbacks count: on the heap, and left there when the case gives up on
  // late replies (a callback may still come).
  struct Tally {
    std::atomic<std::size_t> done{0};
    std::atomic<std::size_t> failures{0};
  };
  // The producer threads live for the whole case (not started per iteration): each iteration
  // publishes a tally and bumps `generation`; every producer sends its share of the messages and
  // counts itself in `finished`; they sleep on `generation` in between.
  struct Crew {
    std::atomic<std::uint64_t> generation{0};
    std::atomic<Tally*> tally{nullptr};
    std::atomic<std::size_t> finished{0};
    std::atomic<bool> quit{false};
  } crew;
  std::vector<std::thread> threads;
  for (std::size_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      const std::uint64_t payload = p;
      std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(&payload), sizeof payload);
      for (std::uint64_t seen = 0;;) {
        crew.generation.wait(seen, std::memory_order_acquire);
        if (crew.quit.load(std::memory_order_acquire)) return;
        seen = crew.generation.load(std::memory_order_acquire);
        Tally* tally = crew.tally.load(std::memory_order_acquire);
        for (std::size_t i = p; i < kThroughputMessages; i += producers) {
          Status s = r.client->send_async(r.actors[i % actors], kEcho, bytes, deadline(), [tally](Result<ring::Reply> reply) {
            if (!reply) tally->failures.fetch_add(1, std::memory_order_relaxed);
            tally->done.fetch_add(1, std::memory_order_release);
          });
          if (!s) {
            tally->failures.fetch_add(1, std::memory_order_relaxed);
            tally->done.fetch_add(1, std::memory_order_release);
          }
        }
        crew.finished.fetch_add(1, std::memory_order_release);
      }
    });
  }
  const auto stop_crew = [&] {
    crew.quit.store(true, std::memory_order_release);
    crew.generation.fetch_add(1, std::memory_order_release);
    crew.generation.notify_all();
    for (auto& t : threads) t.join();
  };
  std::size_t failures = 0;
  const PhaseSnapshot phases_before = PhaseSnapshot::of(r);
  for (auto _ : state) {
    auto* tally = new Tally;
    crew.finished.store(0, std::memory_order_relaxed);
    crew.tally.store(tally, std::memory_order_release);
    crew.generation.fetch_add(1, std::memory_order_release);
    crew.generation.notify_all();
    const Clock::time_point limit = Clock::now() + kThroughputLimit;
    while (crew.finished.load(std::memory_order_acquire) < producers ||
           tally->done.load(std::memory_order_acquire) < kThroughputMessages) {
      if (Clock::now() > limit) {
        const std::size_t done = tally->done.load();
        stop_crew();  // the producers' sends end at their deadlines at the latest
        return fail_case(state, r.cuda,
                         std::to_string(kThroughputMessages - done) + " of " + std::to_string(kThroughputMessages) +
                             " messages unanswered after " + std::to_string(kThroughputLimit.count()) + " s");
      }
      std::this_thread::yield();
    }
    failures += tally->failures.load();
    delete tally;
  }
  stop_crew();
  if (failures > 0) return fail_case(state, r.cuda, std::to_string(failures) + " messages failed");
  state.counters["msgs_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kThroughputMessages, benchmark::Counter::kIsRate);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kThroughputMessages));
  PhaseSnapshot::of(r).report_since(state, r, phases_before);
  state.SetLabel(r.label);
}

// One backend's cases: round trips against the raw mailbox and through a grain, and throughput
// over `shapes` ({shards, producers, actors, dispatchers}), with the ratio pairs.
struct BackendCases {
  const char* backend;
  Result<RingRig*> (*rig)();
  void (*mailbox)(benchmark::State&);
  Result<GrainRig*> (*grain_rig)();
  Result<RingRig*> (*rig_with)(std::uint32_t, std::uint32_t);
  std::vector<std::vector<std::int64_t>> shapes;
};

void register_backend(const BackendCases& c) {
  const std::string b = c.backend;
  const std::string rtt = "ring_rtt/" + b + "/";
  benchmark::RegisterBenchmark((rtt + "mailbox").c_str(), c.mailbox)->UseRealTime();
  benchmark::RegisterBenchmark((rtt + "ring_spin").c_str(), [get = c.rig](benchmark::State& s) { rtt_ring_spin(s, get); })
      ->UseRealTime();
  benchmark::RegisterBenchmark((rtt + "ring").c_str(),
                               [get = c.rig](benchmark::State& s) { rtt_ring(s, get, std::chrono::milliseconds(0)); })
      ->UseRealTime();
  register_pair({"round_trip", b, rtt + "ring_spin", rtt + "mailbox"});
  register_pair({.scenario = "round_trip_p50", .backend = b, .subject = rtt + "ring_spin", .reference = rtt + "mailbox",
                 .counter = "p50_us"});
  register_pair({.scenario = "round_trip_p99", .backend = b, .subject = rtt + "ring_spin", .reference = rtt + "mailbox",
                 .counter = "p99_us"});
  register_pair({"blocking_wait", b, rtt + "ring", rtt + "ring_spin"});
  benchmark::RegisterBenchmark((rtt + "ring_sporadic").c_str(),
                               [get = c.rig](benchmark::State& s) { rtt_ring(s, get, kQuietPause); })
      ->UseManualTime()
      ->Iterations(200);
  auto* throughput = benchmark::RegisterBenchmark(("ring_throughput/" + b + "/ring").c_str(),
                                                  [get = c.rig_with](benchmark::State& s) { throughput_ring(s, get); })
                         ->ArgNames({"shards", "producers", "actors", "dispatchers"})
                         ->UseRealTime();
  for (const auto& shape : c.shapes) throughput->Args(shape);
  // Last: its calls (Runtime::run) have no time bound of their own.
  benchmark::RegisterBenchmark((rtt + "grain").c_str(), [get = c.grain_rig](benchmark::State& s) { rtt_grain(s, get); })
      ->UseRealTime();
  register_pair({"grain_round_trip", b, rtt + "grain", rtt + "ring"});
}

void register_all() {
  register_backend({"cpu", cpu_rig, rtt_cpu_mailbox, cpu_grain_rig, cpu_rig_with,
                    {{1, 4, 64, 1}, {4, 4, 64, 1}, {4, 4, 64, 2}}});
#if GPUBRIDGE_HAVE_CUDA
  on_shutdown([] {
    release_cuda_rig();
    release_cuda_mailbox();
    release_cuda_grain_rig();
  });
  register_backend({"cuda", cuda_rig, rtt_cuda_mailbox, cuda_grain_rig, cuda_rig_with,
                    {{1, 4, 64, 1},
                     {1, 8, 256, 1},
                     {4, 8, 256, 1},
                     {4, 8, 256, 2},
                     {16, 8, 256, 1},
                     {16, 8, 256, 4},
                     {32, 8, 256, 4},
                     {64, 16, 256, 8}}});
  // The kernel's own account of where its time goes (time_phases), after the untimed cases.
  benchmark::RegisterBenchmark("ring_rtt/cuda/ring_spin_timed",
                               [](benchmark::State& st) { rtt_ring_spin(st, cuda_timed_rig); })
      ->UseRealTime();
  benchmark::RegisterBenchmark("ring_throughput/cuda/ring_timed",
                               [](benchmark::State& st) { throughput_ring(st, cuda_timed_rig_with); })
      ->ArgNames({"shards", "producers", "actors", "dispatchers"})
      ->Args({1, 8, 256, 1})
      ->Args({16, 8, 256, 4})
      ->UseRealTime();
#endif
}

}  // namespace
}  // namespace gpubridge::bench

int main(int argc, char** argv) {
  gpubridge::bench::register_all();
  return gpubridge::bench::run_with_ratio_report(
      argc, argv,
      {.help = "bench_ring: ring round trips (CPU server; CUDA persistent kernel when a device is present)\n"
               "against a raw one-slot mailbox, the same echo as a RingGrain call through the runtime\n"
               "against the bare ring, and messages/s with many producers and actors.\n\n"});
}

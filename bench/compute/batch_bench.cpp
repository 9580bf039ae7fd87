// Dynamic batching throughput: many small requests (vector.add f32, 256 elements each) through
// the batcher, against the raw backend API doing the same work in the same batch sizes, and
// against one launch per request. Every request has its own input and output memory.
//
// Measured (per backend cpu, cuda, opencl; Arg = batch size B, 256 and 4096; one iteration =
// 4096 requests, so every row's time per call is per request):
//   batch/<b>/batcher      DynamicBatcher with max_batch = B (max_delay 200 us, 4 batches in
//                          flight), fed by one thread through a fixed window of 8192 requests
//                          in two halves: an iteration submits one half and waits (asleep) for
//                          the other, so up to 8192 requests are in flight.
//   batch/<b>/raw          the same requests in batches of B with the backend's own API, one
//                          batch at a time (compute/raw_batch.hpp).
//   batch/<b>/per_request  Executor::submit per request (one launch each), B futures in flight,
//                          then all waited, 4096 / B times.
// Counters: items_per_second = requests per second; avg_batch = requests per launch (batcher).
// Ratios (printed after the run): batch = batcher / raw time per request (<= 1.25 means at
// least 0.8 of raw throughput); batch_gain = per_request / batcher (the batching gain).
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/ratio_report.hpp"
#include "compute/compute_benchmarks.hpp"
#include "compute/compute_fixture.hpp"
#include "compute/raw_batch.hpp"
#include "gpubridge/compute/batcher.hpp"

namespace gpubridge::bench {

namespace {

using compute::BackendKind;

constexpr std::size_t kN = kRawBatchElements;  // elements per request (256)
constexpr std::size_t kPerIteration = 4096;  // requests per benchmark iteration
constexpr std::size_t kWindow = 2 * kPerIteration;

// Requests in flight per half of the window; the producer sleeps (no spinning, which would take
// a core from the batcher on small machines) until a half has drained.
struct Halves {
  std::array<std::atomic<std::size_t>, 2> outstanding{};
  std::atomic<bool> failed{false};  // a request completed with an error (checked after the run)
  std::mutex mu;
  std::condition_variable drained;

  void done(std::size_t half) {
    if (outstanding[half].fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mu);
      drained.notify_all();
    }
  }
  void wait(std::size_t half) {
    std::unique_lock lock(mu);
    drained.wait(lock, [&] { return outstanding[half].load(std::memory_order_acquire) == 0; });
  }
};

// One request with its own memory.
struct Slot {
  std::vector<float> a, b, out;
  compute::BatchRequest request;
  Halves* halves = nullptr;
  std::size_t half = 0;
};

void slot_done(compute::BatchRequest& r) {
  auto* s = static_cast<Slot*>(r.user);
  if (!r.status.ok()) s->halves->failed.store(true, std::memory_order_relaxed);
  s->halves->done(s->half);
}

std::vector<std::unique_ptr<Slot>> make_slots(std::size_t count) {
  const HostInputs& in = host_inputs(kN);
  std::vector<std::unique_ptr<Slot>> slots;
  slots.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto s = std::make_unique<Slot>();
    s->a = in.a;
    s->b = in.b;
    s->out.assign(kN, 0.f);
    s->request.inputs[0] = compute::TensorView(s->a);
    s->request.inputs[1] = compute::TensorView(s->b);
    s->request.output = s->out.data();
    s->request.output_capacity = kN;
    s->request.on_done = slot_done;
    s->request.user = s.get();
    slots.push_back(std::move(s));
  }
  return slots;
}

std::size_t batch_arg(const benchmark::State& state) { return static_cast<std::size_t>(state.range(0)); }

void set_request_counters(benchmark::State& state) {
  if (state.error_occurred()) return;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kPerIteration));
}

// Checks a few outputs (first, middle, last request); empty when correct.
std::optional<std::string> check_slots(const std::vector<std::unique_ptr<Slot>>& slots, std::size_t count) {
  for (std::size_t i : {std::size_t{0}, count / 2, count - 1}) {
    if (auto bad = check_sum(slots[i]->out.data(), kN)) return "request " + std::to_string(i) + ": " + *bad;
  }
  return std::nullopt;
}

// ---- batcher ----

// Submits half `half` of the window (its previous run must have drained).
Status submit_half(compute::DynamicBatcher& batcher, std::vector<std::unique_ptr<Slot>>& slots, Halves& halves,
                   std::size_t half) {
  halves.outstanding[half].store(kPerIteration, std::memory_order_relaxed);
  for (std::size_t i = half * kPerIteration; i < (half + 1) * kPerIteration; ++i) {
    if (Status st = batcher.submit(slots[i]->request); !st) return st;
  }
  return {};
}

// The first failed request's status, if any request failed.
Status first_failure(const std::vector<std::unique_ptr<Slot>>& slots) {
  for (const auto& s : slots) {
    if (!s->request.status.ok()) return s->request.status;
  }
  return {};
}

void batcher_run(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  compute::BatchPolicy policy;
  policy.max_batch = batch_arg(state);
  policy.queue_capacity = kWindow;
  policy.max_inflight_batches = 4;
  auto created = compute::DynamicBatcher::create(*ex, "vector.add", compute::DType::f32, policy, pinned_to(backend));
  if (!created) return skip(state, "DynamicBatcher::create", created.error().to_string());
  compute::DynamicBatcher& batcher = **created;
  Halves halves;
  auto slots = make_slots(kWindow);
  for (std::size_t i = 0; i < kWindow; ++i) {
    slots[i]->halves = &halves;
    slots[i]->half = i / kPerIteration;
  }
  // Warm-up (pools, kernel build): the whole window twice, checked.
  for (int round = 0; round < 2; ++round) {
    for (std::size_t h = 0; h < 2; ++h) {
      if (Status s = submit_half(batcher, slots, halves, h); !s) return skip(state, "submit", s.error().to_string());
    }
    halves.wait(0);
    halves.wait(1);
  }
  if (Status s = first_failure(slots); !s) return skip(state, "batched vector.add", s.error().to_string());
  if (auto bad = check_slots(slots, kWindow)) return skip(state, "batched vector.add", *bad);
  const compute::BatchReport& report = slots[0]->request.report;
  if (report.backend != backend) return skip(state, "batcher", std::string("ran on ") + report.device_id);
  state.SetLabel(device_label(report.device_id).c_str());

  const compute::BatcherStats before = batcher.stats();
  // Prime half 0; each iteration submits one half and waits for the other, so its time is the
  // steady-state time of 4096 requests.
  if (Status s = submit_half(batcher, slots, halves, 0); !s) return skip(state, "submit", s.error().to_string());
  std::size_t half = 1;
  for (auto _ : state) {
    halves.wait(half);  // drained by the previous iteration but one
    if (Status s = submit_half(batcher, slots, halves, half); !s) {
      skip(state, "batched vector.add", s.error().to_string());
      break;
    }
    halves.wait(1 - half);
    half = 1 - half;
  }
  halves.wait(0);
  halves.wait(1);
  if (halves.failed.load()) {
    const Status s = first_failure(slots);
    return skip(state, "batched vector.add", s.ok() ? "a request failed" : s.error().to_string());
  }
  const compute::BatcherStats after = batcher.stats();
  if (after.batches > before.batches) {
    state.counters["avg_batch"] = static_cast<double>(after.batched_requests - before.batched_requests) /
                                  static_cast<double>(after.batches - before.batches);
  }
  set_request_counters(state);
}

// ---- one launch per request ----

void per_request_run(benchmark::State& state, BackendKind backend) {
  compute::Executor* ex = executor_for(state, backend);
  if (ex == nullptr) return;
  const std::size_t window = batch_arg(state);
  auto slots = make_slots(window);
  const compute::CallOptions options = pinned_to(backend);
  std::vector<std::future<Result<compute::KernelResult>>> futures;
  futures.reserve(window);
  const auto round = [&]() -> Status {
    for (auto& s : slots) {
      futures.push_back(ex->submit({"vector.add", compute::DType::f32, {s->request.inputs[0], s->request.inputs[1]}, {}},
                                   options));
    }
    Status failure;
    for (std::size_t i = 0; i < futures.size(); ++i) {
      auto r = futures[i].get();
      if (!r) {
        if (failure.ok()) failure = r.error();
        continue;
      }
      std::memcpy(slots[i]->out.data(), r->outputs.front().data(), kN * sizeof(float));
    }
    futures.clear();
    return failure;
  };
  if (Status s = round(); !s) return skip(state, "Executor::submit", s.error().to_string());
  if (auto bad = check_slots(slots, window)) return skip(state, "Executor::submit", *bad);
  state.SetLabel(backend_label(backend).c_str());
  for (auto _ : state) {
    for (std::size_t done = 0; done < kPerIteration; done += window) {
      if (Status s = round(); !s) {
        skip(state, "Executor::submit", s.error().to_string());
        return;
      }
    }
  }
  set_request_counters(state);
}

// ---- raw (compute/raw_batch.hpp, shared with bench_grains) ----

void raw_run(benchmark::State& state, BackendKind backend) {
  raw_batch_run(state, backend, batch_arg(state), kPerIteration);
}

}  // namespace

void register_batch_benchmarks() {
  for (BackendKind backend : {BackendKind::cpu, BackendKind::cuda, BackendKind::opencl}) {
    const std::string prefix = "batch/" + std::string(compute::to_string(backend)) + "/";
    const std::string b(compute::to_string(backend));
    for (const auto& [name, fn] : {std::pair{"batcher", &batcher_run}, std::pair{"raw", &raw_run},
                                   std::pair{"per_request", &per_request_run}}) {
      benchmark::RegisterBenchmark((prefix + name).c_str(), fn, backend)
          ->Arg(256)
          ->Arg(4096)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
    register_pair({"batch", b, prefix + "batcher", prefix + "raw", static_cast<double>(kPerIteration)});
    register_pair({"batch_gain", b, prefix + "per_request", prefix + "batcher", static_cast<double>(kPerIteration)});
  }
}

}  // namespace gpubridge::bench

#pragma once
// StreamGrain: runs one catalog kernel over an ordered stream of items. Items are batched with
// those of every other stream using the same kernel; results are delivered to subscribers in
// push order, whatever order their batches complete in.
//
// Backpressure: at most `window` items are in flight per stream. push() completes as soon as its
// item is accepted; when the window is full it waits (without blocking a thread) until a result
// was delivered. flush() waits until every pushed item was delivered. A failed item (deadline,
// device or data error) is delivered too, with its error, in its place in the order.
//
// Reentrant: pushes, deliveries and flushes interleave at their awaits (never at the same time).
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpubridge/compute/batcher.hpp"
#include "gpubridge/grains/gpu_services.hpp"
#include "gpubridge/runtime/async_event.hpp"
#include "gpubridge/runtime/grain.hpp"
#include "gpubridge/runtime/observers/observer_set.hpp"

namespace gpubridge::grains {

struct StreamConfig {
  std::string kernel = "vector.normalize";
  compute::DType dtype = compute::DType::f32;
  std::vector<double> scalars;  // the kernel's scalar parameters, the same for every item
  std::size_t window = 64;      // items in flight
};

struct StreamResult {
  std::uint64_t sequence = 0;  // 0, 1, 2, ... in push order
  Status status;
  compute::Tensor output;      // empty when status is an error
  compute::BatchReport report;
};

class StreamGrain : public runtime::Grain {
 public:
  explicit StreamGrain(GpuServices& services);
  ~StreamGrain() override;

  // Sets the kernel; allowed once, before the first push (failed_precondition afterwards).
  runtime::Task<void> configure(StreamConfig config);
  // Accepts one item (the kernel's inputs, owned by the stream from now on); returns its sequence.
  runtime::Task<std::uint64_t> push(std::vector<compute::Tensor> inputs);
  // Completes when every item pushed so far has been delivered.
  runtime::Task<void> flush();
  // Results are passed to `sink` in order, inside this grain's turns (the sink must not block).
  runtime::Task<std::uint64_t> subscribe(std::function<void(const StreamResult&)> sink);
  // Internal: delivers completed items in order (sent by the batch completion).
  runtime::Task<void> deliver();

  runtime::Task<void> on_activate() override;
  runtime::Task<void> on_deactivate() override;  // flushes first: nothing in flight is lost

 private:
  struct Item;
  static void on_item_done(compute::BatchRequest& request);
  static void wake(std::vector<runtime::AsyncEvent*>& waiters);

  GpuServices& services_;
  StreamConfig config_;
  compute::DynamicBatcher* batcher_ = nullptr;
  const compute::KernelDef* def_ = nullptr;
  runtime::GrainRef<StreamGrain> self_;
  runtime::ObserverSet<StreamResult> sinks_;
  std::deque<std::unique_ptr<Item>> in_flight_;  // push order; the head is delivered first
  std::uint64_t next_sequence_ = 0;
  // Suspended pushes waiting for room, and flushes waiting for an empty window. Each waiter owns
  // its event (in its own frame), so an event always outlives its awaiter.
  std::vector<runtime::AsyncEvent*> space_waiters_;
  std::vector<runtime::AsyncEvent*> drain_waiters_;
};

}  // namespace gpubridge::grains

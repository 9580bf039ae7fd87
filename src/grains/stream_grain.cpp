#include "gpubridge/grains/stream_grain.hpp"

#include <atomic>

namespace gpubridge::grains {

// One item in flight: its inputs, output and batch request. `done` is set by the batcher thread.
struct StreamGrain::Item {
  std::uint64_t sequence = 0;
  std::vector<compute::Tensor> inputs;
  compute::Tensor output;
  compute::BatchRequest request;
  std::atomic<bool> done{false};
  StreamGrain* grain = nullptr;
};

StreamGrain::StreamGrain(GpuServices& services) : services_(services) {}
StreamGrain::~StreamGrain() = default;

runtime::Task<void> StreamGrain::on_activate() {
  self_ = self<StreamGrain>();
  co_return;
}

runtime::Task<void> StreamGrain::on_deactivate() { co_await flush(); }

runtime::Task<void> StreamGrain::configure(StreamConfig config) {
  if (next_sequence_ > 0) {
    throw ErrorException(Error(ErrorCode::failed_precondition, "stream " + id().to_string() + " already has items"));
  }
  if (config.window == 0) throw ErrorException(Error(ErrorCode::invalid_argument, "stream window must be at least 1"));
  auto def = services_.executor().catalog().lookup(config.kernel);
  if (!def) throw ErrorException(def.error());
  if (config.scalars.size() != (*def)->signature.scalars.size()) {
    throw ErrorException(Error(ErrorCode::invalid_argument, config.kernel + " takes " +
                                                                std::to_string((*def)->signature.scalars.size()) +
                                                                " scalar(s)"));
  }
  auto batcher = services_.batcher(config.kernel, config.dtype);
  if (!batcher) throw ErrorException(batcher.error());
  def_ = *def;
  batcher_ = *batcher;
  config_ = std::move(config);
  co_return;
}

runtime::Task<std::uint64_t> StreamGrain::push(std::vector<compute::Tensor> inputs) {
  if (batcher_ == nullptr) {
    throw ErrorException(Error(ErrorCode::failed_precondition, "stream " + id().to_string() + " is not configured"));
  }
  if (inputs.size() != def_->signature.inputs.size() || inputs.front().count() == 0) {
    throw ErrorException(Error(ErrorCode::invalid_argument, config_.kernel + " takes " +
                                                                std::to_string(def_->signature.inputs.size()) +
                                                                " non-empty input(s) per item"));
  }
  while (in_flight_.size() >= config_.window) {
    runtime::AsyncEvent room;
    space_waiters_.push_back(&room);
    co_await room;
  }
  auto item = std::make_unique<Item>();
  item->sequence = next_sequence_++;
  item->grain = this;
  item->inputs = std::move(inputs);
  item->output = compute::Tensor::uninitialized(
      config_.dtype, compute::KernelCatalog::output_count(*def_, item->inputs.front().count()));
  compute::BatchRequest& r = item->request;
  for (std::size_t i = 0; i < item->inputs.size(); ++i) r.inputs[i] = item->inputs[i].view();
  for (std::size_t i = 0; i < config_.scalars.size(); ++i) r.scalars[i] = config_.scalars[i];
  r.output = item->output.data();
  r.output_capacity = item->output.count();
  r.user = item.get();
  r.on_done = &StreamGrain::on_item_done;
  Item& queued = *item;
  in_flight_.push_back(std::move(item));
  if (Status s = batcher_->submit(queued.request); !s) {
    // Not accepted (queue full, stopped, invalid): delivered in order as a failed item.
    queued.request.status = s;
    queued.done.store(true, std::memory_order_release);
    co_await deliver();
  }
  co_return queued.sequence;
}

void StreamGrain::on_item_done(compute::BatchRequest& request) {
  auto* item = static_cast<Item*>(request.user);
  StreamGrain* grain = item->grain;
  item->done.store(true, std::memory_order_release);
  grain->self_.send<&StreamGrain::deliver>();  // delivery happens in a turn of the grain
}

runtime::Task<void> StreamGrain::deliver() {
  while (!in_flight_.empty() && in_flight_.front()->done.load(std::memory_order_acquire)) {
    std::unique_ptr<Item> item = std::move(in_flight_.front());
    in_flight_.pop_front();
    StreamResult result;
    result.sequence = item->sequence;
    result.status = item->request.status;
    result.report = item->request.report;
    if (result.status.ok()) result.output = std::move(item->output);
    sinks_.notify(result);
    wake(space_waiters_);
  }
  if (in_flight_.empty()) wake(drain_waiters_);
  co_return;
}

runtime::Task<void> StreamGrain::flush() {
  while (!in_flight_.empty()) {
    runtime::AsyncEvent drained;
    drain_waiters_.push_back(&drained);
    co_await drained;
  }
}

runtime::Task<std::uint64_t> StreamGrain::subscribe(std::function<void(const StreamResult&)> sink) {
  co_return sinks_.subscribe(std::move(sink));
}

// Sets every waiter's event; each resumes in its own turn context and re-checks its condition.
void StreamGrain::wake(std::vector<runtime::AsyncEvent*>& waiters) {
  std::vector<runtime::AsyncEvent*> ready;
  ready.swap(waiters);
  for (runtime::AsyncEvent* e : ready) e->set();
}

}  // namespace gpubridge::grains

#include "gpubridge/grains/kernel_grain.hpp"

namespace gpubridge::grains {

runtime::Task<compute::KernelResult> KernelGrain::run(compute::KernelCall call, compute::CallOptions options) {
  compute::Executor& executor = executor_;
  co_return co_await CompletionAwaiter<compute::KernelResult>(
      [&executor, &call, &options](std::function<void(Result<compute::KernelResult>)> done) {
        executor.submit(std::move(call), options, std::move(done));
      });
}

}  // namespace gpubridge::grains

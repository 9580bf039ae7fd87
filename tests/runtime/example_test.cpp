// The example of the runtime's documentation, compiled and run: a grain, its registration, and
// calls from non-coroutine code and from another coroutine.
#include <gtest/gtest.h>

#include "gpubridge/runtime/runtime.hpp"

namespace example {
// --- example begin
using namespace gpubridge::runtime;

class Counter : public Grain {
 public:
  Task<int> add(int n) { co_return value_ += n; }  // runs as a turn: no locks needed
  Task<int> get() const { co_return value_; }

 private:
  int value_ = 0;
};

int demo() {
  auto runtime = Runtime::create({.worker_threads = 2}).value();
  runtime->register_grain<Counter>().value();
  GrainRef<Counter> c = runtime->get<Counter>("apples");      // a reference, not an object
  runtime->run(c.call<&Counter::add>(3));                      // activates "apples", blocks here
  auto twice = [&]() -> Task<int> {                            // or from any coroutine:
    co_await c.call<&Counter::add>(4);
    co_return co_await c.call<&Counter::get>();
  };
  return runtime->run(twice());                                // 7
}
// --- example end
}  // namespace example

TEST(Example, DocumentationExampleRuns) { EXPECT_EQ(example::demo(), 7); }

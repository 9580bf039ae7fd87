#pragma once
// What the host shim's __trap() throws, and the grid a host-compiled kernel thread belongs to.
// A trapped CUDA kernel ends every block of its grid at once (no completion, no state change, no
// more heartbeats); on the host, __trap() marks the grid trapped and throws HostTrap, and every other
// block's thread throws it at its next GB_RING_GRID_CHECK(). HostKernelServer sets `host_grid` on
// each thread it launches, catches HostTrap and reports the kernel as dead.
#include <atomic>

namespace gpubridge::testing::ring_host {

struct HostTrap {};

// The launch a kernel thread runs in: its block index and its grid's trap flag.
struct HostGrid {
  std::atomic<bool>* trapped = nullptr;
  unsigned int block = 0;
};
inline thread_local HostGrid host_grid{};

}  // namespace gpubridge::testing::ring_host

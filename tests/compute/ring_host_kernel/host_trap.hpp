#pragma once
// What the host shim's __trap() throws: the host-compiled ring kernel leaves its loop at once, as a
// trapped CUDA kernel does (no completion, no state change, no more heartbeats). HostKernelServer
// catches it and reports the kernel as dead.
namespace gpubridge::testing::ring_host {

struct HostTrap {};

}  // namespace gpubridge::testing::ring_host

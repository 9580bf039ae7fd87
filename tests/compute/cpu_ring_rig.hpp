#pragma once
// The CPU ring the ring protocol tests run against: a block, a CpuRingServer serving the test's
// handlers and a RingClient, plus the gate that the tests' blocking handlers wait on. Teardown
// opens the gate, then destroys the client, the server and the block, in that order.
#include <gtest/gtest.h>

#include <memory>
#include <utility>

#include "gpubridge/compute/ring.hpp"
#include "ring_test_support.hpp"

namespace gpubridge::testing::ring_support {

struct CpuRingRig {
  Gate gate;  // first: the handlers hold its address until the server is gone
  std::unique_ptr<compute::ring::RingMemory> memory;
  std::unique_ptr<compute::ring::CpuRingServer> server;
  std::unique_ptr<compute::ring::RingClient> client;

  // make_handlers(Gate*) -> HandlerTable. The server is started unless `start` is false.
  template <typename MakeHandlers>
  CpuRingRig(const compute::ring::RingConfig& config, MakeHandlers&& make_handlers,
             compute::ring::RingClientOptions options = {}, bool start = true) {
    memory = std::move(compute::ring::RingMemory::create(config).value());
    server = std::move(compute::ring::CpuRingServer::create(*memory, make_handlers(&gate)).value());
    client = std::move(compute::ring::RingClient::create(*memory, options).value());
    if (start) {
      EXPECT_TRUE(server->start());
    }
  }
  ~CpuRingRig() {
    gate.open();
    client.reset();
    server.reset();
  }
  CpuRingRig(const CpuRingRig&) = delete;
  CpuRingRig& operator=(const CpuRingRig&) = delete;
};

}  // namespace gpubridge::testing::ring_support

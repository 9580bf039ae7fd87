#pragma once
// The lifecycle of one activation (one in-memory instance of a grain). Transitions only go
// forward: creating -> activating -> valid -> deactivating -> invalid; a failed on_activate goes
// from activating straight to invalid.
#include <cstdint>
#include <string_view>

namespace gpubridge::runtime {

enum class ActivationState : std::uint8_t {
  creating,      // in the directory, grain object not built yet; calls already queue in its mailbox
  activating,    // grain object built, on_activate() running; calls wait
  valid,         // serving calls, one turn at a time (or interleaved where reentrancy allows)
  deactivating,  // on_deactivate() pending or running; new calls wait and go to a fresh activation
  invalid,       // out of the directory, about to be destroyed; nothing runs any more
};

std::string_view to_string(ActivationState state) noexcept;

}  // namespace gpubridge::runtime

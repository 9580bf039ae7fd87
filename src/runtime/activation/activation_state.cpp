#include "gpubridge/runtime/activation/activation_state.hpp"

namespace gpubridge::runtime {

std::string_view to_string(ActivationState state) noexcept {
  switch (state) {
    case ActivationState::creating: return "creating";
    case ActivationState::activating: return "activating";
    case ActivationState::valid: return "valid";
    case ActivationState::deactivating: return "deactivating";
    case ActivationState::invalid: return "invalid";
  }
  return "unknown";
}

}  // namespace gpubridge::runtime

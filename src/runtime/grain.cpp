#include "gpubridge/runtime/grain.hpp"

#include "activation/activation.hpp"

namespace gpubridge::runtime {

namespace {
internal::Activation& activation_of(internal::Activation* a) {
  if (a == nullptr) {
    throw ErrorException(Error(ErrorCode::failed_precondition,
                               "grain is not activated yet (use timers and deactivate_on_idle from on_activate on)"));
  }
  return *a;
}
}  // namespace

void Grain::require_activated() const { activation_of(activation_); }

Task<void> Grain::on_activate() { co_return; }
Task<void> Grain::on_deactivate() { co_return; }

TimerId Grain::register_timer(Clock::duration due, Clock::duration period, std::function<Task<void>()> callback) {
  return activation_of(activation_).add_timer(due, period, std::move(callback));
}

bool Grain::cancel_timer(TimerId timer) { return activation_of(activation_).cancel_timer(timer); }

void Grain::deactivate_on_idle() { activation_of(activation_).request_deactivation(); }

}  // namespace gpubridge::runtime

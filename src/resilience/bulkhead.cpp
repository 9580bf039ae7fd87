#include "gpubridge/resilience/bulkhead.hpp"

namespace gpubridge::resilience {

Bulkhead::Permit& Bulkhead::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = other.owner_;
    other.owner_ = nullptr;
  }
  return *this;
}

void Bulkhead::Permit::release() noexcept {
  if (owner_ == nullptr) return;
  owner_->in_use_.fetch_sub(1, std::memory_order_release);
  owner_ = nullptr;
}

Bulkhead::Bulkhead(std::size_t max_concurrent) : capacity_(max_concurrent) {}

std::optional<Bulkhead::Permit> Bulkhead::try_acquire() noexcept {
  if (capacity_ == 0) {
    in_use_.fetch_add(1, std::memory_order_acquire);
    return Permit(this);
  }
  std::size_t current = in_use_.load(std::memory_order_relaxed);
  do {
    if (current >= capacity_) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
  } while (!in_use_.compare_exchange_weak(current, current + 1, std::memory_order_acquire,
                                          std::memory_order_relaxed));
  return Permit(this);
}

}  // namespace gpubridge::resilience

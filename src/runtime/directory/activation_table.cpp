#include "activation_table.hpp"

#include <algorithm>
#include <bit>
#include <new>
#include <utility>

namespace gpubridge::runtime::internal {

void ActivationTable::add(const GrainId& id, Activation* a, bool stateless) {
  // At most 3/4 full, so that probes stay short.
  if (4 * (size_ + 1) > 3 * capacity()) rehash(capacity() == 0 ? kMinCapacity : 2 * capacity());
  auto workers = stateless ? std::make_unique<std::vector<Activation*>>(1, a) : nullptr;
  const std::size_t hash = id.hash();
  std::size_t i = home(hash);
  while (slots_[i].id.valid()) i = (i + 1) & mask_;
  Slot& s = slots_[i];
  s.hash = hash;
  s.id = id;
  s.first = a;
  s.workers = std::move(workers);
  ++size_;
}

bool ActivationTable::remove(const GrainId& id, const Activation* a) noexcept {
  Slot* s = find(id);
  if (s == nullptr) return false;
  if (s->workers) {
    std::vector<Activation*>& w = *s->workers;
    const auto it = std::find(w.begin(), w.end(), a);
    if (it == w.end()) return false;
    w.erase(it);
    if (!w.empty()) {
      s->first = w.front();
      return true;
    }
  } else if (s->first != a) {
    return false;
  }
  erase_slot(static_cast<std::size_t>(s - slots_.get()));
  if (size_ == 0) {
    slots_.reset();
    mask_ = 0;
    shift_ = 64;
  } else if (capacity() > kMinCapacity && 8 * size_ < capacity()) {
    try {
      rehash(capacity() / 2);
    } catch (const std::bad_alloc&) {
      // Stays larger than it needs to be; still correct.
    }
  }
  return true;
}

void ActivationTable::rehash(std::size_t new_capacity) {
  const std::size_t old_capacity = capacity();
  auto fresh = std::make_unique<Slot[]>(new_capacity);  // may throw: nothing changed yet
  std::unique_ptr<Slot[]> old = std::exchange(slots_, std::move(fresh));
  mask_ = new_capacity - 1;
  shift_ = 64 - static_cast<unsigned>(std::countr_zero(new_capacity));
  for (std::size_t j = 0; j < old_capacity; ++j) {
    Slot& from = old[j];
    if (!from.id.valid()) continue;
    std::size_t i = home(from.hash);
    while (slots_[i].id.valid()) i = (i + 1) & mask_;
    slots_[i] = std::move(from);
  }
}

void ActivationTable::erase_slot(std::size_t i) noexcept {
  // Backward shift: a following slot moves into the hole unless its home lies cyclically in
  // (hole, slot] - then a lookup from its home never passes the hole.
  for (std::size_t j = (i + 1) & mask_; slots_[j].id.valid(); j = (j + 1) & mask_) {
    const std::size_t h = home(slots_[j].hash);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (stays) continue;
    slots_[i] = std::move(slots_[j]);
    i = j;
  }
  slots_[i] = Slot{};
  --size_;
}

}  // namespace gpubridge::runtime::internal

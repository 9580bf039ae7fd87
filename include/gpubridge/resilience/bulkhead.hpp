#pragma once
// Bulkhead: a bound on how many calls run at once in one compartment (a device, a tenant), so
// that a slow compartment cannot take every worker. Non-blocking: a full bulkhead rejects.
//
// Thread-safety: every member is lock-free and safe to call concurrently. A Permit may be
// released on any thread. The Bulkhead must outlive its permits.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace gpubridge::resilience {

class Bulkhead {
 public:
  // One admitted call; move-only; gives its slot back when destroyed or release()d.
  class Permit {
   public:
    Permit(Permit&& other) noexcept : owner_(other.owner_) { other.owner_ = nullptr; }
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() { release(); }

    // Gives the slot back now; later calls and the destructor do nothing.
    void release() noexcept;

   private:
    friend class Bulkhead;
    explicit Permit(Bulkhead* owner) noexcept : owner_(owner) {}
    Bulkhead* owner_;
  };

  // max_concurrent = 0 means unlimited (permits are still counted in in_use()).
  explicit Bulkhead(std::size_t max_concurrent);
  Bulkhead(const Bulkhead&) = delete;
  Bulkhead& operator=(const Bulkhead&) = delete;

  // A permit, or nullopt when capacity() permits are out (the rejection is counted).
  std::optional<Permit> try_acquire() noexcept;

  std::size_t in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }
  std::size_t capacity() const noexcept { return capacity_; }  // 0 = unlimited
  std::uint64_t rejected() const noexcept { return rejected_.load(std::memory_order_relaxed); }

 private:
  std::size_t capacity_;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::uint64_t> rejected_{0};
};

}  // namespace gpubridge::resilience

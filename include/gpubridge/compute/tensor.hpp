#pragma once
// Host tensors: an owning, 64-byte aligned, one-dimensional buffer of one dtype, and a
// non-owning const view used to pass inputs. A view's memory must stay valid and unchanged
// until the call that received it completes.
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

#include "gpubridge/compute/dtype.hpp"

namespace gpubridge::compute {

struct TensorView {
  DType dtype = DType::f32;
  const void* data = nullptr;
  std::size_t count = 0;  // elements

  TensorView() = default;
  TensorView(DType t, const void* d, std::size_t n) : dtype(t), data(d), count(n) {}
  template <typename T>
  TensorView(std::span<const T> s)  // NOLINT: implicit from typed spans
      : dtype(dtype_of_v<T>), data(s.data()), count(s.size()) {}
  template <typename T>
  TensorView(const std::vector<T>& v)  // NOLINT
      : dtype(dtype_of_v<T>), data(v.data()), count(v.size()) {}
  std::size_t bytes() const noexcept { return count * size_of(dtype); }
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, std::size_t count);  // zero-initialised storage
  // Storage left uninitialised, for outputs that are overwritten completely. Large tensors are
  // backed by transparent huge pages where the kernel allows, so first touch is cheap.
  static Tensor uninitialized(DType dtype, std::size_t count);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  DType dtype() const noexcept { return dtype_; }
  std::size_t count() const noexcept { return count_; }
  std::size_t bytes() const noexcept { return count_ * size_of(dtype_); }
  void* data() noexcept { return data_.get(); }
  const void* data() const noexcept { return data_.get(); }
  TensorView view() const noexcept { return {dtype_, data_.get(), count_}; }

  // Typed access; throws std::logic_error when T does not match dtype().
  template <typename T>
  std::span<T> as() {
    check<T>();
    return {static_cast<T*>(data()), count_};
  }
  template <typename T>
  std::span<const T> as() const {
    check<T>();
    return {static_cast<const T*>(data()), count_};
  }
  // Element i converted to double (any dtype).
  double at(std::size_t i) const;

 private:
  template <typename T>
  void check() const {
    if (dtype_of_v<T> != dtype_) throw std::logic_error("Tensor::as<T>: T does not match dtype");
  }
  struct Uninit {};
  Tensor(DType dtype, std::size_t count, Uninit);
  struct Free {
    Free() noexcept : alignment(64) {}
    explicit Free(std::size_t a) noexcept : alignment(a) {}
    std::size_t alignment;
    void operator()(std::byte* p) const noexcept;
  };
  DType dtype_ = DType::f32;
  std::size_t count_ = 0;
  std::unique_ptr<std::byte[], Free> data_;
};

}  // namespace gpubridge::compute

#include "gpubridge/compute/tensor.hpp"

#include <cstring>
#include <new>

namespace gpubridge::compute {

namespace {
constexpr std::align_val_t kAlignment{64};
}

void Tensor::Free::operator()(std::byte* p) const noexcept { ::operator delete[](p, kAlignment); }

Tensor::Tensor(DType dtype, std::size_t count) : dtype_(dtype), count_(count) {
  const std::size_t bytes = count * size_of(dtype);
  auto* p = static_cast<std::byte*>(::operator new[](bytes == 0 ? 1 : bytes, kAlignment));
  std::memset(p, 0, bytes);
  data_.reset(p);
}

double Tensor::at(std::size_t i) const {
  if (i >= count_) throw std::out_of_range("Tensor::at: index out of range");
  return dtype_ == DType::f32 ? static_cast<double>(static_cast<const float*>(data())[i])
                              : static_cast<const double*>(data())[i];
}

}  // namespace gpubridge::compute

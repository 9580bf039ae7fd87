#include "gpubridge/compute/tensor.hpp"

#include <sys/mman.h>

#include <cstring>
#include <new>

#include "gpubridge/core/cache_line.hpp"

namespace gpubridge::compute {

namespace {
// Large tensors are 2 MiB aligned so transparent huge pages can back them; small ones 64 bytes.
constexpr std::size_t kHugePage = std::size_t{2} << 20;
}

void Tensor::Free::operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{alignment}); }

Tensor::Tensor(DType dtype, std::size_t count, Uninit) : dtype_(dtype), count_(count) {
  const std::size_t bytes = count * size_of(dtype);
  const std::size_t alignment = bytes >= kHugePage ? kHugePage : kCacheLine;
  auto* p = static_cast<std::byte*>(::operator new[](bytes == 0 ? 1 : bytes, std::align_val_t{alignment}));
  if (alignment == kHugePage) ::madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);  // advisory only
  data_ = std::unique_ptr<std::byte[], Free>(p, Free{alignment});
}

Tensor::Tensor(DType dtype, std::size_t count) : Tensor(dtype, count, Uninit{}) { std::memset(data(), 0, bytes()); }

Tensor Tensor::uninitialized(DType dtype, std::size_t count) { return Tensor(dtype, count, Uninit{}); }

double Tensor::at(std::size_t i) const {
  if (i >= count_) throw std::out_of_range("Tensor::at: index out of range");
  return dtype_ == DType::f32 ? static_cast<double>(static_cast<const float*>(data())[i])
                              : static_cast<const double*>(data())[i];
}

}  // namespace gpubridge::compute

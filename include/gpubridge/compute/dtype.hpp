#pragma once
// Element types the compute layer understands.
#include <cstddef>
#include <optional>
#include <string_view>

namespace gpubridge::compute {

enum class DType { f32, f64 };

constexpr std::size_t size_of(DType t) noexcept { return t == DType::f32 ? 4 : 8; }
std::string_view to_string(DType t) noexcept;
std::optional<DType> parse_dtype(std::string_view s) noexcept;

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <typename T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace gpubridge::compute

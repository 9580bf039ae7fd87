#pragma once
// Codec<T>: how a value crosses a process boundary. Grain methods declared remote-capable (see
// grain.hpp, `remote_methods`) must take and return types that have a Codec; registering such a
// grain type or calling such a method with a type that lacks one fails to compile.
// In-process calls never encode anything.
//
//   template <> struct Codec<MyType> {
//     static void encode(const MyType& value, std::string& out);  // appends to out
//     static Result<MyType> decode(std::string_view in);          // the whole of `in` is the value
//   };
//
// Provided: arithmetic types (fixed width, little-endian; bool as one byte 0/1), std::string
// (its bytes), std::vector of a non-bool arithmetic type (its elements' bytes). Decoding input
// of the wrong size is a data_loss error, never a default value.
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::runtime {

static_assert(std::endian::native == std::endian::little, "the codecs assume a little-endian host");

template <typename T>
struct Codec;  // no definition: a type without a codec

template <typename T>
concept HasCodec = requires(const T& value, std::string& out, std::string_view in) {
  { Codec<T>::encode(value, out) } -> std::same_as<void>;
  { Codec<T>::decode(in) } -> std::same_as<Result<T>>;
};

namespace internal {
inline Error codec_size_error(std::string_view type, std::size_t expected, std::size_t got, bool multiple = false) {
  return Error(ErrorCode::data_loss, std::string("codec ") + std::string(type) + ": expected " +
                                         (multiple ? "a multiple of " : "") + std::to_string(expected) +
                                         " bytes, got " + std::to_string(got));
}
}  // namespace internal

template <typename T>
  requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
struct Codec<T> {
  static void encode(const T& value, std::string& out) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out.append(bytes, sizeof(T));
  }
  static Result<T> decode(std::string_view in) {
    if (in.size() != sizeof(T)) return internal::codec_size_error("arithmetic", sizeof(T), in.size());
    T value;
    std::memcpy(&value, in.data(), sizeof(T));
    return value;
  }
};

template <>
struct Codec<bool> {
  static void encode(const bool& value, std::string& out) { out.push_back(value ? '\1' : '\0'); }
  static Result<bool> decode(std::string_view in) {
    if (in.size() != 1) return internal::codec_size_error("bool", 1, in.size());
    if (in[0] != '\0' && in[0] != '\1') return Error(ErrorCode::data_loss, "codec bool: byte is neither 0 nor 1");
    return in[0] == '\1';
  }
};

template <>
struct Codec<std::string> {
  static void encode(const std::string& value, std::string& out) { out.append(value); }
  static Result<std::string> decode(std::string_view in) { return std::string(in); }
};

template <typename T>
  requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
struct Codec<std::vector<T>> {
  static void encode(const std::vector<T>& value, std::string& out) {
    out.append(reinterpret_cast<const char*>(value.data()), value.size() * sizeof(T));
  }
  static Result<std::vector<T>> decode(std::string_view in) {
    if (in.size() % sizeof(T) != 0) return internal::codec_size_error("vector", sizeof(T), in.size(), true);
    std::vector<T> v(in.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), in.data(), in.size());
    return v;
  }
};

// A tuple of coded values (a method's arguments): each element as a 4-byte little-endian length
// followed by its encoding.
template <typename... T>
void encode_tuple(const std::tuple<T...>& values, std::string& out) {
  auto one = [&out](const auto& v) {
    const std::size_t at = out.size();
    out.append(4, '\0');
    Codec<std::remove_cvref_t<decltype(v)>>::encode(v, out);
    const auto len = static_cast<std::uint32_t>(out.size() - at - 4);
    std::memcpy(out.data() + at, &len, 4);
  };
  std::apply([&](const auto&... v) { (one(v), ...); }, values);
}

template <typename... T>
Status decode_tuple(std::string_view in, std::tuple<T...>& values) {
  Status status;
  auto one = [&](auto& v) {
    if (!status.ok()) return;
    std::uint32_t len = 0;
    if (in.size() < 4) {
      status = Error(ErrorCode::data_loss, "codec tuple: truncated length");
      return;
    }
    std::memcpy(&len, in.data(), 4);
    in.remove_prefix(4);
    if (in.size() < len) {
      status = Error(ErrorCode::data_loss, "codec tuple: truncated element");
      return;
    }
    auto decoded = Codec<std::remove_cvref_t<decltype(v)>>::decode(in.substr(0, len));
    in.remove_prefix(len);
    if (!decoded.ok()) {
      status = decoded.error();
      return;
    }
    v = std::move(decoded).value();
  };
  std::apply([&](auto&... v) { (one(v), ...); }, values);
  if (status.ok() && !in.empty()) return Error(ErrorCode::data_loss, "codec tuple: trailing bytes");
  return status;
}

}  // namespace gpubridge::runtime

#pragma once
// A small .npy reader for tests: format 1.0/2.0, little-endian float32 ('<f4'), C order only.
// Independent of the library's writer, so round trips check the format rather than themselves.
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace gpubridge::samples::testing {

struct NpyArray {
  std::vector<std::size_t> shape;
  std::vector<float> data;
  std::size_t header_bytes = 0;  // offset of the data in the file
};

// nullopt with `why` set when the file is not a float32 C-order .npy array.
inline std::optional<NpyArray> read_npy_f32(const std::string& path, std::string* why) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto fail = [&](std::string reason) {
    *why = path + ": " + std::move(reason);
    return std::optional<NpyArray>{};
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return fail("bad magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len = 0;
  std::size_t offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    offset = 10;
  } else if (major == 2 && bytes.size() >= 12) {
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
    offset = 12;
  } else {
    return fail("unsupported version");
  }
  if (bytes.size() < offset + header_len) return fail("truncated header");
  const std::string header = bytes.substr(offset, header_len);
  if (header.find("'descr': '<f4'") == std::string::npos) return fail("descr is not '<f4': " + header);
  if (header.find("'fortran_order': False") == std::string::npos) return fail("not C order");
  const std::size_t open = header.find("'shape': (");
  const std::size_t close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) return fail("no shape");
  NpyArray array;
  std::string dims = header.substr(open + 10, close - open - 10);
  std::size_t count = 1;
  std::size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    std::size_t end = pos;
    while (end < dims.size() && dims[end] >= '0' && dims[end] <= '9') ++end;
    if (end == pos) return fail("bad shape: " + dims);
    array.shape.push_back(std::stoull(dims.substr(pos, end - pos)));
    count *= array.shape.back();
    pos = end;
  }
  array.header_bytes = offset + header_len;
  if (bytes.size() != array.header_bytes + count * 4) return fail("data size does not match the shape");
  array.data.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t bits = 0;
    for (int b = 3; b >= 0; --b) bits = (bits << 8) | static_cast<unsigned char>(bytes[array.header_bytes + i * 4 + b]);
    array.data[i] = std::bit_cast<float>(bits);
  }
  return array;
}

}  // namespace gpubridge::samples::testing

// NumPy .npy writer: format version 1.0, little-endian float32, C order.
#include <bit>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "text_io.hpp"

namespace gpubridge::samples {

Status write_npy(const std::filesystem::path& path, std::span<const std::size_t> shape, std::span<const float> data) {
  const std::string target = "cannot write " + path.string() + ": ";
  if (shape.empty()) return Error(ErrorCode::invalid_argument, target + "an array needs at least one dimension");
  std::size_t count = 1;
  std::string dims;
  for (std::size_t extent : shape) {
    if (extent != 0 && count > SIZE_MAX / extent) return Error(ErrorCode::invalid_argument, target + "shape overflows");
    count *= extent;
    dims += std::to_string(extent);
    dims += ", ";
  }
  // "3, 4, " -> "3, 4"; a 1-d shape keeps its comma as Python writes it: "3,".
  dims.resize(dims.size() - (shape.size() > 1 ? 2 : 1));
  if (count != data.size()) {
    return Error(ErrorCode::invalid_argument, target + "shape (" + dims + ") needs " + std::to_string(count) +
                                                  " values, the data holds " + std::to_string(data.size()));
  }
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by '\n' so
  // that the data starts at a multiple of 64 bytes.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 0xffff) return Error(ErrorCode::invalid_argument, target + "shape too long for .npy 1.0");

  std::string out;
  out.reserve(10 + header.size() + data.size() * 4);
  out += "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  for (float v : data) {
    const auto bits = std::bit_cast<std::uint32_t>(v);
    out += static_cast<char>(bits & 0xff);
    out += static_cast<char>((bits >> 8) & 0xff);
    out += static_cast<char>((bits >> 16) & 0xff);
    out += static_cast<char>(bits >> 24);
  }
  return internal::write_file_atomically(path, out);
}

Status write_npy(const std::filesystem::path& path, const Image& image) {
  if (image.channels == 0) {
    return Error(ErrorCode::invalid_argument, "cannot write " + path.string() + ": the image has no channels");
  }
  std::vector<std::size_t> shape{image.height, image.width};
  if (image.channels != 1) shape.push_back(image.channels);
  return write_npy(path, shape, image.data);
}

}  // namespace gpubridge::samples

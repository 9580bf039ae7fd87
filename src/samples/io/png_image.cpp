// PNG reading and writing through libpng's sequential (non-simplified) API, so that no gamma or
// colour conversion happens behind our back. libpng reports errors by longjmp: every libpng call
// sits in a function whose frame holds only trivially destructible objects after setjmp, and the
// message travels out through a plain char buffer.
#include <png.h>

#include <cmath>
#include <csetjmp>
#include <cstring>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "text_io.hpp"

namespace gpubridge::samples {
namespace {

constexpr std::size_t kMaxPixels = std::size_t{1} << 26;

struct ErrorSink {
  char message[256] = {};
};

[[noreturn]] void on_png_error(png_structp png, png_const_charp message) {
  auto* sink = static_cast<ErrorSink*>(png_get_error_ptr(png));
  std::snprintf(sink->message, sizeof sink->message, "%s", message);
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}  // warnings (e.g. unknown chunks) are not errors

struct MemoryReader {
  const unsigned char* data;
  std::size_t size;
  std::size_t offset;
};

void read_from_memory(png_structp png, png_bytep out, png_size_t length) {
  auto* reader = static_cast<MemoryReader*>(png_get_io_ptr(png));
  if (length > reader->size - reader->offset) png_error(png, "truncated PNG data");
  std::memcpy(out, reader->data + reader->offset, length);
  reader->offset += length;
}

// What the header says, before any pixels are decoded.
struct PngInfo {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int bit_depth = 0;
  int color_type = 0;
  std::size_t channels = 0;  // after the conversions of read_png
};

// Decodes the header and sets up the conversions; returns false with sink->message on error.
bool decode_png(MemoryReader* reader, ErrorSink* sink, PngInfo* info, std::vector<unsigned char>* pixels,
                std::vector<png_bytep>* row_pointers) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, sink, on_png_error, on_png_warning);
  if (png == nullptr) {
    std::snprintf(sink->message, sizeof sink->message, "libpng could not allocate a reader");
    return false;
  }
  png_infop png_info = png_create_info_struct(png);
  if (png_info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(sink->message, sizeof sink->message, "libpng could not allocate a reader");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &png_info, nullptr);
    return false;
  }
  png_set_read_fn(png, reader, read_from_memory);
  png_read_info(png, png_info);
  info->width = png_get_image_width(png, png_info);
  info->height = png_get_image_height(png, png_info);
  info->bit_depth = png_get_bit_depth(png, png_info);
  info->color_type = png_get_color_type(png, png_info);
  if (info->bit_depth == 16) {
    std::snprintf(sink->message, sizeof sink->message, "16-bit PNG is not supported (8-bit grey or RGB only)");
    png_destroy_read_struct(&png, &png_info, nullptr);
    return false;
  }
  if (static_cast<std::size_t>(info->width) * info->height > kMaxPixels) {
    std::snprintf(sink->message, sizeof sink->message, "image of %u x %u pixels is too large",
                  static_cast<unsigned>(info->width), static_cast<unsigned>(info->height));
    png_destroy_read_struct(&png, &png_info, nullptr);
    return false;
  }
  switch (info->color_type) {
    case PNG_COLOR_TYPE_PALETTE:
      png_set_palette_to_rgb(png);  // may add alpha from tRNS: stripped below
      info->channels = 3;
      break;
    case PNG_COLOR_TYPE_GRAY:
      if (info->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
      info->channels = 1;
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: info->channels = 1; break;
    case PNG_COLOR_TYPE_RGB: info->channels = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: info->channels = 3; break;
    default:
      std::snprintf(sink->message, sizeof sink->message, "unknown PNG colour type %d", info->color_type);
      png_destroy_read_struct(&png, &png_info, nullptr);
      return false;
  }
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, png_info);
  if (png_get_channels(png, png_info) != info->channels || png_get_bit_depth(png, png_info) != 8) {
    std::snprintf(sink->message, sizeof sink->message, "unexpected PNG layout after conversion");
    png_destroy_read_struct(&png, &png_info, nullptr);
    return false;
  }
  const std::size_t row_bytes = png_get_rowbytes(png, png_info);
  if (row_bytes != static_cast<std::size_t>(info->width) * info->channels) {
    std::snprintf(sink->message, sizeof sink->message, "unexpected PNG row size");
    png_destroy_read_struct(&png, &png_info, nullptr);
    return false;
  }
  // Sized here, between libpng calls: a longjmp never crosses their construction.
  pixels->resize(row_bytes * info->height);
  row_pointers->resize(info->height);
  for (png_uint_32 r = 0; r < info->height; ++r) (*row_pointers)[r] = pixels->data() + r * row_bytes;
  png_read_image(png, row_pointers->data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &png_info, nullptr);
  return true;
}

struct MemoryWriter {
  std::string* out;
};

void write_to_memory(png_structp png, png_bytep data, png_size_t length) {
  auto* writer = static_cast<MemoryWriter*>(png_get_io_ptr(png));
  writer->out->append(reinterpret_cast<const char*>(data), length);
}

void flush_memory(png_structp) {}

bool encode_png(const Image* image, const std::vector<png_bytep>* rows, MemoryWriter* writer, ErrorSink* sink) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_png_error, on_png_warning);
  if (png == nullptr) {
    std::snprintf(sink->message, sizeof sink->message, "libpng could not allocate a writer");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(sink->message, sizeof sink->message, "libpng could not allocate a writer");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, writer, write_to_memory, flush_memory);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image->width), static_cast<png_uint_32>(image->height), 8,
               image->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, const_cast<png_bytepp>(rows->data()));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

Result<Image> read_png(const std::filesystem::path& path) {
  auto bytes = internal::read_whole_file(path);
  if (!bytes) return bytes.error();
  const std::string source = path.string();
  constexpr unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes->size() < sizeof kSignature || std::memcmp(bytes->data(), kSignature, sizeof kSignature) != 0) {
    return internal::input_error(source, 0, "not a PNG file (bad signature)");
  }
  MemoryReader reader{reinterpret_cast<const unsigned char*>(bytes->data()), bytes->size(), 0};
  ErrorSink sink;
  PngInfo info;
  std::vector<unsigned char> pixels;
  std::vector<png_bytep> row_pointers;
  if (!decode_png(&reader, &sink, &info, &pixels, &row_pointers)) {
    const bool unsupported = info.bit_depth == 16;
    return internal::input_error(source, 0, sink.message,
                                 unsupported ? ErrorCode::unimplemented : ErrorCode::invalid_argument);
  }
  Image image{info.height, info.width, info.channels, std::vector<float>(pixels.size())};
  for (std::size_t i = 0; i < pixels.size(); ++i) image.data[i] = static_cast<float>(pixels[i]);
  return image;
}

Status write_png(const std::filesystem::path& path, const Image& image) {
  const std::string target = "cannot write " + path.string() + ": ";
  if (image.channels != 1 && image.channels != 3) {
    return Error(ErrorCode::invalid_argument,
                 target + "PNG output needs 1 or 3 channels, the image has " + std::to_string(image.channels));
  }
  if (image.height == 0 || image.width == 0 || image.height > 0x7fffffff || image.width > 0x7fffffff) {
    return Error(ErrorCode::invalid_argument, target + "image dimensions " + std::to_string(image.height) + " x " +
                                                  std::to_string(image.width) + " are not valid for PNG");
  }
  if (image.data.size() != image.height * image.width * image.channels) {
    return Error(ErrorCode::invalid_argument, target + "the image holds " + std::to_string(image.data.size()) +
                                                  " values, not height x width x channels");
  }
  std::vector<unsigned char> pixels(image.data.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    const float v = image.data[i];
    if (std::isnan(v)) {
      const std::size_t pixel = i / image.channels;
      return Error(ErrorCode::invalid_argument, target + "pixel (row " + std::to_string(pixel / image.width) +
                                                    ", column " + std::to_string(pixel % image.width) + ") is NaN");
    }
    const float rounded = std::nearbyint(v);  // ties to even under the default rounding mode
    pixels[i] = static_cast<unsigned char>(rounded <= 0.f ? 0.f : (rounded >= 255.f ? 255.f : rounded));
  }
  std::vector<png_bytep> rows(image.height);
  const std::size_t row_bytes = image.width * image.channels;
  for (std::size_t r = 0; r < image.height; ++r) rows[r] = pixels.data() + r * row_bytes;
  std::string encoded;
  MemoryWriter writer{&encoded};
  ErrorSink sink;
  if (!encode_png(&image, &rows, &writer, &sink)) {
    return Error(ErrorCode::internal, target + "libpng: " + sink.message);
  }
  return internal::write_file_atomically(path, encoded);
}

}  // namespace gpubridge::samples

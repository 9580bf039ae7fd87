// Convolution kernel text files: rows of whitespace-separated numbers.
#include <cmath>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "text_io.hpp"

namespace gpubridge::samples {

Result<DenseMatrix> parse_kernel(std::string_view text, std::string_view source) {
  internal::LineReader lines(text);
  DenseMatrix kernel;
  std::size_t first_row_line = 0;
  while (auto line = lines.next()) {
    const std::size_t n = lines.line_number();
    const auto tokens = internal::split_whitespace(internal::strip_comment(*line, '#'));
    if (tokens.empty()) continue;
    if (kernel.rows == 0) {
      kernel.cols = tokens.size();
      first_row_line = n;
    } else if (tokens.size() != kernel.cols) {
      return internal::input_error(source, n, "ragged kernel: this row has " + std::to_string(tokens.size()) +
                                                  " numbers, the first row (line " + std::to_string(first_row_line) +
                                                  ") has " + std::to_string(kernel.cols));
    }
    for (std::string_view token : tokens) {
      const auto value = internal::parse_double(token);
      if (!value) return internal::input_error(source, n, internal::quote(token) + " is not a number");
      if (!std::isfinite(*value)) return internal::input_error(source, n, internal::quote(token) + " is not finite");
      kernel.data.push_back(*value);
    }
    ++kernel.rows;
  }
  if (kernel.rows == 0) return internal::input_error(source, 0, "empty kernel: no rows of numbers");
  return kernel;
}

Result<DenseMatrix> read_kernel(const std::filesystem::path& path) {
  auto text = internal::read_whole_file(path);
  if (!text) return text.error();
  return parse_kernel(*text, path.string());
}

}  // namespace gpubridge::samples

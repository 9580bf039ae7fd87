// Matrix Market reader (coordinate / array; real, integer, pattern; general, symmetric,
// skew-symmetric) into a dense row-major matrix, and the dense `array real general` writer.
#include <cmath>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "text_io.hpp"

namespace gpubridge::samples {
namespace {

using internal::input_error;
using internal::quote;

constexpr std::size_t kMaxDenseElements = std::size_t{1} << 28;

enum class Layout { coordinate, array };
enum class Field { real, integer, pattern };
enum class Symmetry { general, symmetric, skew_symmetric };

struct Header {
  Layout layout = Layout::coordinate;
  Field field = Field::real;
  Symmetry symmetry = Symmetry::general;
};

Result<Header> parse_header(std::string_view line, std::string_view source) {
  const auto tokens = internal::split_whitespace(line);
  if (tokens.empty() || internal::to_lower(tokens[0]) != "%%matrixmarket") {
    return input_error(source, 1, "not a Matrix Market file: the first line must start with %%MatrixMarket");
  }
  if (tokens.size() != 5) {
    return input_error(source, 1, "header must be '%%MatrixMarket matrix <format> <field> <symmetry>'");
  }
  if (internal::to_lower(tokens[1]) != "matrix") {
    return input_error(source, 1, "unsupported object " + quote(tokens[1]) + " (only 'matrix')",
                       ErrorCode::unimplemented);
  }
  Header header;
  const std::string layout = internal::to_lower(tokens[2]);
  if (layout == "coordinate") {
    header.layout = Layout::coordinate;
  } else if (layout == "array") {
    header.layout = Layout::array;
  } else {
    return input_error(source, 1, "unknown format " + quote(tokens[2]) + " (expected coordinate or array)");
  }
  const std::string field = internal::to_lower(tokens[3]);
  if (field == "real" || field == "double") {
    header.field = Field::real;
  } else if (field == "integer") {
    header.field = Field::integer;
  } else if (field == "pattern") {
    header.field = Field::pattern;
  } else if (field == "complex") {
    return input_error(source, 1, "complex matrices are not supported", ErrorCode::unimplemented);
  } else {
    return input_error(source, 1, "unknown field " + quote(tokens[3]) + " (expected real, integer or pattern)");
  }
  const std::string symmetry = internal::to_lower(tokens[4]);
  if (symmetry == "general") {
    header.symmetry = Symmetry::general;
  } else if (symmetry == "symmetric") {
    header.symmetry = Symmetry::symmetric;
  } else if (symmetry == "skew-symmetric") {
    header.symmetry = Symmetry::skew_symmetric;
  } else if (symmetry == "hermitian") {
    return input_error(source, 1, "hermitian matrices are not supported", ErrorCode::unimplemented);
  } else {
    return input_error(source, 1,
                       "unknown symmetry " + quote(tokens[4]) + " (expected general, symmetric or skew-symmetric)");
  }
  if (header.layout == Layout::array && header.field == Field::pattern) {
    return input_error(source, 1, "'array pattern' is not a valid Matrix Market combination");
  }
  return header;
}

Result<std::size_t> parse_dimension(std::string_view token, std::string_view what, std::string_view source,
                                    std::size_t line, bool allow_zero) {
  const auto value = internal::parse_int64(token);
  if (!value) return input_error(source, line, std::string(what) + " " + quote(token) + " is not an integer");
  if (*value < 0 || (*value == 0 && !allow_zero)) {
    return input_error(source, line, std::string(what) + " must be " + (allow_zero ? "non-negative" : "positive") +
                                         ", got " + std::to_string(*value));
  }
  return static_cast<std::size_t>(*value);
}

Result<double> parse_value(std::string_view token, Field field, std::string_view source, std::size_t line) {
  if (field == Field::integer) {
    const auto value = internal::parse_int64(token);
    if (!value) return input_error(source, line, "value " + quote(token) + " is not an integer (field is integer)");
    return static_cast<double>(*value);
  }
  const auto value = internal::parse_double(token);
  if (!value) return input_error(source, line, "value " + quote(token) + " is not a number");
  if (!std::isfinite(*value)) return input_error(source, line, "value " + quote(token) + " is not finite");
  return *value;
}

// Adds `value` at (r, c) and its mirror for symmetric storage.
void place(DenseMatrix& m, Symmetry symmetry, std::size_t r, std::size_t c, double value) {
  m.data[r * m.cols + c] += value;
  if (r == c || symmetry == Symmetry::general) return;
  m.data[c * m.cols + r] += symmetry == Symmetry::symmetric ? value : -value;
}

// Checks that (r, c) (0-based) lies where the symmetry allows stored entries.
std::optional<std::string> triangle_problem(Symmetry symmetry, std::size_t r, std::size_t c) {
  if (symmetry == Symmetry::general) return std::nullopt;
  if (r < c) {
    return "entry (" + std::to_string(r + 1) + ", " + std::to_string(c + 1) +
           ") lies above the diagonal; symmetric Matrix Market files store only the lower triangle";
  }
  if (symmetry == Symmetry::skew_symmetric && r == c) {
    return "entry (" + std::to_string(r + 1) + ", " + std::to_string(c + 1) +
           ") lies on the diagonal of a skew-symmetric matrix, which must be zero and not stored";
  }
  return std::nullopt;
}

}  // namespace

Result<DenseMatrix> parse_matrix_market(std::string_view text, std::string_view source) {
  internal::LineReader lines(text);
  const auto first = lines.next();
  if (!first || internal::trim(*first).empty()) return input_error(source, 1, "empty file: no Matrix Market header");
  auto header = parse_header(*first, source);
  if (!header) return header.error();

  // Size line: the first line that is neither a comment nor blank.
  std::optional<std::string_view> size_line;
  while (auto line = lines.next()) {
    const std::string_view content = internal::trim(*line);
    if (content.empty() || content.front() == '%') continue;
    size_line = content;
    break;
  }
  if (!size_line) return input_error(source, lines.line_number(), "truncated: the size line is missing");
  const std::size_t size_line_number = lines.line_number();
  const auto size_tokens = internal::split_whitespace(*size_line);
  const std::size_t expected_tokens = header->layout == Layout::coordinate ? 3 : 2;
  if (size_tokens.size() != expected_tokens) {
    return input_error(source, size_line_number,
                       header->layout == Layout::coordinate ? "size line must be 'rows cols entries'"
                                                            : "size line must be 'rows cols'");
  }
  auto rows = parse_dimension(size_tokens[0], "row count", source, size_line_number, false);
  if (!rows) return rows.error();
  auto cols = parse_dimension(size_tokens[1], "column count", source, size_line_number, false);
  if (!cols) return cols.error();
  if (*cols > kMaxDenseElements / *rows) {
    return input_error(source, size_line_number,
                       "a dense " + std::to_string(*rows) + " x " + std::to_string(*cols) + " matrix is too large",
                       ErrorCode::resource_exhausted);
  }
  if (header->symmetry != Symmetry::general && *rows != *cols) {
    return input_error(source, size_line_number, "a symmetric or skew-symmetric matrix must be square");
  }

  DenseMatrix matrix{*rows, *cols, std::vector<double>(*rows * *cols, 0.0)};
  const Symmetry symmetry = header->symmetry;

  if (header->layout == Layout::coordinate) {
    auto entries = parse_dimension(size_tokens[2], "entry count", source, size_line_number, true);
    if (!entries) return entries.error();
    const std::size_t tokens_per_entry = header->field == Field::pattern ? 2 : 3;
    std::size_t seen = 0;
    while (auto line = lines.next()) {
      const std::string_view content = internal::trim(*line);
      if (content.empty() || content.front() == '%') continue;
      const std::size_t n = lines.line_number();
      if (seen == *entries) return input_error(source, n, "more entries than the " + std::to_string(*entries) + " declared");
      const auto tokens = internal::split_whitespace(content);
      if (tokens.size() != tokens_per_entry) {
        return input_error(source, n, "expected " + std::to_string(tokens_per_entry) + " fields ('row col" +
                                          (tokens_per_entry == 3 ? " value'" : "'") + "), found " +
                                          std::to_string(tokens.size()));
      }
      const auto r = internal::parse_int64(tokens[0]);
      const auto c = internal::parse_int64(tokens[1]);
      if (!r || !c) return input_error(source, n, "row and column indices must be integers");
      if (*r < 1 || static_cast<std::uint64_t>(*r) > matrix.rows || *c < 1 ||
          static_cast<std::uint64_t>(*c) > matrix.cols) {
        return input_error(source, n, "index (" + std::to_string(*r) + ", " + std::to_string(*c) +
                                          ") is outside the 1-based " + std::to_string(matrix.rows) + " x " +
                                          std::to_string(matrix.cols) + " matrix");
      }
      const std::size_t r0 = static_cast<std::size_t>(*r - 1);
      const std::size_t c0 = static_cast<std::size_t>(*c - 1);
      if (auto problem = triangle_problem(symmetry, r0, c0)) return input_error(source, n, *problem);
      double value = 1.0;
      if (header->field != Field::pattern) {
        auto parsed = parse_value(tokens[2], header->field, source, n);
        if (!parsed) return parsed.error();
        value = *parsed;
      }
      place(matrix, symmetry, r0, c0, value);
      ++seen;
    }
    if (seen != *entries) {
      return input_error(source, lines.line_number(),
                         "truncated: " + std::to_string(*entries) + " entries declared, " + std::to_string(seen) +
                             " found");
    }
    return matrix;
  }

  // Array: values column by column; symmetric storage holds the lower triangle (with the
  // diagonal, except for skew-symmetric).
  const std::size_t n_cols = matrix.cols;
  std::size_t expected = 0;
  for (std::size_t c = 0; c < n_cols; ++c) {
    const std::size_t first_row = symmetry == Symmetry::general ? 0 : (symmetry == Symmetry::symmetric ? c : c + 1);
    expected += first_row < matrix.rows ? matrix.rows - first_row : 0;
  }
  std::size_t seen = 0;
  std::size_t r = symmetry == Symmetry::skew_symmetric ? 1 : 0;
  std::size_t c = 0;
  while (auto line = lines.next()) {
    const std::string_view content = internal::trim(*line);
    if (content.empty() || content.front() == '%') continue;
    const std::size_t n = lines.line_number();
    for (std::string_view token : internal::split_whitespace(content)) {
      if (seen == expected) return input_error(source, n, "more values than the " + std::to_string(expected) + " expected");
      auto value = parse_value(token, header->field, source, n);
      if (!value) return value.error();
      place(matrix, symmetry, r, c, *value);
      ++seen;
      if (++r == matrix.rows) {
        ++c;
        r = symmetry == Symmetry::general ? 0 : (symmetry == Symmetry::symmetric ? c : c + 1);
      }
    }
  }
  if (seen != expected) {
    return input_error(source, lines.line_number(),
                       "truncated: " + std::to_string(expected) + " values expected, " + std::to_string(seen) + " found");
  }
  return matrix;
}

Result<DenseMatrix> read_matrix_market(const std::filesystem::path& path) {
  auto text = internal::read_whole_file(path);
  if (!text) return text.error();
  return parse_matrix_market(*text, path.string());
}

Status write_matrix_market(const std::filesystem::path& path, const DenseMatrix& matrix) {
  if (matrix.rows == 0 || matrix.cols == 0) {
    return Error(ErrorCode::invalid_argument, "cannot write " + path.string() + ": the matrix is empty");
  }
  if (matrix.data.size() != matrix.rows * matrix.cols) {
    return Error(ErrorCode::invalid_argument, "cannot write " + path.string() + ": the matrix holds " +
                                                  std::to_string(matrix.data.size()) + " values, not " +
                                                  std::to_string(matrix.rows) + " x " + std::to_string(matrix.cols));
  }
  std::string out = "%%MatrixMarket matrix array real general\n";
  out += std::to_string(matrix.rows) + " " + std::to_string(matrix.cols) + "\n";
  out.reserve(out.size() + matrix.data.size() * 25);
  for (std::size_t c = 0; c < matrix.cols; ++c) {
    for (std::size_t r = 0; r < matrix.rows; ++r) {
      const double value = matrix.at(r, c);
      if (!std::isfinite(value)) {
        return Error(ErrorCode::invalid_argument, "cannot write " + path.string() + ": value at (" +
                                                      std::to_string(r + 1) + ", " + std::to_string(c + 1) +
                                                      ") is not finite; Matrix Market has no spelling for it");
      }
      out += internal::format_double(value);
      out += '\n';
    }
  }
  return internal::write_file_atomically(path, out);
}

}  // namespace gpubridge::samples

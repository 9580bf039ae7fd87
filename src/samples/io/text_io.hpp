#pragma once
// Internal helpers shared by the sample readers and writers: whole-file reads, atomic writes,
// line and token splitting, strict number parsing, and error messages that name file and line.
// All functions are reentrant.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::samples::internal {

// "<source>:<line>: <problem>" (line 0 leaves the line out).
Error input_error(std::string_view source, std::size_t line, std::string_view problem,
                  ErrorCode code = ErrorCode::invalid_argument);

// The whole file as bytes; not_found / permission_denied / unavailable with the OS reason.
Result<std::string> read_whole_file(const std::filesystem::path& path);

// Writes `bytes` to a temporary file next to `path` (created exclusively), flushes it and renames
// it over `path`. On any failure the temporary file is removed and `path` is left as it was.
Status write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Splits text into lines ('\n'; a trailing '\r' is dropped), numbering them from 1.
class LineReader {
 public:
  explicit LineReader(std::string_view text) : rest_(text) {}
  // The next line, or nullopt at the end of the text.
  std::optional<std::string_view> next();
  std::size_t line_number() const { return line_number_; }

 private:
  std::string_view rest_;
  std::size_t line_number_ = 0;
  bool done_ = false;
};

// Space, tab, '\r', '\v', '\f'.
bool is_blank(char c);
std::string_view trim(std::string_view s);
std::vector<std::string_view> split_whitespace(std::string_view s);
// The part of the line before the first `marker`.
std::string_view strip_comment(std::string_view line, char marker);
std::string to_lower(std::string_view s);

// Whole-token parses (a leading '+' is accepted); nullopt when the token is not exactly a number.
// parse_double accepts "inf"/"nan" spellings: callers that need finite values check.
std::optional<double> parse_double(std::string_view token);
std::optional<std::int64_t> parse_int64(std::string_view token);

// "%.17g": enough digits for an exact round trip of any double.
std::string format_double(double value);

// Quotes a token for an error message, shortened when long.
std::string quote(std::string_view token);

}  // namespace gpubridge::samples::internal

#include "text_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace gpubridge::samples::internal {
namespace {

ErrorCode code_for_errno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR: return ErrorCode::not_found;
    case EACCES:
    case EPERM:
    case EROFS: return ErrorCode::permission_denied;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return ErrorCode::resource_exhausted;
    case EEXIST: return ErrorCode::already_exists;
    case EISDIR: return ErrorCode::failed_precondition;
    default: return ErrorCode::unavailable;
  }
}

Error os_error(int err, std::string_view what, const std::filesystem::path& path) {
  std::string message(what);
  message += " ";
  message += path.string();
  message += ": ";
  message += std::strerror(err);
  return Error(code_for_errno(err), std::move(message));
}

// Closes the descriptor and removes the temporary file unless released.
class TemporaryFile {
 public:
  TemporaryFile(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!released_) ::unlink(path_.c_str());  // best effort: nothing to report from a destructor
  }
  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  // Closes the descriptor; returns errno on failure, 0 on success.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }
  void release() { released_ = true; }

 private:
  int fd_;
  std::filesystem::path path_;
  bool released_ = false;
};

std::atomic<std::uint64_t> temporary_counter{0};

}  // namespace

Error input_error(std::string_view source, std::size_t line, std::string_view problem, ErrorCode code) {
  std::string message(source);
  if (line > 0) {
    message += ":";
    message += std::to_string(line);
  }
  message += ": ";
  message += problem;
  return Error(code, std::move(message));
}

Result<std::string> read_whole_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return os_error(errno, "cannot open", path);
  struct stat info {};
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) {
    ::close(fd);
    return Error(ErrorCode::invalid_argument, "cannot read " + path.string() + ": it is a directory");
  }
  std::string bytes;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return os_error(err, "cannot read", path);
    }
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return bytes;
}

Status write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  if (path.filename().empty()) {
    return Error(ErrorCode::invalid_argument, "output path " + path.string() + " names no file");
  }
  const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : ".";
  const std::string temporary_name = "." + path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                                     std::to_string(temporary_counter.fetch_add(1));
  const std::filesystem::path temporary_path = directory / temporary_name;
  const int fd = ::open(temporary_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) return os_error(errno, "cannot create a temporary file in", directory);
  TemporaryFile temporary(fd, temporary_path);

  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(temporary.fd(), bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(errno, "cannot write", temporary_path);
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(temporary.fd()) != 0) return os_error(errno, "cannot flush", temporary_path);
  if (const int err = temporary.close(); err != 0) return os_error(err, "cannot close", temporary_path);
  if (::rename(temporary_path.c_str(), path.c_str()) != 0) return os_error(errno, "cannot rename into", path);
  temporary.release();
  return {};
}

std::optional<std::string_view> LineReader::next() {
  if (done_) return std::nullopt;
  if (rest_.empty() && line_number_ > 0) {
    done_ = true;
    return std::nullopt;
  }
  const std::size_t end = rest_.find('\n');
  std::string_view line = rest_.substr(0, end);
  if (end == std::string_view::npos) {
    rest_ = {};
    done_ = true;
    if (line.empty() && line_number_ > 0) return std::nullopt;
  } else {
    rest_.remove_prefix(end + 1);
  }
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  ++line_number_;
  return line;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> tokens;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_blank(s[i])) ++i;
    const std::size_t start = i;
    while (i < s.size() && !is_blank(s[i])) ++i;
    if (i > start) tokens.push_back(s.substr(start, i - start));
  }
  return tokens;
}

std::string_view strip_comment(std::string_view line, char marker) {
  return line.substr(0, line.find(marker));
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::optional<double> parse_double(std::string_view token) {
  if (!token.empty() && token.front() == '+') token.remove_prefix(1);
  if (token.empty() || token.front() == '+') return std::nullopt;
  double value = 0.0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc() || end != token.data() + token.size()) return std::nullopt;
  return value;
}

std::optional<std::int64_t> parse_int64(std::string_view token) {
  if (!token.empty() && token.front() == '+') token.remove_prefix(1);
  if (token.empty() || token.front() == '+') return std::nullopt;
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc() || end != token.data() + token.size()) return std::nullopt;
  return value;
}

std::string format_double(double value) {
  char buffer[40];
  const int n = std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return std::string(buffer, static_cast<std::size_t>(n));
}

std::string quote(std::string_view token) {
  constexpr std::size_t kMaxShown = 40;
  std::string out = "'";
  out += token.substr(0, kMaxShown);
  if (token.size() > kMaxShown) out += "...";
  out += "'";
  return out;
}

}  // namespace gpubridge::samples::internal

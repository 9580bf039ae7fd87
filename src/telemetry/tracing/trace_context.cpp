// TraceContext: W3C traceparent parsing and formatting; random ids.
#include <chrono>
#include <random>
#include <thread>

#include "span_record.hpp"

namespace gpubridge::telemetry {

namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase hex is invalid in a traceparent
}

// Decodes 2*N lowercase hex characters into `out`; false on any other character.
template <std::size_t N>
bool decode_hex(std::string_view text, std::array<std::uint8_t, N>& out) noexcept {
  for (std::size_t i = 0; i < N; ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

template <std::size_t N>
char* encode_hex(const std::array<std::uint8_t, N>& bytes, char* out) noexcept {
  for (std::uint8_t b : bytes) {
    *out++ = kHex[b >> 4];
    *out++ = kHex[b & 0x0f];
  }
  return out;
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& bytes) noexcept {
  for (std::uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

Error bad(std::string what, std::string_view text) {
  return Error(ErrorCode::invalid_argument, "invalid traceparent: " + std::move(what), std::string(text));
}

}  // namespace

Result<TraceContext> TraceContext::parse_traceparent(std::string_view text) {
  if (text.size() < kTraceparentSize) {
    return bad("expected 55 characters (version-traceid-spanid-flags), got " + std::to_string(text.size()), text);
  }
  std::array<std::uint8_t, 1> version{};
  if (!decode_hex(text.substr(0, 2), version)) return bad("version is not two lowercase hex digits", text);
  if (version[0] == 0xff) return bad("version ff is forbidden", text);
  if (version[0] == 0x00 && text.size() != kTraceparentSize) {
    return bad("version 00 must be exactly 55 characters, got " + std::to_string(text.size()), text);
  }
  // Higher versions: parse what version 00 defines; anything after it must start with '-'.
  if (text.size() > kTraceparentSize && text[kTraceparentSize] != '-') {
    return bad("characters after the flags must start with '-'", text);
  }
  if (text[2] != '-' || text[35] != '-' || text[52] != '-') {
    return bad("fields must be separated by '-' at positions 2, 35 and 52", text);
  }
  TraceContext c;
  if (!decode_hex(text.substr(3, 32), c.trace_id)) return bad("trace id is not 32 lowercase hex digits", text);
  if (!decode_hex(text.substr(36, 16), c.span_id)) return bad("span id (parent id) is not 16 lowercase hex digits", text);
  std::array<std::uint8_t, 1> flags{};
  if (!decode_hex(text.substr(53, 2), flags)) return bad("flags are not two lowercase hex digits", text);
  if (all_zero(c.trace_id)) return bad("trace id is all zeros", text);
  if (all_zero(c.span_id)) return bad("span id (parent id) is all zeros", text);
  c.flags = flags[0];
  return c;
}

void TraceContext::write_traceparent(char* out) const noexcept {
  *out++ = '0';
  *out++ = '0';
  *out++ = '-';
  out = encode_hex(trace_id, out);
  *out++ = '-';
  out = encode_hex(span_id, out);
  *out++ = '-';
  encode_hex(std::array<std::uint8_t, 1>{flags}, out);
}

std::string TraceContext::traceparent() const {
  std::string s(kTraceparentSize, '\0');
  write_traceparent(s.data());
  return s;
}

bool TraceContext::valid() const noexcept { return !all_zero(trace_id) && !all_zero(span_id); }

std::string TraceContext::trace_id_hex() const {
  std::string s(32, '\0');
  encode_hex(trace_id, s.data());
  return s;
}

std::string TraceContext::span_id_hex() const {
  std::string s(16, '\0');
  encode_hex(span_id, s.data());
  return s;
}

namespace internal {

namespace {
std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// xoshiro256** seeded once per thread from random_device, the clock and the thread id.
struct IdGenerator {
  std::uint64_t s[4];
  IdGenerator() noexcept {
    std::uint64_t seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                         (static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())) << 1);
    try {
      std::random_device rd;
      seed ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    } catch (...) {  // no entropy source: clock and thread id only
    }
    for (auto& word : s) word = splitmix64(seed);
  }
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};
}  // namespace

std::uint64_t random_nonzero_u64() noexcept {
  thread_local IdGenerator generator;
  std::uint64_t v = 0;
  while (v == 0) v = generator.next();
  return v;
}

std::uint64_t unix_nanos(std::chrono::system_clock::time_point t) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return ns > 0 ? static_cast<std::uint64_t>(ns) : 0;
}

}  // namespace internal
}  // namespace gpubridge::telemetry

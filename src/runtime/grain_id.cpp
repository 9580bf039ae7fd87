#include "gpubridge/runtime/grain_id.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <new>
#include <random>

#include "gpubridge/core/cache_line.hpp"

namespace gpubridge::runtime {

namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_dash_position(std::size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

[[noreturn]] void wrong_kind(const char* wanted, const GrainKey& key) {
  throw ErrorException(Error(ErrorCode::invalid_argument,
                             std::string("grain key is not ") + wanted + ": " + key.to_string()));
}

std::size_t mix(std::size_t a, std::size_t b) noexcept {
  return a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
}

}  // namespace

Guid Guid::random() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  Guid g;
  for (std::size_t i = 0; i < 16; i += 8) {
    const std::uint64_t r = rng();
    for (std::size_t j = 0; j < 8; ++j) g.bytes[i + j] = static_cast<std::uint8_t>(r >> (8 * j));
  }
  g.bytes[6] = static_cast<std::uint8_t>((g.bytes[6] & 0x0f) | 0x40);  // version 4
  g.bytes[8] = static_cast<std::uint8_t>((g.bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return g;
}

Result<Guid> Guid::parse(std::string_view text) {
  if (text.size() != 36) {
    return Error(ErrorCode::invalid_argument, "GUID must have 36 characters (8-4-4-4-12): '" + std::string(text) + "'");
  }
  Guid g;
  std::size_t b = 0;
  for (std::size_t i = 0; i < text.size();) {
    if (is_dash_position(i)) {
      if (text[i] != '-') return Error(ErrorCode::invalid_argument, "GUID dash expected: '" + std::string(text) + "'");
      ++i;
      continue;
    }
    const int hi = hex_value(text[i]);
    const int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return Error(ErrorCode::invalid_argument, "GUID has a non-hex digit: '" + std::string(text) + "'");
    g.bytes[b++] = static_cast<std::uint8_t>(hi * 16 + lo);
    i += 2;
  }
  return g;
}

std::string Guid::to_string() const {
  std::string s;
  s.reserve(36);
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += kHex[bytes[i] >> 4];
    s += kHex[bytes[i] & 0xf];
  }
  return s;
}

bool Guid::is_nil() const noexcept {
  for (auto b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

std::int64_t GrainKey::as_integer() const {
  if (kind() != KeyKind::integer) wrong_kind("an integer", *this);
  return std::get<0>(v_);
}

const Guid& GrainKey::as_guid() const {
  if (kind() != KeyKind::guid) wrong_kind("a GUID", *this);
  return std::get<1>(v_);
}

const std::string& GrainKey::as_string() const {
  if (kind() != KeyKind::string) wrong_kind("a string", *this);
  return std::get<2>(v_);
}

std::string GrainKey::to_string() const {
  switch (kind()) {
    case KeyKind::integer: return std::to_string(std::get<0>(v_));
    case KeyKind::guid: return std::get<1>(v_).to_string();
    case KeyKind::string: return std::get<2>(v_);
  }
  return {};
}

std::size_t GrainKey::hash() const noexcept {
  std::size_t h = 0;
  switch (kind()) {
    case KeyKind::integer: h = std::hash<std::int64_t>{}(std::get<0>(v_)); break;
    case KeyKind::guid: {
      const auto& bytes = std::get<1>(v_).bytes;
      h = std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
      break;
    }
    case KeyKind::string: h = std::hash<std::string>{}(std::get<2>(v_)); break;
  }
  return mix(h, static_cast<std::size_t>(kind()));
}

GrainId::GrainId(std::string_view type, GrainKey key) {
  const std::size_t h = mix(std::hash<std::string_view>{}(type), key.hash());
  d_ = std::make_shared<const Data>(Data{std::string(type), std::move(key), h});
}

GrainId GrainId::thread_copy() const {
  // A record with few references is not being copied by many threads at once: a plain copy,
  // which keeps ids used once (most ids of a large population) out of the cache.
  constexpr long kSharedAbove = 4;
  if (d_.use_count() <= kSharedAbove) return *this;
  // Looked up by record address among kWays neighbouring entries. An entry holds its original,
  // so that address cannot be reused by another id while the entry lives.
  struct Entry {
    std::shared_ptr<const Data> original;
    std::shared_ptr<const Data> own;
  };
  constexpr std::size_t kEntries = 64;
  constexpr std::size_t kWays = 4;
  thread_local std::array<Entry, kEntries> cache;
  const std::size_t first = (reinterpret_cast<std::uintptr_t>(d_.get()) / alignof(Data)) % kEntries;
  Entry* hit = nullptr;
  Entry* free = nullptr;  // the first entry that is empty or whose ids nothing else holds any more
  for (std::size_t w = 0; w < kWays && hit == nullptr; ++w) {
    Entry& e = cache[(first + w) % kEntries];
    if (e.original == d_) {
      hit = &e;
    } else if (free == nullptr && (e.original == nullptr || (e.original.use_count() == 1 && e.own.use_count() == 1))) {
      free = &e;
    }
  }
  if (hit == nullptr) {
    // Every neighbour in use by other shared ids: copied as before (no allocation per call).
    if (free == nullptr) return *this;
    try {
      // On cache lines of its own, the reference count (this thread writes it on every call) on
      // a line apart from the id's data, which other threads may read (a directory key copied
      // from a call's target is such a record).
      struct alignas(kCacheLine) Padded {
        Data data;
      };
      auto block = std::make_shared<const Padded>(Padded{*d_});
      free->own = std::shared_ptr<const Data>(block, &block->data);
    } catch (const std::bad_alloc&) {
      return *this;  // the same id, counted on the shared record
    }
    free->original = d_;
    hit = free;
  }
  GrainId copy;
  copy.d_ = hit->own;
  return copy;
}

std::string_view GrainId::type() const noexcept { return d_ ? std::string_view(d_->type) : std::string_view(); }

const GrainKey& GrainId::key() const {
  if (!d_) throw ErrorException(Error(ErrorCode::failed_precondition, "empty grain id has no key"));
  return d_->key;
}

std::string GrainId::to_string() const {
  if (!d_) return "<no grain>";
  return d_->type + "/" + d_->key.to_string();
}

}  // namespace gpubridge::runtime

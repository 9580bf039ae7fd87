#pragma once
// Grain identity: (grain type name, key). A key is an int64, a GUID or a string.
//
// GrainId is a cheap value: copies share one immutable record (type name, key, precomputed
// hash), so copying an id never allocates and comparing two copies is a pointer comparison.
// All types here are immutable values, safe to share between threads.
#include <array>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "gpubridge/core/result.hpp"

namespace gpubridge::runtime {

// A 128-bit GUID, printed and parsed in the canonical 8-4-4-4-12 hex form.
struct Guid {
  std::array<std::uint8_t, 16> bytes{};

  static Guid random();  // version 4 (random), from a per-thread generator seeded by random_device
  static Result<Guid> parse(std::string_view text);  // invalid_argument unless 8-4-4-4-12 hex
  std::string to_string() const;
  bool is_nil() const noexcept;

  friend bool operator==(const Guid&, const Guid&) = default;
  friend auto operator<=>(const Guid&, const Guid&) = default;
};

enum class KeyKind : std::uint8_t { integer, guid, string };

class GrainKey {
 public:
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)
  GrainKey(I key) : v_(static_cast<std::int64_t>(key)) {}  // NOLINT: implicit by design
  GrainKey(Guid key) : v_(key) {}                            // NOLINT
  GrainKey(std::string key) : v_(std::move(key)) {}          // NOLINT
  GrainKey(std::string_view key) : v_(std::string(key)) {}   // NOLINT
  GrainKey(const char* key) : v_(std::string(key)) {}        // NOLINT

  KeyKind kind() const noexcept { return static_cast<KeyKind>(v_.index()); }
  // Accessors for the key's own kind; asking for another kind throws ErrorException
  // (invalid_argument).
  std::int64_t as_integer() const;
  const Guid& as_guid() const;
  const std::string& as_string() const;

  std::string to_string() const;  // decimal, canonical GUID, or the string itself
  std::size_t hash() const noexcept;

  friend bool operator==(const GrainKey&, const GrainKey&) = default;

 private:
  std::variant<std::int64_t, Guid, std::string> v_;
};

class GrainId {
 public:
  GrainId() = default;  // the empty id: valid() is false
  GrainId(std::string_view type, GrainKey key);

  bool valid() const noexcept { return static_cast<bool>(d_); }
  std::string_view type() const noexcept;
  const GrainKey& key() const;  // requires valid()
  std::size_t hash() const noexcept { return d_ ? d_->hash : 0; }
  std::string to_string() const;  // "type/key"
  // An equal id; when this id's record is widely shared, one whose record is this thread's own
  // (kept in a small per-thread cache), so that copying it counts references on a cache line
  // other threads rarely write. For paths that copy one id from many threads at once (every
  // grain call copies its target). Allocates only when a shared id enters the cache.
  GrainId thread_copy() const;

  friend bool operator==(const GrainId& a, const GrainId& b) noexcept {
    if (a.d_ == b.d_) return true;
    if (!a.d_ || !b.d_ || a.d_->hash != b.d_->hash) return false;
    return a.d_->type == b.d_->type && a.d_->key == b.d_->key;
  }

 private:
  struct Data {
    std::string type;
    GrainKey key;
    std::size_t hash;
  };
  std::shared_ptr<const Data> d_;
};

struct GrainIdHash {
  std::size_t operator()(const GrainId& id) const noexcept { return id.hash(); }
};

}  // namespace gpubridge::runtime

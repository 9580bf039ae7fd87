#pragma once
// Readable names of grain classes and methods, computed at compile time from the compiler's
// spelling (__PRETTY_FUNCTION__): namespaces are dropped, template arguments kept
// ("Bouncer<Plain>::bounce" rather than "&app::{anonymous}::Bouncer<app::{anonymous}::Plain>::bounce").
#include <cstddef>
#include <string_view>

namespace gpubridge::runtime::internal {

template <std::size_t N>
struct FixedString {
  char data[N + 1]{};
  std::size_t size = 0;
  constexpr std::string_view view() const { return std::string_view(data, size); }
};

// Drops every qualifier ("ns::", "{anonymous}::", "function()::" of local classes), inside
// template arguments too. With keep_member, the last "::" outside template arguments
// (Class::member) is kept.
template <std::size_t N>
constexpr FixedString<N> strip_qualifiers(std::string_view raw, bool keep_member) {
  constexpr int kMaxDepth = 32;
  std::size_t keep = std::string_view::npos;
  if (keep_member) {
    int depth = 0;
    for (std::size_t i = 0; i + 1 < raw.size(); ++i) {
      if (raw[i] == '<' || raw[i] == '(') ++depth;
      if (raw[i] == '>' || raw[i] == ')') --depth;
      if (depth == 0 && raw[i] == ':' && raw[i + 1] == ':') keep = i;
    }
  }
  FixedString<N> out;
  std::size_t starts[kMaxDepth + 1] = {};  // where the current name component begins, per depth
  int depth = 0;
  std::size_t i = (!raw.empty() && raw[0] == '&') ? 1 : 0;
  while (i < raw.size()) {
    const char c = raw[i];
    if (c == ':' && i + 1 < raw.size() && raw[i + 1] == ':') {
      if (i == keep) {
        out.data[out.size++] = ':';
        out.data[out.size++] = ':';
      } else {
        out.size = starts[depth];  // a qualifier: drop the component before it
      }
      i += 2;
      continue;
    }
    out.data[out.size++] = c;
    if ((c == '<' || c == '(') && depth < kMaxDepth) {
      starts[++depth] = out.size;
    } else if ((c == '>' || c == ')') && depth > 0) {
      --depth;
    } else if (c == ',' || c == ' ') {
      starts[depth] = out.size;
    }
    ++i;
  }
  return out;
}

// The text after "<param> = " in a __PRETTY_FUNCTION__ of a template with one parameter.
constexpr std::string_view template_argument(std::string_view pretty, std::string_view param) {
  const std::size_t begin = pretty.find(param) + param.size();
  const std::size_t end = pretty.find_first_of(";]", begin);
  return pretty.substr(begin, end - begin);
}

template <auto M>
constexpr std::string_view method_spelling() {
  return template_argument(__PRETTY_FUNCTION__, "M = ");
}

template <typename G>
constexpr std::string_view type_spelling() {
  return template_argument(__PRETTY_FUNCTION__, "G = ");
}

template <auto M>
struct MethodName {
  static constexpr std::string_view raw = method_spelling<M>();
  static constexpr FixedString<raw.size()> value = strip_qualifiers<raw.size()>(raw, true);
};

template <typename G>
struct ClassName {
  static constexpr std::string_view raw = type_spelling<G>();
  static constexpr FixedString<raw.size()> value = strip_qualifiers<raw.size()>(raw, false);
};

// A unique address per C++ class: identifies grain classes at run time.
template <typename G>
const void* type_key() noexcept {
  static const char key{};
  return &key;
}

// "Class::method"
template <auto M>
constexpr std::string_view method_name() {
  return MethodName<M>::value.view();
}

// "Class" (template arguments kept, namespaces dropped)
template <typename G>
constexpr std::string_view class_name() {
  return ClassName<G>::value.view();
}

}  // namespace gpubridge::runtime::internal

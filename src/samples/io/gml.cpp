// GML reader for the subset real graph files use (see io.hpp).
#include <cmath>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "graph_builder.hpp"
#include "text_io.hpp"

namespace gpubridge::samples {
namespace {

using internal::input_error;
using internal::quote;

enum class TokenKind { key, integer, real, string, open, close };

struct Token {
  TokenKind kind = TokenKind::key;
  std::string_view text;  // for strings: the content without quotes
  std::size_t line = 0;
  std::int64_t integer = 0;
  double real = 0.0;
};

bool is_key_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_key_char(char c) { return is_key_start(c) || (c >= '0' && c <= '9'); }

Result<std::vector<Token>> tokenize(std::string_view text, std::string_view source) {
  std::vector<Token> tokens;
  std::size_t line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      ++i;
    } else if (internal::is_blank(c)) {
      ++i;
    } else if (c == '#') {
      while (i < text.size() && text[i] != '\n') ++i;
    } else if (c == '[' || c == ']') {
      tokens.push_back(Token{c == '[' ? TokenKind::open : TokenKind::close, text.substr(i, 1), line});
      ++i;
    } else if (c == '"') {
      const std::size_t start_line = line;
      const std::size_t start = ++i;
      while (i < text.size() && text[i] != '"') {
        if (text[i] == '\n') ++line;
        ++i;
      }
      if (i == text.size()) return input_error(source, start_line, "string opened here is not closed");
      tokens.push_back(Token{TokenKind::string, text.substr(start, i - start), start_line});
      ++i;
    } else {
      const std::size_t start = i;
      while (i < text.size() && !internal::is_blank(text[i]) && text[i] != '\n' && text[i] != '[' &&
             text[i] != ']' && text[i] != '"') {
        ++i;
      }
      const std::string_view word = text.substr(start, i - start);
      Token token{TokenKind::key, word, line};
      if (is_key_start(word.front())) {
        for (char k : word) {
          if (!is_key_char(k)) return input_error(source, line, "invalid key " + quote(word));
        }
        const std::string lower = internal::to_lower(word);
        if (lower == "inf" || lower == "nan") {  // non-finite reals as some writers spell them
          token.kind = TokenKind::real;
          token.real = lower == "inf" ? HUGE_VAL : std::nan("");
        }
      } else if (const auto integer = internal::parse_int64(word)) {
        token.kind = TokenKind::integer;
        token.integer = *integer;
      } else if (const auto real = internal::parse_double(word)) {
        token.kind = TokenKind::real;
        token.real = *real;
      } else {
        return input_error(source, line, "expected a key, a number, a string or a bracket, found " + quote(word));
      }
      tokens.push_back(token);
    }
  }
  return tokens;
}

struct PendingEdge {
  std::int64_t source = 0;
  std::int64_t target = 0;
  std::optional<double> weight;
  std::size_t line = 0;
};

struct PendingNode {
  std::int64_t id = 0;
  std::string label;
  std::size_t line = 0;
};

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::string_view source) : tokens_(tokens), source_(source) {}

  Result<Graph> parse() {
    bool found_graph = false;
    while (pos_ < tokens_.size()) {
      const Token& key = tokens_[pos_];
      if (key.kind != TokenKind::key) return unexpected(key, "a key");
      ++pos_;
      if (internal::to_lower(key.text) == "graph") {
        if (found_graph) return input_error(source_, key.line, "more than one graph in the file");
        if (pos_ >= tokens_.size() || tokens_[pos_].kind != TokenKind::open) {
          return input_error(source_, key.line, "'graph' must be followed by '['");
        }
        if (auto status = parse_graph(); !status) return status.error();
        found_graph = true;
      } else if (auto status = skip_value(key); !status) {
        return status.error();
      }
    }
    if (!found_graph) return input_error(source_, 0, "no 'graph [ ... ]' in the file");
    return build();
  }

 private:
  Error unexpected(const Token& token, std::string_view expected) const {
    return input_error(source_, token.line, "expected " + std::string(expected) + ", found " + describe(token));
  }

  static std::string describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::open: return "'['";
      case TokenKind::close: return "']'";
      case TokenKind::string: return "a string";
      default: return quote(token.text);
    }
  }

  Error end_of_file(std::size_t opened_line) const {
    return input_error(source_, opened_line, "unexpected end of file: the list opened here is not closed by ']'");
  }

  // Skips the value of `key`: a scalar, or a whole (nested) list.
  Status skip_value(const Token& key) {
    if (pos_ >= tokens_.size()) return input_error(source_, key.line, "key " + quote(key.text) + " has no value");
    const Token& value = tokens_[pos_];
    if (value.kind == TokenKind::close || value.kind == TokenKind::key) {
      return input_error(source_, key.line, "key " + quote(key.text) + " has no value");
    }
    ++pos_;
    if (value.kind != TokenKind::open) return {};
    std::vector<std::size_t> open_lines{value.line};
    while (!open_lines.empty()) {
      if (pos_ >= tokens_.size()) return end_of_file(open_lines.back());
      const Token& t = tokens_[pos_++];
      if (t.kind == TokenKind::open) open_lines.push_back(t.line);
      if (t.kind == TokenKind::close) open_lines.pop_back();
    }
    return {};
  }

  // Reads the scalar value of `key` as an integer.
  Result<std::int64_t> integer_value(const Token& key) {
    if (pos_ >= tokens_.size() || tokens_[pos_].kind != TokenKind::integer) {
      return input_error(source_, key.line, "key " + quote(key.text) + " needs an integer value");
    }
    return tokens_[pos_++].integer;
  }

  Result<double> number_value(const Token& key) {
    if (pos_ < tokens_.size() && tokens_[pos_].kind == TokenKind::integer) {
      return static_cast<double>(tokens_[pos_++].integer);
    }
    if (pos_ < tokens_.size() && tokens_[pos_].kind == TokenKind::real) {
      const double v = tokens_[pos_++].real;
      if (!std::isfinite(v)) return input_error(source_, key.line, "key " + quote(key.text) + " is not finite");
      return v;
    }
    return input_error(source_, key.line, "key " + quote(key.text) + " needs a numeric value");
  }

  // Calls on_key(key token) for each key of the list that starts at pos_ ('['); on_key consumes
  // the value. Stops after the matching ']'.
  template <typename OnKey>
  Status for_each_key(OnKey&& on_key) {
    const std::size_t opened = tokens_[pos_++].line;
    for (;;) {
      if (pos_ >= tokens_.size()) return end_of_file(opened);
      const Token& key = tokens_[pos_];
      if (key.kind == TokenKind::close) {
        ++pos_;
        return {};
      }
      if (key.kind != TokenKind::key) return unexpected(key, "a key or ']'");
      ++pos_;
      if (auto status = on_key(key); !status) return status;
    }
  }

  Status parse_graph() {
    return for_each_key([&](const Token& key) -> Status {
      const std::string name = internal::to_lower(key.text);
      if (name == "directed") {
        auto v = integer_value(key);
        if (!v) return v.error();
        if (*v != 0 && *v != 1) return input_error(source_, key.line, "'directed' must be 0 or 1");
        directed_ = *v == 1;
        return {};
      }
      if ((name == "node" || name == "edge") &&
          (pos_ >= tokens_.size() || tokens_[pos_].kind != TokenKind::open)) {
        return input_error(source_, key.line, quote(key.text) + " must be followed by '['");
      }
      if (name == "node") return parse_node(key.line);
      if (name == "edge") return parse_edge(key.line);
      return skip_value(key);
    });
  }

  Status parse_node(std::size_t line) {
    std::optional<std::int64_t> id;
    std::string label;
    auto status = for_each_key([&](const Token& key) -> Status {
      const std::string name = internal::to_lower(key.text);
      if (name == "id") {
        if (id) return input_error(source_, key.line, "node has two ids");
        auto v = integer_value(key);
        if (!v) return v.error();
        id = *v;
        return {};
      }
      if (name == "label" && pos_ < tokens_.size() && tokens_[pos_].kind != TokenKind::open &&
          tokens_[pos_].kind != TokenKind::close && tokens_[pos_].kind != TokenKind::key) {
        label = std::string(tokens_[pos_++].text);
        return {};
      }
      return skip_value(key);
    });
    if (!status) return status;
    if (!id) return input_error(source_, line, "node has no 'id'");
    nodes_.push_back(PendingNode{*id, std::move(label), line});
    return {};
  }

  Status parse_edge(std::size_t line) {
    std::optional<std::int64_t> from;
    std::optional<std::int64_t> to;
    std::optional<double> weight;
    std::optional<double> value;
    auto status = for_each_key([&](const Token& key) -> Status {
      const std::string name = internal::to_lower(key.text);
      if (name == "source" || name == "target") {
        auto& slot = name == "source" ? from : to;
        if (slot) return input_error(source_, key.line, "edge has two " + quote(name) + " keys");
        auto v = integer_value(key);
        if (!v) return v.error();
        slot = *v;
        return {};
      }
      if (name == "weight" || name == "value") {
        auto& slot = name == "weight" ? weight : value;
        if (slot) return input_error(source_, key.line, "edge has two " + quote(name) + " keys");
        auto v = number_value(key);
        if (!v) return v.error();
        slot = *v;
        return {};
      }
      return skip_value(key);
    });
    if (!status) return status;
    if (!from || !to) return input_error(source_, line, "edge needs both 'source' and 'target'");
    if (weight && value) {
      return input_error(source_, line, "edge has both 'weight' and 'value'; which one is its weight is ambiguous");
    }
    edges_.push_back(PendingEdge{*from, *to, weight ? weight : value, line});
    return {};
  }

  Result<Graph> build() {
    internal::GraphBuilder builder(directed_);
    for (auto& node : nodes_) {
      if (!builder.add_node(node.id, std::move(node.label))) {
        return input_error(source_, node.line, "duplicate node id " + std::to_string(node.id));
      }
    }
    bool has_weights = false;
    for (const auto& edge : edges_) {
      const auto from = builder.find(edge.source);
      const auto to = builder.find(edge.target);
      if (!from || !to) {
        return input_error(source_, edge.line,
                           "edge names unknown node " + std::to_string(from ? edge.target : edge.source));
      }
      has_weights = has_weights || edge.weight.has_value();
      builder.add_edge(*from, *to, edge.weight.value_or(1.0));
    }
    builder.set_has_weights(has_weights);
    return builder.take();
  }

  const std::vector<Token>& tokens_;
  std::string_view source_;
  std::size_t pos_ = 0;
  bool directed_ = false;  // GML's default
  std::vector<PendingNode> nodes_;
  std::vector<PendingEdge> edges_;
};

}  // namespace

Result<Graph> parse_gml(std::string_view text, std::string_view source_name) {
  auto tokens = tokenize(text, source_name);
  if (!tokens) return tokens.error();
  return Parser(*tokens, source_name).parse();
}

Result<Graph> read_gml(const std::filesystem::path& path) {
  auto text = internal::read_whole_file(path);
  if (!text) return text.error();
  return parse_gml(*text, path.string());
}

}  // namespace gpubridge::samples

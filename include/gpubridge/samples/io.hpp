#pragma once
// Input and output of the samples' data formats: Matrix Market matrices, PNG and .npy images,
// GML and edge-list graphs, convolution kernel text files and TSV node results.
//
// Contracts shared by every function here:
// - Readers validate everything and return a Result whose error message names the file (or the
//   `source_name` given to a parse_* function), the line where one applies, and the problem.
//   Malformed input is ErrorCode::invalid_argument, a valid but unsupported variant (complex
//   matrices, 16-bit PNG) is unimplemented, a missing file is not_found. Nothing crashes on
//   malformed input and nothing returns a default value on failure.
// - Writers validate first, then write a temporary file in the destination's directory and rename
//   it into place: a failed write never leaves a partial or temporary file behind, and an existing
//   file is either replaced whole or left untouched.
// - Thread-safety: every function is reentrant (no shared state); calls on distinct files may
//   run concurrently. Concurrent writers to the same path race: the last rename wins.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::samples {

// ------------------------------------------------------------------ dense matrices

// A dense matrix of double, row-major: element (r, c) is data[r * cols + c].
struct DenseMatrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<double> data;

  double at(std::size_t r, std::size_t c) const { return data[r * cols + c]; }
};

// Matrix Market: `coordinate` or `array`; `real`, `integer` or `pattern` (entries read as 1.0);
// `general`, `symmetric` or `skew-symmetric`. Symmetric files must store only the lower triangle
// (as the format requires); the upper one is filled in by mirroring (negated for skew).
// Duplicate coordinate entries are summed. Indices are 1-based and checked. Dense results are
// limited to 2^28 elements (resource_exhausted beyond).
Result<DenseMatrix> read_matrix_market(const std::filesystem::path& path);
Result<DenseMatrix> parse_matrix_market(std::string_view text, std::string_view source_name);
// Writes `%%MatrixMarket matrix array real general`, column-major, 17 significant digits (exact
// round trip). Non-finite values are rejected: the format has no spelling for them.
Status write_matrix_market(const std::filesystem::path& path, const DenseMatrix& matrix);

// ------------------------------------------------------------------ images

// An 8-bit image as float32: data[(r * width + c) * channels + k], values 0..255.
struct Image {
  std::size_t height = 0;
  std::size_t width = 0;
  std::size_t channels = 0;  // 1 (grey) or 3 (R, G, B)
  std::vector<float> data;
};

// PNG, 8-bit grey or RGB. Conversions (documented, not silent surprises):
// - grey+alpha and RGBA: the alpha channel is dropped (colour values kept, not composited);
// - palette images are converted to RGB (their transparency, if any, is dropped);
// - 1-, 2- and 4-bit grey are scaled to 0..255 (1-bit: 0 and 255).
// 16-bit PNGs are rejected (unimplemented). No gamma correction is applied (like OpenCV).
Result<Image> read_png(const std::filesystem::path& path);
// 8-bit PNG, grey (1 channel) or RGB (3); values rounded to nearest (ties to even) and clamped to
// 0..255. A NaN pixel is an error.
Status write_png(const std::filesystem::path& path, const Image& image);

// NumPy .npy format version 1.0, little-endian float32 ('<f4'), C order; shape (H, W) for one
// channel, (H, W, C) otherwise.
Status write_npy(const std::filesystem::path& path, const Image& image);
// The same for any shape: the product of `shape` must equal data.size().
Status write_npy(const std::filesystem::path& path, std::span<const std::size_t> shape,
                 std::span<const float> data);

// ------------------------------------------------------------------ graphs

// An edge between two nodes given as indices into Graph::node_ids.
struct GraphEdge {
  std::size_t source = 0;
  std::size_t target = 0;
  double weight = 1.0;
};

// A graph with parallel edges merged (weights summed; for undirected graphs (u, v) and (v, u) are
// the same edge). Self-loops are kept. Edges keep the order and orientation of their first
// occurrence in the input.
struct Graph {
  bool directed = false;
  bool has_weights = false;                // true when the input gave any edge weight
  std::vector<std::int64_t> node_ids;      // input order
  std::vector<std::string> node_labels;    // parallel to node_ids; empty when absent
  std::vector<GraphEdge> edges;

  // Index of the node with this id, if any (linear search).
  std::optional<std::size_t> index_of(std::int64_t id) const;
};

// GML, the subset real files use: `graph [ directed 0|1 node [ id N label "x" ... ]
// edge [ source A target B weight W | value V ... ] ]`. `directed` absent means undirected (GML's
// default). Comments start with '#'; unknown keys (with nested lists) are skipped. Node ids are
// 64-bit integers and unique; an edge naming an unknown node is an error; an edge with both
// `weight` and `value` is an error (ambiguous); weights must be finite. Edges without a weight
// get 1.0.
Result<Graph> read_gml(const std::filesystem::path& path);
Result<Graph> parse_gml(std::string_view text, std::string_view source_name);

// Edge lists: one `u v [w]` per line (64-bit integer ids, finite weight); '#' starts a comment;
// blank lines are skipped. Either every edge line has a weight or none does. Nodes are listed in
// order of first appearance (an edge list cannot name an isolated node).
// Directedness rule: a comment line `# directed` or `# undirected` before the first edge declares
// it; otherwise `directed` from the options applies; with neither, the graph is directed.
// A declaration that contradicts the options is an error.
struct EdgeListOptions {
  std::optional<bool> directed;
};
Result<Graph> read_edge_list(const std::filesystem::path& path, const EdgeListOptions& options = {});
Result<Graph> parse_edge_list(std::string_view text, std::string_view source_name,
                              const EdgeListOptions& options = {});

// ------------------------------------------------------------------ convolution kernels

// Rows of whitespace-separated finite numbers; '#' comments and blank lines are skipped. Ragged
// rows, non-numbers and a file without numbers are errors.
Result<DenseMatrix> read_kernel(const std::filesystem::path& path);
Result<DenseMatrix> parse_kernel(std::string_view text, std::string_view source_name);

// ------------------------------------------------------------------ per-node results (TSV)

// `node_id<TAB>value` per node, sorted by node id. Doubles print with 17 significant digits,
// +infinity as `inf` (-inf as `-inf`); NaN is an error. node_ids must be unique and as many as
// values.
Status write_node_values_tsv(const std::filesystem::path& path, std::span<const std::int64_t> node_ids,
                             std::span<const double> values);
// Integers (BFS levels, -1 for unreachable) print as integers.
Status write_node_values_tsv(const std::filesystem::path& path, std::span<const std::int64_t> node_ids,
                             std::span<const std::int64_t> values);

struct NodeValue {
  std::int64_t node_id = 0;
  double value = 0.0;
};
// Reads the TSV above (either kind; `inf`/`-inf` accepted) in file order; duplicate ids are errors.
Result<std::vector<NodeValue>> read_node_values_tsv(const std::filesystem::path& path);

}  // namespace gpubridge::samples

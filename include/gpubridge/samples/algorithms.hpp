#pragma once
// CPU implementations of the sample algorithms (issue 5): vector, dense matrix, image and graph.
// They are the host references that the catalog kernels of every backend are checked against,
// so each one states the library behaviour it reproduces and its numerical contract.
//
// Contract shared by every function here:
// - Inputs are validated; bad input (empty data, mismatched sizes, out-of-range ids, non-finite
//   values where they matter, a singular matrix, a negative weight) returns an Error with
//   ErrorCode::invalid_argument and a message naming the problem. Nothing here throws on bad input
//   or returns a partial or default result (std::bad_alloc is not caught).
// - Functions are pure: they read their arguments, write their results and keep no state, so
//   they may be called concurrently from any number of threads (on distinct outputs).
// - Each algorithm has two forms. The span form reads non-owning views (MatrixView, ImageView,
//   CsrView) of the caller's data and writes into a caller-owned output span that must hold
//   exactly the result's element count (else invalid_argument) and must not overlap an input; on
//   error the output's contents are unspecified. The container form (Matrix, ImageF32, CsrGraph
//   in, a fresh container out) is a thin wrapper over the span form with identical results.
// - `Parallelism::threads` bounds the std::threads a call starts (0 = hardware_concurrency).
//   Results are bit-for-bit identical for every thread count: work is split so that each output
//   element is computed by one thread with a fixed order of operations, and reductions sum
//   fixed-size chunks in index order.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::samples {

struct Parallelism {
  unsigned threads = 0;  // 0: std::thread::hardware_concurrency()
};

// ---------------------------------------------------------------------------------------------
// Vector (float32 and float64; empty vectors are an error).

// out[i] = a[i] + b[i].
Result<std::vector<float>> vector_add(std::span<const float> a, std::span<const float> b,
                                      Parallelism parallelism = {});
Result<std::vector<double>> vector_add(std::span<const double> a, std::span<const double> b,
                                       Parallelism parallelism = {});

// sum a[i] * b[i], accumulated in float64 over chunks of kDotChunk elements whose partial sums
// are then added in index order (blocked summation: error grows with n / kDotChunk + kDotChunk,
// not n, and the result does not depend on the thread count). Float32 products are exact in
// float64, so the float32 overload is accurate to about kDotChunk * 2^-53 relative to sum |a*b|.
inline constexpr std::size_t kDotChunk = 4096;
Result<double> vector_dot(std::span<const float> a, std::span<const float> b,
                          Parallelism parallelism = {});
Result<double> vector_dot(std::span<const double> a, std::span<const double> b,
                          Parallelism parallelism = {});

// x / ||x||_2, the norm computed as sqrt(vector_dot(x, x)) in float64 and each element divided in
// float64 before rounding to the element type. A zero or non-finite norm is an error.
Result<std::vector<float>> vector_normalize(std::span<const float> x, Parallelism parallelism = {});
Result<std::vector<double>> vector_normalize(std::span<const double> x,
                                             Parallelism parallelism = {});

// ---------------------------------------------------------------------------------------------
// Dense matrices, row-major: element (r, c) is values[r * cols + c]. A valid matrix has
// rows > 0, cols > 0 and values.size() == rows * cols.
template <typename T>
struct Matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<T> values;
};
using MatrixF32 = Matrix<float>;
using MatrixF64 = Matrix<double>;

// A read-only view of a row-major matrix held elsewhere; valid under the same rules as Matrix.
template <typename T>
struct MatrixView {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::span<const T> values;
};
template <typename T>
MatrixView<T> as_view(const Matrix<T>& m) {
  return MatrixView<T>{m.rows, m.cols, m.values};
}

// A * B with OpenBLAS sgemm / dgemm (A: m x k, B: k x n). OpenBLAS uses its own threads
// (OPENBLAS_NUM_THREADS); each dimension must fit in an int (the BLAS index type).
// `out` holds a.rows * b.cols values (row-major m x n).
Status matmul(MatrixView<float> a, MatrixView<float> b, std::span<float> out);
Status matmul(MatrixView<double> a, MatrixView<double> b, std::span<double> out);
Result<MatrixF32> matmul(const MatrixF32& a, const MatrixF32& b);
Result<MatrixF64> matmul(const MatrixF64& a, const MatrixF64& b);

// A^T, copied in cache-sized tiles; `out` holds the a.cols x a.rows result.
Status transpose(MatrixView<float> a, std::span<float> out, Parallelism parallelism = {});
Status transpose(MatrixView<double> a, std::span<double> out, Parallelism parallelism = {});
Result<MatrixF32> transpose(const MatrixF32& a, Parallelism parallelism = {});
Result<MatrixF64> transpose(const MatrixF64& a, Parallelism parallelism = {});

// P A = L U by Gaussian elimination with partial pivoting (row of largest |value| in the column;
// the first such row on ties). `lu` holds U on and above the diagonal and the multipliers of L
// (unit diagonal) below it; row i of P A is row pivot_rows[i] of A.
struct LuFactorization {
  MatrixF64 lu;
  std::vector<std::size_t> pivot_rows;
};

// Singularity rule of lu_factorize and inverse: a pivot p with |p| <= n * eps * max|A| (eps =
// DBL_EPSILON, max over the entries of the input) means the matrix is singular to working
// precision, reported as invalid_argument naming the 0-based pivot column. Non-finite entries
// and non-square matrices are errors too.
double singularity_threshold(std::size_t n, double max_abs_entry);

Result<LuFactorization> lu_factorize(MatrixView<double> a, Parallelism parallelism = {});
Result<LuFactorization> lu_factorize(const MatrixF64& a, Parallelism parallelism = {});

// A^-1 from the LU factorization: solves L U X = P I, one band of columns of X per thread.
// Accuracy: ||A A^-1 - I|| grows like cond(A) * eps. `out` holds the n x n result; the
// factorization's n x n working copy is allocated per call.
Status inverse(MatrixView<double> a, std::span<double> out, Parallelism parallelism = {});
Result<MatrixF64> inverse(const MatrixF64& a, Parallelism parallelism = {});

// ---------------------------------------------------------------------------------------------
// Images: ImageF32 has the layout of io.hpp's Image (a separate type so that neither header
// depends on the other; move `data` across). Float32, height x width x channels, interleaved
// (pixel (y, x) channel c is data[(y * width + x) * channels + c]); values as read from 8-bit PNGs (0..255), though any
// finite values work. Every filter runs per channel. Borders are BORDER_REFLECT_101 of OpenCV
// (... c b | a b c ... : the edge pixel is not repeated), applied repeatedly when a kernel is
// wider than the image; a dimension of size 1 reflects onto its only pixel.
struct ImageF32 {
  std::size_t height = 0;
  std::size_t width = 0;
  std::size_t channels = 0;
  std::vector<float> data;
};

// A read-only view of an image held elsewhere, with ImageF32's layout and validity rules.
struct ImageView {
  std::size_t height = 0;
  std::size_t width = 0;
  std::size_t channels = 0;
  std::span<const float> data;
};
inline ImageView as_view(const ImageF32& image) {
  return ImageView{image.height, image.width, image.channels, image.data};
}

// Bilinear resize as cv2.resize(..., interpolation=INTER_LINEAR) on float32: destination pixel
// d maps to source coordinate s = (d + 0.5) * (src_size / dst_size) - 0.5 per axis; s < 0 uses
// pixel 0 alone and s >= src_size - 1 uses the last pixel alone. Weights are float32; the
// horizontal blend is done first, then the vertical one. `out` holds
// out_height * out_width * channels values.
Status resize_bilinear(ImageView image, std::size_t out_width, std::size_t out_height, std::span<float> out,
                       Parallelism parallelism = {});
Result<ImageF32> resize_bilinear(const ImageF32& image, std::size_t out_width, std::size_t out_height,
                              Parallelism parallelism = {});

// cv2.GaussianBlur(image, (0, 0), sigma) for float32 images: the kernel has
// ksize = round(sigma * 8 + 1) | 1 taps, coefficients exp(-(i - (ksize-1)/2)^2 / (2 sigma^2))
// normalised to sum 1 in float64 and rounded to float32, as cv2.getGaussianKernel(ksize, sigma,
// CV_32F) of OpenCV 4 (bit-exact path); filtered rows then columns.
// sigma must be finite and > 0. The span form needs one image-sized scratch buffer per call.
Result<std::size_t> gaussian_kernel_size(double sigma);
Result<std::vector<float>> gaussian_kernel(double sigma);
Status gaussian_blur(ImageView image, double sigma, std::span<float> out, Parallelism parallelism = {});
Result<ImageF32> gaussian_blur(const ImageF32& image, double sigma, Parallelism parallelism = {});

// cv2.Sobel with ksize 3 to CV_32F: dx = [1 2 1]^T x [-1 0 1] (derivative along x, smoothing
// along y), dy its transpose, magnitude = sqrt(dx^2 + dy^2).
// The span form computes one component into `out` (image-sized); the magnitude needs dx and dy
// as two image-sized scratch buffers. The container form computes all three.
struct SobelImages {
  ImageF32 dx;
  ImageF32 dy;
  ImageF32 magnitude;
};
enum class SobelComponent { dx, dy, magnitude };
Status sobel(ImageView image, SobelComponent component, std::span<float> out, Parallelism parallelism = {});
Result<SobelImages> sobel(const ImageF32& image, Parallelism parallelism = {});

// Correlation with a user kernel as cv2.filter2D(image, CV_32F, kernel) with the default anchor:
// out(y, x) = sum_{i, j} kernel(i, j) * image(y + i - rows/2, x + j - cols/2) (integer division,
// so an even-sized kernel's anchor is the lower of its two middle taps, e.g. index 2 of 4),
// accumulated in float32. The kernel must be non-empty with finite values. `out` is image-sized;
// the horizontally padded image is a scratch buffer allocated per call.
Status correlate2d(ImageView image, MatrixView<float> kernel, std::span<float> out,
                   Parallelism parallelism = {});
Result<ImageF32> correlate2d(const ImageF32& image, const MatrixF32& kernel,
                          Parallelism parallelism = {});

// ---------------------------------------------------------------------------------------------
// Graphs in compressed sparse row form, node ids 0..node_count-1.
struct Edge {
  std::size_t source = 0;
  std::size_t target = 0;
  double weight = 1.0;
};

// Out-neighbours of node u are neighbors[row_offsets[u] .. row_offsets[u+1]), sorted by id, each
// with the weight at the same index. An undirected edge {u, v} is stored as u->v and v->u (a
// self-loop once). Parallel edges (the same ordered pair in a directed graph, the same unordered
// pair in an undirected one) are merged into one with their weights summed.
struct CsrGraph {
  std::size_t node_count = 0;
  bool directed = false;
  std::vector<std::size_t> row_offsets;  // node_count + 1 entries
  std::vector<std::size_t> neighbors;
  std::vector<double> weights;
};

// Errors: node_count == 0, an endpoint >= node_count (naming the edge index), a non-finite
// weight. Negative weights are kept (pagerank and sssp reject them).
Result<CsrGraph> build_csr(std::size_t node_count, std::span<const Edge> edges, bool directed);

// A read-only view of CSR arrays held elsewhere: node_count = row_offsets.size() - 1, arcs as in
// CsrGraph. `Index` is std::size_t, or double for arrays that hold node indices and offsets as
// whole float64 numbers (the compute catalog's graph encoding, shared with its GPU recipes), read
// in place without conversion. Every algorithm checks the view first: at least one node, offsets
// whole (double), non-decreasing, from 0 to neighbors.size(), neighbours whole and < node_count,
// and `weights` either empty (every arc weighs 1) or one per arc. Rows need not be sorted and
// may repeat a neighbour: each arc counts on its own (e.g. in PageRank's unweighted out-degree).
template <typename Index>
struct CsrView {
  std::span<const Index> row_offsets;
  std::span<const Index> neighbors;
  std::span<const double> weights;
};
using CsrGraphView = CsrView<std::size_t>;
using CsrGraphF64View = CsrView<double>;
inline CsrGraphView as_view(const CsrGraph& graph) {
  return CsrGraphView{graph.row_offsets, graph.neighbors, graph.weights};
}

// Hop count from `source` to every node (level-synchronous BFS); -1 where unreachable. The span
// forms write node_count levels (as whole numbers when the output is double).
Status bfs_levels(const CsrGraphView& graph, std::size_t source, std::span<std::int64_t> levels,
                  Parallelism parallelism = {});
Status bfs_levels(const CsrGraphF64View& graph, std::size_t source, std::span<double> levels,
                  Parallelism parallelism = {});
Result<std::vector<std::int64_t>> bfs_levels(const CsrGraph& graph, std::size_t source,
                                             Parallelism parallelism = {});

// PageRank by power iteration, as networkx.pagerank without personalisation:
// x' = d * (x P + (sum of x over dangling nodes) / n) + (1 - d) / n, from x = 1/n, where row u of
// P is u's out-edges normalised to sum 1: each distinct neighbour counts 1 (weighted = false) or
// its weight (weighted = true; negative weights are an error). A node whose out-weights sum to 0
// is dangling. Stops after the first iteration whose L1 change sum |x' - x| < tolerance;
// not converging within max_iterations is an error (ErrorCode::aborted) carrying the last change.
struct PageRankOptions {
  double damping = 0.85;        // in [0, 1)
  double tolerance = 1e-10;     // > 0
  std::size_t max_iterations = 1000;
  bool weighted = false;
  Parallelism parallelism = {};
};
struct PageRankResult {
  std::vector<double> ranks;
  std::size_t iterations = 0;
};
// The span forms write node_count ranks into `ranks` and return the iteration count.
Result<std::size_t> pagerank(const CsrGraphView& graph, const PageRankOptions& options, std::span<double> ranks);
Result<std::size_t> pagerank(const CsrGraphF64View& graph, const PageRankOptions& options,
                             std::span<double> ranks);
Result<PageRankResult> pagerank(const CsrGraph& graph, const PageRankOptions& options = {});

// Shortest path lengths from `source` by Dijkstra's algorithm (binary heap), sums of weights in
// float64 along the path; +infinity where unreachable. Any negative weight in the graph is an
// error naming the edge. The span forms write node_count distances.
Status sssp_dijkstra(const CsrGraphView& graph, std::size_t source, std::span<double> distances);
Status sssp_dijkstra(const CsrGraphF64View& graph, std::size_t source, std::span<double> distances);
Result<std::vector<double>> sssp_dijkstra(const CsrGraph& graph, std::size_t source);

}  // namespace gpubridge::samples

// CPU sample algorithms (gpubridge/samples/algorithms.hpp): hand-checked cases, error cases,
// thread-count independence, and agreement with the library references stored in
// tests/samples/data by scripts/samples/make_references.py (OpenCV, numpy, networkx; the
// tolerances are the ones its manifest.json states). The readers below are test-only: minimal
// PNG (8-bit grey/RGB), .npy, Matrix Market, GML, edge-list and TSV parsers.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gpubridge/samples/algorithms.hpp"

namespace gs = gpubridge::samples;
using gpubridge::ErrorCode;

namespace {

const std::string kData = GPUBRIDGE_SAMPLES_DATA_DIR;
const std::string kShared = GPUBRIDGE_SHARED_DATA_DIR;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// --- .npy (little-endian float32/float64, C order) ------------------------------------------
struct NpyArray {
  std::vector<std::size_t> shape;
  std::vector<double> values;
};

NpyArray read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error("not npy: " + path);
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_length = 0;
  std::size_t header_start = 0;
  if (major == 1) {
    header_length = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    header_start = 10;
  } else {
    header_length = 0;
    for (int i = 3; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(bytes[8 + i]);
    header_start = 12;
  }
  const std::string header = bytes.substr(header_start, header_length);
  if (header.find("'fortran_order': False") == std::string::npos) throw std::runtime_error("fortran npy");
  const bool f4 = header.find("'<f4'") != std::string::npos;
  const bool f8 = header.find("'<f8'") != std::string::npos;
  if (!f4 && !f8) throw std::runtime_error("unsupported npy dtype: " + header);
  NpyArray array;
  const auto open = header.find('(', header.find("'shape'"));
  const auto close = header.find(')', open);
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string dim;
  std::size_t count = 1;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;
    array.shape.push_back(std::stoul(dim));
    count *= array.shape.back();
  }
  const char* data = bytes.data() + header_start + header_length;
  const std::size_t element = f4 ? 4 : 8;
  if (bytes.size() != header_start + header_length + count * element) throw std::runtime_error("npy size");
  array.values.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (f4) {
      float value;
      std::memcpy(&value, data + i * 4, 4);
      array.values[i] = value;
    } else {
      std::memcpy(&array.values[i], data + i * 8, 8);
    }
  }
  return array;
}

// --- PNG (8-bit grey or RGB, not interlaced) -----------------------------------------------
std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

gs::ImageF32 read_png(const std::string& path) {
  const std::string file = read_file(path);
  const auto* bytes = reinterpret_cast<const unsigned char*>(file.data());
  if (file.size() < 8 || std::memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) != 0) throw std::runtime_error("not png");
  std::size_t pos = 8;
  std::uint32_t width = 0, height = 0;
  int colour_type = -1;
  std::string compressed;
  while (pos + 8 <= file.size()) {
    const std::uint32_t length = be32(bytes + pos);
    const std::string type(file.data() + pos + 4, 4);
    const unsigned char* body = bytes + pos + 8;
    if (type == "IHDR") {
      width = be32(body);
      height = be32(body + 4);
      if (body[8] != 8 || body[12] != 0) throw std::runtime_error("png: only 8-bit non-interlaced");
      colour_type = body[9];
    } else if (type == "IDAT") {
      compressed.append(reinterpret_cast<const char*>(body), length);
    } else if (type == "IEND") {
      break;
    }
    pos += 12 + length;
  }
  if (colour_type != 0 && colour_type != 2) throw std::runtime_error("png: only grey or RGB");
  const std::size_t channels = colour_type == 0 ? 1 : 3;
  const std::size_t stride = width * channels;
  std::vector<unsigned char> raw((stride + 1) * height);
  uLongf raw_size = static_cast<uLongf>(raw.size());
  if (uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(compressed.data()),
                 static_cast<uLong>(compressed.size())) != Z_OK ||
      raw_size != raw.size()) {
    throw std::runtime_error("png: bad zlib stream");
  }
  std::vector<unsigned char> pixels(stride * height);
  for (std::size_t y = 0; y < height; ++y) {
    const unsigned char filter = raw[y * (stride + 1)];
    const unsigned char* in = raw.data() + y * (stride + 1) + 1;
    unsigned char* out = pixels.data() + y * stride;
    const unsigned char* up = y > 0 ? out - stride : nullptr;
    for (std::size_t i = 0; i < stride; ++i) {
      const int a = i >= channels ? out[i - channels] : 0;
      const int b = up ? up[i] : 0;
      const int c = (up && i >= channels) ? up[i - channels] : 0;
      int predictor = 0;
      switch (filter) {
        case 0: predictor = 0; break;
        case 1: predictor = a; break;
        case 2: predictor = b; break;
        case 3: predictor = (a + b) / 2; break;
        case 4: {
          const int p = a + b - c;
          const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          predictor = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default: throw std::runtime_error("png: bad filter");
      }
      out[i] = static_cast<unsigned char>((in[i] + predictor) & 0xff);
    }
  }
  gs::ImageF32 image{height, width, channels, std::vector<float>(pixels.begin(), pixels.end())};
  return image;
}

// --- Matrix Market (real, general, coordinate or array) --------------------------------------
gs::MatrixF64 read_mtx(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  const bool coordinate = line.find("coordinate") != std::string::npos;
  if (line.find("general") == std::string::npos) throw std::runtime_error("mtx: only general");
  while (std::getline(in, line) && line.starts_with("%")) {
  }
  std::istringstream size_line(line);
  gs::MatrixF64 m;
  std::size_t entries = 0;
  size_line >> m.rows >> m.cols >> entries;
  m.values.assign(m.rows * m.cols, 0.0);
  if (coordinate) {
    for (std::size_t k = 0; k < entries; ++k) {
      std::size_t r = 0, c = 0;
      double v = 0;
      in >> r >> c >> v;
      m.values[(r - 1) * m.cols + (c - 1)] += v;
    }
  } else {  // column-major
    for (std::size_t c = 0; c < m.cols; ++c)
      for (std::size_t r = 0; r < m.rows; ++r) in >> m.values[r * m.cols + c];
  }
  if (!in) throw std::runtime_error("mtx: truncated " + path);
  return m;
}

// --- graphs: GML, "u v weight" edge lists, TSV references ------------------------------------
struct LoadedGraph {
  std::vector<long long> ids;  // node index -> id in the file (ascending)
  gs::CsrGraph graph;
  std::size_t index_of(long long id) const {
    return static_cast<std::size_t>(std::lower_bound(ids.begin(), ids.end(), id) - ids.begin());
  }
};

struct RawEdge {
  long long source, target;
  double weight;
};

LoadedGraph make_graph(std::vector<long long> ids, const std::vector<RawEdge>& raw, bool directed) {
  for (const auto& e : raw) {
    ids.push_back(e.source);
    ids.push_back(e.target);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  LoadedGraph loaded;
  loaded.ids = ids;
  std::vector<gs::Edge> edges;
  for (const auto& e : raw) edges.push_back({loaded.index_of(e.source), loaded.index_of(e.target), e.weight});
  loaded.graph = gs::build_csr(ids.size(), edges, directed).value();
  return loaded;
}

// GML: tokens are words, numbers, quoted strings and brackets; only graph.directed, node.id and
// edge.source/target/weight|value are read, nested lists are skipped.
LoadedGraph read_gml(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<std::string> tokens;
  std::string token;
  while (in >> token) {
    if (token.starts_with("\"") && !(token.size() > 1 && token.ends_with("\""))) {
      std::string rest;
      std::getline(in, rest, '"');
      token += rest + "\"";
    }
    tokens.push_back(token);
  }
  bool directed = false;
  std::vector<long long> ids;
  std::vector<RawEdge> edges;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] == "directed" && i + 1 < tokens.size()) directed = tokens[i + 1] == "1";
    if ((tokens[i] == "node" || tokens[i] == "edge") && i + 1 < tokens.size() && tokens[i + 1] == "[") {
      const bool is_node = tokens[i] == "node";
      std::map<std::string, std::string> fields;
      int depth = 0;
      std::size_t j = i + 1;
      for (; j < tokens.size(); ++j) {
        if (tokens[j] == "[") {
          ++depth;
        } else if (tokens[j] == "]") {
          if (--depth == 0) break;
        } else if (depth == 1 && j + 1 < tokens.size() && tokens[j + 1] != "[") {
          fields[tokens[j]] = tokens[j + 1];
          ++j;
        }
      }
      if (is_node) {
        ids.push_back(std::stoll(fields.at("id")));
      } else {
        double weight = 1.0;
        if (fields.count("weight")) weight = std::stod(fields["weight"]);
        else if (fields.count("value")) weight = std::stod(fields["value"]);
        edges.push_back({std::stoll(fields.at("source")), std::stoll(fields.at("target")), weight});
      }
      i = j;
    }
  }
  return make_graph(ids, edges, directed);
}

LoadedGraph read_edge_list(const std::string& path) {
  std::istringstream in(read_file(path));
  std::string line;
  bool directed = false;
  std::vector<RawEdge> edges;
  while (std::getline(in, line)) {
    if (line.starts_with("#")) {
      if (line.find("# directed") == 0) directed = true;
      continue;
    }
    std::istringstream fields(line);
    RawEdge e{0, 0, 1.0};
    if (fields >> e.source >> e.target) {
      fields >> e.weight;
      edges.push_back(e);
    }
  }
  return make_graph({}, edges, directed);
}

std::map<long long, double> read_tsv(const std::string& path) {
  std::istringstream in(read_file(path));
  std::map<long long, double> values;
  long long id = 0;
  std::string value;
  while (in >> id >> value) {
    values[id] = value == "inf" ? std::numeric_limits<double>::infinity() : std::stod(value);
  }
  return values;
}

// --- helpers -------------------------------------------------------------------------------
template <typename T>
void expect_error(const gpubridge::Result<T>& result, const std::string& fragment,
                  ErrorCode code = ErrorCode::invalid_argument) {
  ASSERT_FALSE(result.ok()) << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(result.error().code(), code) << result.error().to_string();
  EXPECT_NE(result.error().to_string().find(fragment), std::string::npos) << result.error().to_string();
}

// Largest |got - want|, printed so that the margin to the tolerance shows in the test log.
double max_abs_diff(const std::vector<float>& got, const std::vector<double>& want, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  double worst = 0.0;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
  }
  std::printf("%s: max abs difference %.3g\n", what.c_str(), worst);
  return worst;
}

gs::ImageF32 random_image(std::size_t h, std::size_t w, std::size_t c, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  gs::ImageF32 image{h, w, c, std::vector<float>(h * w * c)};
  for (float& v : image.data) v = static_cast<float>(byte(rng));
  return image;
}

gs::MatrixF64 random_matrix(std::size_t rows, std::size_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  gs::MatrixF64 m{rows, cols, std::vector<double>(rows * cols)};
  for (double& v : m.values) v = value(rng);
  return m;
}

gs::ImageF32 load_input(const std::string& name) {
  if (name == "camera") return read_png(kShared + "/images/camera.png");
  if (name == "coins") return read_png(kShared + "/images/coins.png");
  return read_png(kData + "/" + name + ".png");
}

}  // namespace

// ============================================================================================
// Vector

TEST(SamplesVector, AddDotNormalizeHandChecked) {
  const std::vector<float> a{1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<float> b{0.5f, -1.0f, 2.0f, 0.25f};
  EXPECT_EQ(gs::vector_add(a, b).value(), (std::vector<float>{1.5f, 1.0f, 5.0f, 4.25f}));
  EXPECT_EQ(gs::vector_dot(a, b).value(), 0.5 - 2.0 + 6.0 + 1.0);
  const std::vector<double> x{3.0, 4.0};
  EXPECT_EQ(gs::vector_normalize(x).value(), (std::vector<double>{0.6, 0.8}));
  const auto unit = gs::vector_normalize(std::vector<float>{0.0f, -2.0f, 0.0f}).value();
  EXPECT_EQ(unit, (std::vector<float>{0.0f, -1.0f, 0.0f}));
}

TEST(SamplesVector, LargeInputsAreAccurateAndIndependentOfThreadCount) {
  const std::size_t n = 1'000'003;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> a(n), b(n);
  for (std::size_t i = 0; i < n; ++i) {
    a[i] = value(rng);
    b[i] = value(rng);
  }
  long double exact = 0.0L, norm2 = 0.0L, magnitude = 0.0L;
  for (std::size_t i = 0; i < n; ++i) {
    exact += static_cast<long double>(a[i]) * b[i];
    magnitude += std::abs(static_cast<long double>(a[i]) * b[i]);
    norm2 += static_cast<long double>(a[i]) * a[i];
  }
  const double one_thread = gs::vector_dot(a, b, {1}).value();
  EXPECT_LE(std::abs(one_thread - static_cast<double>(exact)), 1e-13 * static_cast<double>(magnitude));
  for (unsigned threads : {2u, 3u, 8u}) {
    EXPECT_EQ(gs::vector_dot(a, b, {threads}).value(), one_thread) << threads << " threads";
    EXPECT_EQ(gs::vector_add(a, b, {threads}).value(), gs::vector_add(a, b, {1}).value());
    EXPECT_EQ(gs::vector_normalize(a, {threads}).value(), gs::vector_normalize(a, {1}).value());
  }
  const auto unit = gs::vector_normalize(a).value();
  const double inverse_norm = 1.0 / std::sqrt(static_cast<double>(norm2));
  for (std::size_t i = 0; i < n; i += 9973) {
    EXPECT_NEAR(unit[i], a[i] * inverse_norm, 1e-7 * std::abs(a[i] * inverse_norm) + 1e-12);
  }
  EXPECT_NEAR(gs::vector_dot(unit, unit).value(), 1.0, 1e-6);
}

TEST(SamplesVector, BadInputIsAnError) {
  const std::vector<float> empty;
  const std::vector<float> three{1, 2, 3};
  const std::vector<float> two{1, 2};
  expect_error(gs::vector_add(empty, empty), "empty");
  expect_error(gs::vector_add(three, two), "lengths differ (3 vs 2)");
  expect_error(gs::vector_dot(two, three), "lengths differ");
  expect_error(gs::vector_dot(empty, empty), "empty");
  expect_error(gs::vector_normalize(empty), "empty");
  expect_error(gs::vector_normalize(std::vector<float>{0.0f, 0.0f}), "zero norm");
  expect_error(gs::vector_normalize(std::vector<double>{1.0, std::nan("")}), "not finite");
}

// ============================================================================================
// Matrix

TEST(SamplesMatrix, MultiplyAndTransposeHandChecked) {
  const gs::MatrixF32 a{2, 3, {1, 2, 3, 4, 5, 6}};
  const gs::MatrixF32 b{3, 2, {7, 8, 9, 10, 11, 12}};
  const auto c = gs::matmul(a, b).value();
  EXPECT_EQ(c.rows, 2u);
  EXPECT_EQ(c.cols, 2u);
  EXPECT_EQ(c.values, (std::vector<float>{58, 64, 139, 154}));
  const gs::MatrixF64 a64{2, 3, {1, 2, 3, 4, 5, 6}};
  const auto t = gs::transpose(a64).value();
  EXPECT_EQ(t.rows, 3u);
  EXPECT_EQ(t.cols, 2u);
  EXPECT_EQ(t.values, (std::vector<double>{1, 4, 2, 5, 3, 6}));
  const auto c64 = gs::matmul(a64, gs::transpose(a64).value()).value();
  EXPECT_EQ(c64.values, (std::vector<double>{14, 32, 32, 77}));
}

TEST(SamplesMatrix, TransposeIsExactForAnyShapeAndThreadCount) {
  const auto m = random_matrix(131, 77, 3);
  const auto one = gs::transpose(m, {1}).value();
  for (std::size_t r = 0; r < m.rows; ++r)
    for (std::size_t c = 0; c < m.cols; ++c) ASSERT_EQ(one.values[c * m.rows + r], m.values[r * m.cols + c]);
  EXPECT_EQ(gs::transpose(m, {5}).value().values, one.values);
  EXPECT_EQ(gs::transpose(one).value().values, m.values);
}

TEST(SamplesMatrix, Pores1MultiplyAndTransposeMatchNumpy) {
  const auto a = read_mtx(kShared + "/matrices/pores_1.mtx");
  ASSERT_EQ(a.rows, 30u);
  // Transpose: exact.
  EXPECT_EQ(gs::transpose(a).value().values, read_mtx(kData + "/pores_1_transpose.mtx").values);
  // A*A: |C - Cref| <= tol * (|A| |A|) elementwise, tol 1e-12 (float64) and 1e-5 (float32).
  const auto reference = read_mtx(kData + "/pores_1_square.mtx");
  gs::MatrixF64 abs_a = a;
  for (double& v : abs_a.values) v = std::abs(v);
  const auto bound = gs::matmul(abs_a, abs_a).value();
  const auto c64 = gs::matmul(a, a).value();
  gs::MatrixF32 a32{a.rows, a.cols, std::vector<float>(a.values.begin(), a.values.end())};
  const auto c32 = gs::matmul(a32, a32).value();
  for (std::size_t i = 0; i < reference.values.size(); ++i) {
    EXPECT_LE(std::abs(c64.values[i] - reference.values[i]), 1e-12 * bound.values[i]) << i;
    EXPECT_LE(std::abs(c32.values[i] - reference.values[i]), 1e-5 * bound.values[i]) << i;
  }
}

TEST(SamplesMatrix, InverseHandChecked) {
  const gs::MatrixF64 a{2, 2, {4, 7, 2, 6}};
  const auto inv = gs::inverse(a).value();
  const std::vector<double> expected{0.6, -0.7, -0.2, 0.4};
  for (std::size_t i = 0; i < 4; ++i) EXPECT_NEAR(inv.values[i], expected[i], 1e-15);
  // A zero leading entry needs the row swap.
  const gs::MatrixF64 swap{2, 2, {0, 1, 1, 0}};
  EXPECT_EQ(gs::inverse(swap).value().values, (std::vector<double>{0, 1, 1, 0}));
}

TEST(SamplesMatrix, LuFactorizationReproducesPermutedMatrix) {
  const auto a = random_matrix(50, 50, 11);
  const auto f = gs::lu_factorize(a).value();
  const std::size_t n = a.rows;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (std::size_t k = 0; k <= std::min(i, j); ++k) {
        const double l = k == i ? 1.0 : f.lu.values[i * n + k];
        sum += l * f.lu.values[k * n + j];
      }
      ASSERT_NEAR(sum, a.values[f.pivot_rows[i] * n + j], 1e-13) << i << "," << j;
    }
    for (std::size_t k = 0; k < i; ++k) EXPECT_LE(std::abs(f.lu.values[i * n + k]), 1.0);  // partial pivoting
  }
}

TEST(SamplesMatrix, InverseIsIndependentOfThreadCount) {
  const auto a = random_matrix(96, 96, 5);
  const auto one = gs::inverse(a, {1}).value();
  EXPECT_EQ(gs::inverse(a, {3}).value().values, one.values);
  EXPECT_EQ(gs::inverse(a, {8}).value().values, one.values);
}

TEST(SamplesMatrix, Pores1InverseMatchesNumpy) {
  const auto a = read_mtx(kShared + "/matrices/pores_1.mtx");
  const auto reference = read_mtx(kData + "/pores_1_inverse.mtx");
  const auto x = gs::inverse(a).value();
  const std::size_t n = a.rows;
  // Agreement with numpy.linalg.inv relative to the largest entry (manifest: cond2 * eps is
  // about 4e-10; tolerance 1e-8).
  double worst = 0.0, largest = 0.0;
  for (std::size_t i = 0; i < n * n; ++i) {
    worst = std::max(worst, std::abs(x.values[i] - reference.values[i]));
    largest = std::max(largest, std::abs(reference.values[i]));
  }
  std::printf("pores_1 inverse: max|X - Xnumpy| / max|Xnumpy| = %.3g\n", worst / largest);
  EXPECT_LE(worst / largest, 1e-8);
  // ||A X - I||_max <= 1e-8, and within 1e-8 * cond_1 estimate relative to ||A||_1 ||X||_1 eps.
  const auto product = gs::matmul(a, x).value();
  double residual = 0.0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      residual = std::max(residual, std::abs(product.values[i * n + j] - (i == j ? 1.0 : 0.0)));
  std::printf("pores_1 inverse: max|A X - I| = %.3g\n", residual);
  EXPECT_LE(residual, 1e-8);
  double norm_a = 0.0, norm_x = 0.0;
  for (std::size_t j = 0; j < n; ++j) {
    double col_a = 0.0, col_x = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      col_a += std::abs(a.values[i * n + j]);
      col_x += std::abs(x.values[i * n + j]);
    }
    norm_a = std::max(norm_a, col_a);
    norm_x = std::max(norm_x, col_x);
  }
  const double condition = norm_a * norm_x;
  EXPECT_GT(condition, 1e6);  // manifest: cond_1 = 4.2e6
  EXPECT_LT(condition, 1e7);
  EXPECT_LE(residual, 1e-8 * condition * std::numeric_limits<double>::epsilon() * 1e8);
}

TEST(SamplesMatrix, SingularAndBadMatricesAreErrors) {
  expect_error(gs::inverse(gs::MatrixF64{2, 2, {1, 2, 2, 4}}), "pivot column 1");
  expect_error(gs::inverse(gs::MatrixF64{2, 2, {0, 1, 0, 1}}), "pivot column 0");
  // Numerically singular: the second pivot is one ulp of 2 (4.4e-16) <= 2 * eps * 2.
  expect_error(gs::inverse(gs::MatrixF64{2, 2, {1, 2, 1, std::nextafter(2.0, 3.0)}}), "singular");
  expect_error(gs::inverse(gs::MatrixF64{3, 3, std::vector<double>(9, 0.0)}), "pivot column 0");
  expect_error(gs::inverse(gs::MatrixF64{2, 3, std::vector<double>(6, 1.0)}), "not square");
  expect_error(gs::inverse(gs::MatrixF64{2, 2, {1, 0, 0, INFINITY}}), "not finite");
  expect_error(gs::inverse(gs::MatrixF64{}), "empty matrix");
  expect_error(gs::matmul(gs::MatrixF32{2, 3, std::vector<float>(6)}, gs::MatrixF32{2, 3, std::vector<float>(6)}),
               "inner dimensions differ");
  expect_error(gs::matmul(gs::MatrixF64{2, 2, {1, 2, 3}}, gs::MatrixF64{2, 2, {1, 2, 3, 4}}), "holds 3 values");
  expect_error(gs::transpose(gs::MatrixF32{0, 4, {}}), "empty matrix");
  EXPECT_EQ(gs::singularity_threshold(4, 2.0), 4 * 2.0 * std::numeric_limits<double>::epsilon());
}

// ============================================================================================
// ImageF32

TEST(SamplesImage, BorderAndAnchorRulesMatchOpenCv) {
  const gs::ImageF32 row{1, 4, 1, {1, 2, 3, 4}};
  // cv2.filter2D: out(x) = src(x + j - cols/2), reflect-101 borders (values checked with OpenCV).
  EXPECT_EQ(gs::correlate2d(row, gs::MatrixF32{1, 3, {0, 0, 1}}).value().data,
            (std::vector<float>{2, 3, 4, 3}));
  // Even width 4: the anchor is column 2, so tap 0 reads x - 2.
  EXPECT_EQ(gs::correlate2d(row, gs::MatrixF32{1, 4, {1, 0, 0, 0}}).value().data,
            (std::vector<float>{3, 2, 1, 2}));
  gs::ImageF32 square{5, 5, 1, {}};
  for (int i = 0; i < 25; ++i) square.data.push_back(static_cast<float>(i));
  gs::MatrixF32 corner{4, 4, std::vector<float>(16, 0.0f)};
  corner.values[0] = 1.0f;
  EXPECT_EQ(gs::correlate2d(square, corner).value().data,
            (std::vector<float>{12, 11, 10, 11, 12, 7, 6, 5, 6, 7, 2, 1, 0, 1, 2, 7, 6, 5, 6, 7, 12, 11, 10, 11, 12}));
  // A kernel wider than the image reflects repeatedly: a 1-pixel image sees only itself.
  EXPECT_EQ(gs::correlate2d(gs::ImageF32{1, 1, 1, {5}}, gs::MatrixF32{1, 5, {1, 1, 1, 1, 1}}).value().data,
            (std::vector<float>{25}));
  // Sobel on x + 5y: dx = 8 inside (0 at the reflected left/right columns); as cv2.Sobel.
  const auto sobel = gs::sobel(square).value();
  EXPECT_EQ(sobel.dx.data[6], 8.0f);
  EXPECT_EQ(sobel.dx.data[5], 0.0f);
  EXPECT_EQ(sobel.dy.data[6], 40.0f);
  EXPECT_EQ(sobel.dy.data[1], 0.0f);
  EXPECT_FLOAT_EQ(sobel.magnitude.data[6], std::sqrt(8.0f * 8.0f + 40.0f * 40.0f));
}

TEST(SamplesImage, ResizeHandChecked) {
  // cv2.resize(np.array([[0, 10]]), (4, 1), INTER_LINEAR) == [0, 2.5, 7.5, 10].
  EXPECT_EQ(gs::resize_bilinear(gs::ImageF32{1, 2, 1, {0, 10}}, 4, 1).value().data,
            (std::vector<float>{0, 2.5f, 7.5f, 10}));
  const auto up = gs::resize_bilinear(gs::ImageF32{2, 2, 1, {0, 10, 20, 30}}, 3, 3).value();
  EXPECT_EQ(up.data, (std::vector<float>{0, 5, 10, 10, 15, 20, 20, 25, 30}));
  // Channels are independent.
  const auto rgb = gs::resize_bilinear(gs::ImageF32{1, 2, 2, {0, 100, 10, 200}}, 4, 1).value();
  EXPECT_EQ(rgb.data, (std::vector<float>{0, 100, 2.5f, 125, 7.5f, 175, 10, 200}));
}

TEST(SamplesImage, GaussianKernelMatchesOpenCv) {
  EXPECT_EQ(gs::gaussian_kernel_size(1.5).value(), 13u);
  EXPECT_EQ(gs::gaussian_kernel_size(3.0).value(), 25u);
  EXPECT_EQ(gs::gaussian_kernel_size(0.1).value(), 3u);  // round(1.8) = 2, | 1 = 3
  // cv2.getGaussianKernel(13, 1.5, cv2.CV_32F).tolist(), the first half (the kernel is symmetric).
  const std::vector<float> opencv{8.922106644604355e-05f, 0.0010281965369358659f, 0.007597402203828096f,
                                  0.03599434718489647f,   0.10934117436408997f,   0.21296752989292145f,
                                  0.2659642696380615f};
  const auto kernel = gs::gaussian_kernel(1.5).value();
  ASSERT_EQ(kernel.size(), 13u);
  for (std::size_t i = 0; i < opencv.size(); ++i) {
    EXPECT_EQ(kernel[i], opencv[i]) << i;
    EXPECT_EQ(kernel[i], kernel[12 - i]);
  }
}

TEST(SamplesImage, FiltersAreIndependentOfThreadCount) {
  const auto image = random_image(97, 131, 3, 1);
  const gs::MatrixF32 kernel{3, 4, {1, -2, 0.5f, 3, 0.25f, 1, -1, 2, 0, 1, 1, -0.5f}};
  const auto blur = gs::gaussian_blur(image, 2.0, {1}).value().data;
  const auto sobel = gs::sobel(image, {1}).value().magnitude.data;
  const auto correlated = gs::correlate2d(image, kernel, {1}).value().data;
  const auto resized = gs::resize_bilinear(image, 300, 200, {1}).value().data;
  for (unsigned threads : {2u, 4u, 7u}) {
    EXPECT_EQ(gs::gaussian_blur(image, 2.0, {threads}).value().data, blur);
    EXPECT_EQ(gs::sobel(image, {threads}).value().magnitude.data, sobel);
    EXPECT_EQ(gs::correlate2d(image, kernel, {threads}).value().data, correlated);
    EXPECT_EQ(gs::resize_bilinear(image, 300, 200, {threads}).value().data, resized);
  }
}

TEST(SamplesImage, TestPngDecoderReadsTheKnownPixels) {
  // Values from the references' manifest.json ("known_pixels_row_col_value").
  const auto camera = load_input("camera");
  ASSERT_EQ(camera.height, 512u);
  EXPECT_EQ(camera.data[0], 200.0f);
  EXPECT_EQ(camera.data[256 * 512 + 170], 27.0f);
  EXPECT_EQ(camera.data[511 * 512 + 511], 149.0f);
  const auto coins = load_input("coins");
  ASSERT_EQ(coins.width, 384u);
  ASSERT_EQ(coins.height, 303u);
  EXPECT_EQ(coins.data[151 * 384 + 128], 51.0f);
  const auto astronaut = load_input("astronaut_crop");
  ASSERT_EQ(astronaut.channels, 3u);
  EXPECT_EQ(astronaut.data[0], 152.0f);
  EXPECT_EQ(astronaut.data[(47 * 64 + 63) * 3 + 2], 173.0f);
}

struct ImageReference {
  const char* input;
  const char* file;
};

// Resize: cv2.resize INTER_LINEAR on float32, downscaling and upscaling; max abs <= 1e-3 on 0..255.
TEST(SamplesImage, ResizeMatchesOpenCv) {
  const ImageReference cases[] = {{"camera", "camera_resize_h128_w128.npy"},
                                  {"camera", "camera_resize_h100_w77.npy"},
                                  {"coins", "coins_resize_h151_w192.npy"},
                                  {"coins", "coins_resize_h64_w80.npy"},
                                  {"camera_crop", "camera_crop_resize_h131_w173.npy"},
                                  {"astronaut_crop", "astronaut_crop_resize_h37_w90.npy"}};
  for (const auto& c : cases) {
    const auto reference = read_npy(kData + "/" + c.file);
    const auto out = gs::resize_bilinear(load_input(c.input), reference.shape[1], reference.shape[0]).value();
    EXPECT_EQ(out.height, reference.shape[0]);
    EXPECT_LE(max_abs_diff(out.data, reference.values, c.file), 1e-3);
  }
}

TEST(SamplesImage, GaussianBlurMatchesOpenCv) {
  const struct {
    const char* input;
    const char* file;
    double sigma;
  } cases[] = {{"camera_crop", "camera_crop_blur_sigma1p5.npy", 1.5},
               {"camera_crop", "camera_crop_blur_sigma3p0.npy", 3.0},
               {"coins", "coins_blur_sigma3p0.npy", 3.0},
               {"astronaut_crop", "astronaut_crop_blur_sigma1p5.npy", 1.5}};
  for (const auto& c : cases) {
    const auto reference = read_npy(kData + "/" + c.file);
    const auto out = gs::gaussian_blur(load_input(c.input), c.sigma).value();
    EXPECT_LE(max_abs_diff(out.data, reference.values, c.file), 1e-3);
  }
}

TEST(SamplesImage, SobelAndCorrelationMatchOpenCv) {
  const auto image = load_input("camera_crop");
  const auto sobel = gs::sobel(image).value();
  EXPECT_LE(max_abs_diff(sobel.dx.data, read_npy(kData + "/camera_crop_sobel_dx.npy").values, "sobel dx"), 1e-3);
  EXPECT_LE(max_abs_diff(sobel.dy.data, read_npy(kData + "/camera_crop_sobel_dy.npy").values, "sobel dy"), 1e-3);
  EXPECT_LE(max_abs_diff(sobel.magnitude.data, read_npy(kData + "/camera_crop_sobel_magnitude.npy").values,
                         "sobel magnitude"), 1e-3);
  // Kernel file: rows of whitespace-separated numbers after '#' comments.
  std::istringstream text(read_file(kData + "/kernel_asym_3x5.txt"));
  gs::MatrixF32 kernel;
  std::string line;
  while (std::getline(text, line)) {
    if (line.starts_with("#") || line.find_first_not_of(" \t") == std::string::npos) continue;
    std::istringstream row(line);
    float value = 0;
    std::size_t cols = 0;
    while (row >> value) {
      kernel.values.push_back(value);
      ++cols;
    }
    kernel.cols = cols;
    ++kernel.rows;
  }
  ASSERT_EQ(kernel.rows, 3u);
  ASSERT_EQ(kernel.cols, 5u);
  const auto out = gs::correlate2d(image, kernel).value();
  EXPECT_LE(max_abs_diff(out.data, read_npy(kData + "/camera_crop_filter2d_kernel_asym_3x5.npy").values,
                         "filter2d 3x5"), 1e-3);
}

TEST(SamplesImage, BadInputIsAnError) {
  const gs::ImageF32 good{2, 2, 1, {1, 2, 3, 4}};
  expect_error(gs::gaussian_blur(gs::ImageF32{}, 1.0), "empty image");
  expect_error(gs::sobel(gs::ImageF32{2, 2, 1, {1, 2, 3}}), "holds 3 values, expected 4");
  expect_error(gs::gaussian_blur(good, 0.0), "sigma must be finite and > 0");
  expect_error(gs::gaussian_blur(good, std::nan("")), "sigma");
  expect_error(gs::gaussian_kernel(-1.0), "sigma");
  expect_error(gs::resize_bilinear(good, 0, 3), "output size 0 x 3 is empty");
  expect_error(gs::correlate2d(good, gs::MatrixF32{}), "empty kernel");
  expect_error(gs::correlate2d(good, gs::MatrixF32{2, 2, {1, 2, 3}}), "kernel holds 3 values");
  expect_error(gs::correlate2d(good, gs::MatrixF32{1, 2, {1, NAN}}), "not finite");
}

// ============================================================================================
// Graph

TEST(SamplesGraph, CsrMergesParallelEdgesAndMirrorsUndirectedOnes) {
  const std::vector<gs::Edge> edges{{0, 1, 1.5}, {1, 0, 1.0}, {2, 2, 2.0}, {1, 2, 0.5}, {0, 1, 0.25}};
  const auto undirected = gs::build_csr(4, edges, false).value();
  EXPECT_EQ(undirected.row_offsets, (std::vector<std::size_t>{0, 1, 3, 5, 5}));
  EXPECT_EQ(undirected.neighbors, (std::vector<std::size_t>{1, 0, 2, 1, 2}));
  EXPECT_EQ(undirected.weights, (std::vector<double>{2.75, 2.75, 0.5, 0.5, 2.0}));
  const auto directed = gs::build_csr(4, edges, true).value();
  EXPECT_EQ(directed.row_offsets, (std::vector<std::size_t>{0, 1, 3, 4, 4}));
  EXPECT_EQ(directed.neighbors, (std::vector<std::size_t>{1, 0, 2, 2}));
  EXPECT_EQ(directed.weights, (std::vector<double>{1.75, 1.0, 0.5, 2.0}));
}

TEST(SamplesGraph, BfsSsspPagerankHandChecked) {
  // 0 -> 1 -> 2 -> 3 (weights 1, 2, 4), shortcut 0 -> 3 (10), node 4 isolated.
  const std::vector<gs::Edge> edges{{0, 1, 1}, {1, 2, 2}, {2, 3, 4}, {0, 3, 10}};
  const auto g = gs::build_csr(5, edges, true).value();
  EXPECT_EQ(gs::bfs_levels(g, 0).value(), (std::vector<std::int64_t>{0, 1, 2, 1, -1}));
  EXPECT_EQ(gs::bfs_levels(g, 2).value(), (std::vector<std::int64_t>{-1, -1, 0, 1, -1}));
  const auto inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(gs::sssp_dijkstra(g, 0).value(), (std::vector<double>{0, 1, 3, 7, inf}));
  // A directed 3-cycle: uniform ranks, reached in one iteration.
  const auto cycle = gs::build_csr(3, std::vector<gs::Edge>{{0, 1}, {1, 2}, {2, 0}}, true).value();
  const auto ranks = gs::pagerank(cycle).value();
  EXPECT_EQ(ranks.iterations, 1u);
  for (double r : ranks.ranks) EXPECT_NEAR(r, 1.0 / 3.0, 1e-15);
  // 0 -> 1 with 1 dangling: x1 = (1 + d) / (2 + d) at the fixed point (d = 0.85), x0 = 1 - x1.
  const auto pair = gs::pagerank(gs::build_csr(2, std::vector<gs::Edge>{{0, 1}}, true).value()).value();
  EXPECT_NEAR(pair.ranks[1], 1.85 / 2.85, 1e-10);
  EXPECT_NEAR(pair.ranks[0], 1.0 / 2.85, 1e-10);
}

TEST(SamplesGraph, LargeRandomGraphIsIndependentOfThreadCount) {
  std::mt19937 rng(42);
  const std::size_t n = 20000;
  std::uniform_int_distribution<std::size_t> node(0, n - 1);
  std::uniform_real_distribution<double> weight(0.0, 3.0);
  std::vector<gs::Edge> edges;
  for (std::size_t i = 0; i < 5 * n; ++i) edges.push_back({node(rng), node(rng), weight(rng)});
  const auto g = gs::build_csr(n, edges, true).value();
  const auto levels = gs::bfs_levels(g, 0, {1}).value();
  gs::PageRankOptions options;
  options.weighted = true;
  options.parallelism = {1};
  const auto ranks = gs::pagerank(g, options).value();
  double total = 0.0;
  for (double r : ranks.ranks) total += r;
  EXPECT_NEAR(total, 1.0, 1e-9);
  for (unsigned threads : {2u, 5u}) {
    EXPECT_EQ(gs::bfs_levels(g, 0, {threads}).value(), levels);
    options.parallelism = {threads};
    const auto again = gs::pagerank(g, options).value();
    EXPECT_EQ(again.ranks, ranks.ranks);
    EXPECT_EQ(again.iterations, ranks.iterations);
  }
}

namespace {

void check_against_references(const LoadedGraph& loaded, const std::string& prefix, long long source,
                              bool weighted) {
  SCOPED_TRACE(prefix);
  const std::size_t start = loaded.index_of(source);
  const auto levels = gs::bfs_levels(loaded.graph, start).value();
  const auto bfs = read_tsv(kData + "/" + prefix + "_bfs_from_" + std::to_string(source) + ".tsv");
  ASSERT_EQ(bfs.size(), loaded.ids.size());
  for (std::size_t i = 0; i < loaded.ids.size(); ++i) EXPECT_EQ(static_cast<double>(levels[i]), bfs.at(loaded.ids[i]));

  // SSSP: exact on unit weights, relative 1e-12 otherwise (manifest).
  const auto distances = gs::sssp_dijkstra(loaded.graph, start).value();
  const auto sssp = read_tsv(kData + "/" + prefix + "_sssp_from_" + std::to_string(source) + ".tsv");
  ASSERT_EQ(sssp.size(), loaded.ids.size());
  for (std::size_t i = 0; i < loaded.ids.size(); ++i) {
    const double want = sssp.at(loaded.ids[i]);
    if (!weighted || std::isinf(want)) {
      EXPECT_EQ(distances[i], want) << loaded.ids[i];
    } else {
      EXPECT_LE(std::abs(distances[i] - want), 1e-12 * want) << loaded.ids[i];
    }
  }

  // PageRank: max abs <= 1e-9 (the reference iterates to L1 change 1e-15).
  gs::PageRankOptions options;
  options.weighted = weighted;
  const auto ranks = gs::pagerank(loaded.graph, options).value();
  EXPECT_GT(ranks.iterations, 1u);
  const auto pagerank = read_tsv(kData + "/" + prefix + (weighted ? "_pagerank_weighted.tsv" : "_pagerank.tsv"));
  ASSERT_EQ(pagerank.size(), loaded.ids.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < loaded.ids.size(); ++i) {
    EXPECT_NEAR(ranks.ranks[i], pagerank.at(loaded.ids[i]), 1e-9) << loaded.ids[i];
    worst = std::max(worst, std::abs(ranks.ranks[i] - pagerank.at(loaded.ids[i])));
  }
  std::printf("%s pagerank: %zu iterations, max abs difference %.3g\n", prefix.c_str(), ranks.iterations, worst);
}

}  // namespace

TEST(SamplesGraph, KarateMatchesNetworkx) {
  const auto karate = read_gml(kShared + "/graphs/karate.gml");
  ASSERT_EQ(karate.ids.size(), 34u);
  EXPECT_FALSE(karate.graph.directed);
  EXPECT_EQ(karate.graph.neighbors.size(), 2u * 78u);
  check_against_references(karate, "karate", 1, false);
}

TEST(SamplesGraph, WeightedGraphsMatchNetworkx) {
  const auto undirected = read_gml(kData + "/weighted_undirected.gml");
  ASSERT_EQ(undirected.ids.size(), 6u);
  check_against_references(undirected, "weighted_undirected", 10, true);
  const auto directed = read_edge_list(kData + "/weighted_directed.edges");
  ASSERT_TRUE(directed.graph.directed);
  ASSERT_EQ(directed.ids.size(), 6u);
  check_against_references(directed, "weighted_directed", 1, true);
}

TEST(SamplesGraph, BadInputIsAnError) {
  const std::vector<gs::Edge> none;
  expect_error(gs::build_csr(0, none, true), "no nodes");
  expect_error(gs::build_csr(3, std::vector<gs::Edge>{{0, 1}, {1, 3}}, true), "edge 1 (1 -> 3)");
  expect_error(gs::build_csr(3, std::vector<gs::Edge>{{0, 1, NAN}}, false), "non-finite weight");
  const auto negative = gs::build_csr(3, std::vector<gs::Edge>{{0, 1, 1.0}, {1, 2, -0.5}}, true).value();
  expect_error(gs::sssp_dijkstra(negative, 0), "edge 1 -> 2 has negative weight -0.5");
  gs::PageRankOptions weighted;
  weighted.weighted = true;
  expect_error(gs::pagerank(negative, weighted), "negative weight");
  EXPECT_TRUE(gs::pagerank(negative).ok());  // unweighted ignores weights
  expect_error(gs::bfs_levels(negative, 3), "source node 3 is not in the graph");
  expect_error(gs::sssp_dijkstra(negative, 7), "source node 7");
  gs::PageRankOptions bad;
  bad.damping = 1.0;
  expect_error(gs::pagerank(negative, bad), "damping");
  bad = {};
  bad.tolerance = 0.0;
  expect_error(gs::pagerank(negative, bad), "tolerance");
  bad = {};
  bad.tolerance = 1e-300;
  bad.max_iterations = 3;
  const auto many = gs::build_csr(3, std::vector<gs::Edge>{{0, 1}, {1, 2}, {2, 0}, {0, 2}}, true).value();
  expect_error(gs::pagerank(many, bad), "no convergence in 3 iterations", ErrorCode::aborted);
  gs::CsrGraph broken = negative;
  broken.neighbors[0] = 9;
  expect_error(gs::bfs_levels(broken, 0), "malformed CSR graph");
  broken = negative;
  broken.row_offsets.pop_back();
  expect_error(gs::pagerank(broken), "malformed CSR graph");
}

// ============================================================================================
// Span forms: the algorithms over views of caller-owned data, writing into caller-owned outputs
// (as the compute catalog's CPU kernels call them). They must give the container forms' results
// bit for bit, and reject outputs of the wrong size.

namespace {

// Fills the output with a value the algorithm must overwrite everywhere.
template <typename T>
std::vector<T> poisoned(std::size_t count) {
  return std::vector<T>(count, static_cast<T>(-12345));
}

}  // namespace

TEST(SamplesSpans, MatrixSpanFormsEqualContainerForms) {
  const gs::MatrixF64 a64 = random_matrix(37, 53, 3);
  const gs::MatrixF64 b64 = random_matrix(53, 29, 4);
  gs::MatrixF32 a32{a64.rows, a64.cols, std::vector<float>(a64.values.begin(), a64.values.end())};
  gs::MatrixF32 b32{b64.rows, b64.cols, std::vector<float>(b64.values.begin(), b64.values.end())};

  auto product32 = poisoned<float>(37 * 29);
  ASSERT_TRUE(gs::matmul(gs::as_view(a32), gs::as_view(b32), product32).ok());
  EXPECT_EQ(product32, gs::matmul(a32, b32).value().values);
  auto product64 = poisoned<double>(37 * 29);
  ASSERT_TRUE(gs::matmul(gs::as_view(a64), gs::as_view(b64), product64).ok());
  EXPECT_EQ(product64, gs::matmul(a64, b64).value().values);

  for (unsigned threads : {1u, 3u}) {
    auto transposed32 = poisoned<float>(a32.values.size());
    ASSERT_TRUE(gs::transpose(gs::as_view(a32), transposed32, {threads}).ok());
    EXPECT_EQ(transposed32, gs::transpose(a32).value().values);
    auto transposed64 = poisoned<double>(a64.values.size());
    ASSERT_TRUE(gs::transpose(gs::as_view(a64), transposed64, {threads}).ok());
    EXPECT_EQ(transposed64, gs::transpose(a64).value().values);
  }

  gs::MatrixF64 square = random_matrix(41, 41, 5);
  for (std::size_t i = 0; i < 41; ++i) square.values[i * 41 + i] += 41.0;
  auto inverted = poisoned<double>(41 * 41);
  ASSERT_TRUE(gs::inverse(gs::as_view(square), inverted).ok());
  EXPECT_EQ(inverted, gs::inverse(square).value().values);
  EXPECT_EQ(gs::lu_factorize(gs::as_view(square)).value().lu.values, gs::lu_factorize(square).value().lu.values);
}

TEST(SamplesSpans, MatrixOutputsOfTheWrongSizeAreErrors) {
  const gs::MatrixF32 a{2, 3, std::vector<float>(6, 1.0f)};
  const gs::MatrixF32 b{3, 4, std::vector<float>(12, 1.0f)};
  std::vector<float> small(7);
  expect_error(gs::matmul(gs::as_view(a), gs::as_view(b), small), "matmul: output holds 7 values, expected 8");
  expect_error(gs::transpose(gs::as_view(a), small), "transpose: output holds 7 values, expected 6");
  std::vector<double> inverse_out(3);
  expect_error(gs::inverse(gs::MatrixView<double>{2, 2, std::vector<double>{2, 0, 0, 2}}, inverse_out),
               "inverse: output holds 3 values, expected 4");
  // The view's own shape is checked as the container's.
  std::vector<float> six(6);
  expect_error(gs::transpose(gs::MatrixView<float>{2, 3, std::span<const float>(a.values).first(5)}, six),
               "holds 5 values, expected 6");
  expect_error(gs::inverse(gs::MatrixView<double>{2, 2, std::vector<double>{1, 2, 2, 4}}, inverse_out),
               "pivot column 1");
}

TEST(SamplesSpans, ImageSpanFormsEqualContainerForms) {
  for (std::size_t channels : {std::size_t{1}, std::size_t{3}}) {
    SCOPED_TRACE("channels " + std::to_string(channels));
    const auto image = random_image(45, 67, channels, 9);
    const gs::ImageView view = gs::as_view(image);
    for (unsigned threads : {1u, 4u}) {
      auto resized = poisoned<float>(31 * 90 * channels);
      ASSERT_TRUE(gs::resize_bilinear(view, 90, 31, resized, {threads}).ok());
      EXPECT_EQ(resized, gs::resize_bilinear(image, 90, 31).value().data);

      auto blurred = poisoned<float>(image.data.size());
      ASSERT_TRUE(gs::gaussian_blur(view, 1.7, blurred, {threads}).ok());
      EXPECT_EQ(blurred, gs::gaussian_blur(image, 1.7).value().data);

      const auto sobel = gs::sobel(image).value();
      const std::pair<gs::SobelComponent, const std::vector<float>*> components[] = {
          {gs::SobelComponent::dx, &sobel.dx.data},
          {gs::SobelComponent::dy, &sobel.dy.data},
          {gs::SobelComponent::magnitude, &sobel.magnitude.data}};
      for (const auto& [component, expected] : components) {
        auto out = poisoned<float>(image.data.size());
        ASSERT_TRUE(gs::sobel(view, component, out, {threads}).ok());
        EXPECT_EQ(out, *expected) << "component " << static_cast<int>(component);
      }

      const gs::MatrixF32 kernel{2, 5, {1, -2, 0.5f, 3, 0.25f, 1, -1, 2, 0, 1}};
      auto correlated = poisoned<float>(image.data.size());
      ASSERT_TRUE(gs::correlate2d(view, gs::as_view(kernel), correlated, {threads}).ok());
      EXPECT_EQ(correlated, gs::correlate2d(image, kernel).value().data);
    }
  }
}

TEST(SamplesSpans, ImageOutputsOfTheWrongSizeAreErrors) {
  const auto image = random_image(4, 5, 1, 2);
  const gs::ImageView view = gs::as_view(image);
  std::vector<float> wrong(19);
  expect_error(gs::resize_bilinear(view, 3, 2, wrong), "resize_bilinear: output holds 19 values, expected 6");
  expect_error(gs::gaussian_blur(view, 1.0, wrong), "gaussian_blur: output holds 19 values, expected 20");
  expect_error(gs::sobel(view, gs::SobelComponent::dx, wrong), "sobel: output holds 19 values, expected 20");
  expect_error(gs::correlate2d(view, gs::MatrixView<float>{1, 1, std::vector<float>{1}}, wrong),
               "correlate2d: output holds 19 values, expected 20");
  std::vector<float> right(20);
  expect_error(gs::sobel(gs::ImageView{4, 5, 1, std::span<const float>(image.data).first(12)}, gs::SobelComponent::dy,
                         right),
               "holds 12 values, expected 20");
  expect_error(gs::gaussian_blur(view, 0.0, right), "sigma must be finite and > 0");
}

namespace {

// A CsrGraph's arrays as whole float64 numbers (the compute catalog's encoding).
struct F64Arrays {
  std::vector<double> offsets, neighbors;
  gs::CsrGraphF64View view(std::span<const double> weights) const { return {offsets, neighbors, weights}; }
};
F64Arrays f64_arrays(const gs::CsrGraph& g) {
  return {std::vector<double>(g.row_offsets.begin(), g.row_offsets.end()),
          std::vector<double>(g.neighbors.begin(), g.neighbors.end())};
}

gs::CsrGraph random_graph(std::size_t n, std::size_t edges, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> node(0, n - 1);
  std::uniform_real_distribution<double> weight(0.0, 3.0);
  std::vector<gs::Edge> list;
  for (std::size_t i = 0; i < edges; ++i) list.push_back({node(rng), node(rng), weight(rng)});
  return gs::build_csr(n, list, true).value();
}

}  // namespace

TEST(SamplesSpans, GraphSpanFormsEqualContainerFormsForBothIndexTypes) {
  const gs::CsrGraph g = random_graph(5000, 30000, 17);
  const F64Arrays arrays = f64_arrays(g);
  const gs::CsrGraphF64View f64 = arrays.view(g.weights);
  for (unsigned threads : {1u, 3u}) {
    const auto levels = gs::bfs_levels(g, 0).value();
    auto levels_out = poisoned<std::int64_t>(g.node_count);
    ASSERT_TRUE(gs::bfs_levels(gs::as_view(g), 0, levels_out, {threads}).ok());
    EXPECT_EQ(levels_out, levels);
    auto levels_f64 = poisoned<double>(g.node_count);
    ASSERT_TRUE(gs::bfs_levels(f64, 0, levels_f64, {threads}).ok());
    EXPECT_EQ(levels_f64, std::vector<double>(levels.begin(), levels.end()));
  }

  const auto distances = gs::sssp_dijkstra(g, 3).value();
  auto distances_out = poisoned<double>(g.node_count);
  ASSERT_TRUE(gs::sssp_dijkstra(gs::as_view(g), 3, distances_out).ok());
  EXPECT_EQ(distances_out, distances);
  distances_out = poisoned<double>(g.node_count);
  ASSERT_TRUE(gs::sssp_dijkstra(f64, 3, distances_out).ok());
  EXPECT_EQ(distances_out, distances);

  for (bool weighted : {false, true}) {
    gs::PageRankOptions options;
    options.weighted = weighted;
    const auto ranks = gs::pagerank(g, options).value();
    auto ranks_out = poisoned<double>(g.node_count);
    EXPECT_EQ(gs::pagerank(gs::as_view(g), options, ranks_out).value(), ranks.iterations);
    EXPECT_EQ(ranks_out, ranks.ranks);
    ranks_out = poisoned<double>(g.node_count);
    EXPECT_EQ(gs::pagerank(f64, options, ranks_out).value(), ranks.iterations);
    EXPECT_EQ(ranks_out, ranks.ranks);
  }
}

// The ranks end in the caller's output whether the last iteration wrote it or the scratch buffer.
TEST(SamplesSpans, PagerankOutputHoldsTheRanksAfterOddAndEvenIterationCounts) {
  // 0 -> 1 with 1 dangling converges geometrically: successive tolerances stop after successive
  // iteration counts.
  const auto pair = gs::build_csr(2, std::vector<gs::Edge>{{0, 1}}, true).value();
  std::set<std::size_t> parities;
  for (double tolerance : {1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8}) {
    gs::PageRankOptions options;
    options.tolerance = tolerance;
    const auto expected = gs::pagerank(pair, options).value();
    auto out = poisoned<double>(2);
    const std::size_t iterations = gs::pagerank(gs::as_view(pair), options, out).value();
    EXPECT_EQ(iterations, expected.iterations);
    EXPECT_EQ(out, expected.ranks) << "tolerance " << tolerance;
    parities.insert(iterations % 2);
  }
  EXPECT_EQ(parities.size(), 2u) << "the cases must cover both parities";
}

// Views without weights weigh every arc 1; rows may be unsorted and repeat a neighbour, each arc
// counting on its own.
TEST(SamplesSpans, GraphViewsWithoutWeightsAndWithParallelArcs) {
  // 0 -> 2, 0 -> 1, 0 -> 1 (a parallel arc), 1 -> 2; node 3 isolated.
  const std::vector<double> offsets{0, 3, 4, 4, 4}, neighbors{2, 1, 1, 2};
  const gs::CsrGraphF64View unweighted{offsets, neighbors, {}};
  std::vector<double> out(4);
  ASSERT_TRUE(gs::sssp_dijkstra(unweighted, 0, out).ok());
  EXPECT_EQ(out, (std::vector<double>{0, 1, 1, std::numeric_limits<double>::infinity()}));
  ASSERT_TRUE(gs::bfs_levels(unweighted, 1, out).ok());
  EXPECT_EQ(out, (std::vector<double>{-1, 0, 1, -1}));
  // Unweighted PageRank counts the parallel arc twice: node 0 sends 2/3 of its rank to node 1.
  const std::vector<double> ones(4, 1.0);
  std::vector<double> with_ones(4);
  gs::PageRankOptions weighted;
  weighted.weighted = true;
  ASSERT_TRUE(gs::pagerank(unweighted, {}, out).ok());
  ASSERT_TRUE(gs::pagerank(gs::CsrGraphF64View{offsets, neighbors, ones}, weighted, with_ones).ok());
  EXPECT_EQ(out, with_ones);
  const auto merged = gs::build_csr(4, std::vector<gs::Edge>{{0, 2}, {0, 1, 2.0}, {1, 2}}, true).value();
  const auto merged_ranks = gs::pagerank(merged, weighted).value().ranks;
  for (std::size_t v = 0; v < 4; ++v) EXPECT_NEAR(out[v], merged_ranks[v], 1e-12) << v;
}

TEST(SamplesSpans, MalformedGraphViewsAreErrors) {
  const std::vector<double> offsets{0, 2, 3, 3}, neighbors{1, 2, 0};
  std::vector<double> out(3);
  auto bfs_with = [&](std::vector<double> o, std::vector<double> nb) {
    return gs::bfs_levels(gs::CsrGraphF64View{o, nb, {}}, 0, out);
  };
  ASSERT_TRUE(bfs_with(offsets, neighbors).ok());
  expect_error(bfs_with({0}, {}), "bfs_levels: graph has no nodes");
  expect_error(bfs_with({0, 2.5, 3, 3}, neighbors), "row_offsets[1] = 2.5 is not a whole number");
  expect_error(bfs_with({0, NAN, 3, 3}, neighbors), "row_offsets[1] = nan is not a whole number");
  expect_error(bfs_with({0, 3, 2, 3}, neighbors), "row_offsets decrease at node 1");
  expect_error(bfs_with({1, 2, 3, 3}, neighbors), "malformed CSR graph (row_offsets must have");
  expect_error(bfs_with({0, 2, 3, 4}, neighbors), "malformed CSR graph (row_offsets must have");
  expect_error(bfs_with(offsets, {1, 2.5, 0}), "neighbour 2.5 is not a whole number in [0, 2^53]");
  expect_error(bfs_with(offsets, {1, -1, 0}), "neighbour -1 is not a whole number in [0, 2^53]");
  expect_error(bfs_with(offsets, {1, 3, 0}), "neighbour 3 >= node count 3");
  expect_error(bfs_with(offsets, {1, INFINITY, 0}), "neighbour inf is not a whole number in [0, 2^53]");
  expect_error(bfs_with(offsets, {1, NAN, 0}), "neighbour nan is not a whole number in [0, 2^53]");
  const std::vector<double> two_weights{1, 1};
  std::vector<double> ranks(3);
  expect_error(gs::pagerank(gs::CsrGraphF64View{offsets, neighbors, two_weights}, {}, ranks),
               "one weight per edge");
  std::vector<double> short_out(2);
  expect_error(gs::bfs_levels(gs::CsrGraphF64View{offsets, neighbors, {}}, 0, short_out),
               "bfs_levels: output holds 2 values, expected 3");
  expect_error(gs::sssp_dijkstra(gs::CsrGraphF64View{offsets, neighbors, {}}, 0, short_out),
               "sssp_dijkstra: output holds 2 values, expected 3");
  expect_error(gs::pagerank(gs::CsrGraphF64View{offsets, neighbors, {}}, {}, short_out),
               "pagerank: output holds 2 values, expected 3");
  expect_error(gs::sssp_dijkstra(gs::CsrGraphF64View{offsets, neighbors, {}}, 3, out), "source node 3");
  const std::vector<std::size_t> index_offsets{0, 2, 3, 3}, index_neighbors{1, 7, 0};
  std::vector<std::int64_t> levels(3);
  expect_error(gs::bfs_levels(gs::CsrGraphView{index_offsets, index_neighbors, {}}, 0, levels),
               "neighbour 7 >= node count 3");
}

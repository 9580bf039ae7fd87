// Sample data formats: readers on the real data of ../shared/data, round trips, malformed input
// of every format, atomic writes, and the stored references of tests/samples/data.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "npy_reader.hpp"

namespace gpubridge::samples {
namespace {

namespace fs = std::filesystem;

const fs::path kReferenceDir = GPUBRIDGE_SAMPLES_REFERENCE_DIR;
const fs::path kSharedDir = GPUBRIDGE_SHARED_DATA_DIR;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const fs::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

nlohmann::json manifest() { return nlohmann::json::parse(read_text(kReferenceDir / "manifest.json")); }

// A fresh directory per test, removed afterwards.
class SamplesIo : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("gpubridge_samples_io_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::size_t file_count() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()));
  }
  fs::path dir_;
};

// Expects an error of `code` whose message names `needle` (the source, a line, the problem).
template <typename T>
void expect_error(const Result<T>& result, ErrorCode code, const std::string& needle) {
  ASSERT_FALSE(result.ok()) << "expected an error mentioning " << needle;
  EXPECT_EQ(result.error().code(), code) << result.error().to_string();
  EXPECT_NE(result.error().message().find(needle), std::string::npos) << result.error().to_string();
}

// ------------------------------------------------------------------ Matrix Market

TEST_F(SamplesIo, MatrixMarketReadsPores1) {
  auto m = read_matrix_market(kSharedDir / "matrices/pores_1.mtx");
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  ASSERT_EQ(m->rows, 30u);
  ASSERT_EQ(m->cols, 30u);
  EXPECT_EQ(m->at(0, 0), -948.1011349);
  EXPECT_EQ(m->at(1, 0), -7178501.646);
  EXPECT_EQ(m->at(0, 1), 23349.69309);
  EXPECT_EQ(m->at(29, 29), -6399179.018);
  EXPECT_EQ(std::count_if(m->data.begin(), m->data.end(), [](double v) { return v != 0.0; }), 180);
}

TEST_F(SamplesIo, MatrixMarketVariants) {
  auto sym = parse_matrix_market(
      "%%MatrixMarket matrix coordinate real symmetric\n% comment\n3 3 4\n1 1 2\n3 1 -1.5\n3 1 0.5\n2 2 4e0\n", "sym");
  ASSERT_TRUE(sym.ok()) << sym.error().to_string();
  EXPECT_EQ(sym->at(2, 0), -1.0);  // duplicates summed
  EXPECT_EQ(sym->at(0, 2), -1.0);  // mirrored
  EXPECT_EQ(sym->at(1, 1), 4.0);
  EXPECT_EQ(sym->at(1, 2), 0.0);

  auto skew = parse_matrix_market("%%MatrixMarket matrix coordinate integer skew-symmetric\n2 2 1\n2 1 7\n", "skew");
  ASSERT_TRUE(skew.ok()) << skew.error().to_string();
  EXPECT_EQ(skew->at(1, 0), 7.0);
  EXPECT_EQ(skew->at(0, 1), -7.0);

  auto pattern = parse_matrix_market("%%MatrixMarket matrix coordinate pattern general\n2 3 2\n1 3\n2 1\n", "pat");
  ASSERT_TRUE(pattern.ok()) << pattern.error().to_string();
  EXPECT_EQ(pattern->at(0, 2), 1.0);
  EXPECT_EQ(pattern->at(1, 0), 1.0);
  EXPECT_EQ(pattern->at(0, 0), 0.0);

  // Array is column-major.
  auto array = parse_matrix_market("%%MatrixMarket matrix array real general\n2 3\n1\n2\n3\n4\n5\n6\n", "arr");
  ASSERT_TRUE(array.ok()) << array.error().to_string();
  EXPECT_EQ(array->data, (std::vector<double>{1, 3, 5, 2, 4, 6}));

  auto array_sym = parse_matrix_market("%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n3\n", "arrsym");
  ASSERT_TRUE(array_sym.ok()) << array_sym.error().to_string();
  EXPECT_EQ(array_sym->data, (std::vector<double>{1, 2, 2, 3}));
}

TEST_F(SamplesIo, MatrixMarketMalformedInputsAreClearErrors) {
  expect_error(parse_matrix_market("", "empty.mtx"), ErrorCode::invalid_argument, "empty.mtx:1");
  expect_error(parse_matrix_market("%%MatrixMarket tensor coordinate real general\n", "obj.mtx"),
               ErrorCode::unimplemented, "obj.mtx:1");
  expect_error(parse_matrix_market("hello\n1 1 1\n", "hdr.mtx"), ErrorCode::invalid_argument, "%%MatrixMarket");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n", "c.mtx"),
               ErrorCode::unimplemented, "complex");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 1\n2 2 1\n", "t.mtx"),
               ErrorCode::invalid_argument, "truncated");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate real general\n2 2 1\n0 1 1\n", "i.mtx"),
               ErrorCode::invalid_argument, "i.mtx:3: index (0, 1)");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 3 1\n", "j.mtx"),
               ErrorCode::invalid_argument, "outside");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 x\n", "v.mtx"),
               ErrorCode::invalid_argument, "v.mtx:3");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 1\n2 2 2\n", "x.mtx"),
               ErrorCode::invalid_argument, "x.mtx:4: more entries");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate real symmetric\n2 2 1\n1 2 1\n", "u.mtx"),
               ErrorCode::invalid_argument, "above the diagonal");
  expect_error(parse_matrix_market("%%MatrixMarket matrix coordinate integer general\n1 1 1\n1 1 1.5\n", "n.mtx"),
               ErrorCode::invalid_argument, "not an integer");
  expect_error(parse_matrix_market("%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n", "a.mtx"),
               ErrorCode::invalid_argument, "truncated: 4 values expected, 3 found");
  expect_error(parse_matrix_market("%%MatrixMarket matrix array real general\n-2 2\n", "d.mtx"),
               ErrorCode::invalid_argument, "must be positive");
  expect_error(parse_matrix_market("%%MatrixMarket matrix array real general\n100000 100000\n", "big.mtx"),
               ErrorCode::resource_exhausted, "too large");
  expect_error(read_matrix_market(dir_ / "missing.mtx"), ErrorCode::not_found, "missing.mtx");
}

TEST_F(SamplesIo, MatrixMarketRoundTripIsExact) {
  auto a = read_matrix_market(kSharedDir / "matrices/pores_1.mtx");
  ASSERT_TRUE(a.ok());
  DenseMatrix m = *a;
  m.data[5] = 1.0 / 3.0;
  m.data[7] = -std::numeric_limits<double>::denorm_min();
  const fs::path out = dir_ / "a.mtx";
  ASSERT_TRUE(write_matrix_market(out, m).ok());
  EXPECT_EQ(read_text(out).rfind("%%MatrixMarket matrix array real general\n30 30\n", 0), 0u);
  auto back = read_matrix_market(out);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->rows, 30u);
  EXPECT_EQ(back->data, m.data);
  m.data[0] = std::numeric_limits<double>::infinity();
  expect_error(write_matrix_market(dir_ / "inf.mtx", m), ErrorCode::invalid_argument, "not finite");
  EXPECT_FALSE(fs::exists(dir_ / "inf.mtx"));
}

// ------------------------------------------------------------------ PNG and .npy

TEST_F(SamplesIo, PngReadsRealImages) {
  const auto inputs = manifest()["inputs"];
  for (const char* name : {"camera", "coins"}) {
    auto image = read_png(kSharedDir / "images" / (std::string(name) + ".png"));
    ASSERT_TRUE(image.ok()) << image.error().to_string();
    const auto& info = inputs[name];
    EXPECT_EQ(image->height, info["height"].get<std::size_t>()) << name;
    EXPECT_EQ(image->width, info["width"].get<std::size_t>()) << name;
    EXPECT_EQ(image->channels, 1u);
    double sum = 0;
    for (float v : image->data) sum += v;
    EXPECT_EQ(sum, info["pixel_sum"].get<double>()) << name;
    for (const auto& known : info["known_pixels_row_col_value"]) {
      const std::size_t r = known[0], c = known[1];
      EXPECT_EQ(image->data[r * image->width + c], known[2].get<float>()) << name << " " << r << "," << c;
    }
  }
  auto camera = read_png(kSharedDir / "images/camera.png");
  ASSERT_TRUE(camera.ok());
  EXPECT_EQ(camera->height, 512u);
  EXPECT_EQ(camera->width, 512u);
  auto coins = read_png(kSharedDir / "images/coins.png");
  ASSERT_TRUE(coins.ok());
  EXPECT_EQ(coins->height, 303u);
  EXPECT_EQ(coins->width, 384u);

  auto rgb = read_png(kReferenceDir / "astronaut_crop.png");
  ASSERT_TRUE(rgb.ok()) << rgb.error().to_string();
  EXPECT_EQ(rgb->channels, 3u);
  const auto& astro = inputs["astronaut_crop"];
  double sum = 0;
  for (float v : rgb->data) sum += v;
  EXPECT_EQ(sum, astro["pixel_sum"].get<double>());
  const auto& last = astro["known_pixels_row_col_rgb"][1];
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(rgb->data[(47 * 64 + 63) * 3 + k], last[2][k].get<float>());
  }
}

TEST_F(SamplesIo, PngVariantsConvertOrAreRejected) {
  const nlohmann::json m = manifest();  // the loop must not range over a temporary's member
  for (const auto& variant : m["png_variants"]) {
    const std::string file = variant["file"];
    auto image = read_png(kReferenceDir / file);
    if (variant["expected"].is_null()) {
      expect_error(image, ErrorCode::unimplemented, "16-bit");
      continue;
    }
    ASSERT_TRUE(image.ok()) << file << ": " << image.error().to_string();
    std::string why;
    auto expected = testing::read_npy_f32(kReferenceDir / variant["expected"].get<std::string>(), &why);
    ASSERT_TRUE(expected) << why;
    const std::size_t channels = expected->shape.size() == 3 ? expected->shape[2] : 1;
    EXPECT_EQ(image->height, expected->shape[0]) << file;
    EXPECT_EQ(image->width, expected->shape[1]) << file;
    EXPECT_EQ(image->channels, channels) << file;
    EXPECT_EQ(image->data, expected->data) << file;
  }
}

TEST_F(SamplesIo, PngMalformedInputsAreClearErrors) {
  const std::string camera = read_text(kSharedDir / "images/camera.png");
  write_text(dir_ / "truncated.png", camera.substr(0, 2000));
  expect_error(read_png(dir_ / "truncated.png"), ErrorCode::invalid_argument, "truncated.png");
  write_text(dir_ / "text.png", "not a png at all");
  expect_error(read_png(dir_ / "text.png"), ErrorCode::invalid_argument, "bad signature");
  std::string corrupt = camera;
  corrupt[20] ^= 0x55;  // inside IHDR: the CRC no longer matches
  write_text(dir_ / "corrupt.png", corrupt);
  expect_error(read_png(dir_ / "corrupt.png"), ErrorCode::invalid_argument, "corrupt.png");
  expect_error(read_png(dir_ / "absent.png"), ErrorCode::not_found, "absent.png");
}

TEST_F(SamplesIo, PngWriteRoundsClampsAndRoundTrips) {
  Image image{2, 3, 1, {-3.f, 0.4f, 2.5f, 3.5f, 254.6f, 300.f}};
  ASSERT_TRUE(write_png(dir_ / "g.png", image).ok());
  auto back = read_png(dir_ / "g.png");
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->data, (std::vector<float>{0.f, 0.f, 2.f, 4.f, 255.f, 255.f}));

  auto astro = read_png(kReferenceDir / "astronaut_crop.png");
  ASSERT_TRUE(astro.ok());
  ASSERT_TRUE(write_png(dir_ / "rgb.png", *astro).ok());
  auto astro_back = read_png(dir_ / "rgb.png");
  ASSERT_TRUE(astro_back.ok());
  EXPECT_EQ(astro_back->channels, 3u);
  EXPECT_EQ(astro_back->data, astro->data);

  Image two_channels{1, 1, 2, {1.f, 2.f}};
  expect_error(write_png(dir_ / "two.png", two_channels), ErrorCode::invalid_argument, "1 or 3 channels");
  Image nan_pixel{1, 2, 1, {1.f, std::nanf("")}};
  expect_error(write_png(dir_ / "nan.png", nan_pixel), ErrorCode::invalid_argument, "column 1) is NaN");
  EXPECT_EQ(file_count(), 2u);  // g.png and rgb.png only: no partial or temporary files
}

TEST_F(SamplesIo, NpyRoundTripsThroughAnIndependentReader) {
  auto coins = read_png(kSharedDir / "images/coins.png");
  ASSERT_TRUE(coins.ok());
  ASSERT_TRUE(write_npy(dir_ / "coins.npy", *coins).ok());
  std::string why;
  auto back = testing::read_npy_f32((dir_ / "coins.npy").string(), &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->shape, (std::vector<std::size_t>{303, 384}));
  EXPECT_EQ(back->header_bytes % 64, 0u);
  EXPECT_EQ(back->data, coins->data);

  Image rgb{2, 2, 3, {0.5f, -1.f, 3e30f, 4, 5, 6, 7, 8, 9, 10, 11, 12}};
  ASSERT_TRUE(write_npy(dir_ / "rgb.npy", rgb).ok());
  auto rgb_back = testing::read_npy_f32((dir_ / "rgb.npy").string(), &why);
  ASSERT_TRUE(rgb_back) << why;
  EXPECT_EQ(rgb_back->shape, (std::vector<std::size_t>{2, 2, 3}));
  EXPECT_EQ(rgb_back->data, rgb.data);

  const std::vector<std::size_t> vector_shape{3};
  const std::vector<float> values{1, 2, 3};
  ASSERT_TRUE(write_npy(dir_ / "v.npy", vector_shape, values).ok());
  EXPECT_NE(read_text(dir_ / "v.npy").find("'shape': (3,), }"), std::string::npos);
  const std::vector<std::size_t> wrong_shape{2, 2};
  expect_error(write_npy(dir_ / "bad.npy", wrong_shape, values), ErrorCode::invalid_argument, "needs 4 values");
  EXPECT_FALSE(fs::exists(dir_ / "bad.npy"));
}

// ------------------------------------------------------------------ graphs

TEST_F(SamplesIo, GmlReadsKarate) {
  auto g = read_gml(kSharedDir / "graphs/karate.gml");
  ASSERT_TRUE(g.ok()) << g.error().to_string();
  EXPECT_FALSE(g->directed);
  EXPECT_FALSE(g->has_weights);
  ASSERT_EQ(g->node_ids.size(), 34u);
  EXPECT_EQ(g->edges.size(), 78u);
  EXPECT_EQ(g->node_ids.front(), 1);
  EXPECT_EQ(g->node_ids.back(), 34);
  EXPECT_EQ(g->index_of(34), 33u);
  EXPECT_FALSE(g->index_of(35).has_value());
  for (const auto& e : g->edges) EXPECT_EQ(e.weight, 1.0);
}

TEST_F(SamplesIo, GmlMergesParallelEdgesAndKeepsSelfLoops) {
  auto g = read_gml(kReferenceDir / "weighted_undirected.gml");
  ASSERT_TRUE(g.ok()) << g.error().to_string();
  EXPECT_FALSE(g->directed);
  EXPECT_TRUE(g->has_weights);
  EXPECT_EQ(g->node_ids, (std::vector<std::int64_t>{10, 20, 30, 40, 50, 60}));
  EXPECT_EQ(g->node_labels[5], "isolated");
  ASSERT_EQ(g->edges.size(), 7u);
  auto weight = [&](std::int64_t u, std::int64_t v) {
    const std::size_t a = *g->index_of(u), b = *g->index_of(v);
    for (const auto& e : g->edges) {
      if ((e.source == a && e.target == b) || (e.source == b && e.target == a)) return e.weight;
    }
    return -1.0;
  };
  EXPECT_EQ(weight(10, 20), 2.5);   // 1.5 + 1.0 given as (20, 10)
  EXPECT_EQ(weight(30, 40), 0.75);  // 0.5 + 0.25
  EXPECT_EQ(weight(10, 30), 5.0);   // from `value`
  EXPECT_EQ(weight(50, 50), 2.0);   // self-loop kept

  auto directed = parse_gml("graph [ directed 1 node [ id 1 ] node [ id 2 ] edge [ source 1 target 2 ] "
                            "edge [ source 2 target 1 ] edge [ source 1 target 2 ] ]",
                            "d.gml");
  ASSERT_TRUE(directed.ok()) << directed.error().to_string();
  EXPECT_TRUE(directed->directed);
  ASSERT_EQ(directed->edges.size(), 2u);
  EXPECT_EQ(directed->edges[0].weight, 2.0);
  EXPECT_FALSE(directed->has_weights);
}

TEST_F(SamplesIo, GmlMalformedInputsAreClearErrors) {
  expect_error(parse_gml("graph [ node [ id 1 ] edge [ source 1 target 2 ] ]", "u.gml"), ErrorCode::invalid_argument,
               "u.gml:1: edge names unknown node 2");
  expect_error(parse_gml("graph [\n node [ id 1 ]\n node [ id 2 ]\n", "open.gml"), ErrorCode::invalid_argument,
               "open.gml:1: unexpected end of file");
  expect_error(parse_gml("graph [\n node [ id 1 ]\n node [ id 1 ]\n]", "dup.gml"), ErrorCode::invalid_argument,
               "dup.gml:3: duplicate node id 1");
  expect_error(parse_gml("graph [ node [ id 1 ] edge [ source 1 target 1 weight 1 value 2 ] ]", "wv.gml"),
               ErrorCode::invalid_argument, "ambiguous");
  expect_error(parse_gml("graph [ directed 2 ]", "d.gml"), ErrorCode::invalid_argument, "0 or 1");
  expect_error(parse_gml("Creator \"x\"\n", "none.gml"), ErrorCode::invalid_argument, "no 'graph");
  expect_error(parse_gml("graph [ node [ label \"a\" ] ]", "noid.gml"), ErrorCode::invalid_argument, "no 'id'");
  expect_error(parse_gml("graph [ node [ id \"a\" ] ]", "sid.gml"), ErrorCode::invalid_argument, "integer");
  expect_error(parse_gml("graph [ label \"unterminated ]", "s.gml"), ErrorCode::invalid_argument, "not closed");
  expect_error(parse_gml("graph [ node [ id 1 ] edge [ source 1 target 1 weight NaN ] ]", "nan.gml"),
               ErrorCode::invalid_argument, "not finite");
  expect_error(parse_gml("graph [ node [ id 1 ] ] ]", "extra.gml"), ErrorCode::invalid_argument, "expected a key");
}

TEST_F(SamplesIo, EdgeListReadsWeightedDirectedGraph) {
  auto g = read_edge_list(kReferenceDir / "weighted_directed.edges");
  ASSERT_TRUE(g.ok()) << g.error().to_string();
  EXPECT_TRUE(g->directed);
  EXPECT_TRUE(g->has_weights);
  EXPECT_EQ(g->node_ids, (std::vector<std::int64_t>{1, 2, 3, 4, 9000000000, 7}));
  ASSERT_EQ(g->edges.size(), 10u);
  EXPECT_EQ(g->edges[0].weight, 4.5);  // 1 -> 2 given twice: 4.0 + 0.5
}

TEST_F(SamplesIo, EdgeListDirectednessRule) {
  auto by_default = parse_edge_list("1 2\n2 1\n", "e");
  ASSERT_TRUE(by_default.ok());
  EXPECT_TRUE(by_default->directed);
  EXPECT_EQ(by_default->edges.size(), 2u);

  auto declared = parse_edge_list("# undirected\n1 2\n2 1 # same edge\n", "e");
  ASSERT_TRUE(declared.ok());
  EXPECT_FALSE(declared->directed);
  ASSERT_EQ(declared->edges.size(), 1u);
  EXPECT_EQ(declared->edges[0].weight, 2.0);

  auto by_option = parse_edge_list("1 2\n2 1\n", "e", EdgeListOptions{.directed = false});
  ASSERT_TRUE(by_option.ok());
  EXPECT_FALSE(by_option->directed);
  EXPECT_EQ(by_option->edges.size(), 1u);

  expect_error(parse_edge_list("# directed\n1 2\n", "c.edges", EdgeListOptions{.directed = false}),
               ErrorCode::invalid_argument, "c.edges:1");
  expect_error(parse_edge_list("1 2\n# undirected\n2 3\n", "late.edges"), ErrorCode::invalid_argument,
               "late.edges:2");
}

TEST_F(SamplesIo, EdgeListMalformedInputsAreClearErrors) {
  expect_error(parse_edge_list("", "empty.edges"), ErrorCode::invalid_argument, "no edges");
  expect_error(parse_edge_list("1 2\n3\n", "short.edges"), ErrorCode::invalid_argument, "short.edges:2");
  expect_error(parse_edge_list("1 x\n", "id.edges"), ErrorCode::invalid_argument, "id.edges:1: node id 'x'");
  expect_error(parse_edge_list("1 2 0.5\n2 3\n", "mix.edges"), ErrorCode::invalid_argument, "mix.edges:2");
  expect_error(parse_edge_list("1 2 inf\n", "inf.edges"), ErrorCode::invalid_argument, "not finite");
  expect_error(parse_edge_list("1 99999999999999999999 1\n", "big.edges"), ErrorCode::invalid_argument,
               "64-bit integer");
}

// ------------------------------------------------------------------ kernels and TSV

TEST_F(SamplesIo, KernelFileReadsAndRejectsMalformedRows) {
  auto k = read_kernel(kReferenceDir / "kernel_asym_3x5.txt");
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  EXPECT_EQ(k->rows, 3u);
  EXPECT_EQ(k->cols, 5u);
  EXPECT_EQ(k->at(0, 3), 0.5);
  EXPECT_EQ(k->at(1, 0), -1.0);
  EXPECT_EQ(k->at(2, 4), 0.0625);

  expect_error(parse_kernel("1 2 3\n4 5\n", "ragged.txt"), ErrorCode::invalid_argument, "ragged.txt:2: ragged");
  expect_error(parse_kernel("1 2\n3 four\n", "word.txt"), ErrorCode::invalid_argument, "word.txt:2: 'four'");
  expect_error(parse_kernel("# only a comment\n\n", "empty.txt"), ErrorCode::invalid_argument, "empty kernel");
  expect_error(parse_kernel("1 nan\n", "nan.txt"), ErrorCode::invalid_argument, "not finite");
}

TEST_F(SamplesIo, TsvWritesSortedValuesAndReadsThemBack) {
  const std::vector<std::int64_t> ids{30, 10, 20, 9000000000};
  const std::vector<double> values{0.1, std::numeric_limits<double>::infinity(), 2.0, 1.0 / 3.0};
  ASSERT_TRUE(write_node_values_tsv(dir_ / "d.tsv", ids, values).ok());
  EXPECT_EQ(read_text(dir_ / "d.tsv"),
            "10\tinf\n20\t2\n30\t0.10000000000000001\n9000000000\t0.33333333333333331\n");
  auto back = read_node_values_tsv(dir_ / "d.tsv");
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  ASSERT_EQ(back->size(), 4u);
  EXPECT_TRUE(std::isinf((*back)[0].value));
  EXPECT_EQ((*back)[3].value, 1.0 / 3.0);

  const std::vector<std::int64_t> levels{2, -1, 0, 1};
  ASSERT_TRUE(write_node_values_tsv(dir_ / "l.tsv", ids, levels).ok());
  EXPECT_EQ(read_text(dir_ / "l.tsv"), "10\t-1\n20\t0\n30\t2\n9000000000\t1\n");

  const std::vector<double> with_nan{1, std::nan(""), 2, 3};
  expect_error(write_node_values_tsv(dir_ / "nan.tsv", ids, with_nan), ErrorCode::invalid_argument, "node 10 is NaN");
  const std::vector<std::int64_t> dup_ids{1, 1};
  const std::vector<double> two{1, 2};
  expect_error(write_node_values_tsv(dir_ / "dup.tsv", dup_ids, two), ErrorCode::invalid_argument, "appears twice");
  EXPECT_EQ(file_count(), 2u);

  write_text(dir_ / "bad.tsv", "1\t2\n2 3\n");
  expect_error(read_node_values_tsv(dir_ / "bad.tsv"), ErrorCode::invalid_argument, "bad.tsv:2");
}

// ------------------------------------------------------------------ atomic writes

TEST_F(SamplesIo, FailedWritesLeaveNoOutputFile) {
  const DenseMatrix m{1, 1, {2.0}};
  expect_error(write_matrix_market(dir_ / "no_such_dir" / "m.mtx", m), ErrorCode::not_found, "no_such_dir");
  EXPECT_FALSE(fs::exists(dir_ / "no_such_dir"));

  // The rename fails (the target is a directory): the temporary file must be gone.
  fs::create_directory(dir_ / "taken.mtx");
  auto status = write_matrix_market(dir_ / "taken.mtx", m);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message().find("taken.mtx"), std::string::npos);
  EXPECT_EQ(file_count(), 1u);  // only the directory

  // Invalid data leaves an existing file untouched.
  write_text(dir_ / "keep.png", "previous content");
  Image nan_pixel{1, 1, 1, {std::nanf("")}};
  EXPECT_FALSE(write_png(dir_ / "keep.png", nan_pixel).ok());
  EXPECT_EQ(read_text(dir_ / "keep.png"), "previous content");
  EXPECT_EQ(file_count(), 2u);

  // A valid write replaces the file whole.
  const DenseMatrix small{1, 1, {0.5}};
  ASSERT_TRUE(write_matrix_market(dir_ / "keep.png", small).ok());
  EXPECT_EQ(read_text(dir_ / "keep.png"), "%%MatrixMarket matrix array real general\n1 1\n0.5\n");
  EXPECT_EQ(file_count(), 2u);
}

// ------------------------------------------------------------------ stored references

TEST_F(SamplesIo, StoredReferencesExistAndParse) {
  const auto m = manifest();
  std::size_t total_bytes = 0;
  for (const auto& entry : fs::directory_iterator(kReferenceDir)) total_bytes += fs::file_size(entry.path());
  EXPECT_LT(total_bytes, 2u * 1000 * 1000) << "reference data should stay small";

  auto pores = read_matrix_market(kSharedDir / "matrices/pores_1.mtx");
  ASSERT_TRUE(pores.ok());
  for (const auto& entry : m["matrices"]) {
    auto ref = read_matrix_market(kReferenceDir / entry["file"].get<std::string>());
    ASSERT_TRUE(ref.ok()) << ref.error().to_string();
    EXPECT_EQ(ref->rows, 30u);
    EXPECT_EQ(ref->cols, 30u);
  }
  // Our reader and scipy's agree: the stored transpose is exactly the transpose of what we read.
  auto transpose = read_matrix_market(kReferenceDir / "pores_1_transpose.mtx");
  ASSERT_TRUE(transpose.ok());
  for (std::size_t r = 0; r < 30; ++r) {
    for (std::size_t c = 0; c < 30; ++c) ASSERT_EQ(transpose->at(r, c), pores->at(c, r));
  }
  // The stored inverse is an inverse within the manifest's tolerance.
  auto inverse = read_matrix_market(kReferenceDir / "pores_1_inverse.mtx");
  ASSERT_TRUE(inverse.ok());
  double worst = 0;
  for (std::size_t r = 0; r < 30; ++r) {
    for (std::size_t c = 0; c < 30; ++c) {
      double sum = 0;
      for (std::size_t k = 0; k < 30; ++k) sum += pores->at(r, k) * inverse->at(k, c);
      worst = std::max(worst, std::abs(sum - (r == c ? 1.0 : 0.0)));
    }
  }
  EXPECT_LT(worst, 1e-8);

  for (const auto& entry : m["images"]) {
    std::string why;
    auto array = testing::read_npy_f32((kReferenceDir / entry["file"].get<std::string>()).string(), &why);
    ASSERT_TRUE(array) << why;
    EXPECT_EQ(array->shape, entry["shape"].get<std::vector<std::size_t>>()) << entry["file"];
    for (float v : array->data) ASSERT_TRUE(std::isfinite(v)) << entry["file"];
  }
  for (const char* input : {"camera_crop.png", "astronaut_crop.png"}) {
    EXPECT_TRUE(read_png(kReferenceDir / input).ok()) << input;
  }
  auto crop = read_png(kReferenceDir / "camera_crop.png");
  ASSERT_TRUE(crop.ok());
  EXPECT_EQ(crop->height, 97u);
  EXPECT_EQ(crop->width, 131u);
  EXPECT_TRUE(read_kernel(kReferenceDir / "kernel_asym_3x5.txt").ok());

  for (const auto& graph : m["graphs"]) {
    const std::size_t nodes = graph["nodes"];
    for (const char* kind : {"bfs", "sssp", "pagerank"}) {
      const std::string file = graph[kind]["file"];
      auto values = read_node_values_tsv(kReferenceDir / file);
      ASSERT_TRUE(values.ok()) << values.error().to_string();
      EXPECT_EQ(values->size(), nodes) << file;
      for (std::size_t i = 1; i < values->size(); ++i) EXPECT_LT((*values)[i - 1].node_id, (*values)[i].node_id);
      if (std::string(kind) == "pagerank") {
        double sum = 0;
        for (const auto& v : *values) sum += v.value;
        EXPECT_NEAR(sum, 1.0, 1e-12) << file;
      }
    }
  }
  auto karate_bfs = read_node_values_tsv(kReferenceDir / "karate_bfs_from_1.tsv");
  ASSERT_TRUE(karate_bfs.ok());
  EXPECT_EQ((*karate_bfs)[0].value, 0.0);
  auto undirected = read_gml(kReferenceDir / "weighted_undirected.gml");
  ASSERT_TRUE(undirected.ok());
  auto sssp = read_node_values_tsv(kReferenceDir / "weighted_undirected_sssp_from_10.tsv");
  ASSERT_TRUE(sssp.ok());
  EXPECT_TRUE(std::isinf(sssp->back().value));  // node 60 is unreachable
}

}  // namespace
}  // namespace gpubridge::samples

// The matrix, image and graph samples on the real data of ../shared/data, through the command
// line, against the references that scripts/samples/make_references.py stored in
// tests/samples/data (numpy, OpenCV, networkx). Each runs with --backend cpu and --backend opencl
// (PoCL on CI machines): the output must match the reference wherever the kernel ran, and the
// output names that device. Bad inputs exit with 2 and write nothing.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "gpubridge/samples/io.hpp"
#include "npy_reader.hpp"
#include "cli_support.hpp"
#include "test_support.hpp"

namespace gpubridge::samples {
namespace {

namespace fs = std::filesystem;
// Overridable for machines without the checkout's layout (scripts/gpu-check.sh sets both).
std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}
const std::string kRef = env_or("GPUBRIDGE_SAMPLES_REFERENCE_DIR", GPUBRIDGE_SAMPLES_REFERENCE_DIR);
const std::string kShared = ::gpubridge::testing::shared_data_dir(GPUBRIDGE_SHARED_DATA_DIR);

using ::gpubridge::testing::CliRun;
using ::gpubridge::testing::run_cli;

// A private output directory per test.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& ch : name) {
      if (ch == '/') ch = '_';
    }
    dir_ = fs::path(::testing::TempDir()) / ("samples_" + name + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string out(const std::string& name) const { return (dir_ / name).string(); }
  // Writes `text` to the file `name` in the test's directory and returns its path.
  std::string write(const std::string& name, const char* text) const {
    const std::string path = out(name);
    std::FILE* f = std::fopen(path.c_str(), "w");
    EXPECT_NE(f, nullptr) << path;
    if (f != nullptr) {
      std::fputs(text, f);
      std::fclose(f);
    }
    return path;
  }
  fs::path dir_;
};

class SamplePrograms : public TempDirTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    // An absent backend runs the samples on the CPU (fallback no_device): nothing new to test.
    CliRun probe = run_cli("sample vector-add --n 16 --backend " + GetParam());
    if (probe.out.find("fell back: no_device") != std::string::npos) {
      GB_SKIP_UNLESS_REQUIRED(GetParam(), "no " + GetParam() + " device: " + probe.out);
    }
  }
  // Runs a sample on this test's backend; expects success on a device of that backend, with no
  // fallback (the output names the device and the placement), and returns the output text.
  std::string run(const std::string& args) {
    CliRun r = run_cli("sample " + args + " --backend " + GetParam());
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find(" on " + GetParam() + ":"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("placement: asked " + GetParam() + "; no fallback"), std::string::npos) << r.out;
    return r.out;
  }
};

void expect_matrix_near(const std::string& path, const std::string& reference, double relative) {
  auto got = read_matrix_market(path);
  auto want = read_matrix_market(reference);
  ASSERT_TRUE(got.ok()) << got.error().to_string();
  ASSERT_TRUE(want.ok()) << want.error().to_string();
  ASSERT_EQ(got->rows, want->rows);
  ASSERT_EQ(got->cols, want->cols);
  double scale = 0, err = 0;
  for (std::size_t i = 0; i < want->data.size(); ++i) {
    scale = std::max(scale, std::abs(want->data[i]));
    err = std::max(err, std::abs(got->data[i] - want->data[i]));
  }
  EXPECT_LE(err, relative * scale) << path << " vs " << reference;
}

void expect_npy_near(const std::string& path, const std::string& reference, double tolerance) {
  std::string why;
  auto got = testing::read_npy_f32(path, &why);
  ASSERT_TRUE(got.has_value()) << why;
  auto want = testing::read_npy_f32(reference, &why);
  ASSERT_TRUE(want.has_value()) << why;
  ASSERT_EQ(got->shape, want->shape);
  double err = 0;
  for (std::size_t i = 0; i < want->data.size(); ++i) err = std::max(err, double(std::abs(got->data[i] - want->data[i])));
  EXPECT_LE(err, tolerance) << path << " vs " << reference;
}

void expect_tsv_near(const std::string& path, const std::string& reference, double relative) {
  auto got = read_node_values_tsv(path);
  auto want = read_node_values_tsv(reference);
  ASSERT_TRUE(got.ok()) << got.error().to_string();
  ASSERT_TRUE(want.ok()) << want.error().to_string();
  ASSERT_EQ(got->size(), want->size());
  for (std::size_t i = 0; i < want->size(); ++i) {
    EXPECT_EQ((*got)[i].node_id, (*want)[i].node_id);
    const double g = (*got)[i].value, w = (*want)[i].value;
    if (std::isinf(w)) {
      EXPECT_TRUE(std::isinf(g)) << "node " << (*want)[i].node_id;
    } else {
      EXPECT_LE(std::abs(g - w), relative * std::max(1.0, std::abs(w))) << "node " << (*want)[i].node_id;
    }
  }
}

TEST_P(SamplePrograms, MatrixSamplesMatchNumpy) {
  const std::string pores = kShared + "/matrices/pores_1.mtx";
  run("transpose --matrix " + pores + " --dtype f64 --out " + out("t.mtx"));
  expect_matrix_near(out("t.mtx"), kRef + "/pores_1_transpose.mtx", 0);
  run("matmul --a " + pores + " --b " + pores + " --dtype f64 --out " + out("c.mtx"));
  expect_matrix_near(out("c.mtx"), kRef + "/pores_1_square.mtx", 1e-12);
  run("matmul --a " + pores + " --b " + pores + " --out " + out("c32.mtx"));
  expect_matrix_near(out("c32.mtx"), kRef + "/pores_1_square.mtx", 1e-5);
  const std::string text = run("inverse --matrix " + pores + " --out " + out("inv.mtx"));
  const std::string residual_at = "max |A * Ainv - I| = ";
  const std::size_t at = text.find(residual_at);
  ASSERT_NE(at, std::string::npos) << text;
  // 1.4e-11 for pores_1 on the CPU and on PoCL.
  EXPECT_LE(std::stod(text.substr(at + residual_at.size())), 1e-9) << text;
  expect_matrix_near(out("inv.mtx"), kRef + "/pores_1_inverse.mtx", 1e-8);
}

TEST_P(SamplePrograms, ImageSamplesMatchOpenCv) {
  const std::string camera = kShared + "/images/camera.png";
  const std::string crop = kRef + "/camera_crop.png";
  run("resize --image " + camera + " --width 128 --height 128 --out " + out("r.npy"));
  expect_npy_near(out("r.npy"), kRef + "/camera_resize_h128_w128.npy", 1e-2);
  run("blur --image " + crop + " --sigma 1.5 --out " + out("b.npy"));
  expect_npy_near(out("b.npy"), kRef + "/camera_crop_blur_sigma1p5.npy", 1e-3);
  run("sobel --image " + crop + " --out " + out("s.npy"));
  expect_npy_near(out("s.npy"), kRef + "/camera_crop_sobel_magnitude.npy", 1e-3);
  run("convolve --image " + crop + " --kernel " + kRef + "/kernel_asym_3x5.txt --out " + out("k.npy"));
  expect_npy_near(out("k.npy"), kRef + "/camera_crop_filter2d_kernel_asym_3x5.npy", 1e-3);
  run("blur --image " + crop + " --sigma 3 --out " + out("b.png"));
  EXPECT_TRUE(read_png(out("b.png")).ok());
  // coins (grey, 303 x 384) whole, and an RGB crop of astronaut (three channels).
  const std::string coins = kShared + "/images/coins.png";
  run("resize --image " + coins + " --width 192 --height 151 --out " + out("cr.npy"));
  expect_npy_near(out("cr.npy"), kRef + "/coins_resize_h151_w192.npy", 1e-2);
  run("blur --image " + coins + " --sigma 3 --out " + out("cb.npy"));
  expect_npy_near(out("cb.npy"), kRef + "/coins_blur_sigma3p0.npy", 1e-3);
  const std::string astronaut = kRef + "/astronaut_crop.png";
  run("resize --image " + astronaut + " --width 90 --height 37 --out " + out("ar.npy"));
  expect_npy_near(out("ar.npy"), kRef + "/astronaut_crop_resize_h37_w90.npy", 1e-2);
  run("blur --image " + astronaut + " --sigma 1.5 --out " + out("ab.npy"));
  expect_npy_near(out("ab.npy"), kRef + "/astronaut_crop_blur_sigma1p5.npy", 1e-3);
}

TEST_P(SamplePrograms, GraphSamplesMatchNetworkx) {
  const std::string karate = kShared + "/graphs/karate.gml";
  run("bfs --graph " + karate + " --source 1 --out " + out("bfs.tsv"));
  expect_tsv_near(out("bfs.tsv"), kRef + "/karate_bfs_from_1.tsv", 0);
  run("pagerank --graph " + karate + " --out " + out("pr.tsv"));
  expect_tsv_near(out("pr.tsv"), kRef + "/karate_pagerank.tsv", 1e-9);
  run("sssp --graph " + karate + " --source 1 --out " + out("sssp.tsv"));
  expect_tsv_near(out("sssp.tsv"), kRef + "/karate_sssp_from_1.tsv", 1e-12);
  const std::string directed = kRef + "/weighted_directed.edges";
  run("sssp --graph " + directed + " --source 1 --out " + out("wd.tsv"));
  expect_tsv_near(out("wd.tsv"), kRef + "/weighted_directed_sssp_from_1.tsv", 1e-12);
  run("bfs --graph " + directed + " --source 1 --out " + out("wdb.tsv"));  // node 7 unreachable: -1
  expect_tsv_near(out("wdb.tsv"), kRef + "/weighted_directed_bfs_from_1.tsv", 0);
  run("pagerank --weighted --graph " + directed + " --out " + out("wdpr.tsv"));
  expect_tsv_near(out("wdpr.tsv"), kRef + "/weighted_directed_pagerank_weighted.tsv", 1e-9);
  const std::string undirected = kRef + "/weighted_undirected.gml";
  run("bfs --graph " + undirected + " --source 10 --out " + out("wu.tsv"));
  expect_tsv_near(out("wu.tsv"), kRef + "/weighted_undirected_bfs_from_10.tsv", 0);
  run("pagerank --weighted --graph " + undirected + " --out " + out("wupr.tsv"));
  expect_tsv_near(out("wupr.tsv"), kRef + "/weighted_undirected_pagerank_weighted.tsv", 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Backends, SamplePrograms, ::testing::Values("cpu", "opencl", "cuda"));

class SampleErrors : public TempDirTest {};

TEST_F(SampleErrors, BadInputsExitWithTwoAndWriteNothing) {
  const std::string t = out("never.tsv"), m = out("never.mtx"), i = out("never.npy");
  const std::string karate = kShared + "/graphs/karate.gml";
  struct Case {
    std::string args, output;
  };
  const Case cases[] = {
      {"bfs --graph /nonexistent.gml --source 1 --out " + t, t},
      {"bfs --graph " + karate + " --source 999 --out " + t, t},
      {"sssp --graph " + karate + " --out " + t, t},
      {"matmul --a " + kShared + "/matrices/pores_1.mtx --b " + kRef + "/kernel_asym_3x5.txt --out " + m, m},
      {"inverse --matrix " + kRef + "/kernel_asym_3x5.txt --out " + m, m},
      {"resize --image " + kShared + "/images/camera.png --width 0 --height 10 --out " + i, i},
      {"blur --image " + kShared + "/graphs/karate.gml --sigma 1 --out " + i, i},
      {"blur --image " + kShared + "/images/camera.png --sigma 1 --out " + out("x.jpg"), out("x.jpg")},
  };
  for (const auto& c : cases) {
    CliRun r = run_cli("sample " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.out;
    EXPECT_FALSE(fs::exists(c.output)) << c.args;
  }
}

TEST_F(SampleErrors, SingularMatrixIsAClearErrorAndNothingIsWritten) {
  const std::string singular = write("singular.mtx", "%%MatrixMarket matrix array real general\n2 2\n1\n2\n2\n4\n");
  CliRun r = run_cli("sample inverse --matrix " + singular + " --out " + out("inv.mtx"));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("singular"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out("inv.mtx")));
}

TEST_F(SampleErrors, WrongDimensionsAreClearErrorsAndNothingIsWritten) {
  const std::string m23 = write("m23.mtx", "%%MatrixMarket matrix array real general\n2 3\n1\n2\n3\n4\n5\n6\n");
  CliRun product = run_cli("sample matmul --a " + m23 + " --b " + m23 + " --out " + out("c.mtx"));
  EXPECT_EQ(product.exit_code, 2) << product.out;
  EXPECT_NE(product.out.find("A is 2x3 and B is 2x3"), std::string::npos) << product.out;
  EXPECT_FALSE(fs::exists(out("c.mtx")));
  CliRun inverse = run_cli("sample inverse --matrix " + m23 + " --out " + out("inv.mtx"));
  EXPECT_EQ(inverse.exit_code, 2) << inverse.out;
  EXPECT_NE(inverse.out.find("not square"), std::string::npos) << inverse.out;
  EXPECT_FALSE(fs::exists(out("inv.mtx")));
}

TEST_F(SampleErrors, NegativeWeightsAreRejectedBySssp) {
  const std::string g = write("neg.edges", "# directed\n1 2 1.5\n2 3 -2\n");
  CliRun r = run_cli("sample sssp --graph " + g + " --source 1 --out " + out("d.tsv"));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("non-negative"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out("d.tsv")));
}

}  // namespace
}  // namespace gpubridge::samples

// Ring programs from shared libraries (configuration key ring_libraries): paths resolved against
// the configuration file's directory (overrides: the working directory), a silo started from a JSON
// configuration serving ring grains of a library's program, library and embedder programs merged,
// unusable libraries and duplicate program names refused before anything starts, and
// `gpubridge serve` hosting a library's rings.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_support.hpp"
#include "gpubridge/server/silo.hpp"
#include "gpubridge/telemetry/metrics.hpp"
#include "grains/ring_grain_program.hpp"
#include "ring_counter_grains.hpp"

namespace gpubridge::server {
namespace {

namespace fs = std::filesystem;
using namespace gpubridge::testing::ring_program;  // handler ids and byte helpers match the library's
using runtime::Task;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kCounterLibrary = RING_COUNTER_LIBRARY;

// A fresh directory under the test's temporary directory, removed at the end.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::path(::testing::TempDir()) / "ring_library_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << pattern;
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path file = path_ / name;
    fs::create_directories(file.parent_path());
    std::ofstream(file) << text;
    return file;
  }

 private:
  fs::path path_;
};

std::string json_string(const std::string& s) { return "\"" + s + "\""; }

// A silo configuration with the counter library and one CPU ring of its "counter" program.
std::string counter_silo_json(const std::string& library, const std::string& extra_rings = "") {
  return R"({"silo": {"name": "lib-silo", "workers": 2}, "compute": {"enable_opencl": false},
    "http": {"enabled": false}, "ring_libraries": [)" +
         json_string(library) + R"(],
    "rings": [{"name": "counters", "program": "counter", "placement": "cpu", "request_slots": 64,
               "completion_slots": 64, "pool_chunks": 4, "actors": {"counter": 4}})" +
         extra_rings + "]}";
}

bool library_is_loaded(const std::string& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return false;
  ::dlclose(handle);
  return true;
}

// ---- configuration

TEST(RingLibraryConfig, RelativePathsResolveAgainstTheConfigurationFilesDirectory) {
  ScratchDir dir;
  const fs::path file = dir.write("conf/silo.json", R"({"ring_libraries": ["../libs/libone.so", "/opt/ring/libtwo.so",
                                                        "libthree.so"]})");
  auto config = load_silo_config(file.string(), {});
  ASSERT_TRUE(config.ok()) << config.error().to_string();
  ASSERT_EQ(config->ring_libraries.size(), 3u);
  EXPECT_EQ(config->ring_libraries[0], (dir.path() / "libs/libone.so").string());
  EXPECT_EQ(config->ring_libraries[1], "/opt/ring/libtwo.so");
  EXPECT_EQ(config->ring_libraries[2], (dir.path() / "conf/libthree.so").string());

  // The round trip through to_json keeps the (absolute) list.
  SiloConfig again;
  ASSERT_TRUE(apply_json(again, to_json(*config), "round trip").ok());
  EXPECT_EQ(again.ring_libraries, config->ring_libraries);
}

TEST(RingLibraryConfig, OverrideReplacesTheListWithPathsFromTheWorkingDirectory) {
  ScratchDir dir;
  const fs::path file = dir.write("silo.json", R"({"ring_libraries": ["libone.so"]})");
  auto config = load_silo_config(file.string(), {R"(ring_libraries=["sub/libx.so", "/abs/liby.so"])"});
  ASSERT_TRUE(config.ok()) << config.error().to_string();
  ASSERT_EQ(config->ring_libraries.size(), 2u);
  EXPECT_EQ(config->ring_libraries[0], (fs::current_path() / "sub/libx.so").string());
  EXPECT_EQ(config->ring_libraries[1], "/abs/liby.so");

  auto cleared = load_silo_config(file.string(), {"ring_libraries=[]"});
  ASSERT_TRUE(cleared.ok()) << cleared.error().to_string();
  EXPECT_TRUE(cleared->ring_libraries.empty());

  SiloConfig c;
  ASSERT_TRUE(apply_override(c, R"(ring_libraries=["/a/liba.so"])").ok());
  for (const char* bad : {"ring_libraries=/a/libb.so", R"(ring_libraries="/a/libb.so")", "ring_libraries=[1]"}) {
    Status s = apply_override(c, bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code(), ErrorCode::invalid_argument) << s.error().to_string();
    EXPECT_THAT(s.error().message(), HasSubstr("override: ring_libraries")) << bad;
  }
  EXPECT_EQ(c.ring_libraries, std::vector<std::string>{"/a/liba.so"}) << "a rejected override changes nothing";
}

TEST(RingLibraryConfig, BadListsAreErrorsNamingTheEntryAndChangeNothing) {
  auto expect_error = [](const std::string& json, const std::string& needle) {
    SiloConfig c;
    ASSERT_TRUE(apply_json(c, R"({"ring_libraries": ["/good/lib.so"]})", "good.json").ok());
    Status s = apply_json(c, json, "bad.json");
    ASSERT_FALSE(s.ok()) << json;
    EXPECT_EQ(s.error().code(), ErrorCode::invalid_argument) << s.error().to_string();
    EXPECT_THAT(s.error().message(), HasSubstr(needle));
    EXPECT_EQ(c.ring_libraries, std::vector<std::string>{"/good/lib.so"}) << "a rejected document changes nothing";
  };
  expect_error(R"({"ring_libraries": "/x/lib.so"})", "bad.json: ring_libraries: expected an array of shared library paths");
  expect_error(R"({"ring_libraries": ["/x/lib.so", 3]})", "bad.json: ring_libraries[1]: expected a path (string), got 3");
  expect_error(R"({"ring_libraries": [""]})", "bad.json: ring_libraries[0]: must not be empty");
  expect_error(R"({"ring_libraries": ["/x/lib.so", "/x/../x/lib.so"]})",
               "ring_libraries[1]: '/x/lib.so' is listed twice (ring_libraries[0] and ring_libraries[1])");
}

// ---- a silo hosting rings of library programs

TEST(RingLibrarySilo, ServesRingGrainsOfALibraryProgramFromAJsonConfiguration) {
  ScratchDir dir;
  // A relative path from the configuration's directory to the library.
  const fs::path relative = fs::relative(kCounterLibrary, dir.path() / "conf");
  const fs::path file = dir.write("conf/silo.json", counter_silo_json(relative.string()));
  auto config = load_silo_config(file.string(), {});
  ASSERT_TRUE(config.ok()) << config.error().to_string();
  ASSERT_EQ(config->ring_libraries.size(), 1u);
  EXPECT_TRUE(fs::equivalent(config->ring_libraries[0], kCounterLibrary));

  {
    auto started = Silo::start(*config);
    ASSERT_TRUE(started.ok()) << started.error().to_string();
    Silo& silo = **started;
    EXPECT_TRUE(library_is_loaded(config->ring_libraries[0]));
    auto found = silo.ring_host("counters");
    ASSERT_TRUE(found.ok()) << found.error().to_string();
    grains::RingHost& host = **found;
    EXPECT_EQ(host.placement().backend, grains::RingBackend::cpu);

    runtime::Runtime& rt = silo.runtime();
    ASSERT_TRUE(rt.register_grain<Counter>({}, [&host] { return std::make_unique<Counter>(host); }).ok());
    ASSERT_TRUE(rt.register_grain<Tally>().ok());
    const std::vector<std::string> keys{"a", "b"};
    EXPECT_EQ(rt.run(rt.get<Tally>("t").call<&Tally::add_to_each>(keys, std::int64_t{5})), 10);
    EXPECT_EQ(rt.run(rt.get<Counter>("a").call<&Counter::add>(std::int64_t{-2})), 3);
    EXPECT_EQ(rt.run(rt.get<Counter>("b").call<&Counter::total>()), 5);
    // A handler's own error (a 4-byte delta) reaches the caller.
    try {
      rt.run(rt.get<Counter>("c").call<&Counter::call>(kAdd, Bytes(4), std::uint32_t{64}));
      ADD_FAILURE() << "a 4-byte delta was accepted";
    } catch (const ErrorException& e) {
      EXPECT_THAT(e.error().to_string(), HasSubstr("add takes an 8-byte delta"));
    }
    EXPECT_THAT(silo.metrics().prometheus_text(), HasSubstr("gpubridge_ring_hosts{ring=\"counters\",backend=\"cpu\"} 1"));

    silo.stop();  // the runtime parks a, b and c in the host, then the ring drains
    EXPECT_EQ(host.parked_count(), 3u);
    EXPECT_TRUE(library_is_loaded(config->ring_libraries[0])) << "stopped, not destroyed: the library stays loaded";
  }
}

TEST(RingLibrarySilo, EmbedderAndLibraryProgramsAreMerged) {
  RingPrograms embedded;
  ASSERT_TRUE(embedded.add("gauge", counter_program(/*max_actors=*/8)).ok());
  SiloConfig config;
  ASSERT_TRUE(apply_json(config,
                         counter_silo_json(kCounterLibrary,
                                           R"(, {"name": "gauges", "program": "gauge", "placement": "cpu",
                                               "request_slots": 64, "completion_slots": 64, "pool_chunks": 4})"),
                         "test")
                  .ok());
  auto started = Silo::start(config, std::move(embedded));
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  Silo& silo = **started;
  ASSERT_EQ(silo.ring_hosts().size(), 2u);
  for (const char* ring : {"counters", "gauges"}) {
    grains::RingHost& host = *silo.ring_host(ring).value();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    auto actor = host.client().activate(kCounterType, {}, deadline);
    ASSERT_TRUE(actor.ok()) << ring << ": " << actor.error().to_string();
    auto sent = host.client().send(*actor, kAdd, i64_bytes(7), deadline);
    ASSERT_TRUE(sent.ok()) << ring << ": " << sent.error().to_string();
    auto reply = sent->get();
    ASSERT_TRUE(reply.ok()) << ring << ": " << reply.error().to_string();
    EXPECT_EQ(i64_of(*reply), 7) << ring;
  }
}

void expect_refused(const SiloConfig& config, RingPrograms programs, ErrorCode code, const std::vector<std::string>& needles) {
  auto started = Silo::start(config, std::move(programs));
  ASSERT_FALSE(started.ok()) << "the silo started";
  EXPECT_EQ(started.error().code(), code) << started.error().to_string();
  for (const auto& needle : needles) EXPECT_THAT(started.error().to_string(), HasSubstr(needle));
}

SiloConfig config_with_libraries(const std::vector<std::string>& libraries) {
  std::string list;
  for (const auto& l : libraries) list += (list.empty() ? "" : ", ") + json_string(l);
  SiloConfig c;
  c.workers = 2;
  c.enable_opencl = false;
  Status s = apply_json(c, R"({"ring_libraries": [)" + list + "]}", "test");
  EXPECT_TRUE(s.ok()) << s.error().to_string();
  return c;
}

TEST(RingLibrarySilo, AProgramNameFromTwoSourcesIsAnErrorNamingBoth) {
  RingPrograms embedded;
  ASSERT_TRUE(embedded.add("counter", counter_program(8)).ok());
  expect_refused(config_with_libraries({kCounterLibrary}), std::move(embedded), ErrorCode::already_exists,
                 {"ring_libraries[0] ('" + kCounterLibrary + "'): ring program 'counter' is already registered",
                  "(registered in code)"});

  // The same library under another path: a second copy, loaded on its own.
  ScratchDir dir;
  const fs::path copy = dir.path() / "libcounter_copy.so";
  fs::copy_file(kCounterLibrary, copy);
  expect_refused(config_with_libraries({kCounterLibrary, copy.string()}), {}, ErrorCode::already_exists,
                 {"ring_libraries[1] ('" + copy.string() + "'): ring program 'counter' is already registered (ring_libraries[0] ('" +
                  kCounterLibrary + "'))"});
}

TEST(RingLibrarySilo, UnusableLibrariesAreErrorsNamingKeyAndPath) {
  ScratchDir dir;
  const std::string missing = (dir.path() / "libmissing.so").string();
  expect_refused(config_with_libraries({kCounterLibrary, missing}), {}, ErrorCode::not_found,
                 {"ring_libraries[1] ('" + missing + "'): no such file"});

  const std::string text = dir.write("libtext.so", "not an ELF file\n").string();
  expect_refused(config_with_libraries({text}), {}, ErrorCode::invalid_argument,
                 {"ring_libraries[0] ('" + text + "'): cannot load it as a shared library"});

  expect_refused(config_with_libraries({RING_FAULT_UNRESOLVED_LIBRARY}), {}, ErrorCode::invalid_argument,
                 {"ring_libraries[0] ('" RING_FAULT_UNRESOLVED_LIBRARY "'): cannot load it as a shared library: ",
                  "undefined symbol: gpubridge_symbol_nobody_defines", "must export them"});
  expect_refused(config_with_libraries({RING_FAULT_NO_ENTRY_LIBRARY}), {}, ErrorCode::invalid_argument,
                 {"ring_libraries[0] ('" RING_FAULT_NO_ENTRY_LIBRARY "'): no symbol 'gpubridge_ring_programs_v1'"});
  expect_refused(config_with_libraries({RING_FAULT_ERROR_LIBRARY}), {}, ErrorCode::failed_precondition,
                 {"ring_libraries[0] ('" RING_FAULT_ERROR_LIBRARY "'): gpubridge_ring_programs_v1 failed (returned 9): "
                  "calibration table missing"});
  expect_refused(config_with_libraries({RING_FAULT_ABI_LIBRARY}), {}, ErrorCode::invalid_argument,
                 {"ring_libraries[0] ('" RING_FAULT_ABI_LIBRARY "'): built for another ABI",
                  "library: 'gpubridge ring library v1; another build'"});
  expect_refused(config_with_libraries({RING_FAULT_THROW_LIBRARY}), {}, ErrorCode::unknown,
                 {"ring_libraries[0] ('" RING_FAULT_THROW_LIBRARY "'): gpubridge_ring_programs_v1 threw: registration blew up"});

  // A library is checked before the rings: a ring of an unknown program is reported only once the
  // libraries load.
  SiloConfig c = config_with_libraries({missing});
  ASSERT_TRUE(apply_json(c, R"({"rings": [{"name": "r", "program": "nowhere"}]})", "test").ok());
  expect_refused(c, {}, ErrorCode::not_found, {"ring_libraries[0]"});
}

TEST(RingLibrarySilo, TheSiloClosesItsLibrariesWhenDestroyed) {
  ScratchDir dir;
  const fs::path copy = dir.path() / "libcounter_private.so";  // loaded by this test only
  fs::copy_file(kCounterLibrary, copy);
  SiloConfig c;
  ASSERT_TRUE(apply_json(c, counter_silo_json(copy.string()), "test").ok());
  {
    auto started = Silo::start(c);
    ASSERT_TRUE(started.ok()) << started.error().to_string();
    EXPECT_TRUE(library_is_loaded(copy.string()));
  }
  EXPECT_FALSE(library_is_loaded(copy.string())) << "the destroyed silo's library is still loaded";

  // A start that fails after loading (a ring of an unknown program) closes it again.
  ASSERT_TRUE(apply_json(c, R"({"rings": [{"name": "r", "program": "nowhere"}]})", "test").ok());
  expect_refused(c, {}, ErrorCode::invalid_argument, {"unknown program 'nowhere' (registered programs: counter)"});
  EXPECT_FALSE(library_is_loaded(copy.string()));
}

// ---- gpubridge serve

// `gpubridge serve ...` running in the background, its stdout and stderr on a pipe.
class ServeProcess {
 public:
  explicit ServeProcess(const std::vector<std::string>& args) {
    const char* cli = std::getenv("GPUBRIDGE_CLI");
    if (cli == nullptr) {
      ADD_FAILURE() << "GPUBRIDGE_CLI must name the gpubridge binary";
      return;
    }
    int fds[2];
    if (::pipe(fds) != 0) {
      ADD_FAILURE() << "pipe failed";
      return;
    }
    std::vector<std::string> argv_text{cli, "serve"};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_fd_ = fds[0];
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
  }

  // Reads output until it contains `needle` or the process closes its output (or 60 s pass).
  bool read_until(const std::string& needle) {
    if (out_fd_ < 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (output_.find(needle) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(out_fd_, buf, sizeof buf);
      if (n <= 0) return false;
      output_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }
  // SIGTERM, then the exit status (-1 when it did not exit normally).
  int terminate() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    read_until("\x01");  // the rest of the output, up to EOF
    if (WIFSIGNALED(status)) output_ += "[killed by signal " + std::to_string(WTERMSIG(status)) + "]";
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string output_;
};

TEST(RingLibraryCli, ServeHostsTheRingsOfTheLibrariesItsConfigurationNames) {
  ScratchDir dir;
  const fs::path relative = fs::relative(kCounterLibrary, dir.path());
  const fs::path file = dir.write("silo.json", counter_silo_json(relative.string()));
  ServeProcess serve({"--config", file.string(), "--set", "http.enabled=true", "--set", "http.port=0"});
  ASSERT_TRUE(serve.read_until("serving until SIGINT or SIGTERM\n")) << serve.output();
  EXPECT_THAT(serve.output(), HasSubstr("ring 'counters': program 'counter' on cpu\n"));
  const std::string marker = "http: listening on ";
  const auto at = serve.output().find(marker);
  ASSERT_NE(at, std::string::npos) << serve.output();
  const std::string url = serve.output().substr(at + marker.size(), serve.output().find('\n', at) - at - marker.size());
  httplib::Client http(url);
  auto health = http.Get("/health");
  ASSERT_TRUE(health) << "GET " << url << "/health failed";
  EXPECT_THAT(health->body, HasSubstr(R"("name":"ring:counters")"));
  EXPECT_THAT(health->body, HasSubstr("serving"));
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("gpubridge_ring_hosts{ring=\"counters\",backend=\"cpu\"} 1"));
  EXPECT_EQ(serve.terminate(), 0) << serve.output();
  EXPECT_THAT(serve.output(), HasSubstr("stopped"));
}

TEST(RingLibraryCli, ServeTakesTheLibrariesFromAnOverrideAndRefusesAnUnusableOne) {
  ScratchDir dir;
  // The configuration names rings but no libraries; --set supplies them (relative: the working directory).
  const fs::path file = dir.write("silo.json", R"({"silo": {"workers": 2}, "compute": {"enable_opencl": false},
    "rings": [{"name": "counters", "program": "counter", "placement": "cpu", "request_slots": 64,
               "completion_slots": 64, "pool_chunks": 4}]})");
  using gpubridge::testing::run_cli;
  const auto refused = run_cli("serve --config " + file.string() + " --set http.port=0 --set 'ring_libraries=[\"nowhere/libcounter.so\"]'");
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_THAT(refused.out, HasSubstr("ring_libraries[0] ('" + (fs::current_path() / "nowhere/libcounter.so").string() +
                                     "'): no such file"));
  EXPECT_THAT(refused.out, Not(HasSubstr("http: listening")));

  const auto bad_override = run_cli("serve --config " + file.string() + " --set ring_libraries=libcounter.so");
  EXPECT_EQ(bad_override.exit_code, 2) << bad_override.out;
  EXPECT_THAT(bad_override.out, HasSubstr("override: ring_libraries: expected a JSON array"));

  ServeProcess serve({"--config", file.string(), "--set", "http.enabled=false", "--set",
                      "ring_libraries=[" + json_string(kCounterLibrary) + "]"});
  ASSERT_TRUE(serve.read_until("serving until SIGINT or SIGTERM\n")) << serve.output();
  EXPECT_THAT(serve.output(), HasSubstr("ring 'counters': program 'counter' on cpu\n"));
  EXPECT_EQ(serve.terminate(), 0) << serve.output();
}

}  // namespace
}  // namespace gpubridge::server

// Runs Google Benchmark with a display reporter that forwards to the usual one (chosen by
// --benchmark_format) and keeps every run, then prints and optionally writes the ratio table of
// the registered pairs. Only measured numbers are printed: a pair lacking a measurement shows as
// skipped or incomplete, never as a number.
#include "common/ratio_report.hpp"

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpubridge::bench {

namespace {

std::vector<RatioPair>& pairs() {
  static std::vector<RatioPair> p;
  return p;
}

std::vector<std::function<void()>>& shutdown_hooks() {
  static std::vector<std::function<void()>> h;
  return h;
}

// Google Benchmark 1.8 renamed error_occurred / error_message to skipped / skip_message.
template <typename R>
bool run_skipped(const R& r) {
  if constexpr (requires { r.skipped; }) {
    return static_cast<bool>(r.skipped);
  } else {
    return r.error_occurred;
  }
}
template <typename R>
std::string run_message(const R& r) {
  if constexpr (requires { r.skip_message; }) {
    return r.skip_message;
  } else {
    return r.error_message;
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// What was measured for one benchmark instance ("family name" + "args").
struct Measured {
  std::vector<double> seconds_per_iteration;  // one per repetition
  std::vector<double> bytes_per_second;       // one per repetition, when the benchmark set bytes
  std::map<std::string, std::vector<double>> counters;  // user counters, one value per repetition
  std::optional<double> median_aggregate_seconds;  // when only aggregates were reported
  std::map<std::string, double> median_aggregate_counters;
  bool skipped = false;
  std::string message;
  std::string label;

  bool has_time() const { return !seconds_per_iteration.empty() || median_aggregate_seconds.has_value(); }
  double seconds() const {
    return seconds_per_iteration.empty() ? *median_aggregate_seconds : median(seconds_per_iteration);
  }
  std::optional<double> bytes_rate() const {
    if (bytes_per_second.empty()) return std::nullopt;
    return median(bytes_per_second);
  }
  std::optional<double> counter(const std::string& name) const {
    if (auto it = counters.find(name); it != counters.end() && !it->second.empty()) return median(it->second);
    if (auto it = median_aggregate_counters.find(name); it != median_aggregate_counters.end()) return it->second;
    return std::nullopt;
  }
};

std::string key_of(const std::string& family, const std::string& args) { return family + "|" + args; }

// Forwards everything to `inner` and records each run.
class CollectingReporter final : public benchmark::BenchmarkReporter {
 public:
  explicit CollectingReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner) : inner_(std::move(inner)) {}

  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) record(r);
    inner_->ReportRuns(runs);
  }

  void Finalize() override { inner_->Finalize(); }

  const Measured* find(const std::string& family, const std::string& args) const {
    auto it = measured_.find(key_of(family, args));
    return it == measured_.end() ? nullptr : &it->second;
  }
  // Argument strings seen for a family, in first-seen order.
  std::vector<std::string> args_of(const std::string& family) const {
    auto it = args_.find(family);
    return it == args_.end() ? std::vector<std::string>{} : it->second;
  }
  bool empty() const { return measured_.empty(); }

 private:
  void record(const Run& r) {
    const std::string& family = r.run_name.function_name;
    const std::string& args = r.run_name.args;
    auto& seen = args_[family];
    if (std::find(seen.begin(), seen.end(), args) == seen.end()) seen.push_back(args);
    Measured& m = measured_[key_of(family, args)];
    if (!r.report_label.empty()) m.label = r.report_label;
    if (run_skipped(r)) {
      m.skipped = true;
      m.message = run_message(r);
      return;
    }
    if (r.iterations <= 0) return;
    const double per_iteration = r.real_accumulated_time / static_cast<double>(r.iterations);
    if (r.run_type == Run::RT_Iteration) {
      m.seconds_per_iteration.push_back(per_iteration);
      if (auto it = r.counters.find("bytes_per_second"); it != r.counters.end()) {
        m.bytes_per_second.push_back(it->second.value);
      }
      for (const auto& [name, value] : r.counters) m.counters[name].push_back(value.value);
    } else if (r.aggregate_name == "median" && r.aggregate_unit == benchmark::kTime) {
      m.median_aggregate_seconds = per_iteration;
      for (const auto& [name, value] : r.counters) m.median_aggregate_counters[name] = value.value;
    }
  }

  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  std::map<std::string, Measured> measured_;
  std::map<std::string, std::vector<std::string>> args_;
};

struct Row {
  const RatioPair* pair = nullptr;
  std::string args;
  std::string status;   // "ok", "skipped", "incomplete"
  std::string message;  // why skipped / incomplete
  std::string label;    // device the subject ran on, as the benchmark labelled it
  std::optional<double> subject_us, reference_us, ratio;
  std::optional<double> subject_bps, reference_bps;
};

std::string short_name(const std::string& family) {
  const auto slash = family.rfind('/');
  return slash == std::string::npos ? family : family.substr(slash + 1);
}

std::vector<Row> build_rows(const CollectingReporter& c) {
  std::vector<Row> rows;
  for (const RatioPair& p : pairs()) {
    std::vector<std::string> args = c.args_of(p.subject);
    for (const auto& a : c.args_of(p.reference)) {
      if (std::find(args.begin(), args.end(), a) == args.end()) args.push_back(a);
    }
    for (const auto& a : args) {
      Row row;
      row.pair = &p;
      row.args = a;
      const Measured* s = c.find(p.subject, a);
      const Measured* r = c.find(p.reference, a);
      if (s != nullptr) row.label = s->label;
      if (row.label.empty() && r != nullptr) row.label = r->label;
      if ((s != nullptr && s->skipped) || (r != nullptr && r->skipped)) {
        row.status = "skipped";
        row.message = (s != nullptr && s->skipped) ? s->message : r->message;
      } else if (s == nullptr || r == nullptr || !s->has_time() || !r->has_time()) {
        row.status = "incomplete";
        row.message = std::string(s == nullptr || !s->has_time() ? p.subject : p.reference) + " was not run";
      } else if (!p.counter.empty()) {
        row.subject_us = s->counter(p.counter);
        row.reference_us = r->counter(p.counter);
        if (row.subject_us && row.reference_us && *row.reference_us > 0) {
          row.status = "ok";
          row.ratio = *row.subject_us / *row.reference_us;
        } else {
          row.status = "incomplete";
          row.message = "counter " + p.counter + " missing in " + (row.subject_us ? p.reference : p.subject);
          row.subject_us.reset();
          row.reference_us.reset();
        }
      } else {
        row.status = "ok";
        row.subject_us = s->seconds() / p.calls_per_iteration * 1e6;
        row.reference_us = r->seconds() / p.calls_per_iteration * 1e6;
        row.ratio = s->seconds() / r->seconds();
      }
      if (s != nullptr && !s->skipped) row.subject_bps = s->bytes_rate();
      if (r != nullptr && !r->skipped) row.reference_bps = r->bytes_rate();
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string opt_fmt(const char* format, const std::optional<double>& v, double scale = 1) {
  return v ? fmt(format, *v * scale) : std::string("-");
}

void print_table(std::ostream& out, const std::vector<Row>& rows) {
  if (rows.empty()) return;
  out << "\nRatios: subject vs reference, each measured in this run (median real time per call, or the "
         "counter a scenario names, e.g. p50_us; ratio = subject / reference, > 1 = subject slower; "
         "GB = 1e9 bytes)\n";
  std::vector<std::string> backends;
  for (const Row& r : rows) {
    if (std::find(backends.begin(), backends.end(), r.pair->backend) == backends.end()) {
      backends.push_back(r.pair->backend);
    }
  }
  char line[512];
  for (const auto& backend : backends) {
    std::string label;
    for (const Row& r : rows) {
      if (r.pair->backend == backend && !r.label.empty()) {
        label = r.label;
        break;
      }
    }
    out << "\n[" << backend << "]" << (label.empty() ? "" : "  " + label) << "\n";
    std::snprintf(line, sizeof line, "  %-19s %-9s %-16s %-10s %14s %14s %9s %10s %10s\n", "scenario", "args",
                  "subject", "reference", "subject us", "reference us", "ratio", "subj GB/s", "ref GB/s");
    out << line;
    for (const Row& r : rows) {
      if (r.pair->backend != backend) continue;
      const std::string subject = short_name(r.pair->subject);
      const std::string reference = short_name(r.pair->reference);
      if (r.status != "ok") {
        std::snprintf(line, sizeof line, "  %-19s %-9s %-16s %-10s %s: ", r.pair->scenario.c_str(),
                      r.args.c_str(), subject.c_str(), reference.c_str(), r.status.c_str());
        out << line << r.message << "\n";
        continue;
      }
      std::snprintf(line, sizeof line, "  %-19s %-9s %-16s %-10s %14s %14s %9s %10s %10s\n",
                    r.pair->scenario.c_str(), r.args.c_str(), subject.c_str(), reference.c_str(),
                    fmt("%.3f", *r.subject_us).c_str(), fmt("%.3f", *r.reference_us).c_str(),
                    fmt("%.3f", *r.ratio).c_str(), opt_fmt("%.2f", r.subject_bps, 1e-9).c_str(),
                    opt_fmt("%.2f", r.reference_bps, 1e-9).c_str());
      out << line;
    }
  }
  out.flush();
}

nlohmann::json to_json(const std::vector<Row>& rows) {
  auto num = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json list = nlohmann::json::array();
  for (const Row& r : rows) {
    list.push_back({{"scenario", r.pair->scenario},
                    {"backend", r.pair->backend},
                    {"args", r.args},
                    {"subject", r.pair->subject},
                    {"reference", r.pair->reference},
                    {"status", r.status},
                    {"message", r.message},
                    {"device", r.label},
                    {"calls_per_iteration", r.pair->calls_per_iteration},
                    {"counter", r.pair->counter.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.pair->counter)},
                    {"subject_us_per_call", num(r.subject_us)},
                    {"reference_us_per_call", num(r.reference_us)},
                    {"ratio", num(r.ratio)},
                    {"subject_bytes_per_second", num(r.subject_bps)},
                    {"reference_bytes_per_second", num(r.reference_bps)}});
  }
  return {{"definition",
           "ratio = subject / reference median real time per call (or of the named counter, in us), both "
           "measured in the same run; > 1 means the subject is slower"},
          {"pairs", std::move(list)}};
}

// Command-line values this runner needs before Google Benchmark consumes its flags.
struct Flags {
  std::string ratio_out;
  std::string format = "console";
  std::string color = "auto";
  bool tabular = false;
  bool has_min_time = false;
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool truthy(const std::string& v) {
  const std::string l = lower(v);
  return l == "1" || l == "t" || l == "true" || l == "y" || l == "yes" || l == "on";
}

// Reads "--name=value" (or "--name" for booleans); false when `arg` is another flag.
bool flag_value(std::string_view arg, std::string_view name, std::string* value) {
  if (arg.size() < 2 + name.size() || arg.substr(0, 2) != "--" || arg.substr(2, name.size()) != name) return false;
  const std::string_view rest = arg.substr(2 + name.size());
  if (rest.empty()) {
    *value = "true";
    return true;
  }
  if (rest.front() != '=') return false;
  *value = std::string(rest.substr(1));
  return true;
}

std::unique_ptr<benchmark::BenchmarkReporter> make_display_reporter(const Flags& f) {
  if (f.format == "json") return std::make_unique<benchmark::JSONReporter>();
  if (f.format == "csv") {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return std::make_unique<benchmark::CSVReporter>();
#pragma GCC diagnostic pop
  }
  if (f.format != "console") return nullptr;
  bool color = false;
  if (f.color == "auto") {
    const char* term = std::getenv("TERM");
    color = isatty(STDOUT_FILENO) != 0 && term != nullptr && std::strcmp(term, "dumb") != 0;
  } else {
    color = truthy(f.color);
  }
  int opts = benchmark::ConsoleReporter::OO_None;
  if (color) opts |= benchmark::ConsoleReporter::OO_Color;
  if (f.tabular) opts |= benchmark::ConsoleReporter::OO_Tabular;
  return std::make_unique<benchmark::ConsoleReporter>(static_cast<benchmark::ConsoleReporter::OutputOptions>(opts));
}

std::string& default_min_time() {
  static std::string t;
  return t;
}

std::string& extra_help() {
  static std::string h;
  return h;
}

std::size_t& workers_value() {
  static std::size_t w = 0;
  return w;
}
bool& workers_accepted() {
  static bool accepted = false;
  return accepted;
}

// A positive count of at most 4096 (a worker pool larger than that is a typo), or nothing.
std::optional<std::size_t> parse_workers(const std::string& v) {
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n == 0 || n > 4096) return std::nullopt;
  return n;
}

void print_help() {
  std::fputs(extra_help().c_str(), stdout);
  std::printf(
      "Ratio report flags:\n"
      "  --ratio_out=FILE   write the subject-vs-reference ratio table as JSON to FILE\n"
      "%s"
      "  (without --benchmark_min_time, each benchmark runs for at least %s s)\n\n",
      workers_accepted() ? "  --workers=N        worker threads of the grain runtime (default: one per hardware thread)\n" : "",
      default_min_time().c_str());
  benchmark::PrintDefaultHelp();
}

}  // namespace

void register_pair(RatioPair pair) { pairs().push_back(std::move(pair)); }

void on_shutdown(std::function<void()> fn) { shutdown_hooks().push_back(std::move(fn)); }

std::size_t workers() { return workers_value(); }

int run_with_ratio_report(int argc, char** argv, const RunOptions& options) {
  extra_help() = options.help;
  default_min_time() = options.default_min_time;
  workers_accepted() = options.workers_flag;
  Flags flags;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    std::string v;
    if (i > 0 && flag_value(argv[i], "ratio_out", &v)) {
      flags.ratio_out = v;
      continue;  // ours: Google Benchmark would reject it
    }
    if (i > 0 && options.workers_flag && flag_value(argv[i], "workers", &v)) {
      const auto n = parse_workers(v);
      if (!n) {
        std::cerr << "--workers=" << v << ": expected a worker count from 1 to 4096\n";
        return 1;
      }
      workers_value() = *n;
      continue;
    }
    if (flag_value(argv[i], "benchmark_format", &v)) flags.format = v;
    if (flag_value(argv[i], "benchmark_color", &v)) flags.color = v;
    if (flag_value(argv[i], "benchmark_counters_tabular", &v)) flags.tabular = truthy(v);
    if (flag_value(argv[i], "benchmark_min_time", &v)) flags.has_min_time = true;
    args.push_back(argv[i]);
  }
  std::string min_time_flag = "--benchmark_min_time=" + options.default_min_time;
  if (!flags.has_min_time && !options.default_min_time.empty()) args.push_back(min_time_flag.data());
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);

  benchmark::Initialize(&n, args.data(), print_help);
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  auto display = make_display_reporter(flags);
  if (!display) {
    std::cerr << "Unexpected format: '" << flags.format << "' (console, json or csv)\n";
    return 1;
  }
  CollectingReporter collector(std::move(display));
  benchmark::RunSpecifiedBenchmarks(&collector);

  int rc = 0;
  if (!collector.empty()) {
    const std::vector<Row> rows = build_rows(collector);
    print_table(flags.format == "console" ? std::cout : std::cerr, rows);
    if (!flags.ratio_out.empty()) {
      std::ofstream f(flags.ratio_out);
      f << to_json(rows).dump(2) << "\n";
      if (!f) {
        std::cerr << "cannot write --ratio_out=" << flags.ratio_out << "\n";
        rc = 1;
      }
    }
  }
  auto& hooks = shutdown_hooks();
  for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) (*it)();
  hooks.clear();
  benchmark::Shutdown();
  return rc;
}

}  // namespace gpubridge::bench

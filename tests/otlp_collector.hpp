#pragma once
// OtlpCollector: an OTLP/HTTP traces endpoint for tests, on 127.0.0.1 at a port the kernel picks,
// keeping every request body it receives (JSON; a body that does not parse is kept as a
// discarded value, so tests that read it fail). Thread-safe.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace gpubridge::testing {

class OtlpCollector {
 public:
  OtlpCollector() {
    server_.Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      content_types_.push_back(req.get_header_value("Content-Type"));
      bodies_.push_back(nlohmann::json::parse(req.body, nullptr, false));
      res.set_content("{}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");  // listening from here on (backlog)
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      finished_.store(true);
    });
  }
  // stop() only stops a server already running: wait for the listening thread to start. A stop
  // that lands while cpp-httplib 0.11's loop is starting can still be lost: connecting to the
  // port wakes the loop until it has returned.
  ~OtlpCollector() {
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    server_.stop();
    while (!finished_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (finished_.load()) break;
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<std::uint16_t>(port_));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      ::close(fd);
    }
    thread_.join();
  }
  OtlpCollector(const OtlpCollector&) = delete;
  OtlpCollector& operator=(const OtlpCollector&) = delete;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces"; }
  int port() const { return port_; }
  std::vector<nlohmann::json> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  std::vector<std::string> content_types() {
    std::lock_guard lock(mu_);
    return content_types_;
  }
  // Every span of every request, in arrival order.
  std::vector<nlohmann::json> spans() {
    std::vector<nlohmann::json> out;
    for (const nlohmann::json& body : bodies()) {
      for (const nlohmann::json& rs : body.at("resourceSpans")) {
        for (const nlohmann::json& ss : rs.at("scopeSpans")) {
          for (const nlohmann::json& s : ss.at("spans")) out.push_back(s);
        }
      }
    }
    return out;
  }
  // The spans named `name`.
  std::vector<nlohmann::json> spans(const std::string& name) {
    std::vector<nlohmann::json> out;
    for (nlohmann::json& s : spans()) {
      if (s.value("name", "") == name) out.push_back(std::move(s));
    }
    return out;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::atomic<bool> finished_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<nlohmann::json> bodies_;  // guarded by mu_
  std::vector<std::string> content_types_;  // guarded by mu_
};

}  // namespace gpubridge::testing

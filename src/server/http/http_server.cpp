#include "server/http/http_server.hpp"

#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include <mutex>
#include <thread>

#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::server {

struct HttpServer::Impl {
  httplib::Server server;
  std::string address;
  unsigned port = 0;
  std::thread thread;
  std::atomic<bool> finished{false};  // the listening loop returned
  std::once_flag stopped;
};

namespace {

// Opens and closes a connection to the server's own port: wakes an accept loop that missed the
// stop request (cpp-httplib 0.11 loses a stop() that lands while its loop is starting).
void poke(const std::string& address, unsigned port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) == 1) {
    ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  }
  ::close(fd);
}

}  // namespace

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& address, unsigned port,
                                                      std::map<std::string, HttpHandler> routes) {
  if (port > 65535) return Error(ErrorCode::invalid_argument, "http: port " + std::to_string(port) + " is out of range");
  auto impl = std::make_unique<Impl>();
  impl->address = address;
  // Operational endpoints need few threads; keep them off the grain workers' cores.
  impl->server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which would let a second silo
  // bind the same port and silently take half of its scrapes.
  impl->server.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  for (auto& [path, handler] : routes) {
    impl->server.Get(path, [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      HttpRequest request{req.path, {}};
      for (const auto& [k, v] : req.params) request.query.emplace(k, v);
      HttpResponse response = handler(request);
      res.status = response.status;
      res.set_content(std::move(response.body), response.content_type.c_str());
      res.set_header("Cache-Control", "no-store");
    });
  }
  int bound = 0;
  if (port == 0) {
    bound = impl->server.bind_to_any_port(address);
  } else {
    bound = impl->server.bind_to_port(address, static_cast<int>(port)) ? static_cast<int>(port) : -1;
  }
  if (bound <= 0) {
    return Error(ErrorCode::unavailable,
                 "http: cannot listen on " + address + ":" + std::to_string(port) + " (address in use or not local?)");
  }
  impl->port = static_cast<unsigned>(bound);
  Impl* raw = impl.get();
  impl->thread = named_thread("gb-http", [raw] {
    raw->server.listen_after_bind();
    raw->finished.store(true);
  });
  // stop() only reaches a server that is already running: wait until it is (bounded).
  for (int i = 0; i < 2000 && !raw->server.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
  std::call_once(impl_->stopped, [this] {
    impl_->server.stop();
    for (int i = 0; i < 100 && !impl_->finished.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!impl_->finished.load()) poke(impl_->address, impl_->port);
    }
    if (impl_->thread.joinable()) impl_->thread.join();
  });
}

unsigned HttpServer::port() const noexcept { return impl_->port; }
const std::string& HttpServer::address() const noexcept { return impl_->address; }
std::string HttpServer::url() const { return "http://" + impl_->address + ":" + std::to_string(impl_->port); }

}  // namespace gpubridge::server

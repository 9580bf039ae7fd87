#pragma once
// A small HTTP/1.1 server for the silo's operational endpoints (metrics, health, dashboard).
// cpp-httplib stays behind this interface: no header of it leaks into the rest of the silo.
//
// Handlers run on the server's own threads (a small pool), concurrently with each other and with
// the silo; they must be thread-safe and must not block for long. stop() (also the destructor)
// closes the listening socket and waits for the server thread; requests in progress finish.
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "gpubridge/core/result.hpp"

namespace gpubridge::server {

struct HttpRequest {
  std::string path;
  std::multimap<std::string, std::string> query;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  // Binds `address`:`port` (port 0: any free port) and starts serving GET requests for the routes
  // (exact paths). Unknown paths answer 404. Errors: unavailable when the address cannot be bound.
  static Result<std::unique_ptr<HttpServer>> start(const std::string& address, unsigned port,
                                                   std::map<std::string, HttpHandler> routes);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  unsigned port() const noexcept;       // the bound port
  const std::string& address() const noexcept;
  std::string url() const;              // "http://address:port"
  void stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpubridge::server

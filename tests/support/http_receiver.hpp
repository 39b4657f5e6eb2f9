#pragma once

// A local HTTP server standing in for the operator's push gateway (the real one would relay to
// APNs/FCM, which cannot run here). It records every request and answers with what the test
// tells it to: 200 {} by default, or a queue of scripted answers (503s, rejected pushkeys).

#include <chrono>
#include <deque>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <kj/async-io.h>
#include <kj/compat/http.h>

namespace missive::test {

class http_receiver {
public:
  struct request {
    std::string method;
    std::string path;
    std::string content_type;
    std::string body;
    std::chrono::steady_clock::time_point at;
  };

  http_receiver() {
    std::promise<uint32_t> port;
    auto bound = port.get_future();
    thread_ = std::thread([this, &port] { run(port); });
    port_ = bound.get();
  }

  ~http_receiver() noexcept {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      stopping_ = true;
      if (stop_.get() != nullptr)
        stop_->fulfill();
    }
    thread_.join();
  }

  http_receiver(const http_receiver&) = delete;
  http_receiver& operator=(const http_receiver&) = delete;

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/_matrix/push/v1/notify";
  }

  std::vector<request> requests() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return requests_;
  }

  /// Waits (bounded) until at least `n` requests arrived.
  bool wait_for(size_t n, std::chrono::milliseconds limit) const {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (requests().size() >= n)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return requests().size() >= n;
  }

  /// The next requests get these answers, in order; then 200 {} again.
  void script(std::vector<std::pair<uint32_t, std::string>> answers) {
    std::lock_guard<std::mutex> guard(mutex_);
    for (auto& a : answers)
      script_.push_back(std::move(a));
  }

private:
  class service final : public kj::HttpService {
  public:
    explicit service(http_receiver& owner) : owner_(owner) {}

    kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                              const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                              Response& response) override {
      http_receiver::request r;
      r.method = kj::str(method).cStr();
      r.path = url.cStr();
      KJ_IF_MAYBE(ct, headers.get(kj::HttpHeaderId::CONTENT_TYPE)) {
        r.content_type = ct->cStr();
      }
      return body.readAllText().then(
        [this, r = std::move(r), &response](kj::String text) mutable -> kj::Promise<void> {
          r.body = text.cStr();
          r.at = std::chrono::steady_clock::now();
          std::pair<uint32_t, std::string> answer{200, "{}"};
          {
            std::lock_guard<std::mutex> guard(owner_.mutex_);
            owner_.requests_.push_back(std::move(r));
            if (!owner_.script_.empty()) {
              answer = std::move(owner_.script_.front());
              owner_.script_.pop_front();
            }
          }
          kj::HttpHeaders out(owner_.table_);
          out.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
          auto status_text = answer.first < 300 ? "OK" : "Scripted";
          auto stream = response.send(answer.first, status_text, out, answer.second.size());
          auto payload = kj::heapString(answer.second.data(), answer.second.size());
          auto write = stream->write(payload.begin(), payload.size());
          return write.attach(kj::mv(stream), kj::mv(payload));
        });
    }

  private:
    http_receiver& owner_;
  };

  void run(std::promise<uint32_t>& port) {
    auto io = kj::setupAsyncIo();
    auto addr = io.provider->getNetwork().parseAddress("127.0.0.1:0").wait(io.waitScope);
    auto listener = addr->listen();
    service svc(*this);
    kj::HttpServer server(io.provider->getTimer(), table_, svc);
    auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard<std::mutex> guard(mutex_);
      stop_ = kj::mv(stop.fulfiller);
    }
    auto listening = server.listenHttp(*listener);
    port.set_value(listener->getPort());
    bool stopping;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      stopping = stopping_;
    }
    if (!stopping)
      listening.exclusiveJoin(kj::mv(stop.promise)).wait(io.waitScope);
  }

  kj::HttpHeaderTable table_;
  std::thread thread_;
  uint32_t port_ = 0;
  mutable std::mutex mutex_;
  std::vector<request> requests_;
  std::deque<std::pair<uint32_t, std::string>> script_;
  bool stopping_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_;
};

} // namespace missive::test

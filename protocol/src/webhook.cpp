#include "missive/protocol/webhook.hpp"

#include <deque>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/compat/tls.h>
#include <kj/debug.h>
#include <nlohmann/json.hpp>

#include "missive/actors/report_limiter.hpp"

namespace missive::protocol {

namespace {

using json = nlohmann::json;

/// The first `max` bytes of `s`, not cutting a UTF-8 sequence in two.
std::string utf8_prefix(const std::string& s, size_t max) {
  if (s.size() <= max)
    return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80)
    --end;
  return s.substr(0, end);
}

/// The Matrix push gateway request body for one push.
std::string payload(const offline_push& p, const webhook_options& opts) {
  json device = {{"app_id", p.platform}, {"pushkey", p.token}};
  json n = {{"devices", json::array({device})},
            {"counts", {{"unread", p.unread}}},
            {"prio", "high"}};
  if (opts.previews && !p.from.empty()) {
    n["type"] = "m.room.message";
    n["sender"] = p.from;
    n["content"] = {{"msgtype", "m.text"}, {"body", utf8_prefix(p.body, opts.preview_max_bytes)}};
  }
  // Bodies are bytes: invalid UTF-8 becomes U+FFFD instead of an exception.
  return json{{"notification", n}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// What the gateway's answer means for this push.
push_outcome classify(uint32_t status, const std::string& status_text, const std::string& body,
                      const std::string& token) {
  auto what = "HTTP " + std::to_string(status) + " " + status_text;
  if (status >= 200 && status < 300) {
    auto doc = json::parse(body, nullptr, false);
    if (doc.is_object() && doc.contains("rejected") && doc["rejected"].is_array())
      for (auto& key : doc["rejected"])
        if (key.is_string() && key.get<std::string>() == token)
          return {push_outcome::kind::rejected, what + ", pushkey rejected"};
    return {push_outcome::kind::delivered, what};
  }
  if (status == 429 || status >= 500)
    return {push_outcome::kind::retry, what};
  return {push_outcome::kind::failed, what + ": " + body.substr(0, 200)};
}

class webhook final : public push_provider {
public:
  explicit webhook(webhook_options opts) : opts_(std::move(opts)) {
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready] { run(ready); });
    started.wait();
  }

  ~webhook() noexcept override {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      stopping_ = true;
      ring();
    }
    thread_.join();
  }

  void send(offline_push p, std::function<void(push_outcome)> done) override {
    std::lock_guard<std::mutex> guard(mutex_);
    jobs_.push_back(job{std::move(p), std::move(done)});
    ring();
  }

private:
  struct job {
    offline_push push;
    std::function<void(push_outcome)> done;
  };

  /// Wakes the loop thread. Called with mutex_ held.
  void ring() {
    if (bell_.get() != nullptr) {
      bell_->fulfill();
      bell_ = nullptr;
    }
  }

  /// The loop thread: takes what was queued, starts requests while fewer than
  /// `max_in_flight` are under way (each that ends starts the next waiting), and runs the
  /// event loop until the next ring.
  void run(std::promise<void>& ready) {
    auto io = kj::setupAsyncIo();
    kj::HttpHeaderTable table;
    kj::TlsContext tls; // https:// with the system's trust store
    auto tls_network = tls.wrapNetwork(io.provider->getNetwork());
    auto client = kj::newHttpClient(io.provider->getTimer(), table, io.provider->getNetwork(),
                                    *tls_network);
    struct : kj::TaskSet::ErrorHandler {
      void taskFailed(kj::Exception&& e) override { KJ_LOG(WARNING, "push request failed", e); }
    } on_error;
    kj::TaskSet tasks(on_error);
    std::deque<job> waiting; // the loop thread's, in arrival order
    uint32_t running = 0;
    std::function<void()> start_more = [&]() {
      while (running < opts_.max_in_flight && !waiting.empty()) {
        ++running;
        auto j = std::move(waiting.front());
        waiting.pop_front();
        // (Lambdas given to `then` as temporaries: it keeps a reference to an lvalue.)
        tasks.add(post(*client, table, io.provider->getTimer(), std::move(j))
                    .then(
                      [&]() {
                        --running;
                        start_more();
                      },
                      [&](kj::Exception&& e) {
                        --running;
                        start_more();
                        kj::throwRecoverableException(kj::mv(e)); // to the task set's log
                      }));
      }
    };
    ready.set_value();
    for (;;) {
      std::deque<job> batch;
      kj::Promise<void> bell = nullptr;
      {
        std::lock_guard<std::mutex> guard(mutex_);
        if (stopping_)
          break;
        batch.swap(jobs_);
        auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
        bell_ = kj::mv(paf.fulfiller);
        bell = kj::mv(paf.promise);
      }
      for (auto& j : batch)
        waiting.push_back(std::move(j));
      start_more();
      bell.wait(io.waitScope);
    }
    // Requests in flight or waiting are abandoned: the dispatcher that waits for them is
    // stopping.
  }

  kj::Promise<void> post(kj::HttpClient& client, const kj::HttpHeaderTable& table, kj::Timer& timer,
                         job j) {
    auto who = j.push.user + "/" + j.push.device;
    auto text = payload(j.push, opts_);
    kj::HttpHeaders headers(table);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
    auto req = client.request(kj::HttpMethod::POST, opts_.url, headers, text.size());
    auto body = kj::mv(req.body);
    auto owned = kj::heapString(text.data(), text.size());
    auto write = body->write(owned.begin(), owned.size()).attach(kj::mv(body), kj::mv(owned));
    auto token = j.push.token;
    auto exchange =
      write.then([response = kj::mv(req.response)]() mutable { return kj::mv(response); })
        .then([token](kj::HttpClient::Response r) {
          auto status = r.statusCode;
          auto status_text = std::string(r.statusText.cStr());
          return r.body->readAllText(64 * 1024)
            .attach(kj::mv(r.body))
            .then([status, status_text, token](kj::String text) {
              return classify(status, status_text, std::string(text.cStr(), text.size()), token);
            });
        });
    auto done = std::make_shared<std::function<void(push_outcome)>>(std::move(j.done));
    return timer.timeoutAfter(opts_.timeout.count() * kj::MILLISECONDS, kj::mv(exchange))
      .then(
        [this, done, who](push_outcome out) {
          if (out.what != push_outcome::kind::delivered)
            report_failure("push gateway on " + who + ": " + out.detail);
          (*done)(std::move(out));
        },
        [this, done, who](kj::Exception&& e) {
          push_outcome out{push_outcome::kind::retry, e.getDescription().cStr()};
          report_failure("push gateway unreachable for " + who + ": " + out.detail);
          (*done)(std::move(out));
        });
  }

  /// Logs a failed attempt: the first at once, then at most one line per interval, which
  /// counts the failures since the line before. A gateway that is down while thousands of
  /// devices are offline fails every attempt (42,300 lines in 90 s, one each, before).
  /// Loop thread only.
  void report_failure(const std::string& line) {
    auto n = failures_.note(std::chrono::steady_clock::now());
    if (n == 0)
      return;
    std::cerr << "missive-server: " << line;
    if (failures_.reports() > 1)
      std::cerr << " (" << n << (n == 1 ? " failed attempt" : " failed attempts")
                << " since the last report; at most one report every "
                << std::chrono::duration_cast<std::chrono::seconds>(opts_.failure_report_interval)
                     .count()
                << " s)";
    std::cerr << std::endl;
  }

  webhook_options opts_;
  report_limiter failures_{opts_.failure_report_interval};
  std::thread thread_;
  std::mutex mutex_;
  std::deque<job> jobs_;
  bool stopping_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> bell_;
};

} // namespace

std::shared_ptr<push_provider> make_webhook(webhook_options opts, std::string* error) {
  if (opts.url.rfind("http://", 0) != 0 && opts.url.rfind("https://", 0) != 0) {
    *error = "push-gateway-url must start with http:// or https://, got `" + opts.url + "`";
    return nullptr;
  }
  return std::make_shared<webhook>(std::move(opts));
}

} // namespace missive::protocol

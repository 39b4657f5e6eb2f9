#include "load_push.hpp"

#include <future>

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/debug.h>
#include <nlohmann/json.hpp>

namespace missive::load {

bool push_gateway::parse(const std::string& body, std::string* pushkey, uint32_t* unread) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return false;
  auto n = j.find("notification");
  if (n == j.end() || !n->is_object())
    return false;
  auto devs = n->find("devices");
  if (devs == n->end() || !devs->is_array() || devs->empty() || !(*devs)[0].is_object())
    return false;
  auto key = (*devs)[0].find("pushkey");
  if (key == (*devs)[0].end() || !key->is_string())
    return false;
  *pushkey = key->get<std::string>();
  *unread = 0;
  if (auto c = n->find("counts"); c != n->end() && c->is_object())
    if (auto u = c->find("unread"); u != c->end() && u->is_number_unsigned())
      *unread = u->get<uint32_t>();
  return true;
}

void push_gateway::raise(std::atomic<uint32_t>& peak, uint32_t now) {
  auto seen = peak.load();
  while (now > seen && !peak.compare_exchange_weak(seen, now)) {
  }
}

bool push_gateway::record(const std::string& pushkey, uint32_t unread) {
  auto now = now_ns_();
  std::lock_guard<std::mutex> guard(mutex_);
  if (fail_percent_ > 0 && std::hash<std::string>{}(pushkey) % 100 < fail_percent_
      && refused_keys_.insert(pushkey).second) {
    ++refused_;
    return false;
  }
  ++pushes_;
  auto& d = devices_[pushkey];
  if (d.pushes++ == 0)
    d.first_ns = now;
  d.last_ns = now;
  d.last_unread = unread;
  return true;
}

std::map<std::string, push_gateway::device> push_gateway::devices() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return devices_;
}

/// The gateway's event loop: accepts connections itself (to count them) and serves each with
/// kj-http.
struct push_gateway::impl final : kj::HttpService, kj::TaskSet::ErrorHandler {
  explicit impl(push_gateway& g) : owner(g) {}

  kj::Promise<void> request(kj::HttpMethod, kj::StringPtr, const kj::HttpHeaders&,
                            kj::AsyncInputStream& body, Response& response) override {
    raise(owner.peak_requests_, ++owner.open_requests_);
    auto* out_to = &response; // valid until the promise returned here is done
    return body.readAllText(1 << 20)
      .then([this, out_to](kj::String text) -> kj::Promise<void> {
        std::string key;
        uint32_t unread = 0;
        uint32_t status = 200;
        if (!parse(std::string(text.cStr(), text.size()), &key, &unread)) {
          ++owner.malformed_;
          status = 400;
        } else if (!owner.record(key, unread)) {
          status = 503;
        }
        auto answer = [this, out_to, status]() {
          kj::HttpHeaders headers(table);
          headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
          kj::StringPtr text = status == 200   ? "{\"rejected\": []}"
                               : status == 400 ? "{\"error\": \"not a push\"}"
                                               : "{\"error\": \"try again later\"}";
          auto out = out_to->send(status,
                                  status == 200   ? "OK"
                                  : status == 400 ? "Bad Request"
                                                  : "Service Unavailable",
                                  headers, text.size());
          return out->write(text.begin(), text.size()).attach(kj::mv(out));
        };
        if (owner.answer_delay_.count() == 0)
          return answer();
        // Moved in: `then` keeps a reference to an lvalue it is given.
        return timer->afterDelay(owner.answer_delay_.count() * kj::MICROSECONDS)
          .then(kj::mv(answer));
      })
      .attach(kj::defer([this]() { --owner.open_requests_; }));
  }

  /// Accepts until stopped. A failed accept (out of file descriptors: the tool's devices use
  /// them too) is counted and tried again a little later, as a server would.
  kj::Promise<void> accept_loop(kj::ConnectionReceiver& listener) {
    return listener.accept().then(
      [this, &listener](kj::Own<kj::AsyncIoStream>&& c) {
        ++owner.connections_;
        raise(owner.peak_connections_, ++owner.open_connections_);
        connections->add(server->listenHttp(kj::mv(c)).attach(
          kj::defer([this]() { --owner.open_connections_; })));
        return accept_loop(listener);
      },
      [this, &listener](kj::Exception&&) {
        ++owner.accept_failures_;
        return timer->afterDelay(10 * kj::MILLISECONDS).then([this, &listener]() {
          return accept_loop(listener);
        });
      });
  }

  void taskFailed(kj::Exception&&) override {} // a connection the server dropped

  push_gateway& owner;
  kj::HttpHeaderTable table;
  kj::Timer* timer = nullptr;
  kj::Own<kj::HttpServer> server;
  kj::Own<kj::TaskSet> connections; // before `server` goes
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop; // guarded by owner.mutex_
};

push_gateway::push_gateway(const std::string& address, std::chrono::microseconds answer_delay,
                           std::function<int64_t()> now_ns, uint32_t fail_percent)
  : now_ns_(std::move(now_ns)),
    answer_delay_(answer_delay),
    fail_percent_(fail_percent),
    impl_(std::make_unique<impl>(*this)) {
  std::promise<std::string> bound;
  auto result = bound.get_future();
  thread_ = std::thread([this, address, &bound] {
    auto io = kj::setupAsyncIo();
    kj::Own<kj::ConnectionReceiver> listener;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      listener = io.provider->getNetwork().parseAddress(address).wait(io.waitScope)->listen();
    })) {
      bound.set_value("cannot listen on " + address + ": " + e->getDescription().cStr());
      return;
    }
    impl_->timer = &io.provider->getTimer();
    impl_->server = kj::heap<kj::HttpServer>(io.provider->getTimer(), impl_->table, *impl_);
    impl_->connections = kj::heap<kj::TaskSet>(*impl_);
    auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard<std::mutex> guard(mutex_);
      impl_->stop = kj::mv(stop.fulfiller);
    }
    port_ = listener->getPort();
    bound.set_value("");
    impl_->accept_loop(*listener).exclusiveJoin(kj::mv(stop.promise)).wait(io.waitScope);
    impl_->connections = nullptr;
    impl_->server = nullptr;
  });
  error_ = result.get();
}

push_gateway::~push_gateway() noexcept {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (impl_->stop.get() != nullptr)
      impl_->stop->fulfill();
  }
  thread_.join();
}

} // namespace missive::load

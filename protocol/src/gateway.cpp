#include "missive/protocol/gateway.hpp"

#include <csignal>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <memory>
#include <optional>

#include <capnp/rpc-twoparty.h>
#include <caf/all.hpp>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include "convert.hpp"

namespace missive::protocol {

namespace {

static_assert(static_cast<int>(wire::ErrorCode::SEQ_EXHAUSTED)
                == static_cast<int>(errc::seq_exhausted),
              "ErrorCode in missive.capnp and missive::errc must keep the same numbers");

/// Writes a CAF error as the wire's typed Error.
void write_error(wire::Error::Builder out, const caf::error& err) {
  if (err.category() == caf::atom("missive")) {
    out.setCode(static_cast<wire::ErrorCode>(err.code()));
    auto& ctx = err.context();
    if (ctx.match_element<std::string>(0))
      out.setMessage(ctx.get_as<std::string>(0));
    if (ctx.size() > 1 && ctx.match_element<uint32_t>(1)) {
      auto extra = ctx.get_as<uint32_t>(1);
      if (err.code() == static_cast<uint8_t>(errc::stale_epoch))
        out.setEpoch(extra);
      else if (err.code() == static_cast<uint8_t>(errc::cursor_ahead))
        out.setMaxSeq(extra);
    }
    return;
  }
  // Anything else (an actor gone, the system stopping) is ours, not the client's: retry.
  out.setCode(wire::ErrorCode::UNAVAILABLE);
  out.setMessage(caf::to_string(err));
}

void write_error(wire::Error::Builder out, errc code, const std::string& message) {
  write_error(out, caf::make_error(code, message));
}

/// A reply_to<T> that fulfils a KJ promise from whichever CAF thread answers. If the message
/// carrying it is dropped, the fulfiller is destroyed and the promise rejects instead.
template <class T>
using cross_fulfiller = kj::Own<kj::CrossThreadPromiseFulfiller<caf::expected<T>>>;

template <class T>
reply_to<T> make_reply(cross_fulfiller<T> f) {
  auto holder = std::make_shared<cross_fulfiller<T>>(kj::mv(f));
  return reply_to<T>{std::make_shared<std::function<void(caf::expected<T>)>>(
    [holder](caf::expected<T> x) { (*holder)->fulfill(std::move(x)); })};
}

/// Tells the connection actor the device is gone, unless a session took it over.
struct connection_guard {
  explicit connection_guard(connection_actor c) : conn(std::move(c)) {}
  connection_guard(const connection_guard&) = delete;
  connection_actor conn;
  bool released = false;
  ~connection_guard() {
    if (!released)
      caf::anon_send(conn, detach_atom::value);
  }
};

/// One logged-in device, on the gateway's KJ thread. Owned by the client's capability
/// table: destroyed when the client drops the Session or the connection.
class session_impl final : public wire::Session::Server, private kj::TaskSet::ErrorHandler {
public:
  session_impl(connection_actor conn, wire::PushReceiver::Client receiver)
    : conn_(std::move(conn)), receiver_(kj::mv(receiver)), tasks_(*this) {
    arm();
  }

  ~session_impl() noexcept(false) {
    caf::anon_send(conn_, detach_atom::value);
  }

protected:
  kj::Promise<void> send(SendContext ctx) override {
    auto p = ctx.getParams();
    return forward<send_result>(
      ctx,
      [](auto results, send_result& r) {
        results.setSeq(r.seq);
        results.setServerTime(r.server_time_ms);
      },
      send_atom::value, outgoing{p.getClientMsgId(), to_string(p.getTo()), to_string(p.getBody())});
  }

  kj::Promise<void> sync(SyncContext ctx) override {
    auto p = ctx.getParams();
    return forward<sync_result>(
      ctx,
      [](auto results, sync_result& r) {
        results.setEpoch(r.epoch);
        results.setMaxSeq(r.max_seq);
        auto list = results.initEntries(r.entries.size());
        for (size_t i = 0; i < r.entries.size(); ++i)
          write_entry(list[i], r.entries[i]);
      },
      sync_atom::value, p.getEpoch(), p.getAfterSeq(), p.getLimit());
  }

  kj::Promise<void> ack(AckContext ctx) override {
    auto p = ctx.getParams();
    return forward<caf::unit_t>(
      ctx, [](auto, caf::unit_t) {}, ack_atom::value, p.getEpoch(), p.getSeq());
  }

private:
  /// Sends `xs…` plus a reply_to<T> to the connection actor; `fill` writes a success into the
  /// call's results, an error becomes the results' typed Error.
  template <class T, class Context, class Fill, class... Ts>
  kj::Promise<void> forward(Context ctx, Fill fill, Ts&&... xs) {
    if (closed_) {
      write_error(ctx.getResults().initError(), closed_);
      return kj::READY_NOW;
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<T>>();
    caf::anon_send(conn_, std::forward<Ts>(xs)..., make_reply<T>(kj::mv(paf.fulfiller)));
    return paf.promise.then([ctx, fill](caf::expected<T> r) mutable {
      auto results = ctx.getResults();
      if (!r)
        return write_error(results.initError(), r.error());
      if constexpr (std::is_same_v<T, caf::unit_t>) // expected<unit_t> has no operator*
        fill(results, caf::unit);
      else
        fill(results, *r);
    });
  }

  /// Asks the connection actor for the next push; at most one notify is in flight.
  void arm() {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<push_event>>();
    caf::anon_send(conn_, arm_atom::value, make_reply<push_event>(kj::mv(paf.fulfiller)));
    tasks_.add(paf.promise.then([this](caf::expected<push_event> ev) -> kj::Promise<void> {
      if (!ev)
        return kj::READY_NOW; // the connection actor is gone
      if (ev->closed) {
        closed_ = ev->reason;
        return kj::READY_NOW;
      }
      auto req = receiver_.notifyRequest();
      auto& n = ev->note;
      req.setEpoch(n.epoch);
      req.setAfterSeq(n.after_seq);
      req.setMaxSeq(n.max_seq);
      req.setComplete(n.complete);
      auto list = req.initEntries(n.entries.size());
      for (size_t i = 0; i < n.entries.size(); ++i)
        write_entry(list[i], n.entries[i]);
      // Whether the device took it or not, the next notice waits for this one.
      // TODO(push): a notify that fails or times out makes the device count as offline.
      return req.send().ignoreResult().then([this]() { arm(); },
                                            [this](kj::Exception&&) { arm(); });
    }));
  }

  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(WARNING, "push task failed", e);
  }

  connection_actor conn_;
  wire::PushReceiver::Client receiver_;
  caf::error closed_;
  kj::TaskSet tasks_;
};

class gateway_impl final : public wire::Gateway::Server {
public:
  gateway_impl(caf::actor_system& sys, const node& n) : sys_(sys), node_(n) {}

protected:
  kj::Promise<void> createAccount(CreateAccountContext ctx) override {
    auto params = ctx.getParams();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<ok_atom>>();
    auto reply = make_reply<ok_atom>(kj::mv(paf.fulfiller));
    // The accounts actor answers a request; relay it into the KJ promise.
    auto user = to_string(params.getUser());
    auto password = to_string(params.getPassword());
    sys_.spawn([accounts = node_.accounts, user, password, reply](caf::event_based_actor* self) {
      self->request(accounts, caf::infinite, register_atom::value, user, password)
        .then([reply](ok_atom x) { reply(x); }, [reply](caf::error& err) { reply(err); });
    });
    return paf.promise.then([ctx](caf::expected<ok_atom> r) mutable {
      if (!r)
        write_error(ctx.getResults().initError(), r.error());
    });
  }

  kj::Promise<void> login(LoginContext ctx) override {
    auto params = ctx.getParams();
    auto device = to_string(params.getDeviceId());
    if (!valid_name(device)) {
      write_error(ctx.getResults().initError(), errc::invalid_argument,
                  "device ids are 1-64 characters of A-Z a-z 0-9 . _ -");
      return kj::READY_NOW;
    }
    if (!params.hasReceiver()) {
      write_error(ctx.getResults().initError(), errc::invalid_argument, "receiver is required");
      return kj::READY_NOW;
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<session_info>>();
    auto conn = spawn_connection(sys_, node_, to_string(params.getUser()),
                                 to_string(params.getPassword()), device,
                                 make_reply<session_info>(kj::mv(paf.fulfiller)));
    // If the client goes away before login completes, the guard detaches the device.
    auto guard = kj::heap<connection_guard>(conn);
    return paf.promise.then([ctx, receiver = params.getReceiver(), guard = kj::mv(guard)](
                              caf::expected<session_info> r) mutable {
      auto results = ctx.getResults();
      if (!r)
        return write_error(results.initError(), r.error());
      guard->released = true;
      results.setSession(kj::heap<session_impl>(guard->conn, kj::mv(receiver)));
      results.setEpoch(r->epoch);
      results.setMaxSeq(r->max_seq);
      results.setCursor(r->cursor);
    });
  }

private:
  caf::actor_system& sys_;
  node node_;
};

/// One accepted TCP connection with its RPC system; destroyed when the peer disconnects.
struct client_connection {
  client_connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap,
                    capnp::ReaderOptions opts)
    : stream(kj::mv(s)),
      network(*stream, capnp::rpc::twoparty::Side::SERVER, opts),
      rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}

  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class acceptor final : private kj::TaskSet::ErrorHandler {
public:
  acceptor(kj::ConnectionReceiver& listener, capnp::Capability::Client bootstrap,
           capnp::ReaderOptions opts)
    : listener_(listener), bootstrap_(kj::mv(bootstrap)), opts_(opts), tasks_(*this) {}

  kj::Promise<void> run() {
    return listener_.accept().then([this](kj::Own<kj::AsyncIoStream>&& stream) {
      stream->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto conn = kj::heap<client_connection>(kj::mv(stream), bootstrap_, opts_);
      auto done = conn->network.onDisconnect();
      tasks_.add(done.attach(kj::mv(conn)));
      return run();
    });
  }

private:
  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(INFO, "client connection ended", e);
  }

  static constexpr int one = 1;
  kj::ConnectionReceiver& listener_;
  capnp::Capability::Client bootstrap_;
  capnp::ReaderOptions opts_;
  kj::TaskSet tasks_;
};

} // namespace

void capture_stop_signals() {
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);
  std::signal(SIGPIPE, SIG_IGN);
}

void run_gateway(caf::actor_system& sys, const node& n, const gateway_options& opts,
                 const std::function<void(const std::string&)>& on_listening) {
  auto io = kj::setupAsyncIo();
  kj::Own<kj::ConnectionReceiver> listener;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto addr = io.provider->getNetwork().parseAddress(opts.listen).wait(io.waitScope);
    listener = addr->listen();
  })) {
    throw std::runtime_error("cannot listen on " + opts.listen + ": "
                             + std::string(e->getDescription().cStr()));
  }
  auto host = opts.listen.substr(0, opts.listen.rfind(':'));
  on_listening(host + ":" + std::to_string(listener->getPort()));
  capnp::ReaderOptions reader;
  reader.traversalLimitInWords = opts.max_message_bytes / sizeof(capnp::word);
  reader.nestingLimit = 16;
  {
    acceptor accept(*listener, kj::heap<gateway_impl>(sys, n), reader);
    auto stop = io.unixEventPort.onSignal(SIGINT).exclusiveJoin(
      io.unixEventPort.onSignal(SIGTERM));
    accept.run().exclusiveJoin(stop.ignoreResult()).wait(io.waitScope);
    // Leaving the scope closes every client connection; their sessions detach.
  }
  listener = nullptr;
}

} // namespace missive::protocol

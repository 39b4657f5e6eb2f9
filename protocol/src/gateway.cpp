#include "missive/protocol/gateway.hpp"

#include <algorithm>
#include <csignal>
#include <iostream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <memory>
#include <optional>
#include <future>
#include <thread>
#include <unistd.h>
#include <vector>

#include <capnp/rpc-twoparty.h>
#include <caf/all.hpp>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include "convert.hpp"

namespace missive::protocol {

namespace {

static_assert(static_cast<int>(wire::ErrorCode::GROUP_FULL) == static_cast<int>(errc::group_full),
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
      else if (err.code() == static_cast<uint8_t>(errc::rate_limited))
        out.setRetryAfterMs(extra);
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

/// Fills a notify request or a Notice (the same fields).
template <class Builder>
void write_notice(Builder&& out, const notice& n) {
  out.setEpoch(n.epoch);
  out.setAfterSeq(n.after_seq);
  out.setMaxSeq(n.max_seq);
  out.setComplete(n.complete);
  auto list = out.initEntries(n.entries.size());
  for (size_t i = 0; i < n.entries.size(); ++i)
    write_entry(list[i], n.entries[i]);
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

/// Lets a session close the connection it came on (a device that went silent). Shared by the
/// connection's gateway and sessions; only used on the gateway's thread.
class connection_control final : public kj::Refcounted {
public:
  explicit connection_control(kj::Own<kj::PromiseFulfiller<void>> close)
    : close_(kj::mv(close)) {}
  kj::Own<connection_control> add_ref() { return kj::addRef(*this); }
  void close() {
    if (close_->isWaiting())
      close_->fulfill();
  }

private:
  kj::Own<kj::PromiseFulfiller<void>> close_;
};

/// What every session of the gateway needs from it.
struct session_env {
  kj::Timer& timer;
  kj::Duration heartbeat;
  kj::Duration push_timeout;
};

/// One logged-in device, on the gateway's KJ thread. Owned by the client's capability
/// table: destroyed when the client drops the Session or the connection.
class session_impl final : public wire::Session::Server, private kj::TaskSet::ErrorHandler {
public:
  session_impl(connection_actor conn, wire::PushReceiver::Client receiver, session_env env,
               kj::Own<connection_control> control, std::string who)
    : conn_(std::move(conn)),
      receiver_(kj::mv(receiver)),
      env_(env),
      control_(kj::mv(control)),
      who_(std::move(who)),
      last_heard_(env_.timer.now()),
      tasks_(*this) {
    arm();
    tasks_.add(heartbeats());
  }

  ~session_impl() noexcept(false) {
    caf::anon_send(conn_, detach_atom::value);
  }

protected:
  kj::Promise<void> send(SendContext ctx) override {
    auto p = ctx.getParams();
    return forward<send_reply>(
      ctx,
      [](auto results, send_reply& r) {
        results.setSeq(r.result.seq);
        results.setServerTime(r.result.server_time_ms);
        if (r.note)
          write_notice(results.initNotice(), *r.note);
      },
      send_atom::value,
      outgoing{p.getClientMsgId(), to_string(p.getTo()), to_string(p.getBody()),
               static_cast<uint32_t>(std::min<uint64_t>(p.totalSize().wordCount * 8, UINT32_MAX))});
  }

  kj::Promise<void> block(BlockContext ctx) override {
    return forward<caf::unit_t>(
      ctx, [](auto, caf::unit_t) {}, block_atom::value, to_string(ctx.getParams().getUser()),
      true);
  }

  kj::Promise<void> unblock(UnblockContext ctx) override {
    return forward<caf::unit_t>(
      ctx, [](auto, caf::unit_t) {}, block_atom::value, to_string(ctx.getParams().getUser()),
      false);
  }

  kj::Promise<void> setPushToken(SetPushTokenContext ctx) override {
    auto p = ctx.getParams();
    return forward<caf::unit_t>(
      ctx, [](auto, caf::unit_t) {}, push_atom::value, to_string(p.getPlatform()),
      to_string(p.getToken()));
  }

  kj::Promise<void> createGroup(CreateGroupContext ctx) override {
    return group_op_call(ctx, group_op::kind::create, to_string(ctx.getParams().getGroup()), {});
  }

  kj::Promise<void> addMember(AddMemberContext ctx) override {
    auto p = ctx.getParams();
    return group_op_call(ctx, group_op::kind::add, to_string(p.getGroup()),
                         to_string(p.getUser()));
  }

  kj::Promise<void> removeMember(RemoveMemberContext ctx) override {
    auto p = ctx.getParams();
    return group_op_call(ctx, group_op::kind::remove, to_string(p.getGroup()),
                         to_string(p.getUser()));
  }

  kj::Promise<void> leaveGroup(LeaveGroupContext ctx) override {
    return group_op_call(ctx, group_op::kind::leave, to_string(ctx.getParams().getGroup()), {});
  }

  kj::Promise<void> setAdmin(SetAdminContext ctx) override {
    auto p = ctx.getParams();
    return group_op_call(ctx, p.getAdmin() ? group_op::kind::set_admin : group_op::kind::unset_admin,
                         to_string(p.getGroup()), to_string(p.getUser()));
  }

  kj::Promise<void> listMembers(ListMembersContext ctx) override {
    return forward<std::vector<group_member>>(
      ctx,
      [](auto results, std::vector<group_member>& xs) {
        auto list = results.initMembers(xs.size());
        for (size_t i = 0; i < xs.size(); ++i) {
          list[i].setUser(xs[i].user);
          list[i].setRole(static_cast<wire::GroupRole>(xs[i].role));
        }
      },
      group_atom::value, lookup_atom::value, to_string(ctx.getParams().getGroup()));
  }

  kj::Promise<void> listGroups(ListGroupsContext ctx) override {
    return forward<std::vector<std::string>>(
      ctx,
      [](auto results, std::vector<std::string>& xs) {
        auto list = results.initGroups(xs.size());
        for (size_t i = 0; i < xs.size(); ++i)
          list.set(i, xs[i]);
      },
      group_atom::value, lookup_atom::value);
  }

  kj::Promise<void> listBlocked(ListBlockedContext ctx) override {
    return forward<std::vector<std::string>>(
      ctx,
      [](auto results, std::vector<std::string>& users) {
        auto list = results.initUsers(users.size());
        for (size_t i = 0; i < users.size(); ++i)
          list.set(i, users[i]);
      },
      block_atom::value, lookup_atom::value);
  }

  kj::Promise<void> sync(SyncContext ctx) override {
    auto p = ctx.getParams();
    return forward<sync_result>(
      ctx,
      [](auto results, sync_result& r) {
        results.setEpoch(r.epoch);
        results.setMaxSeq(r.max_seq);
        results.setExpired(r.expired);
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
    last_heard_ = env_.timer.now();
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

  template <class Context>
  kj::Promise<void> group_op_call(Context ctx, group_op::kind what, std::string group,
                                  std::string user) {
    return forward<caf::unit_t>(
      ctx, [](auto, caf::unit_t) {}, group_atom::value,
      group_op{what, std::move(group), {}, std::move(user)});
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
      write_notice(req, ev->note);
      // The next notice waits for this one. A device that does not confirm in time is gone:
      // close its connection, so that it counts as offline.
      return env_.timer.timeoutAfter(env_.push_timeout, req.send())
        .ignoreResult()
        .then(
          [this]() {
            last_heard_ = env_.timer.now();
            arm();
          },
          [this](kj::Exception&& e) { dead("notify not confirmed", e); });
    }));
  }

  /// Calls heartbeat whenever the connection has been quiet for a heartbeat interval.
  kj::Promise<void> heartbeats() {
    return env_.timer.afterDelay(env_.heartbeat).then([this]() -> kj::Promise<void> {
      if (env_.timer.now() - last_heard_ < env_.heartbeat)
        return heartbeats();
      return env_.timer.timeoutAfter(env_.push_timeout, receiver_.heartbeatRequest().send())
        .ignoreResult()
        .then(
          [this]() -> kj::Promise<void> {
            last_heard_ = env_.timer.now();
            return heartbeats();
          },
          [this](kj::Exception&& e) -> kj::Promise<void> {
            dead("no answer to heartbeat", e);
            return kj::READY_NOW;
          });
    });
  }

  void dead(const char* why, const kj::Exception& e) {
    if (e.getType() != kj::Exception::Type::DISCONNECTED) // a plain hang-up needs no log line
      std::cerr << "missive-server: closing the connection of " << who_ << ": " << why << " ("
                << e.getDescription().cStr() << ")" << std::endl;
    control_->close();
  }

  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(WARNING, "push task failed", e);
  }

  connection_actor conn_;
  wire::PushReceiver::Client receiver_;
  session_env env_;
  kj::Own<connection_control> control_;
  std::string who_; // user/device, for log lines
  kj::TimePoint last_heard_;
  caf::error closed_;
  kj::TaskSet tasks_;
};

class gateway_impl final : public wire::Gateway::Server {
public:
  gateway_impl(caf::actor_system& sys, const node& n, session_env env,
               kj::Own<connection_control> control, uint32_t heartbeat_ms)
    : sys_(sys), node_(n), env_(env), control_(kj::mv(control)), heartbeat_ms_(heartbeat_ms) {}

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
    auto who = to_string(params.getUser()) + "/" + device;
    return paf.promise.then([this, ctx, receiver = params.getReceiver(), guard = kj::mv(guard),
                             who](caf::expected<session_info> r) mutable {
      auto results = ctx.getResults();
      if (!r)
        return write_error(results.initError(), r.error());
      guard->released = true;
      results.setSession(kj::heap<session_impl>(guard->conn, kj::mv(receiver), env_,
                                                control_->add_ref(), who));
      results.setEpoch(r->epoch);
      results.setMaxSeq(r->max_seq);
      results.setCursor(r->cursor);
      results.setHeartbeatMs(heartbeat_ms_);
    });
  }

private:
  caf::actor_system& sys_;
  node node_;
  session_env env_;
  kj::Own<connection_control> control_;
  uint32_t heartbeat_ms_;
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

/// The connections of one gateway thread: each gets its RPC system and Gateway here, and lives
/// on this thread's event loop until the peer disconnects or a session closes it.
class connection_host final : private kj::TaskSet::ErrorHandler {
public:
  connection_host(caf::actor_system& sys, const node& n, const gateway_options& opts,
                  kj::Timer& timer)
    : sys_(sys), node_(n), opts_(opts), timer_(timer), tasks_(*this) {
    reader_.traversalLimitInWords = opts.max_message_bytes / sizeof(capnp::word);
    reader_.nestingLimit = 16;
  }

  void adopt(kj::Own<kj::AsyncIoStream> stream) {
    stream->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    // Each connection gets its own Gateway, so that its sessions can close it.
    auto close = kj::newPromiseAndFulfiller<void>();
    auto control = kj::refcounted<connection_control>(kj::mv(close.fulfiller));
    session_env env{timer_, opts_.heartbeat_interval.count() * kj::MILLISECONDS,
                    opts_.push_timeout.count() * kj::MILLISECONDS};
    auto gateway = kj::heap<gateway_impl>(sys_, node_, env, kj::mv(control),
                                          static_cast<uint32_t>(opts_.heartbeat_interval.count()));
    auto conn = kj::heap<client_connection>(kj::mv(stream), kj::mv(gateway), reader_);
    auto done = conn->network.onDisconnect().exclusiveJoin(kj::mv(close.promise));
    tasks_.add(done.attach(kj::mv(conn)));
  }

private:
  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(INFO, "client connection ended", e);
  }

  static constexpr int one = 1;
  caf::actor_system& sys_;
  node node_;
  gateway_options opts_;
  kj::Timer& timer_;
  capnp::ReaderOptions reader_;
  kj::TaskSet tasks_;
};

/// A gateway thread besides the main one: its own event loop and connection host. Connections
/// accepted on the main thread arrive as file descriptors.
class gateway_worker {
public:
  gateway_worker(caf::actor_system& sys, const node& n, const gateway_options& opts) {
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &sys, n, opts, &ready] {
      auto io = kj::setupAsyncIo();
      connection_host host(sys, n, opts, io.provider->getTimer());
      auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
      stop_ = kj::mv(stop.fulfiller);
      executor_ = &kj::getCurrentThreadExecutor();
      host_ = &host;
      io_ = &io;
      ready.set_value();
      stop.promise.wait(io.waitScope);
      // Leaving the scope closes this thread's connections; their sessions detach.
    });
    started.wait();
  }

  ~gateway_worker() noexcept {
    stop_->fulfill();
    thread_.join();
  }

  /// From the main thread's event loop: hands the connection on `fd` (owned) to this thread.
  kj::Promise<void> adopt(int fd) {
    return executor_->executeAsync([this, fd] {
      host_->adopt(io_->lowLevelProvider->wrapSocketFd(
        fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
    });
  }

private:
  std::thread thread_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_;
  const kj::Executor* executor_ = nullptr;
  connection_host* host_ = nullptr;
  kj::AsyncIoContext* io_ = nullptr;
};

/// Accepts connections on the main thread and spreads them round-robin over the gateway's
/// threads (the main thread is one of them).
class acceptor final : private kj::TaskSet::ErrorHandler {
public:
  acceptor(kj::ConnectionReceiver& listener, connection_host& local,
           std::vector<std::unique_ptr<gateway_worker>>& workers)
    : listener_(listener), local_(local), workers_(workers), tasks_(*this) {}

  kj::Promise<void> run() {
    return listener_.accept().then([this](kj::Own<kj::AsyncIoStream>&& stream) {
      auto turn = next_++ % (workers_.size() + 1);
      int fd = -1;
      if (turn > 0) {
        KJ_IF_MAYBE(raw, stream->getFd()) {
          fd = ::dup(*raw); // the worker owns the copy; `stream` closes the original
        }
      }
      if (fd < 0)
        local_.adopt(kj::mv(stream));
      else
        tasks_.add(workers_[turn - 1]->adopt(fd));
      return run();
    });
  }

private:
  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(WARNING, "handing a connection to a gateway thread failed", e);
  }

  kj::ConnectionReceiver& listener_;
  connection_host& local_;
  std::vector<std::unique_ptr<gateway_worker>>& workers_;
  uint64_t next_ = 0;
  kj::TaskSet tasks_;
};

} // namespace

void capture_stop_signals() {
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGHUP);
  std::signal(SIGPIPE, SIG_IGN);
  // A write past the file size limit must fail with an error the store reports (and the
  // sender gets as storageFailure), not kill the server.
  std::signal(SIGXFSZ, SIG_IGN);
}

namespace {

/// Calls `on_hangup` at every SIGHUP, for as long as the returned promise lives.
kj::Promise<void> hangups(kj::UnixEventPort& port, const std::function<void()>& on_hangup) {
  return port.onSignal(SIGHUP).then([&port, &on_hangup](siginfo_t) {
    if (on_hangup)
      on_hangup();
    return hangups(port, on_hangup);
  });
}

} // namespace

void run_gateway(caf::actor_system& sys, const node& n, const gateway_options& opts,
                 const std::function<void(const std::string&)>& on_listening,
                 const std::function<void()>& on_hangup) {
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
  {
    connection_host local(sys, n, opts, io.provider->getTimer());
    std::vector<std::unique_ptr<gateway_worker>> workers;
    for (size_t i = 1; i < opts.threads; ++i)
      workers.push_back(std::make_unique<gateway_worker>(sys, n, opts));
    acceptor accept(*listener, local, workers);
    auto stop = io.unixEventPort.onSignal(SIGINT).exclusiveJoin(
      io.unixEventPort.onSignal(SIGTERM));
    accept.run()
      .exclusiveJoin(stop.ignoreResult())
      .exclusiveJoin(hangups(io.unixEventPort, on_hangup))
      .wait(io.waitScope);
    // Leaving the scope closes every client connection; their sessions detach.
  }
  listener = nullptr;
}

} // namespace missive::protocol

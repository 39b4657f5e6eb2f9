#include "missive/protocol/client.hpp"

#include <deque>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include "batched_stream.hpp"
#include "convert.hpp"

namespace missive::protocol {

const char* to_string(error_code x) {
  switch (x) {
    case error_code::none: return "none";
    case error_code::invalid_argument: return "invalid_argument";
    case error_code::unknown_user: return "unknown_user";
    case error_code::bad_credentials: return "bad_credentials";
    case error_code::user_exists: return "user_exists";
    case error_code::too_large: return "too_large";
    case error_code::stale_epoch: return "stale_epoch";
    case error_code::cursor_ahead: return "cursor_ahead";
    case error_code::storage_failure: return "storage_failure";
    case error_code::unavailable: return "unavailable";
    case error_code::session_replaced: return "session_replaced";
    case error_code::seq_exhausted: return "seq_exhausted";
    case error_code::blocked: return "blocked";
    case error_code::rate_limited: return "rate_limited";
    case error_code::spam: return "spam";
    case error_code::unknown_group: return "unknown_group";
    case error_code::group_exists: return "group_exists";
    case error_code::not_member: return "not_member";
    case error_code::not_allowed: return "not_allowed";
    case error_code::group_full: return "group_full";
    case error_code::disconnected: return "disconnected";
    case error_code::timeout: return "timeout";
    case error_code::not_logged_in: return "not_logged_in";
  }
  return "unknown";
}

std::string error::to_string() const {
  std::string out = protocol::to_string(code);
  if (!message.empty())
    out += ": " + message;
  return out;
}

namespace {

/// KJ allows one event loop per thread; every client on a thread shares it. The loop lives as
/// long as the last client of the thread.
std::shared_ptr<kj::AsyncIoContext> thread_io() {
  thread_local std::weak_ptr<kj::AsyncIoContext> shared;
  auto io = shared.lock();
  if (!io) {
    io = std::make_shared<kj::AsyncIoContext>(kj::setupAsyncIo());
    shared = io;
  }
  return io;
}

} // namespace

struct client::impl {
  /// The device's side of pushes: queues them for wait_push.
  class receiver final : public wire::PushReceiver::Server {
  public:
    explicit receiver(impl& owner) : owner_(owner) {}

  protected:
    kj::Promise<void> notify(NotifyContext ctx) override {
      owner_.pushed(ctx.getParams());
      owner_.heard();
      return kj::READY_NOW;
    }

    kj::Promise<void> heartbeat(HeartbeatContext) override {
      owner_.heard();
      return kj::READY_NOW;
    }

  private:
    impl& owner_;
  };

  explicit impl(std::chrono::milliseconds t)
    : io_owner(thread_io()), io(*io_owner), timeout(t.count()) {}

  ~impl() { close(); }

  void heard() { last_heard = std::chrono::steady_clock::now(); }

  /// Queues a notice for wait_push: from a notify, or riding on a send's answer.
  template <class Reader>
  void pushed(Reader p) {
    notice x{{}, p.getEpoch(), p.getAfterSeq(), p.getMaxSeq(), p.getComplete(), {}};
    for (auto e : p.getEntries())
      x.entries.push_back(read_entry(e));
    pushes.push_back(std::move(x));
    KJ_IF_MAYBE(f, push_waiter) {
      (*f)->fulfill();
      push_waiter = nullptr;
    }
  }

  /// The connection is gone: wake a wait_push so that the caller can notice.
  void on_broken() {
    broken = true;
    KJ_IF_MAYBE(f, push_waiter) {
      (*f)->fulfill();
      push_waiter = nullptr;
    }
  }

  void close() {
    disconnect_watch = nullptr;
    broken = true;
    session = nullptr;
    gateway = nullptr;
    rpc = nullptr;
    stream = nullptr;
  }

  /// Runs the loop until `p` resolves or the call timeout passes.
  template <class T>
  kj::Maybe<T> run(kj::Promise<T>&& p, error* err) {
    auto timed = io.provider->getTimer().timeoutAfter(timeout * kj::MILLISECONDS, kj::mv(p));
    kj::Maybe<T> out;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { out = timed.wait(io.waitScope); })) {
      *err = transport_error(*e);
    }
    return out;
  }

  std::shared_ptr<kj::AsyncIoContext> io_owner; // declared first: destroyed last
  kj::AsyncIoContext& io;

  /// Sends `req` and waits; a typed error in the results wins, else `on_ok(results)`.
  template <class Request, class OnOk>
  error call(Request& req, OnOk&& on_ok) {
    error err;
    KJ_IF_MAYBE(r, run(req.send(), &err)) {
      heard();
      if (r->hasError())
        return read_error(r->getError());
      on_ok(*r);
    }
    return err;
  }

  int64_t timeout; // per call, milliseconds
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  kj::Maybe<wire::Gateway::Client> gateway;
  kj::Maybe<wire::Session::Client> session;
  std::deque<notice> pushes;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> push_waiter;
  kj::Maybe<kj::Promise<void>> disconnect_watch;
  bool broken = true; // no connection yet
  std::chrono::steady_clock::time_point last_heard{};
  std::chrono::milliseconds heartbeat{0};
  std::string resume_token; // from the last successful login
};

client::client(std::chrono::milliseconds call_timeout)
  : impl_(std::make_unique<impl>(call_timeout)) {}

client::~client() = default;

error client::connect(const std::string& host_port) {
  impl_->close();
  error err;
  auto& net = impl_->io.provider->getNetwork();
  auto stream = impl_->run(net.parseAddress(host_port).then(
                             [](kj::Own<kj::NetworkAddress> a) { return a->connect(); }),
                           &err);
  if (err)
    return err;
  KJ_IF_MAYBE(s, stream) {
    impl_->stream = kj::heap<batched_stream>(kj::mv(*s));
    impl_->rpc = kj::heap<capnp::TwoPartyClient>(*impl_->stream);
    impl_->gateway = impl_->rpc->bootstrap().castAs<wire::Gateway>();
    impl_->broken = false;
    auto* im = impl_.get();
    impl_->disconnect_watch = impl_->rpc->onDisconnect()
                                .then([im]() { im->on_broken(); },
                                      [im](kj::Exception&&) { im->on_broken(); })
                                .eagerlyEvaluate(nullptr);
  }
  return {};
}

error client::create_account(const std::string& user, const std::string& password) {
  KJ_IF_MAYBE(g, impl_->gateway) {
    auto req = g->createAccountRequest();
    req.setUser(user);
    req.setPassword(password);
    return impl_->call(req, [](auto&) {});
  }
  return {error_code::disconnected, "not connected"};
}

error client::login(const std::string& user, const std::string& password,
                    const std::string& device, session_info* out,
                    const std::string& resume_token) {
  KJ_IF_MAYBE(g, impl_->gateway) {
    auto req = g->loginRequest();
    req.setUser(user);
    req.setPassword(password);
    req.setDeviceId(device);
    req.setReceiver(kj::heap<impl::receiver>(*impl_));
    if (!resume_token.empty())
      req.setResumeToken(as_data(resume_token));
    return impl_->call(req, [&](auto& r) {
      impl_->session = r.getSession();
      impl_->heartbeat = std::chrono::milliseconds(r.getHeartbeatMs());
      auto token = r.getResumeToken();
      impl_->resume_token.assign(token.asChars().begin(), token.size());
      if (out)
        *out = session_info{r.getEpoch(), r.getMaxSeq(), r.getCursor()};
    });
  }
  return {error_code::disconnected, "not connected"};
}

const std::string& client::resume_token() const {
  return impl_->resume_token;
}

error client::send(uint64_t client_msg_id, const std::string& to, const std::string& body,
                   send_result* out) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->sendRequest();
    req.setClientMsgId(client_msg_id);
    req.setTo(to);
    req.setBody(as_data(body));
    return impl_->call(req, [&](auto& r) {
      if (out)
        *out = send_result{r.getSeq(), r.getServerTime()};
      if (r.hasNotice()) // the send's own copy: delivered like a push
        impl_->pushed(r.getNotice());
    });
  }
  return {error_code::not_logged_in, "log in first"};
}

error client::sync(uint32_t epoch, uint32_t after_seq, uint32_t limit, sync_result* out) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->syncRequest();
    req.setEpoch(epoch);
    req.setAfterSeq(after_seq);
    req.setLimit(limit);
    return impl_->call(req, [&](auto& r) {
      out->epoch = r.getEpoch();
      out->max_seq = r.getMaxSeq();
      out->expired = r.getExpired();
      out->entries.clear();
      for (auto e : r.getEntries())
        out->entries.push_back(read_entry(e));
    });
  }
  return {error_code::not_logged_in, "log in first"};
}

error client::ack(uint32_t epoch, uint32_t seq) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->ackRequest();
    req.setEpoch(epoch);
    req.setSeq(seq);
    return impl_->call(req, [](auto&) {});
  }
  return {error_code::not_logged_in, "log in first"};
}

error client::block(const std::string& user) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->blockRequest();
    req.setUser(user);
    return impl_->call(req, [](auto&) {});
  }
  return {error_code::not_logged_in, "log in first"};
}

error client::unblock(const std::string& user) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->unblockRequest();
    req.setUser(user);
    return impl_->call(req, [](auto&) {});
  }
  return {error_code::not_logged_in, "log in first"};
}

error client::list_blocked(std::vector<std::string>* out) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->listBlockedRequest();
    return impl_->call(req, [&](auto& r) {
      out->clear();
      for (auto u : r.getUsers())
        out->push_back(to_string(u));
    });
  }
  return {error_code::not_logged_in, "log in first"};
}

error client::set_push_token(const std::string& platform, const std::string& token) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->setPushTokenRequest();
    req.setPlatform(platform);
    req.setToken(token);
    return impl_->call(req, [](auto&) {});
  }
  return {error_code::not_logged_in, "log in first"};
}

namespace {

/// Sends a request whose results carry nothing but the error.
template <class Impl, class MakeRequest>
error simple_call(Impl& im, MakeRequest&& make) {
  KJ_IF_MAYBE(s, im.session) {
    auto req = make(*s);
    return im.call(req, [](auto&) {});
  }
  return {error_code::not_logged_in, "log in first"};
}

} // namespace

error client::create_group(const std::string& group) {
  return simple_call(*impl_, [&](auto& s) {
    auto req = s.createGroupRequest();
    req.setGroup(group);
    return req;
  });
}

error client::add_member(const std::string& group, const std::string& user) {
  return simple_call(*impl_, [&](auto& s) {
    auto req = s.addMemberRequest();
    req.setGroup(group);
    req.setUser(user);
    return req;
  });
}

error client::remove_member(const std::string& group, const std::string& user) {
  return simple_call(*impl_, [&](auto& s) {
    auto req = s.removeMemberRequest();
    req.setGroup(group);
    req.setUser(user);
    return req;
  });
}

error client::leave_group(const std::string& group) {
  return simple_call(*impl_, [&](auto& s) {
    auto req = s.leaveGroupRequest();
    req.setGroup(group);
    return req;
  });
}

error client::set_admin(const std::string& group, const std::string& user, bool admin) {
  return simple_call(*impl_, [&](auto& s) {
    auto req = s.setAdminRequest();
    req.setGroup(group);
    req.setUser(user);
    req.setAdmin(admin);
    return req;
  });
}

error client::list_members(const std::string& group, std::vector<group_member>* out) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->listMembersRequest();
    req.setGroup(group);
    return impl_->call(req, [&](auto& r) {
      out->clear();
      for (auto m : r.getMembers())
        out->push_back(group_member{to_string(m.getUser()), static_cast<group_role>(m.getRole())});
    });
  }
  return {error_code::not_logged_in, "log in first"};
}

error client::list_groups(std::vector<std::string>* out) {
  KJ_IF_MAYBE(s, impl_->session) {
    auto req = s->listGroupsRequest();
    return impl_->call(req, [&](auto& r) {
      out->clear();
      for (auto g : r.getGroups())
        out->push_back(to_string(g));
    });
  }
  return {error_code::not_logged_in, "log in first"};
}

bool client::wait_push(std::chrono::milliseconds timeout, notice* out) {
  auto& im = *impl_;
  if (im.pushes.empty() && !im.broken) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    im.push_waiter = kj::mv(paf.fulfiller);
    auto timed = im.io.provider->getTimer()
                   .afterDelay(timeout.count() * kj::MILLISECONDS)
                   .then([]() { return false; })
                   .exclusiveJoin(paf.promise.then([]() { return true; }));
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { timed.wait(im.io.waitScope); })) {
      (void) e;
    }
    im.push_waiter = nullptr;
  }
  if (im.pushes.empty())
    return false;
  *out = std::move(im.pushes.front());
  im.pushes.pop_front();
  return true;
}

void client::pump(std::chrono::milliseconds duration) {
  auto& io = impl_->io;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    io.provider->getTimer().afterDelay(duration.count() * kj::MILLISECONDS).wait(io.waitScope);
  })) {
    (void) e;
  }
}

std::chrono::milliseconds client::heartbeat_interval() const {
  return impl_->heartbeat;
}

std::chrono::steady_clock::time_point client::last_heard() const {
  return impl_->last_heard;
}

bool client::connected() const {
  return !impl_->broken;
}

void client::disconnect() {
  impl_->close();
}

} // namespace missive::protocol

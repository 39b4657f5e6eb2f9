#include "missive/protocol/gateway.hpp"

// GCC 12 reports caf::expected<T> inside KJ's ExceptionOr<T> (XThreadFulfiller::fulfill) as
// "maybe uninitialized" depending on inlining; it is constructed before use (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <memory>
#include <mutex>
#include <optional>
#include <future>
#include <unordered_map>
#include <thread>
#include <unistd.h>
#include <vector>

#include <caf/all.hpp>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include "convert.hpp"
#include "rpc_network.hpp"
#include "socket_stream.hpp"
#include "missive/actors/push_queue.hpp"

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

/// Fills the `entries` list of a notify request, a Notice or a sync's results.
template <class Builder>
void write_entries(Builder&& out, const std::vector<storage::entry>& entries) {
  auto list = out.initEntries(entries.size());
  for (size_t i = 0; i < entries.size(); ++i)
    write_entry(list[i], entries[i]);
}

/// Fills a notify request or a Notice (the same fields).
template <class Builder>
void write_notice(Builder&& out, const notice& n) {
  out.setEpoch(n.epoch);
  out.setAfterSeq(n.after_seq);
  out.setMaxSeq(n.max_seq);
  out.setComplete(n.complete);
  write_entries(out, n.entries);
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

/// Lets a session close the connection it came on (a device that went silent). Shared by the
/// connection's gateway and sessions; only used on the gateway's thread. A connection gone
/// already is not found: nothing to do.
class connection_control final : public kj::Refcounted {
public:
  connection_control(rpc_network& network, uint64_t id) : network_(network), id_(id) {}
  kj::Own<connection_control> add_ref() { return kj::addRef(*this); }
  void close() {
    KJ_IF_MAYBE(c, network_.find(id_)) {
      c->close();
    }
  }

private:
  rpc_network& network_;
  uint64_t id_;
};

/// Work handed to a gateway thread from other threads (the user actors' notices): queued under
/// a mutex, run on the thread's event loop in the order posted. One cross-thread wake-up per
/// batch, and an idle session holds nothing here.
class thread_inbox {
public:
  /// From any thread. Dropped once the gateway thread stops.
  void post(std::function<void()> fn) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (stopped_)
      return;
    items_.push_back(std::move(fn));
    if (waker_) {
      waker_->fulfill();
      waker_ = nullptr;
    }
  }

  /// On the gateway thread: runs what is posted, for as long as the promise lives.
  kj::Promise<void> run() {
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (items_.empty()) {
        auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
        current_ = kj::mv(paf.fulfiller);
        waker_ = current_.get();
        return paf.promise.then([this]() { return run(); });
      }
      batch.swap(items_);
    }
    // The next batch waits until the loop has nothing else to run. Registered before this
    // batch runs, so that the writes it gathers (batched_stream, also kj::evalLast, which runs
    // the latest registered first) go out before the next batch starts.
    auto next = kj::evalLast([]() {}).eagerlyEvaluate(nullptr);
    for (auto& fn : batch)
      fn();
    return next.then([this]() { return run(); });
  }

  /// On the gateway thread, before its event loop goes: nothing posted from now on runs.
  void stop() {
    std::vector<std::function<void()>> dropped;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      stopped_ = true;
      waker_ = nullptr;
      dropped.swap(items_);
    }
    current_ = nullptr;
  }

private:
  std::mutex mutex_;
  std::vector<std::function<void()>> items_;                  // guarded by mutex_
  const kj::CrossThreadPromiseFulfiller<void>* waker_ = nullptr; // guarded by mutex_
  bool stopped_ = false;                                      // guarded by mutex_
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> current_;    // gateway thread only
};

class session_impl;

/// The sessions of one gateway thread by id, so that notices posted from other threads find
/// theirs (or nothing, once it is gone). Gateway thread only, except `inbox`.
struct session_registry {
  std::shared_ptr<thread_inbox> inbox = std::make_shared<thread_inbox>();
  std::unordered_map<uint64_t, session_impl*> sessions;
  uint64_t next_id = 1;

  void deliver(uint64_t id, notice n);
  void close(uint64_t id, caf::error why);
  void answer(uint64_t id, uint64_t call, caf::expected<send_result> r);
};

/// The answer to a session's send, posted to the session's gateway thread through its inbox
/// rather than by a cross-thread promise of its own: it travels behind the notice of the
/// send's own copy (which the user actor hands over first), and the two share a wake-up.
/// Dropped unanswered (the user actor gone), it posts `unavailable` instead.
reply_to<send_result> inbox_reply(session_registry* registry, uint64_t session, uint64_t call) {
  struct pending {
    std::shared_ptr<thread_inbox> inbox;
    session_registry* registry;
    uint64_t session;
    uint64_t call;
    std::atomic<bool> answered{false};

    void post(caf::expected<send_result> r) {
      inbox->post([reg = registry, s = session, c = call, r = std::move(r)]() mutable {
        reg->answer(s, c, std::move(r));
      });
    }
    ~pending() {
      if (!answered.load())
        post(caf::make_error(errc::unavailable, "the user's actor stopped; log in again"));
    }
  };
  auto p = std::make_shared<pending>();
  p->inbox = registry->inbox;
  p->registry = registry;
  p->session = session;
  p->call = call;
  return reply_to<send_result>{std::make_shared<std::function<void(caf::expected<send_result>)>>(
    [p](caf::expected<send_result> r) {
      if (!p->answered.exchange(true))
        p->post(std::move(r));
    })};
}

/// A device's push_sink: posts to its gateway thread, where the session takes it.
class session_sink final : public push_sink {
public:
  session_sink(std::shared_ptr<thread_inbox> inbox, session_registry* registry, uint64_t id)
    : inbox_(std::move(inbox)), registry_(registry), id_(id) {}

  void push(notice n) override {
    inbox_->post([r = registry_, id = id_, n = std::move(n)]() mutable {
      r->deliver(id, std::move(n));
    });
  }

  void close(caf::error why) override {
    inbox_->post([r = registry_, id = id_, why = std::move(why)]() { r->close(id, why); });
  }

private:
  std::shared_ptr<thread_inbox> inbox_;
  session_registry* registry_; // lives as long as the gateway thread, after which nothing runs
  uint64_t id_;
};

/// What every session of the gateway needs from it.
struct session_env {
  kj::Timer& timer;
  kj::Duration heartbeat;
  kj::Duration push_timeout;
  session_registry* registry;
  caf::actor_system* sys;
  const node* refs; // the gateway thread's copy
};

/// One device's session, on the gateway's KJ thread. Created when the device starts logging in
/// (notices may come before the login's answer), owned by the login call until then and by the
/// client's capability table after: destroyed when the client drops the Session or the
/// connection, which detaches the device.
class session_impl final : public wire::Session::Server, private kj::TaskSet::ErrorHandler {
public:
  session_impl(uint64_t id, wire::PushReceiver::Client receiver, session_env env,
               kj::Own<connection_control> control, std::string user, std::string device)
    : id_(id),
      receiver_(kj::mv(receiver)),
      env_(std::move(env)),
      control_(kj::mv(control)),
      sink_(std::make_shared<session_sink>(env_.registry->inbox, env_.registry, id_)),
      user_(user),
      device_(device),
      queue_(std::move(user), *env_.refs->config),
      last_heard_(env_.timer.now()),
      tasks_(*this) {
    env_.registry->sessions.emplace(id_, this);
  }

  ~session_impl() noexcept(false) {
    env_.registry->sessions.erase(id_);
    // Marked first: a login still under way detaches it when its attach completes, and the
    // user actor drops an ended sink whenever it looks, should the detach below not be sent.
    sink_->end();
    if (owner_)
      caf::anon_send(owner_, detach_atom::value, device_, push_sink_ptr{sink_});
  }

  /// Where the user actor hands this device's notices.
  push_sink_ptr sink() const { return sink_; }

  /// The login was answered: notifies may go from now on, and sends go straight to `owner`.
  void ready(user_actor owner) {
    owner_ = std::move(owner);
    ready_ = true;
    push_next();
  }

  /// A send's answer, from the inbox (see inbox_reply).
  void answer(uint64_t call, caf::expected<send_result> r) {
    if (auto it = sends_.find(call); it != sends_.end()) {
      auto fulfiller = kj::mv(it->second);
      sends_.erase(it);
      fulfiller->fulfill(std::move(r)); // a no-op if the call was cancelled meanwhile
    }
  }

  /// The mailbox grew.
  void deliver(notice n) {
    queue_.add(std::move(n));
    push_next();
  }

  /// The session is over (replaced, or the user's actor gone): calls fail with `why`.
  void close(caf::error why) { closed_ = std::move(why); }

  /// From the thread's sweep (one timer per thread, not one per session or per call):
  /// - a device that has not answered a notify or a heartbeat within the push timeout is gone:
  ///   its connection closes, so that it counts as offline;
  /// - a heartbeat call goes if the connection has been quiet for a heartbeat interval.
  void check(kj::TimePoint now) {
    KJ_IF_MAYBE(since, notify_sent_) {
      if (now - *since >= env_.push_timeout)
        return dead("notify not confirmed", nullptr);
    }
    KJ_IF_MAYBE(since, heartbeat_sent_) {
      if (now - *since >= env_.push_timeout)
        return dead("no answer to heartbeat", nullptr);
      return;
    }
    if (!ready_ || now - last_heard_ < env_.heartbeat)
      return;
    heartbeat_sent_ = now;
    tasks_.add(receiver_.heartbeatRequest().send().ignoreResult().then(
      [this]() {
        last_heard_ = env_.timer.now();
        heartbeat_sent_ = nullptr;
      },
      [this](kj::Exception&& e) { dead("no answer to heartbeat", &e); }));
    answered_notify_ = nullptr; // its Finish rides with this call
  }

protected:
  kj::Promise<void> send(SendContext ctx) override {
    last_heard_ = env_.timer.now();
    if (closed_) {
      write_error(ctx.getResults().initError(), closed_);
      return kj::READY_NOW;
    }
    auto p = ctx.getParams();
    auto id = p.getClientMsgId();
    auto bytes = static_cast<uint32_t>(std::min<uint64_t>(p.totalSize().wordCount * 8, UINT32_MAX));
    queue_.sending(id);
    auto call = next_call_++;
    auto paf = kj::newPromiseAndFulfiller<caf::expected<send_result>>();
    sends_.emplace(call, kj::mv(paf.fulfiller));
    // Straight to the user actor; the answer comes back through the thread's inbox.
    caf::anon_send(owner_, send_atom::value,
                   outgoing{id, to_string(p.getTo()), to_string(p.getBody()), bytes},
                   inbox_reply(env_.registry, id_, call));
    return paf.promise.then(
      [this, ctx, id](caf::expected<send_result> r) mutable {
        auto results = ctx.getResults();
        if (!r) {
          queue_.answered(id, false);
          write_error(results.initError(), r.error());
          return push_next();
        }
        results.setSeq(r->seq);
        results.setServerTime(r->server_time_ms);
        // What is pending (at least this send's own copy) rides on the answer.
        if (auto n = queue_.answered(id, true))
          write_notice(results.initNotice(), *n);
      },
      [this, ctx, id](kj::Exception&& e) mutable {
        // Not expected (the answer is a value, an error included); answered like a lost one.
        queue_.answered(id, false);
        write_error(ctx.getResults().initError(), errc::unavailable, e.getDescription().cStr());
        push_next();
      });
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
        write_entries(results, r.entries);
      },
      sync_atom::value, p.getEpoch(), p.getAfterSeq(), p.getLimit());
  }

  kj::Promise<void> ack(AckContext ctx) override {
    auto p = ctx.getParams();
    return forward<caf::unit_t>(
      ctx, [](auto, caf::unit_t) {}, ack_atom::value, p.getEpoch(), p.getSeq());
  }

private:
  /// Sends `xs…` plus a reply_to<T> to a helper that makes the call for this device
  /// (`device_call_actor`); `fill` writes a success into the call's results, an error becomes
  /// the results' typed Error.
  template <class T, class Context, class Fill, class... Ts>
  kj::Promise<void> forward(Context ctx, Fill fill, Ts&&... xs) {
    last_heard_ = env_.timer.now();
    if (closed_) {
      write_error(ctx.getResults().initError(), closed_);
      return kj::READY_NOW;
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<T>>();
    auto helper = spawn_device_call(*env_.sys, device_context{*env_.refs, user_, device_, owner_});
    caf::anon_send(helper, std::forward<Ts>(xs)..., make_reply<T>(kj::mv(paf.fulfiller)));
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

  /// Sends the next notify if one may go (push_queue: at most one in flight, later notices
  /// merged into the next).
  void push_next() {
    if (!ready_ || closed_)
      return;
    auto n = queue_.next();
    if (!n)
      return;
    auto req = receiver_.notifyRequest();
    write_notice(req, *n);
    // A device that does not confirm in time is gone (see check). A cursor in the answer is
    // recorded like an ack (fire and forget: a refused one, e.g. of an old epoch, changes
    // nothing).
    notify_sent_ = env_.timer.now();
    tasks_.add(req.send().then(
      [this, epoch = n->epoch](capnp::Response<wire::PushReceiver::NotifyResults>&& r) {
        last_heard_ = env_.timer.now();
        notify_sent_ = nullptr;
        queue_.confirmed();
        auto cursor = r.getCursor();
        if (cursor > reported_cursor_ || epoch != reported_epoch_) {
          reported_cursor_ = cursor;
          reported_epoch_ = epoch;
          if (cursor > 0)
            caf::anon_send(owner_, ack_atom::value, device_, epoch, cursor);
        }
        answered_notify_ = kj::heap(kj::mv(r));
        push_next();
      },
      [this](kj::Exception&& e) { dead("notify not confirmed", &e); }));
    answered_notify_ = nullptr; // its Finish rides with this call
  }

  /// Closes the connection (once), saying why unless the device simply hung up (`e` is the
  /// failed call's exception; none for a call that timed out).
  void dead(const char* why, const kj::Exception* e) {
    if (dead_)
      return;
    dead_ = true;
    if (e == nullptr)
      std::cerr << "missive-server: closing the connection of " << user_ << "/" << device_
                << ": " << why << " (no answer within the push timeout)" << std::endl;
    else if (e->getType() != kj::Exception::Type::DISCONNECTED)
      std::cerr << "missive-server: closing the connection of " << user_ << "/" << device_
                << ": " << why << " (" << e->getDescription().cStr() << ")" << std::endl;
    control_->close();
  }

  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(WARNING, "push task failed", e);
  }

  uint64_t id_;
  user_actor owner_;
  wire::PushReceiver::Client receiver_;
  session_env env_;
  kj::Own<connection_control> control_;
  std::shared_ptr<session_sink> sink_;
  std::string user_;
  std::string device_;
  push_queue queue_;
  /// The last notify's answer, kept: dropping it sends the Finish that tells the device's RPC
  /// system the call is over, and a Finish of its own would cost both sides a write, a read
  /// and often a wake-up. It goes with the next call to the device (a notify or a heartbeat).
  kj::Own<capnp::Response<wire::PushReceiver::NotifyResults>> answered_notify_; // or null
  std::unordered_map<uint64_t, kj::Own<kj::PromiseFulfiller<caf::expected<send_result>>>> sends_;
  uint64_t next_call_ = 0;
  kj::TimePoint last_heard_;
  kj::Maybe<kj::TimePoint> notify_sent_;    // the notify in flight was sent then
  kj::Maybe<kj::TimePoint> heartbeat_sent_; // the heartbeat in flight was sent then
  bool ready_ = false;
  bool dead_ = false;
  uint32_t reported_epoch_ = 0;  // the cursor the device last reported in a notify's answer
  uint32_t reported_cursor_ = 0;
  caf::error closed_;
  kj::TaskSet tasks_;
};

void session_registry::deliver(uint64_t id, notice n) {
  if (auto it = sessions.find(id); it != sessions.end())
    it->second->deliver(std::move(n));
}

void session_registry::close(uint64_t id, caf::error why) {
  if (auto it = sessions.find(id); it != sessions.end())
    it->second->close(std::move(why));
}

void session_registry::answer(uint64_t id, uint64_t call, caf::expected<send_result> r) {
  if (auto it = sessions.find(id); it != sessions.end())
    it->second->answer(call, std::move(r));
}

class gateway_impl final : public wire::Gateway::Server {
public:
  gateway_impl(session_env env, kj::Own<connection_control> control)
    : env_(env), control_(kj::mv(control)) {}

protected:
  kj::Promise<void> createAccount(CreateAccountContext ctx) override {
    auto params = ctx.getParams();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<ok_atom>>();
    auto reply = make_reply<ok_atom>(kj::mv(paf.fulfiller));
    // The accounts actor answers a request; relay it into the KJ promise.
    auto user = to_string(params.getUser());
    auto password = to_string(params.getPassword());
    env_.sys->spawn([accounts = env_.refs->accounts, user, password,
                     reply](caf::event_based_actor* self) {
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
    auto user = to_string(params.getUser());
    auto id = env_.registry->next_id++;
    // The session exists from here on, so that no notice is lost before the login's answer; if
    // the client goes away first, dropping it detaches the device.
    auto session = kj::heap<session_impl>(id, params.getReceiver(), env_, control_->add_ref(),
                                          user, device);
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<login_ok>>();
    missive::login(*env_.sys, *env_.refs, user, to_string(params.getPassword()), device, session->sink(),
                   make_reply<login_ok>(kj::mv(paf.fulfiller)));
    return paf.promise.then([this, ctx, session = kj::mv(session)](
                              caf::expected<login_ok> r) mutable {
      auto results = ctx.getResults();
      if (!r)
        return write_error(results.initError(), r.error());
      session->ready(r->owner);
      results.setSession(kj::mv(session));
      results.setEpoch(r->epoch);
      results.setMaxSeq(r->max_seq);
      results.setCursor(r->cursor);
      results.setHeartbeatMs(static_cast<uint32_t>(env_.heartbeat / kj::MILLISECONDS));
    });
  }

private:
  session_env env_;
  kj::Own<connection_control> control_;
};

/// The connections of one gateway thread: one RPC system for all of them (rpc_network), each
/// with its own Gateway, living on this thread's event loop until the peer disconnects or a
/// session closes it.
class connection_host final : private kj::TaskSet::ErrorHandler,
                              private capnp::BootstrapFactory<wire::ConnectionId> {
public:
  connection_host(caf::actor_system& sys, const node& n, const gateway_options& opts,
                  kj::AsyncIoContext& io)
    : sys_(sys),
      node_(n),
      opts_(opts),
      port_(io.unixEventPort),
      timer_(io.provider->getTimer()),
      network_(reader_options(opts), timer_, opts.push_timeout.count() * kj::MILLISECONDS),
      rpc_(capnp::makeRpcServer(network_,
                                static_cast<capnp::BootstrapFactory<wire::ConnectionId>&>(*this))),
      tasks_(*this) {
    tasks_.add(registry_.inbox->run());
    tasks_.add(sweep());
  }

  ~connection_host() noexcept {
    // Notices posted from now on are dropped; the connections close with the RPC system.
    registry_.inbox->stop();
  }

  /// A new client connection on `fd` (owned), a connected non-blocking socket.
  void adopt(int fd) {
    auto stream = kj::heap<socket_stream>(port_, fd);
    stream->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    network_.adopt(kj::mv(stream)); // under a batched_stream
  }

private:
  /// Every quarter of the shorter of heartbeat interval and push timeout, each session checks
  /// its calls and its quiet time (session_impl::check): a quiet device hears a heartbeat
  /// between 1 and 1.25 intervals after it was last heard, and a device that does not answer
  /// is dropped between 1 and 1.25 push timeouts after the call. One timer for the thread
  /// instead of one for every notify: a timer per call cost the gateway thread 2–3% of its
  /// time at 5,000 msg/s.
  kj::Promise<void> sweep() {
    auto shorter = std::min(opts_.heartbeat_interval, opts_.push_timeout);
    auto period = std::max<int64_t>(1, shorter.count() / 4) * kj::MILLISECONDS;
    return timer_.afterDelay(period).then([this]() {
      auto now = timer_.now();
      for (auto& [id, session] : registry_.sessions)
        session->check(now);
      return sweep();
    });
  }

  /// A client bootstraps: its own Gateway, so that its sessions can close its connection.
  capnp::Capability::Client createFor(wire::ConnectionId::Reader connection) override {
    session_env env{timer_,
                    opts_.heartbeat_interval.count() * kj::MILLISECONDS,
                    opts_.push_timeout.count() * kj::MILLISECONDS,
                    &registry_,
                    &sys_,
                    &node_};
    return wire::Gateway::Client(kj::heap<gateway_impl>(
      env, kj::refcounted<connection_control>(network_, connection.getId())));
  }

  static capnp::ReaderOptions reader_options(const gateway_options& opts) {
    capnp::ReaderOptions r;
    r.traversalLimitInWords = opts.max_message_bytes / sizeof(capnp::word);
    r.nestingLimit = 16;
    return r;
  }

  void taskFailed(kj::Exception&& e) override {
    KJ_LOG(ERROR, "gateway thread task failed", e);
  }

  static constexpr int one = 1;
  caf::actor_system& sys_;
  node node_;
  gateway_options opts_;
  kj::UnixEventPort& port_;
  kj::Timer& timer_;
  session_registry registry_; // before the RPC system: its sessions unregister as they go
  rpc_network network_;       // before the RPC system, which holds its connections
  capnp::RpcSystem<wire::ConnectionId> rpc_;
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
      connection_host host(sys, n, opts, io);
      auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
      stop_ = kj::mv(stop.fulfiller);
      executor_ = &kj::getCurrentThreadExecutor();
      host_ = &host;
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
    return executor_->executeAsync([this, fd] { host_->adopt(fd); });
  }

private:
  std::thread thread_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_;
  const kj::Executor* executor_ = nullptr;
  connection_host* host_ = nullptr;
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
      // The connection's thread serves a copy of the socket as a socket_stream; `stream`
      // closes the original.
      int fd = -1;
      KJ_IF_MAYBE(raw, stream->getFd()) {
        fd = ::dup(*raw);
      }
      if (fd < 0) {
        KJ_LOG(WARNING, "a new connection is dropped: no copy of its socket", strerror(errno));
        return run();
      }
      auto turn = next_++ % (workers_.size() + 1);
      if (turn == 0)
        local_.adopt(fd);
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
    connection_host local(sys, n, opts, io);
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

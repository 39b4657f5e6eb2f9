#include "missive/protocol/gateway.hpp"

// GCC 12 reports caf::expected<T> inside KJ's ExceptionOr<T> (XThreadFulfiller::fulfill) as
// "maybe uninitialized" depending on inlining; it is constructed before use (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <map>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <memory>
#include <mutex>
#include <optional>
#include <future>
#include <unordered_map>
#include <unordered_set>
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

class direct_calls;

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

  /// The connection's direct calls, unless it is gone (or has none: direct-calls = off).
  kj::Maybe<direct_calls&> direct();

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

  /// Direct sends whose session went before their answer came (session id, call): answered
  /// all the same, as the RPC system answers a call that outlives its capability's last
  /// reference.
  struct orphan {
    kj::Own<connection_control> control;
    uint32_t question;
  };
  std::map<std::pair<uint64_t, uint64_t>, orphan> orphans;

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

/// A connection's sends and notifies, read and written here rather than by Cap'n Proto's RPC
/// system (the wire protocol is the same: `capnp/rpc.capnp`'s Call, Return and Finish). The RPC
/// system's tables, promises and dispatch cost the gateway thread about as much per message as
/// everything else together; what is left here is a lookup and the message itself.
///
/// - A session becomes direct when its login's answer goes out: that answer names the export id
///   the device will call it by, and the login's call named the import id of its receiver.
/// - A send on such a session (Call, method 0 of Session, on its export id) is taken here, and
///   answered with a Return; the device's Finish for it is taken too.
/// - A notify to its receiver is a Call with a question id from this connection's own range
///   (from 2^31 up, far above the RPC system's, which counts from 0), its Return taken here.
///   Its Finish waits for the session's next call to the device, as the RPC system's does.
/// - Everything else goes to the RPC system, as does a session call that came pipelined on an
///   answer not yet returned: from then on the connection's sends all go that way, in order.
class direct_calls final : public rpc_interceptor {
public:
  direct_calls(rpc_connection& connection, session_registry& registry)
    : connection_(connection), registry_(registry) {}

  bool take(capnp::rpc::Message::Reader message) override;
  void sending(capnp::rpc::Message::Reader message) override;

  /// A login of `user`/`device` on this connection succeeded with session `session`: it goes
  /// direct once its answer is sent.
  void logged_in(const std::string& user, const std::string& device, uint64_t session);

  /// The session is gone: calls to `export_id` (if it had one) go to the RPC system again.
  void forget(session_impl* gone, uint64_t session, kj::Maybe<uint32_t> export_id);

  /// Calls `receiver`'s notify with `n` for `session`; returns the call's question id.
  uint32_t notify(uint64_t session, uint32_t receiver, const notice& n);

  /// Ends a notify whose answer has been read (its question id is free again).
  void finish(uint32_t question);

  /// An empty Return for `question`: its results (to be filled), or an exception.
  capnp::rpc::Payload::Builder answer(kj::Own<capnp::OutgoingRpcMessage>& message,
                                      uint32_t question);
  void fail(uint32_t question, kj::StringPtr why);

private:
  static constexpr uint32_t first_question = 1u << 31;
  struct login {
    std::string who; // user, NUL, device
    kj::Maybe<uint32_t> receiver;
  };

  rpc_connection& connection_;
  session_registry& registry_;
  bool pipelined_ = false;                        // a session call came on a promised answer
  // Export id -> its session (which takes itself out before it goes: forget).
  std::unordered_map<uint32_t, session_impl*> exports_;
  std::unordered_set<uint32_t> answering_;        // direct sends' question ids, until Finish
  std::unordered_map<uint32_t, login> logins_;    // login calls not answered yet
  std::unordered_multimap<std::string, uint64_t> awaiting_; // logged in, answer not sent
  struct asked {
    uint64_t session = 0; // 0: free
    bool answered = false;
  };
  std::vector<asked> asked_; // by notify question - first_question
  std::vector<uint32_t> free_;
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
    KJ_IF_MAYBE(d, control_->direct()) {
      d->forget(this, id_, export_);
      // Answered when the user actor answers (session_registry::answer).
      for (auto& [call, pending] : sends_)
        if (pending.fulfiller.get() == nullptr)
          env_.registry->orphans.emplace(
            std::make_pair(id_, call),
            session_registry::orphan{control_->add_ref(), pending.question});
      KJ_IF_MAYBE(q, owed_finish_) {
        d->finish(*q);
      }
    }
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

  /// The login's answer went out naming `export_id` for this session: from now on the
  /// connection's direct_calls take its sends and, if the device's receiver is known
  /// (`receiver`, an import id), make its notifies.
  void go_direct(uint32_t export_id, kj::Maybe<uint32_t> receiver) {
    export_ = export_id;
    direct_receiver_ = receiver;
  }

  /// A send taken by direct_calls: answered with a Return for `question` (the same results as
  /// through the RPC system), when its answer comes (`answer`); no promise per send.
  void send_direct(uint32_t question, capnp::AnyPointer::Reader params);

  /// The answer to a direct notify (`question`): its cursor, or the device's exception.
  void notified(uint32_t question, kj::Maybe<uint32_t> cursor, kj::StringPtr failure);

  /// A send's answer, from the inbox (see inbox_reply).
  void answer(uint64_t call, caf::expected<send_result> r);

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
    finish_owed();
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
    struct through_rpc_system {
      SendContext ctx;
      wire::Session::SendResults::Builder results() { return ctx.getResults(); }
      void done() {}
    };
    through_rpc_system answer{ctx};
    KJ_IF_MAYBE(started, start_send(ctx.getParams(), answer)) {
      auto id = started->client_msg_id;
      auto paf = kj::newPromiseAndFulfiller<caf::expected<send_result>>();
      sends_.emplace(started->call, pending_send{id, kj::mv(paf.fulfiller), 0});
      return paf.promise.then(
        [this, answer, id](caf::expected<send_result> r) mutable { finish_send(answer, id, r); },
        [this, answer, id](kj::Exception&& e) mutable {
          // Not expected (the answer is a value, an error included); answered like a lost one.
          finish_send(answer, id, caf::make_error(errc::unavailable, e.getDescription().cStr()));
        });
    }
    return kj::READY_NOW;
  }

  /// A send handed to the user actor: its number in this session, and the device's id for it.
  struct started_send {
    uint64_t call;
    uint64_t client_msg_id;
  };

  /// A send, through the RPC system or direct: read whole, then straight to the user actor,
  /// whose answer comes back through the thread's inbox (`answer`). Nothing if the session is
  /// closed, and then `answer` is filled already (`answer.results()` gives the results to
  /// fill, `answer.done()` says they are filled).
  template <class Answer>
  kj::Maybe<started_send> start_send(wire::Session::SendParams::Reader p, Answer& answer) {
    last_heard_ = env_.timer.now();
    if (closed_) {
      write_error(answer.results().initError(), closed_);
      answer.done();
      return nullptr;
    }
    // Read whole before anything changes: a malformed message throws here, and then fails
    // this call alone with nothing left behind.
    auto id = p.getClientMsgId();
    auto bytes = static_cast<uint32_t>(std::min<uint64_t>(p.totalSize().wordCount * 8, UINT32_MAX));
    outgoing m{id, to_string(p.getTo()), to_string(p.getBody()), bytes};
    queue_.sending(id);
    auto call = next_call_++;
    caf::anon_send(owner_, send_atom::value, std::move(m), inbox_reply(env_.registry, id_, call));
    return started_send{call, id};
  }

  /// Fills `answer` with a send's outcome; what is pending for the device (at least this
  /// send's own copy) rides on a successful answer.
  template <class Answer>
  void finish_send(Answer& answer, uint64_t id, const caf::expected<send_result>& r) {
    auto results = answer.results();
    if (!r) {
      queue_.answered(id, false);
      write_error(results.initError(), r.error());
      answer.done();
      return push_next();
    }
    results.setSeq(r->seq);
    results.setServerTime(r->server_time_ms);
    if (auto n = queue_.answered(id, true))
      write_notice(results.initNotice(), *n);
    answer.done();
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
    notify_epoch_ = n->epoch;
    KJ_IF_MAYBE(receiver, direct_receiver_) {
      KJ_IF_MAYBE(d, control_->direct()) {
        finish_owed(*d); // in the same write as the call
        notify_sent_ = env_.timer.now();
        d->notify(id_, *receiver, *n);
        return;
      }
    }
    auto req = receiver_.notifyRequest();
    write_notice(req, *n);
    // A device that does not confirm in time is gone (see check).
    notify_sent_ = env_.timer.now();
    tasks_.add(req.send().then(
      [this](capnp::Response<wire::PushReceiver::NotifyResults>&& r) {
        auto cursor = r.getCursor();
        answered_notify_ = kj::heap(kj::mv(r));
        confirmed(cursor);
      },
      [this](kj::Exception&& e) { dead("notify not confirmed", &e); }));
    answered_notify_ = nullptr; // its Finish rides with this call
    finish_owed();
  }

  /// The device confirmed the notify in flight (of epoch notify_epoch_), reporting `cursor`.
  /// A cursor is recorded like an ack (fire and forget: a refused one, e.g. of an old epoch,
  /// changes nothing).
  void confirmed(uint32_t cursor) {
    last_heard_ = env_.timer.now();
    notify_sent_ = nullptr;
    queue_.confirmed();
    if (cursor > reported_cursor_ || notify_epoch_ != reported_epoch_) {
      reported_cursor_ = cursor;
      reported_epoch_ = notify_epoch_;
      if (cursor > 0)
        caf::anon_send(owner_, ack_atom::value, device_, notify_epoch_, cursor);
    }
    push_next();
  }

  /// The Finish of the last direct notify, held back to go with the next call to the device
  /// (see answered_notify_).
  void finish_owed() {
    if (owed_finish_ == nullptr)
      return;
    KJ_IF_MAYBE(d, control_->direct()) {
      return finish_owed(*d);
    }
    owed_finish_ = nullptr; // the connection is gone, and the question with it
  }
  void finish_owed(direct_calls& d) {
    KJ_IF_MAYBE(q, owed_finish_) {
      d.finish(*q);
      owed_finish_ = nullptr;
    }
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
  /// A send on its way through the user actor, by its number in this session.
  struct pending_send {
    uint64_t client_msg_id = 0;
    /// Through the RPC system: where its answer goes (a no-op once the call is cancelled).
    kj::Own<kj::PromiseFulfiller<caf::expected<send_result>>> fulfiller;
    /// Direct (no fulfiller): the question its Return answers.
    uint32_t question = 0;
  };
  std::unordered_map<uint64_t, pending_send> sends_;
  uint64_t next_call_ = 0;
  kj::TimePoint last_heard_;
  kj::Maybe<kj::TimePoint> notify_sent_;    // the notify in flight was sent then
  kj::Maybe<kj::TimePoint> heartbeat_sent_; // the heartbeat in flight was sent then
  bool ready_ = false;
  bool dead_ = false;
  uint32_t reported_epoch_ = 0;  // the cursor the device last reported in a notify's answer
  uint32_t reported_cursor_ = 0;
  uint32_t notify_epoch_ = 0;    // of the notify in flight
  kj::Maybe<uint32_t> export_;          // the session's export id, once direct (see go_direct)
  kj::Maybe<uint32_t> direct_receiver_; // the receiver's import id, if notifies go direct
  kj::Maybe<uint32_t> owed_finish_;     // the last direct notify's question, not finished yet
  struct direct_answer;
  kj::Own<capnp::OutgoingRpcMessage> reply_;  // a direct send's Return being filled
  kj::Own<capnp::MallocMessageBuilder> scratch_; // or the results of one with no connection
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
    return it->second->answer(call, std::move(r));
  auto o = orphans.find({id, call});
  if (o == orphans.end())
    return;
  auto orphan = kj::mv(o->second);
  orphans.erase(o);
  KJ_IF_MAYBE(d, orphan.control->direct()) {
    kj::Own<capnp::OutgoingRpcMessage> message;
    auto results = d->answer(message, orphan.question)
                     .getContent()
                     .initAs<wire::Session::SendResults>();
    if (r) {
      results.setSeq(r->seq);
      results.setServerTime(r->server_time_ms); // no notice: the session that would take it is gone
    } else {
      write_error(results.initError(), r.error());
    }
    message->send();
  }
}

kj::Maybe<direct_calls&> connection_control::direct() {
  KJ_IF_MAYBE(c, network_.find(id_)) {
    KJ_IF_MAYBE(i, c->interceptor()) {
      return static_cast<direct_calls&>(*i); // the only kind the gateway installs
    }
  }
  return nullptr;
}

/// Fills a Return of the connection's own (in the session's `reply_`, from results() to done(),
/// which follow each other at once); dropped if the connection is gone by then.
struct session_impl::direct_answer {
  session_impl* session;
  uint32_t question;

  wire::Session::SendResults::Builder results() {
    KJ_IF_MAYBE(d, session->control_->direct()) {
      return d->answer(session->reply_, question)
        .getContent()
        .initAs<wire::Session::SendResults>();
    }
    session->reply_ = nullptr;
    session->scratch_ = kj::heap<capnp::MallocMessageBuilder>(64);
    return session->scratch_->initRoot<wire::Session::SendResults>();
  }

  void done() {
    session->scratch_ = nullptr;
    if (auto reply = kj::mv(session->reply_); reply.get() != nullptr)
      reply->send();
  }
};

void session_impl::send_direct(uint32_t question, capnp::AnyPointer::Reader params) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto p = params.getAs<wire::Session::SendParams>();
    direct_answer answer{this, question};
    KJ_IF_MAYBE(started, start_send(p, answer)) {
      sends_.emplace(started->call, pending_send{started->client_msg_id, {}, question});
    }
  })) {
    // Params the RPC system would not have read either (a malformed message): its answer.
    KJ_IF_MAYBE(d, control_->direct()) {
      d->fail(question, e->getDescription());
    }
  }
}

void session_impl::answer(uint64_t call, caf::expected<send_result> r) {
  auto it = sends_.find(call);
  if (it == sends_.end())
    return;
  auto pending = kj::mv(it->second);
  sends_.erase(it);
  if (pending.fulfiller.get() != nullptr) {
    pending.fulfiller->fulfill(std::move(r)); // a no-op if the call was cancelled meanwhile
    return;
  }
  direct_answer answer{this, pending.question};
  finish_send(answer, pending.client_msg_id, r);
}

void session_impl::notified(uint32_t question, kj::Maybe<uint32_t> cursor,
                            kj::StringPtr failure) {
  KJ_IF_MAYBE(q, owed_finish_) { // two answers in a row (not expected): the first goes now
    if (*q != question)
      finish_owed();
  }
  owed_finish_ = question;
  KJ_IF_MAYBE(c, cursor) {
    return confirmed(*c);
  }
  kj::Exception e(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                  kj::str("the device refused it: ", failure));
  dead("notify not confirmed", &e);
}

bool direct_calls::take(capnp::rpc::Message::Reader message) {
  switch (message.which()) {
    case capnp::rpc::Message::CALL: {
      auto call = message.getCall();
      auto interface = call.getInterfaceId();
      if (interface == wire::Gateway::_capnpPrivate::typeId && call.getMethodId() == 1) {
        // A login: who it is, and the import id of the receiver it passes (its one capability).
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
          auto params = call.getParams();
          auto p = params.getContent().getAs<wire::Gateway::LoginParams>();
          login l{to_string(p.getUser()) + '\0' + to_string(p.getDeviceId()), nullptr};
          auto caps = params.getCapTable();
          if (caps.size() == 1 && caps[0].isSenderHosted())
            l.receiver = caps[0].getSenderHosted();
          logins_[call.getQuestionId()] = std::move(l);
        })) {
          (void)e; // the RPC system answers it (an unreadable login fails there)
        }
        return false;
      }
      if (interface != wire::Session::_capnpPrivate::typeId)
        return false;
      auto target = call.getTarget();
      if (!target.isImportedCap()) {
        pipelined_ = true;
        return false;
      }
      if (pipelined_ || call.getMethodId() != 0 || !call.getSendResultsTo().isCaller())
        return false;
      auto e = exports_.find(target.getImportedCap());
      if (e == exports_.end())
        return false;
      auto question = call.getQuestionId();
      if (!answering_.insert(question).second)
        KJ_FAIL_REQUIRE("a Call reuses a question id not finished", question);
      e->second->send_direct(question, call.getParams().getContent());
      return true;
    }
    case capnp::rpc::Message::FINISH:
      return answering_.erase(message.getFinish().getQuestionId()) > 0;
    case capnp::rpc::Message::RETURN: {
      auto ret = message.getReturn();
      auto question = ret.getAnswerId();
      if (question < first_question)
        return false;
      auto index = question - first_question;
      if (index >= asked_.size() || asked_[index].session == 0)
        return false; // the RPC system fails the connection: an answer to no question
      KJ_REQUIRE(!asked_[index].answered, "Duplicate Return.", question);
      asked_[index].answered = true;
      auto s = registry_.sessions.find(asked_[index].session);
      if (s == registry_.sessions.end()) { // the session went meanwhile
        finish(question);
        return true;
      }
      if (ret.isResults()) {
        auto results = ret.getResults().getContent().getAs<wire::PushReceiver::NotifyResults>();
        s->second->notified(question, results.getCursor(), nullptr);
      } else if (ret.isException()) {
        s->second->notified(question, nullptr, ret.getException().getReason());
      } else {
        s->second->notified(question, nullptr, "the notify was not answered");
      }
      return true;
    }
    case capnp::rpc::Message::RELEASE:
      exports_.erase(message.getRelease().getId()); // its calls go to the RPC system again
      return false;
    default:
      return false;
  }
}

void direct_calls::sending(capnp::rpc::Message::Reader message) {
  if (!message.isReturn() || logins_.empty())
    return;
  auto ret = message.getReturn();
  auto l = logins_.find(ret.getAnswerId());
  if (l == logins_.end())
    return;
  auto who = std::move(l->second);
  logins_.erase(l);
  if (!ret.isResults())
    return;
  auto caps = ret.getResults().getCapTable();
  if (caps.size() != 1 || !caps[0].isSenderHosted())
    return; // a failed login: no session
  auto [first, last] = awaiting_.equal_range(who.who);
  if (first == last)
    return;
  if (std::next(first) != last) {
    // The same device logging in twice at once on one connection: which answer names which
    // session is not known here, so both stay with the RPC system.
    awaiting_.erase(first, last);
    return;
  }
  auto id = first->second;
  awaiting_.erase(first);
  auto s = registry_.sessions.find(id);
  if (s == registry_.sessions.end())
    return;
  auto export_id = caps[0].getSenderHosted();
  exports_[export_id] = s->second;
  s->second->go_direct(export_id, who.receiver);
}

void direct_calls::logged_in(const std::string& user, const std::string& device,
                             uint64_t session) {
  awaiting_.emplace(user + '\0' + device, session);
}

void direct_calls::forget(session_impl* gone, uint64_t session, kj::Maybe<uint32_t> export_id) {
  KJ_IF_MAYBE(e, export_id) {
    auto it = exports_.find(*e);
    if (it != exports_.end() && it->second == gone)
      exports_.erase(it);
  }
  for (auto it = awaiting_.begin(); it != awaiting_.end();) {
    if (it->second == session)
      it = awaiting_.erase(it);
    else
      ++it;
  }
}

uint32_t direct_calls::notify(uint64_t session, uint32_t receiver, const notice& n) {
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
    asked_[index] = asked{session, false};
  } else {
    index = static_cast<uint32_t>(asked_.size());
    asked_.push_back(asked{session, false});
  }
  auto question = first_question + index;
  auto message = connection_.direct_message();
  auto call = message->getBody().initAs<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  call.initTarget().setImportedCap(receiver);
  call.setInterfaceId(wire::PushReceiver::_capnpPrivate::typeId);
  call.setMethodId(0);
  write_notice(call.initParams().getContent().initAs<wire::PushReceiver::NotifyParams>(), n);
  message->send();
  return question;
}

void direct_calls::finish(uint32_t question) {
  auto index = question - first_question;
  if (index >= asked_.size() || asked_[index].session == 0)
    return;
  asked_[index] = asked{};
  free_.push_back(index);
  auto message = connection_.direct_message(4);
  auto f = message->getBody().initAs<capnp::rpc::Message>().initFinish();
  f.setQuestionId(question);
  f.setReleaseResultCaps(false); // a notify's answer carries none
  message->send();
}

capnp::rpc::Payload::Builder direct_calls::answer(kj::Own<capnp::OutgoingRpcMessage>& message,
                                                  uint32_t question) {
  message = connection_.direct_message();
  auto ret = message->getBody().initAs<capnp::rpc::Message>().initReturn();
  ret.setAnswerId(question);
  ret.setReleaseParamCaps(false); // a send's params carry none
  return ret.initResults();
}

void direct_calls::fail(uint32_t question, kj::StringPtr why) {
  auto message = connection_.direct_message();
  auto ret = message->getBody().initAs<capnp::rpc::Message>().initReturn();
  ret.setAnswerId(question);
  ret.setReleaseParamCaps(false);
  auto e = ret.initException();
  e.setReason(why);
  e.setType(capnp::rpc::Exception::Type::FAILED);
  message->send();
}

class gateway_impl final : public wire::Gateway::Server {
public:
  gateway_impl(session_env env, kj::Own<connection_control> control)
    : env_(env), control_(kj::mv(control)) {}

protected:
  kj::Promise<void> createAccount(CreateAccountContext ctx) override {
    // As for login (below): a client that hangs up before the answer drops the call, which
    // ends its flag, and the accounts actor does not hash for nobody.
    ctx.allowCancellation();
    auto params = ctx.getParams();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<caf::expected<ok_atom>>();
    auto reply = make_reply<ok_atom>(kj::mv(paf.fulfiller));
    auto waiting = std::make_shared<hangup_flag>();
    // The accounts actor answers a request; relay it into the KJ promise.
    auto user = to_string(params.getUser());
    auto password = to_string(params.getPassword());
    env_.sys->spawn([accounts = env_.refs->accounts, user, password, reply,
                     caller = hangup_flag_ptr{waiting}](caf::event_based_actor* self) {
      self->request(accounts, caf::infinite, register_atom::value, user, password, caller)
        .then([reply](ok_atom x) { reply(x); }, [reply](caf::error& err) { reply(err); });
    });
    return paf.promise
      .then([ctx](caf::expected<ok_atom> r) mutable {
        if (!r)
          write_error(ctx.getResults().initError(), r.error());
      })
      .attach(kj::defer([waiting] { waiting->end(); }));
  }

  kj::Promise<void> login(LoginContext ctx) override {
    // A client that hangs up before the answer (its call timed out) drops the login, and with
    // it the session: its sink ends, so the accounts actor skips its password check instead of
    // hashing for nobody (actors/README). Cap'n Proto 0.9.2 finishes calls whose client is gone
    // unless they allow cancellation.
    ctx.allowCancellation();
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
    missive::login(*env_.sys, *env_.refs, user, to_string(params.getPassword()), device,
                   session->sink(), make_reply<login_ok>(kj::mv(paf.fulfiller)),
                   to_string(params.getResumeToken()));
    return paf.promise.then([this, ctx, id, user, device, session = kj::mv(session)](
                              caf::expected<login_ok> r) mutable {
      auto results = ctx.getResults();
      if (!r)
        return write_error(results.initError(), r.error());
      session->ready(r->owner);
      KJ_IF_MAYBE(d, control_->direct()) {
        d->logged_in(user, device, id);
      }
      results.setSession(kj::mv(session));
      results.setEpoch(r->epoch);
      results.setMaxSeq(r->max_seq);
      results.setCursor(r->cursor);
      results.setHeartbeatMs(static_cast<uint32_t>(env_.heartbeat / kj::MILLISECONDS));
      if (!r->resume_token.empty())
        results.setResumeToken(kj::arrayPtr(
          reinterpret_cast<const capnp::byte*>(r->resume_token.data()), r->resume_token.size()));
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
    auto& connection = network_.adopt(kj::mv(stream)); // under a batched_stream
    if (opts_.direct_calls)
      connection.intercept(kj::heap<direct_calls>(connection, registry_));
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

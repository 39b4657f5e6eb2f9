#pragma once

// Runs Missive's actors on CAF's deterministic test scheduler: nothing happens until the test
// calls run(), timers fire only when the test advances the clock, and no test sleeps.

#include <optional>

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "missive/actors/node.hpp"
#include "missive/actors/push_queue.hpp"
#include "missive/storage/store.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {

struct test_config : caf::actor_system_config {
  test_config() {
    add_missive_types(*this);
    set("scheduler.policy", caf::atom("testing"));
    set("logger.verbosity", caf::atom("quiet"));
    set("logger.file-verbosity", caf::atom("quiet"));
    set("logger.console-verbosity", caf::atom("quiet"));
  }
};

/// Captures the answer to one request.
template <class T>
struct answer {
  std::optional<T> value;
  caf::error error;
};

class actor_fixture : public ::testing::Test {
public:
  actor_fixture() : sys(cfg), sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {}

  ~actor_fixture() override {
    if (started)
      stop_node(n);
    run();
  }

  /// Opens the store in `dir` and spawns the node's actors, all on the test scheduler.
  void start(settings s = {}) {
    s.password_hash = hash_cost::min;
    if (s.password_threads == 0) // one per core: the same on every machine instead
      s.password_threads = 2;
    storage::options opts;
    opts.path = dir.path.string();
    opts.sync = false; // the deterministic tests are about order, not fsync
    std::unique_ptr<storage::store> db;
    auto st = storage::store::open(opts, &db);
    ASSERT_TRUE(st.ok()) << st.to_string();
    n = start_node(sys, s, std::shared_ptr<storage::store>(std::move(db)), false);
    started = true;
    run();
  }

  /// Stops the node and waits until its store is closed.
  void stop() {
    stop_node(n);
    run();
    started = false;
  }

  void run() {
    sched.run();
  }

  /// Sends a request from a fresh helper actor, runs the scheduler and returns the answer.
  template <class T, class Handle, class... Ts>
  answer<T> ask(const Handle& dest, Ts&&... xs) {
    auto out = std::make_shared<answer<T>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(caf::actor_cast<caf::actor>(dest), caf::infinite, xs...)
        .then([=](T& x) { out->value = std::move(x); },
              [=](caf::error& err) { out->error = std::move(err); });
    });
    run();
    return *out;
  }

  // -- a device without a network: a session double driven like the gateway drives its sessions --

  template <class T>
  using slot = std::shared_ptr<std::optional<caf::expected<T>>>;

  template <class T>
  static reply_to<T> capture(slot<T> out) {
    return reply_to<T>{std::make_shared<std::function<void(caf::expected<T>)>>(
      [out](caf::expected<T> x) { *out = std::move(x); })};
  }

  /// What the device's session was handed: a notify, or the end of the session.
  struct push_event {
    bool closed = false;
    caf::error reason;
    notice note;
  };

  /// The device's session as the gateway keeps it, without the network: the real push_queue,
  /// with each notify recorded instead of sent. A notify counts as unconfirmed until arm().
  struct session_double final : push_sink {
    session_double(std::string user, std::shared_ptr<const settings> cfg)
      : config(std::move(cfg)), queue(std::move(user), *config) {}
    void push(notice n) override {
      queue.add(std::move(n));
      pump();
    }
    void close(caf::error why) override {
      pushes.push_back(push_event{true, std::move(why), {}});
      closed = true;
    }
    void pump() {
      if (!ready || closed)
        return;
      if (auto n = queue.next())
        pushes.push_back(push_event{false, {}, std::move(*n)});
    }
    std::shared_ptr<const settings> config;
    push_queue queue;
    std::vector<push_event> pushes;
    bool ready = false; // logged in and taking notifies
    bool closed = false;
  };

  struct device {
    std::string user;
    std::string id;
    slot<login_ok> login = std::make_shared<std::optional<caf::expected<login_ok>>>();
    /// The user actor the session sends to, once logged in (as the gateway's session does).
    user_actor owner() const {
      return login->has_value() && **login ? (**login)->owner : user_actor{};
    }
    std::shared_ptr<session_double> session;
    /// Notifies the session sent, and notices that came with the answers to its sends.
    std::vector<push_event>* pushes = nullptr;
    std::shared_ptr<std::vector<notice>> answers = std::make_shared<std::vector<notice>>();
  };

  /// Logs a device in and (unless told otherwise) readies it for pushes.
  /// With `resume_token` set, logs in with it instead of the password.
  device login(const std::string& user, const std::string& password, const std::string& id,
               bool arm_now = true, const std::string& resume_token = {}) {
    device d;
    d.user = user;
    d.id = id;
    d.session = std::make_shared<session_double>(user, n.config);
    d.pushes = &d.session->pushes;
    missive::login(sys, n, user, password, id, d.session, capture<login_ok>(d.login),
                   resume_token);
    run();
    if (arm_now)
      arm(d);
    return d;
  }

  /// The device is ready for pushes, or confirms the notify in flight; the next one may go.
  void arm(device& d) {
    run();
    if (d.session->ready)
      d.session->queue.confirmed();
    d.session->ready = true;
    d.session->pump();
  }

  void register_user(const std::string& user, const std::string& password = "secret1") {
    auto r = ask<ok_atom>(n.accounts, register_atom::value, user, password, hangup_flag_ptr{});
    ASSERT_TRUE(r.value) << caf::to_string(r.error);
  }

  caf::expected<send_result> send(device& d, uint64_t id, const std::string& to,
                                  const std::string& body) {
    if (d.session->closed) // the gateway's session refuses, as it does
      return d.session->pushes.back().reason;
    d.session->queue.sending(id);
    auto r = call<send_result>(d.owner(), send_atom::value, outgoing{id, to, body});
    if (auto note = d.session->queue.answered(id, static_cast<bool>(r)))
      d.answers->push_back(std::move(*note));
    d.session->pump();
    return r;
  }

  /// Sends `xs…` plus a reply_to<T> to `dest` (as the gateway does), runs the scheduler and
  /// returns the answer (request_timeout if none came).
  template <class T, class Dest, class... Ts>
  caf::expected<T> call(const Dest& dest, Ts&&... xs) {
    auto out = std::make_shared<std::optional<caf::expected<T>>>();
    caf::anon_send(dest, std::forward<Ts>(xs)..., capture<T>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
  }

  /// A call of the device other than send, as its gateway session makes it: refused once the
  /// session is closed, else through a device_call helper.
  template <class T, class... Ts>
  caf::expected<T> device_call(device& d, Ts&&... xs) {
    if (d.session->closed)
      return d.session->pushes.back().reason;
    auto helper = spawn_device_call(sys, device_context{n, d.user, d.id, d.owner()});
    return call<T>(helper, std::forward<Ts>(xs)...);
  }

  /// The device hangs up: its session ends and detaches (as the gateway's session does).
  void logout(device& d) {
    d.session->end();
    caf::anon_send(d.owner(), detach_atom::value, d.id, push_sink_ptr{d.session});
    run();
  }

  caf::expected<sync_result> sync(device& d, uint32_t epoch, uint32_t after, uint32_t limit = 0) {
    return device_call<sync_result>(d, sync_atom::value, epoch, after, limit);
  }

  caf::expected<caf::unit_t> ack(device& d, uint32_t epoch, uint32_t seq) {
    return device_call<caf::unit_t>(d, ack_atom::value, epoch, seq);
  }

  caf::expected<caf::unit_t> block(device& d, const std::string& other, bool on = true) {
    return device_call<caf::unit_t>(d, block_atom::value, other, on);
  }

  caf::expected<std::vector<std::string>> blocked_by(device& d) {
    return device_call<std::vector<std::string>>(d, block_atom::value, lookup_atom::value);
  }

  caf::expected<caf::unit_t> group(device& d, group_op::kind what, const std::string& name,
                                   const std::string& user = {}) {
    return device_call<caf::unit_t>(d, group_atom::value, group_op{what, name, {}, user});
  }

  caf::expected<std::vector<group_member>> members(device& d, const std::string& name) {
    return device_call<std::vector<group_member>>(d, group_atom::value, lookup_atom::value,
                                                  name);
  }

  caf::expected<std::vector<std::string>> groups_of(device& d) {
    return device_call<std::vector<std::string>>(d, group_atom::value, lookup_atom::value);
  }

  /// Lets three idle periods of `period` pass (the clock advanced, everything run): enough for
  /// a user or group actor with nothing to do to stop.
  void idle_for_three(std::chrono::milliseconds period) {
    for (int i = 0; i < 3; ++i) {
      sched.advance_time(period);
      run();
    }
  }

  /// A send from `d` as the gateway makes it, without waiting for its answer (pipelined): the
  /// scheduler does not run; the answer lands in `answers`.
  void pipelined(device& d, uint64_t id, const std::string& to, std::string body) {
    answers.push_back(std::make_shared<std::optional<caf::expected<send_result>>>());
    d.session->queue.sending(id);
    caf::anon_send(d.owner(), send_atom::value, outgoing{id, to, std::move(body)},
                   capture<send_result>(answers.back()));
  }

  /// Every pipelined send was answered with success.
  bool all_answered() const {
    for (auto& a : answers)
      if (!a->has_value() || !**a)
        return false;
    return true;
  }

  /// The bodies of `xs`' messages (system entries left out), in order.
  static std::vector<std::string> bodies(const std::vector<entry>& xs) {
    std::vector<std::string> out;
    for (auto& e : xs)
      if (e.kind == storage::entry_kind::message)
        out.push_back(e.body);
    return out;
  }

  /// Every entry of a device's mailbox, paging with the smallest page.
  std::vector<entry> read_all(device& d, uint32_t epoch = 0) {
    std::vector<entry> all;
    uint32_t cursor = 0;
    for (int pages = 0; pages < 10000; ++pages) {
      auto r = sync(d, epoch, cursor, 1);
      EXPECT_TRUE(r) << caf::to_string(r.error());
      if (!r || r->entries.empty())
        break;
      for (auto& e : r->entries)
        all.push_back(e);
      cursor = all.back().seq;
      if (cursor >= r->max_seq)
        break;
    }
    return all;
  }

  temp_dir dir;
  test_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  node n;
  bool started = false;
  std::vector<slot<send_result>> answers; // of pipelined() sends, in order
};

} // namespace missive::test

#pragma once

// Runs Missive's actors on CAF's deterministic test scheduler: nothing happens until the test
// calls run(), timers fire only when the test advances the clock, and no test sleeps.

#include <optional>

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "missive/actors/node.hpp"
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

  // -- a device without a network: a connection actor driven like the gateway drives it --

  template <class T>
  using slot = std::shared_ptr<std::optional<caf::expected<T>>>;

  template <class T>
  static reply_to<T> capture(slot<T> out) {
    return reply_to<T>{std::make_shared<std::function<void(caf::expected<T>)>>(
      [out](caf::expected<T> x) { *out = std::move(x); })};
  }

  struct device {
    connection_actor conn;
    slot<session_info> login = std::make_shared<std::optional<caf::expected<session_info>>>();
    std::shared_ptr<std::vector<push_event>> pushes = std::make_shared<std::vector<push_event>>();
    /// Notices that came with the answers to this device's sends (its own copies).
    std::shared_ptr<std::vector<notice>> answers = std::make_shared<std::vector<notice>>();
    bool armed = false;
  };

  /// Logs a device in and (unless told otherwise) readies it for pushes.
  device login(const std::string& user, const std::string& password, const std::string& id,
               bool arm_now = true) {
    device d;
    d.conn = spawn_connection(sys, n, user, password, id, capture<session_info>(d.login));
    run();
    if (arm_now)
      arm(d);
    return d;
  }

  /// The gateway is ready for one more push_event.
  void arm(device& d) {
    auto pushes = d.pushes;
    caf::anon_send(d.conn, arm_atom::value,
                   reply_to<push_event>{std::make_shared<std::function<void(caf::expected<push_event>)>>(
                     [pushes](caf::expected<push_event> ev) {
                       if (ev)
                         pushes->push_back(std::move(*ev));
                     })});
    run();
  }

  void register_user(const std::string& user, const std::string& password = "secret1") {
    auto r = ask<ok_atom>(n.accounts, register_atom::value, user, password);
    ASSERT_TRUE(r.value) << caf::to_string(r.error);
  }

  caf::expected<send_result> send(device& d, uint64_t id, const std::string& to,
                                  const std::string& body) {
    auto out = std::make_shared<std::optional<caf::expected<send_reply>>>();
    caf::anon_send(d.conn, send_atom::value, outgoing{id, to, body}, capture<send_reply>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    if (!**out)
      return (*out)->error();
    if ((**out)->note)
      d.answers->push_back(*(**out)->note);
    return (**out)->result;
  }

  caf::expected<sync_result> sync(device& d, uint32_t epoch, uint32_t after, uint32_t limit = 0) {
    auto out = std::make_shared<std::optional<caf::expected<sync_result>>>();
    caf::anon_send(d.conn, sync_atom::value, epoch, after, limit, capture<sync_result>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
  }

  caf::expected<caf::unit_t> ack(device& d, uint32_t epoch, uint32_t seq) {
    auto out = std::make_shared<std::optional<caf::expected<caf::unit_t>>>();
    caf::anon_send(d.conn, ack_atom::value, epoch, seq, capture<caf::unit_t>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
  }

  caf::expected<caf::unit_t> block(device& d, const std::string& other, bool on = true) {
    auto out = std::make_shared<std::optional<caf::expected<caf::unit_t>>>();
    caf::anon_send(d.conn, block_atom::value, other, on, capture<caf::unit_t>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
  }

  caf::expected<std::vector<std::string>> blocked_by(device& d) {
    auto out = std::make_shared<std::optional<caf::expected<std::vector<std::string>>>>();
    caf::anon_send(d.conn, block_atom::value, lookup_atom::value,
                   capture<std::vector<std::string>>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
  }

  caf::expected<caf::unit_t> group(device& d, group_op::kind what, const std::string& name,
                                   const std::string& user = {}) {
    auto out = std::make_shared<std::optional<caf::expected<caf::unit_t>>>();
    caf::anon_send(d.conn, group_atom::value, group_op{what, name, {}, user},
                   capture<caf::unit_t>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
  }

  caf::expected<std::vector<group_member>> members(device& d, const std::string& name) {
    auto out = std::make_shared<std::optional<caf::expected<std::vector<group_member>>>>();
    caf::anon_send(d.conn, group_atom::value, lookup_atom::value, name,
                   capture<std::vector<group_member>>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
  }

  caf::expected<std::vector<std::string>> groups_of(device& d) {
    auto out = std::make_shared<std::optional<caf::expected<std::vector<std::string>>>>();
    caf::anon_send(d.conn, group_atom::value, lookup_atom::value,
                   capture<std::vector<std::string>>(out));
    run();
    if (!out->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return std::move(**out);
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
};

} // namespace missive::test

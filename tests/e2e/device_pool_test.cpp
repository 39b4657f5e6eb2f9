// End to end: the load tool's devices (`device_pool`, which speaks Cap'n Proto's RPC protocol
// message by message instead of through an RpcSystem) against the real missive-server: login,
// sends and their answers, pushes, a backlog by sync, heartbeats, acks and typed refusals.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "missive/protocol/device_pool.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;
using protocol::device_pool;
using protocol::error_code;

/// Records what a pooled device reports (on the pool's thread) and lets the test wait for it.
class recorder final : public protocol::device_handler {
public:
  struct ack {
    uint64_t id;
    error_code code;
    uint32_t seq;
  };

  void on_login(const protocol::error& err, const protocol::session_info& info) override {
    std::lock_guard<std::mutex> guard(m_);
    login_code = err.code;
    logged_in = !err;
    login_info = info;
    cv_.notify_all();
  }
  void on_ack(uint64_t id, const protocol::error& err, const protocol::send_result& r) override {
    std::lock_guard<std::mutex> guard(m_);
    acks.push_back({id, err.code, r.seq});
    cv_.notify_all();
  }
  void on_entries(std::vector<protocol::entry>&& es) override {
    std::lock_guard<std::mutex> guard(m_);
    for (auto& e : es)
      entries.push_back(std::move(e));
    cv_.notify_all();
  }
  void on_closed(const protocol::error& err) override {
    std::lock_guard<std::mutex> guard(m_);
    closed = true;
    closed_code = err.code;
    cv_.notify_all();
  }
  void on_cursor_acked(uint32_t seq) override {
    std::lock_guard<std::mutex> guard(m_);
    cursor_acked = std::max(cursor_acked, seq);
    cv_.notify_all();
  }

  /// Waits until `done()` holds (checked under the lock); false after 20 s.
  template <class Pred>
  bool wait(Pred done) {
    std::unique_lock<std::mutex> lock(m_);
    return cv_.wait_for(lock, 20s, [&] { return done(*this); });
  }
  /// A snapshot under the lock.
  template <class F>
  auto read(F f) {
    std::lock_guard<std::mutex> guard(m_);
    return f(*this);
  }

  bool logged_in = false;
  error_code login_code = error_code::none;
  protocol::session_info login_info;
  std::vector<ack> acks;
  std::vector<protocol::entry> entries;
  bool closed = false;
  error_code closed_code = error_code::none;
  uint32_t cursor_acked = 0;

private:
  std::mutex m_;
  std::condition_variable cv_;
};

class pooled_devices : public ::testing::Test {
protected:
  void start(const std::string& extra = "") {
    srv = std::make_unique<server>(dir.path, "password-hash = min\n" + extra);
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice", "bob"}));
  }

  /// A device in the pool, logged in (or refused: see its recorder).
  std::shared_ptr<recorder> device(const std::string& user, device_pool::device_id* id,
                                   const std::string& password = "secret1", bool ack = false) {
    auto r = std::make_shared<recorder>();
    *id = pool.add_device({srv->address(), user, password, "phone", ack}, r);
    EXPECT_TRUE(r->wait([](auto& x) { return x.logged_in || x.closed; }));
    return r;
  }

  temp_dir dir;
  std::unique_ptr<server> srv;
  device_pool pool;
};

TEST_F(pooled_devices, sends_are_answered_and_pushed_to_the_recipient_in_order) {
  start();
  device_pool::device_id a = 0, b = 0;
  auto alice = device("alice", &a);
  auto bob = device("bob", &b);
  ASSERT_TRUE(alice->read([](auto& x) { return x.logged_in; }));
  ASSERT_TRUE(bob->read([](auto& x) { return x.logged_in; }));
  for (uint64_t id = 1; id <= 20; ++id)
    pool.send(a, id, "bob", "hello " + std::to_string(id));
  ASSERT_TRUE(alice->wait([](auto& x) { return x.acks.size() == 20 && x.entries.size() == 20; }));
  ASSERT_TRUE(bob->wait([](auto& x) { return x.entries.size() == 20; }));
  alice->read([](auto& x) {
    for (size_t i = 0; i < 20; ++i) {
      EXPECT_EQ(x.acks[i].id, i + 1);
      EXPECT_EQ(x.acks[i].code, error_code::none);
      EXPECT_EQ(x.acks[i].seq, i + 1) << "alice's own copies take her seqs 1..20";
      EXPECT_EQ(x.entries[i].to, "bob") << "alice's copy of her own send";
    }
    return 0;
  });
  bob->read([](auto& x) {
    for (size_t i = 0; i < 20; ++i) {
      EXPECT_EQ(x.entries[i].seq, i + 1);
      EXPECT_EQ(x.entries[i].from, "alice");
      EXPECT_EQ(x.entries[i].body, "hello " + std::to_string(i + 1));
    }
    return 0;
  });
  // A retry of a send already answered (same client id) is answered with the first result.
  pool.send(a, 7, "bob", "hello 7");
  ASSERT_TRUE(alice->wait([](auto& x) { return x.acks.size() == 21; }));
  EXPECT_EQ(alice->read([](auto& x) { return x.acks.back().seq; }), 7u);
  EXPECT_FALSE(bob->read([](auto& x) { return x.closed; }));
}

TEST_F(pooled_devices, a_device_logging_in_syncs_what_arrived_while_it_was_offline) {
  start("rate-limit-per-second = 0\n"); // a burst of 1500 sends
  device_pool::device_id a = 0, b = 0;
  auto alice = device("alice", &a);
  for (uint64_t id = 1; id <= 1500; ++id) // more than one sync page (1000)
    pool.send(a, id, "bob", "m" + std::to_string(id));
  ASSERT_TRUE(alice->wait([](auto& x) { return x.acks.size() == 1500; }));
  EXPECT_EQ(alice->read([](auto& x) { return x.acks.back().code; }), error_code::none);
  auto bob = device("bob", &b);
  EXPECT_EQ(bob->read([](auto& x) { return x.login_info.max_seq; }), 1500u);
  ASSERT_TRUE(bob->wait([](auto& x) { return x.entries.size() >= 1500; }));
  bob->read([](auto& x) {
    EXPECT_EQ(x.entries.size(), 1500u);
    for (size_t i = 0; i < x.entries.size(); ++i)
      EXPECT_EQ(x.entries[i].body, "m" + std::to_string(i + 1));
    return 0;
  });
}

TEST_F(pooled_devices, a_device_that_skips_the_history_gets_only_what_comes_after_its_login) {
  start();
  device_pool::device_id a = 0;
  auto alice = device("alice", &a);
  for (uint64_t id = 1; id <= 5; ++id) // stored while bob is offline
    pool.send(a, id, "bob", "old " + std::to_string(id));
  ASSERT_TRUE(alice->wait([](auto& x) { return x.acks.size() == 5; }));
  auto bob = std::make_shared<recorder>();
  pool.add_device({srv->address(), "bob", "secret1", "phone", false, true}, bob);
  ASSERT_TRUE(bob->wait([](auto& x) { return x.logged_in || x.closed; }));
  EXPECT_EQ(bob->read([](auto& x) { return x.login_info.max_seq; }), 5u);
  pool.send(a, 6, "bob", "new");
  ASSERT_TRUE(bob->wait([](auto& x) { return !x.entries.empty(); }));
  // Anything old would have come first (the login's sync precedes the push of the new one).
  bob->read([](auto& x) {
    EXPECT_EQ(x.entries.size(), 1u);
    EXPECT_EQ(x.entries.front().seq, 6u);
    EXPECT_EQ(x.entries.front().body, "new");
    return 0;
  });
}

TEST_F(pooled_devices, a_quiet_device_answers_heartbeats_and_stays_online) {
  // The server closes a connection whose heartbeat is not answered within the push timeout.
  start("heartbeat-interval-ms = 200\npush-timeout-ms = 500\n");
  device_pool::device_id a = 0, b = 0;
  auto alice = device("alice", &a);
  auto bob = device("bob", &b);
  std::this_thread::sleep_for(2s); // about ten heartbeats each
  EXPECT_FALSE(alice->read([](auto& x) { return x.closed; }));
  EXPECT_FALSE(bob->read([](auto& x) { return x.closed; }));
  pool.send(a, 1, "bob", "still there?");
  ASSERT_TRUE(bob->wait([](auto& x) { return x.entries.size() == 1; }));
}

TEST_F(pooled_devices, refusals_come_back_typed) {
  start();
  device_pool::device_id a = 0, b = 0;
  auto alice = device("alice", &a);
  pool.send(a, 1, "nobody", "hello?");
  ASSERT_TRUE(alice->wait([](auto& x) { return x.acks.size() == 1; }));
  EXPECT_EQ(alice->read([](auto& x) { return x.acks[0].code; }), error_code::unknown_user);
  auto wrong = device("bob", &b, "not-the-password");
  EXPECT_EQ(wrong->read([](auto& x) { return x.login_code; }), error_code::bad_credentials);
  ASSERT_TRUE(wrong->wait([](auto& x) { return x.closed; }));
  pool.send(b, 1, "alice", "from a device that never logged in");
  ASSERT_TRUE(wrong->wait([](auto& x) { return x.acks.size() == 1; }));
  EXPECT_EQ(wrong->read([](auto& x) { return x.acks[0].code; }), error_code::not_logged_in);
}

TEST_F(pooled_devices, logins_refused_as_unavailable_are_asked_again_when_the_spec_says_so) {
  // One password thread and one place in its queue, with real (slow) password checks: of six
  // logins at once, some find the queue full.
  start("password-hash = interactive\npassword-threads = 1\npassword-queue-max = 1\n");
  auto log_in_six = [&](std::chrono::milliseconds retry) {
    std::vector<std::shared_ptr<recorder>> rs;
    for (int i = 0; i < 6; ++i) {
      rs.push_back(std::make_shared<recorder>());
      protocol::pooled_device_spec spec{srv->address(), "alice", "secret1",
                                        "d" + std::to_string(i)};
      spec.retry_unavailable = retry;
      pool.add_device(std::move(spec), rs.back());
    }
    int in = 0, unavailable = 0;
    for (auto& r : rs) {
      EXPECT_TRUE(r->wait([](auto& x) { return x.logged_in || x.closed; }));
      in += r->read([](auto& x) { return x.logged_in; });
      unavailable += r->read([](auto& x) { return x.login_code == error_code::unavailable; });
    }
    return std::make_pair(in, unavailable);
  };
  auto [in, refused] = log_in_six(0ms);
  EXPECT_GT(refused, 0) << "the queue never filled: this test shows nothing";
  EXPECT_EQ(in + refused, 6);
  std::tie(in, refused) = log_in_six(50ms);
  EXPECT_EQ(in, 6);
  EXPECT_EQ(refused, 0);
}

TEST_F(pooled_devices, a_device_with_a_push_token_registers_it_before_its_login_is_reported) {
  start();
  auto r = std::make_shared<recorder>();
  protocol::pooled_device_spec spec{srv->address(), "bob", "secret1", "phone"};
  spec.push_platform = "bad platform!"; // refused: the login is reported failed, typed
  spec.push_token = "t";
  pool.add_device(spec, r);
  ASSERT_TRUE(r->wait([](auto& x) { return x.closed; }));
  EXPECT_EQ(r->read([](auto& x) { return x.login_code; }), error_code::invalid_argument);
  auto ok = std::make_shared<recorder>();
  spec.push_platform = "com.example.chat.ios";
  pool.add_device(spec, ok);
  ASSERT_TRUE(ok->wait([](auto& x) { return x.logged_in || x.closed; }));
  EXPECT_TRUE(ok->read([](auto& x) { return x.logged_in; }));
}

TEST_F(pooled_devices, an_acking_device_reports_its_cursor_in_each_notify_answer) {
  start();
  device_pool::device_id a = 0, b = 0;
  auto alice = device("alice", &a);
  auto bob = device("bob", &b, "secret1", true);
  for (uint64_t id = 1; id <= 5; ++id)
    pool.send(a, id, "bob", "x");
  ASSERT_TRUE(bob->wait([](auto& x) { return x.entries.size() == 5 && x.cursor_acked == 5; }));
}

TEST_F(pooled_devices, a_server_killed_mid_run_fails_the_open_sends_and_closes_the_device) {
  start();
  device_pool::device_id a = 0;
  auto alice = device("alice", &a);
  srv->kill();
  ASSERT_TRUE(alice->wait([](auto& x) { return x.closed; }));
  EXPECT_EQ(alice->read([](auto& x) { return x.closed_code; }), error_code::disconnected);
  pool.send(a, 1, "bob", "into the void");
  ASSERT_TRUE(alice->wait([](auto& x) { return x.acks.size() == 1; }));
  EXPECT_EQ(alice->read([](auto& x) { return x.acks[0].code; }), error_code::not_logged_in);
}

} // namespace
} // namespace missive::test

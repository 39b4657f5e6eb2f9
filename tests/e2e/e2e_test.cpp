// End to end: the real missive-server binary on a free loopback port, spoken to over real
// Cap'n Proto RPC by the client library missive-cli uses.

#include <fstream>
#include <set>
#include <sched.h>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include "missive.capnp.h"

#include "missive/protocol/client.hpp"
#include "missive/protocol/device.hpp"
#include "support/raw_device.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;
using protocol::error_code;

/// One logged-in device that keeps a cursor the way a real client does.
struct device {
  protocol::client rpc;
  protocol::session_info info;
  uint32_t epoch = 0;
  uint32_t cursor = 0;
  std::vector<protocol::entry> seen; // in the order the device learned them

  protocol::error open(const std::string& address, const std::string& user,
                       const std::string& id, const std::string& password = "secret1") {
    if (auto err = rpc.connect(address))
      return err;
    if (auto err = rpc.login(user, password, id, &info))
      return err;
    epoch = info.epoch;
    return {};
  }

  /// Syncs from the cursor to maxSeq.
  void catch_up() {
    for (int pages = 0; pages < 1000; ++pages) {
      protocol::sync_result page;
      auto err = rpc.sync(epoch, cursor, 0, &page);
      ASSERT_FALSE(err) << err.to_string();
      for (auto& e : page.entries) {
        seen.push_back(e);
        cursor = e.seq;
      }
      if (page.entries.empty() || cursor >= page.max_seq)
        return;
    }
    FAIL() << "sync did not converge";
  }

  /// Waits for pushes until the device holds `count` entries (bounded by `limit`).
  bool receive(size_t count, std::chrono::milliseconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (seen.size() < count && std::chrono::steady_clock::now() < deadline) {
      protocol::notice p;
      if (!rpc.wait_push(100ms, &p))
        continue;
      if (p.complete && p.epoch == epoch && cursor >= p.after_seq) {
        for (auto& e : p.entries)
          if (e.seq > cursor)
            seen.push_back(e);
        cursor = std::max(cursor, p.max_seq);
      } else {
        catch_up();
      }
    }
    return seen.size() >= count;
  }
};

class e2e_test : public ::testing::Test {
protected:
  void SetUp() override {
    srv = std::make_unique<server>(dir.path, config());
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice", "bob"}));
  }

  virtual std::string config() { return "max-body-bytes = 64\npassword-hash = min"; }

  /// A weak-network device (protocol::device) of `user` with password "secret1" on this
  /// server, retrying quickly.
  protocol::device_options device_options(const std::string& user, const std::string& id) {
    protocol::device_options opts;
    opts.server = srv->address();
    opts.user = user;
    opts.password = "secret1";
    opts.device = id;
    opts.backoff_min = std::chrono::milliseconds(10);
    return opts;
  }

  std::unique_ptr<device> online(const std::string& user, const std::string& id) {
    auto d = std::make_unique<device>();
    auto err = d->open(srv->address(), user, id);
    EXPECT_FALSE(err) << err.to_string();
    return d;
  }

  static std::vector<std::string> bodies(const std::vector<protocol::entry>& xs) {
    std::vector<std::string> out;
    for (auto& e : xs)
      out.push_back(e.body);
    return out;
  }

  temp_dir dir;
  std::unique_ptr<server> srv;
};

TEST_F(e2e_test, push_reaches_online_devices_and_an_offline_device_catches_up) {
  auto a_phone = online("alice", "phone");
  auto a_tablet = online("alice", "tablet");
  auto b_phone = online("bob", "phone");
  std::vector<std::string> sent = {"hello", "how are you?", "bye"};
  for (size_t i = 0; i < sent.size(); ++i) {
    protocol::send_result r;
    auto err = a_phone->rpc.send(100 + i, "bob", sent[i], &r);
    ASSERT_FALSE(err) << err.to_string();
    EXPECT_EQ(r.seq, i + 1);
  }
  ASSERT_TRUE(b_phone->receive(3));
  EXPECT_EQ(bodies(b_phone->seen), sent);
  ASSERT_TRUE(a_tablet->receive(3)); // the sender's other device sees what was sent
  EXPECT_EQ(bodies(a_tablet->seen), sent);
  EXPECT_EQ(a_tablet->seen[0].to, "bob");

  // Bob's laptop was offline for all of it: it catches up with sync from its cursor.
  auto b_laptop = online("bob", "laptop");
  EXPECT_EQ(b_laptop->info.max_seq, 3u);
  b_laptop->catch_up();
  ASSERT_EQ(b_laptop->seen.size(), b_phone->seen.size());
  for (size_t i = 0; i < b_phone->seen.size(); ++i)
    EXPECT_EQ(b_laptop->seen[i], b_phone->seen[i]);
  EXPECT_EQ(b_laptop->seen[0].from, "alice");
}

/// A device's push receiver that only counts the notifies it gets.
class counting_receiver final : public wire::PushReceiver::Server {
public:
  explicit counting_receiver(int& notifies) : notifies_(notifies) {}

protected:
  kj::Promise<void> notify(NotifyContext) override {
    ++notifies_;
    return kj::READY_NOW;
  }

private:
  int& notifies_;
};

TEST_F(e2e_test, the_senders_own_copy_rides_on_the_answer_instead_of_a_notify) {
  auto b_phone = online("bob", "phone");
  // Raw Cap'n Proto, on a thread of its own (one KJ event loop per thread), to see the answer's
  // fields and count notifies.
  std::thread raw([&] {
    auto io = kj::setupAsyncIo();
    auto& ws = io.waitScope;
    int notifies = 0;
    raw_device dev(io, srv->address());
    auto in = dev.login("alice", "phone", kj::heap<counting_receiver>(notifies));
    ASSERT_FALSE(in.hasError()) << in.getError().getMessage().cStr();
    auto session = in.getSession();

    auto send = session.sendRequest();
    send.setClientMsgId(1);
    send.setTo("bob");
    send.setBody(kj::StringPtr("hi bob").asBytes());
    auto r = send.send().wait(ws);
    ASSERT_FALSE(r.hasError()) << r.getError().getMessage().cStr();
    ASSERT_TRUE(r.hasNotice());
    auto n = r.getNotice();
    EXPECT_EQ(n.getAfterSeq(), 0u);
    EXPECT_EQ(n.getMaxSeq(), r.getSeq());
    EXPECT_TRUE(n.getComplete());
    ASSERT_EQ(n.getEntries().size(), 1u);
    EXPECT_EQ(n.getEntries()[0].getSeq(), r.getSeq());
    EXPECT_EQ(n.getEntries()[0].getServerTime(), r.getServerTime());
    EXPECT_EQ(kj::StringPtr(n.getEntries()[0].getTo()), "bob");

    // A further round trip: the server sent no notify for the copy the answer carried.
    auto sync = session.syncRequest();
    sync.setAfterSeq(0);
    auto page = sync.send().wait(ws);
    ASSERT_EQ(page.getEntries().size(), 1u);
    EXPECT_EQ(notifies, 0);
  });
  raw.join();
  ASSERT_TRUE(b_phone->receive(1)); // the recipient is pushed as always
  EXPECT_EQ(b_phone->seen[0].body, "hi bob");
}

/// A device that answers every notify with the notice's maxSeq as its cursor.
class cursor_receiver final : public wire::PushReceiver::Server {
public:
  explicit cursor_receiver(uint32_t& cursor) : cursor_(cursor) {}

protected:
  kj::Promise<void> notify(NotifyContext ctx) override {
    cursor_ = ctx.getParams().getMaxSeq();
    ctx.getResults().setCursor(cursor_);
    return kj::READY_NOW;
  }

private:
  uint32_t& cursor_;
};

TEST_F(e2e_test, a_cursor_in_the_answer_to_a_notify_counts_as_an_ack) {
  auto a_phone = online("alice", "phone");
  uint32_t reported = 0; // the raw thread's; read here after join
  std::atomic<bool> ready{false};
  std::thread raw([&] {
    auto io = kj::setupAsyncIo();
    auto& ws = io.waitScope;
    raw_device dev(io, srv->address());
    auto in = dev.login("bob", "tablet", kj::heap<cursor_receiver>(reported));
    ready = true;
    ASSERT_FALSE(in.hasError());
    EXPECT_EQ(in.getCursor(), 0u);
    // Bounded: until both entries were notified (and answered with the cursor).
    for (int i = 0; i < 500 && reported < 2; ++i)
      io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(ws);
  });
  for (int i = 0; i < 500 && !ready; ++i)
    std::this_thread::sleep_for(10ms);
  protocol::send_result r; // from this thread: the client lives on its event loop
  for (uint64_t id = 1; id <= 2; ++id)
    EXPECT_FALSE(a_phone->rpc.send(id, "bob", "m" + std::to_string(id), &r));
  raw.join();
  ASSERT_EQ(reported, 2u);
  // The next login of that device starts from the cursor it reported; the ack is recorded
  // without an answer, so allow it a moment (bounded) to reach storage.
  uint32_t cursor = 0;
  for (int i = 0; i < 50 && cursor != 2; ++i) {
    device again;
    ASSERT_FALSE(again.open(srv->address(), "bob", "tablet"));
    cursor = again.info.cursor;
    if (cursor != 2)
      std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(cursor, 2u);
  // Other devices' cursors are their own.
  device laptop;
  ASSERT_FALSE(laptop.open(srv->address(), "bob", "laptop"));
  EXPECT_EQ(laptop.info.cursor, 0u);
}

TEST_F(e2e_test, an_acknowledged_send_survives_sigkill) {
  auto a = online("alice", "phone");
  protocol::send_result first;
  ASSERT_FALSE(a->rpc.send(1, "bob", "before the crash", &first));
  srv->kill(); // right after the acknowledgement, no clean shutdown
  ASSERT_TRUE(srv->start());
  auto b = online("bob", "phone");
  b->catch_up();
  ASSERT_EQ(bodies(b->seen), (std::vector<std::string>{"before the crash"}));
  auto a2 = online("alice", "phone");
  EXPECT_EQ(a2->info.max_seq, first.seq);
  protocol::send_result next;
  ASSERT_FALSE(a2->rpc.send(2, "bob", "after", &next));
  EXPECT_GT(next.seq, first.seq);
}

TEST_F(e2e_test, a_retried_client_msg_id_yields_one_entry_even_across_a_crash) {
  auto a = online("alice", "phone");
  protocol::send_result r1, r2, r3;
  ASSERT_FALSE(a->rpc.send(42, "bob", "only once", &r1));
  ASSERT_FALSE(a->rpc.send(42, "bob", "only once", &r2));
  EXPECT_EQ(r2.seq, r1.seq);
  EXPECT_EQ(r2.server_time_ms, r1.server_time_ms);
  srv->kill();
  ASSERT_TRUE(srv->start());
  auto a2 = online("alice", "phone");
  ASSERT_FALSE(a2->rpc.send(42, "bob", "only once", &r3));
  EXPECT_EQ(r3.seq, r1.seq);
  auto b = online("bob", "phone");
  b->catch_up();
  EXPECT_EQ(b->seen.size(), 1u);
  a2->catch_up();
  EXPECT_EQ(a2->seen.size(), 1u);
}

TEST_F(e2e_test, bad_input_gets_a_typed_error_and_changes_nothing) {
  auto a = online("alice", "phone");
  protocol::send_result ok;
  ASSERT_FALSE(a->rpc.send(1, "bob", "fine", &ok));

  protocol::client c;
  ASSERT_FALSE(c.connect(srv->address()));
  EXPECT_EQ(c.login("alice", "wrong-password", "x", nullptr).code, error_code::bad_credentials);
  EXPECT_EQ(c.login("nobody", "secret1", "x", nullptr).code, error_code::bad_credentials);
  EXPECT_EQ(c.login("alice", "secret1", "bad device", nullptr).code,
            error_code::invalid_argument);
  EXPECT_EQ(c.create_account("alice", "another1").code, error_code::user_exists);
  EXPECT_EQ(c.send(1, "bob", "x", nullptr).code, error_code::not_logged_in);

  protocol::send_result r;
  EXPECT_EQ(a->rpc.send(2, "nobody", "hi", &r).code, error_code::unknown_user);
  auto big = a->rpc.send(3, "bob", std::string(65, 'x'), &r);
  EXPECT_EQ(big.code, error_code::too_large);
  EXPECT_NE(big.message.find("64"), std::string::npos) << big.message;
  EXPECT_EQ(a->rpc.send(0, "bob", "zero id", &r).code, error_code::invalid_argument);

  protocol::sync_result page;
  auto ahead = a->rpc.sync(a->epoch, ok.seq + 1, 0, &page);
  EXPECT_EQ(ahead.code, error_code::cursor_ahead);
  EXPECT_EQ(ahead.max_seq, ok.seq);
  auto stale = a->rpc.sync(a->epoch ^ 0x5a5a, 0, 0, &page);
  EXPECT_EQ(stale.code, error_code::stale_epoch);
  EXPECT_EQ(stale.epoch, a->epoch);
  EXPECT_EQ(a->rpc.ack(a->epoch, ok.seq + 1).code, error_code::cursor_ahead);

  // Nothing of it was stored anywhere.
  a->catch_up();
  EXPECT_EQ(bodies(a->seen), (std::vector<std::string>{"fine"}));
  auto b = online("bob", "phone");
  EXPECT_EQ(b->info.max_seq, 1u);
  b->catch_up();
  EXPECT_EQ(bodies(b->seen), (std::vector<std::string>{"fine"}));
  // The server is still serving.
  ASSERT_FALSE(a->rpc.send(4, "bob", "still here", &r));
  EXPECT_EQ(r.seq, 2u);
}

TEST_F(e2e_test, a_second_login_of_a_device_closes_the_first_session) {
  auto first = online("bob", "phone");
  auto second = online("bob", "phone");
  protocol::sync_result page;
  // The replacement reaches the first session asynchronously; bounded retry.
  protocol::error err;
  for (int i = 0; i < 100; ++i) {
    err = first->rpc.sync(0, 0, 0, &page);
    if (err.code == error_code::session_replaced)
      break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(err.code, error_code::session_replaced);
  EXPECT_FALSE(second->rpc.sync(0, 0, 0, &page));
}

TEST_F(e2e_test, a_device_logs_in_again_with_its_resume_token_also_after_a_crash) {
  auto a = online("alice", "phone");
  auto token = a->rpc.resume_token();
  ASSERT_EQ(token.size(), 32u);
  ASSERT_FALSE(a->rpc.send(1, "bob", "one", nullptr));
  a.reset();
  srv->kill();
  ASSERT_TRUE(srv->start());
  auto with = [&](const std::string& user, const std::string& id, const std::string& t,
                  protocol::session_info* info = nullptr) {
    protocol::client c;
    auto err = c.connect(srv->address());
    if (!err)
      err = c.login(user, "", id, info, t);
    if (!err) {
      EXPECT_EQ(c.resume_token(), t); // a token login keeps the token
    }
    return err;
  };
  protocol::session_info info;
  auto err = with("alice", "phone", token, &info);
  ASSERT_FALSE(err) << err.to_string();
  EXPECT_EQ(info.max_seq, 1u);
  EXPECT_EQ(with("alice", "laptop", token).code, error_code::bad_credentials);
  EXPECT_EQ(with("bob", "phone", token).code, error_code::bad_credentials);
  auto flipped = token;
  flipped[0] ^= 0x40;
  EXPECT_EQ(with("alice", "phone", flipped).code, error_code::bad_credentials);
  // A password login of the device replaces its token.
  auto again = online("alice", "phone");
  EXPECT_NE(again->rpc.resume_token(), token);
  EXPECT_EQ(with("alice", "phone", token).code, error_code::bad_credentials);
  EXPECT_FALSE(with("alice", "phone", again->rpc.resume_token()));
}

TEST_F(e2e_test, a_reconnecting_device_falls_back_to_its_password_when_its_token_is_refused) {
  protocol::device bob(device_options("bob", "phone"));
  for (int i = 0; i < 200 && !bob.online(); ++i)
    bob.step(std::chrono::milliseconds(10));
  ASSERT_TRUE(bob.online()) << bob.last_error().to_string();
  EXPECT_TRUE(bob.has_resume_token());
  // The server comes back issuing no tokens and refusing them: the device's token fails.
  srv->set_config(config() + "\nresume-token-days = 0");
  ASSERT_EQ(srv->stop(), 0);
  ASSERT_TRUE(srv->start());
  auto a = online("alice", "phone");
  ASSERT_FALSE(a->rpc.send(1, "bob", "after the restart", nullptr));
  std::vector<std::string> seen;
  for (int i = 0; i < 300 && seen.empty(); ++i)
    for (auto& e : bob.step(std::chrono::milliseconds(20)).entries)
      seen.push_back(e.body);
  EXPECT_EQ(seen, std::vector<std::string>{"after the restart"}) << bob.last_error().to_string();
  EXPECT_FALSE(bob.fatal());
  EXPECT_FALSE(bob.has_resume_token());
}

TEST_F(e2e_test, a_restarted_client_logs_in_with_the_token_kept_in_its_state_file) {
  auto opts = device_options("bob", "phone");
  opts.state_file = (dir.path / "bob.phone.state").string();
  auto until_online_or_fatal = [](protocol::device& d) {
    for (int i = 0; i < 200 && !d.online() && !d.fatal(); ++i)
      d.step(std::chrono::milliseconds(10));
  };
  {
    protocol::device bob(opts);
    until_online_or_fatal(bob);
    ASSERT_TRUE(bob.online()) << bob.last_error().to_string();
    ASSERT_TRUE(bob.has_resume_token());
  }
  // The password is wrong now: only the token in the file can log this client in.
  opts.password = "not-the-password";
  protocol::device restarted(opts);
  EXPECT_TRUE(restarted.has_resume_token());
  until_online_or_fatal(restarted);
  EXPECT_TRUE(restarted.online()) << restarted.last_error().to_string();
  // Without the file the same client is refused for good.
  std::filesystem::remove(opts.state_file);
  protocol::device without(opts);
  until_online_or_fatal(without);
  EXPECT_FALSE(without.online());
  EXPECT_EQ(without.fatal().code, error_code::bad_credentials);
}

TEST_F(e2e_test, the_cursor_acknowledged_by_a_device_comes_back_at_login) {
  auto a = online("alice", "phone");
  protocol::send_result r;
  ASSERT_FALSE(a->rpc.send(1, "bob", "one", &r));
  ASSERT_FALSE(a->rpc.send(2, "bob", "two", &r));
  auto b = online("bob", "phone");
  b->catch_up();
  ASSERT_FALSE(b->rpc.ack(b->epoch, b->cursor));
  b.reset();
  auto again = online("bob", "phone");
  EXPECT_EQ(again->info.cursor, 2u);
  EXPECT_EQ(again->info.max_seq, 2u);
}

TEST_F(e2e_test, sigterm_stops_the_server_cleanly_and_keeps_the_data) {
  auto a = online("alice", "phone");
  protocol::send_result r;
  ASSERT_FALSE(a->rpc.send(1, "bob", "kept", &r));
  EXPECT_EQ(srv->stop(), 0);
  EXPECT_NE(srv->proc().out().find("missive-server stopped"), std::string::npos);
  ASSERT_TRUE(srv->start());
  auto b = online("bob", "phone");
  b->catch_up();
  EXPECT_EQ(bodies(b->seen), (std::vector<std::string>{"kept"}));
}

TEST(e2e_startup, an_unusable_data_dir_stops_startup_with_a_clear_message) {
  temp_dir dir;
  auto file = dir.path / "not-a-dir";
  std::ofstream(file) << "x";
  auto r = run_command({MISSIVE_SERVER_BIN, "--listen", "127.0.0.1:0", "--data", file.string()},
                       dir.path);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot open the database"), std::string::npos) << r.err;
  auto bad_conf = dir.path / "bad.conf";
  std::ofstream(bad_conf) << "durability = sometimes\n";
  auto r2 = run_command({MISSIVE_SERVER_BIN, "--config", bad_conf.string()}, dir.path);
  EXPECT_EQ(r2.code, 2);
  EXPECT_NE(r2.err.find("bad.conf:1: durability expects sync or async"), std::string::npos)
    << r2.err;
}

/// The scheduling policy of each thread of a running process.
std::vector<int> thread_policies(pid_t pid) {
  std::vector<int> out;
  for (auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task"))
    out.push_back(sched_getscheduler(std::stoi(t.path().filename().string())));
  return out;
}

TEST(e2e_startup, every_server_thread_runs_under_the_configured_thread_policy) {
  for (auto [line, policy] :
       {std::pair{"", SCHED_BATCH}, {"thread-policy = normal", SCHED_OTHER}}) {
    temp_dir dir;
    server s(dir.path, std::string("password-hash = min\n") + line);
    ASSERT_TRUE(s.start());
    ASSERT_TRUE(s.create_accounts({"alice"})); // the actors and the database at work
    auto a = s.login("alice");
    auto policies = thread_policies(s.proc().pid());
    EXPECT_GE(policies.size(), 6u); // main, gateway, CAF workers and clock, persistence
    EXPECT_EQ(std::count(policies.begin(), policies.end(), policy), policies.size()) << line;
    a.reset();
    EXPECT_EQ(s.stop(), 0);
  }
}

/// The process's CPU time so far (user and system), in clock ticks.
long cpu_ticks(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2)); // after the command's name
  std::string skip;
  long user = 0, system = 0;
  for (int i = 3; i < 14; ++i)
    fields >> skip;
  fields >> user >> system;
  return user + system;
}

/// A server with one password thread at `moderate` (about 0.7 s of CPU a hash on the
/// development VM), to see what becomes of a request queued behind a hash under way.
class e2e_accounts_test : public ::testing::Test {
protected:
  void SetUp() override {
    srv = std::make_unique<server>(dir.path, "password-hash = moderate\npassword-threads = 1");
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice"}));
  }

  /// Starts a sign-up that keeps the password thread busy, and returns once the server's CPU
  /// time shows that its hash is under way.
  void occupy_the_password_thread() {
    auto before = cpu_ticks(srv->proc().pid());
    busy = std::thread([this] { EXPECT_TRUE(srv->create_accounts({"first"})); });
    auto tick = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < 2000 && cpu_ticks(srv->proc().pid()) < before + tick / 10; ++i)
      std::this_thread::sleep_for(10ms);
  }

  /// A client whose calls time out after 100 ms, connected (a failure is a gtest failure).
  std::unique_ptr<protocol::client> impatient() {
    auto c = std::make_unique<protocol::client>(100ms);
    EXPECT_FALSE(c->connect(srv->address()));
    return c;
  }

  void TearDown() override {
    if (busy.joinable())
      busy.join();
  }

  temp_dir dir;
  std::unique_ptr<server> srv;
  std::thread busy;
};

TEST_F(e2e_accounts_test, a_sign_up_whose_client_gave_up_waiting_is_not_carried_out) {
  occupy_the_password_thread();
  // A sign-up queued behind it times out, and its client hangs up (closes its connection).
  EXPECT_EQ(impatient()->create_account("gone", "secret1").code, error_code::timeout);
  busy.join();
  // It was dropped, not hashed and stored for nobody: the retry creates the account instead of
  // finding it taken.
  EXPECT_TRUE(srv->create_accounts({"gone"}));
}

TEST_F(e2e_accounts_test, a_password_login_whose_client_gave_up_waiting_is_not_carried_out) {
  auto phone = srv->login("alice", "phone");
  auto token = phone->resume_token();
  phone.reset();
  occupy_the_password_thread();
  // A password login of the same device, queued behind it, times out. Its client stays
  // connected and drops the call: the Finish message goes out with its next call (here a
  // token login of another device, refused without a password check), as with a client that
  // tries again on the same connection.
  auto waiting = impatient();
  EXPECT_EQ(waiting->login("alice", "secret1", "phone", nullptr).code, error_code::timeout);
  EXPECT_EQ(waiting->login("alice", "", "tablet", nullptr, std::string(32, 'x')).code,
            error_code::bad_credentials);
  busy.join();
  ASSERT_TRUE(srv->create_accounts({"second"})); // queued behind that login's check, if any
  // Its check was skipped: had it been carried out, the device would have a new token now and
  // this one would be refused.
  protocol::client c;
  ASSERT_FALSE(c.connect(srv->address()));
  auto err = c.login("alice", "", "phone", nullptr, token);
  EXPECT_FALSE(err) << err.to_string();
}

} // namespace
} // namespace missive::test

namespace missive::test {
namespace {

class e2e_large_test : public e2e_test {
protected:
  std::string config() override { return "password-hash = min"; } // bodies up to 64 KiB
};

// The server starts each answer and notify in a 1 KiB segment and adds segments as it grows:
// big entries must come back whole on every path (push, the send's answer, a sync page).
TEST_F(e2e_large_test, bodies_bigger_than_a_segment_arrive_whole_by_push_answer_and_sync) {
  auto a = online("alice", "phone");
  auto a_tablet = online("alice", "tablet");
  auto b = online("bob", "phone");
  std::vector<std::string> sent;
  for (int i = 0; i < 4; ++i) {
    std::string body(1000 + i * 20000, 'a' + i);
    body.front() = body.back() = '#';
    sent.push_back(body);
    protocol::send_result r;
    ASSERT_FALSE(a->rpc.send(uint64_t(i) + 1, "bob", body, &r));
  }
  ASSERT_TRUE(b->receive(sent.size()));
  EXPECT_EQ(bodies(b->seen), sent);
  ASSERT_TRUE(a_tablet->receive(sent.size()));
  EXPECT_EQ(bodies(a_tablet->seen), sent);
  auto late = online("bob", "laptop");
  late->catch_up();
  EXPECT_EQ(bodies(late->seen), sent);
}

class e2e_paging_test : public e2e_test {
protected:
  std::string config() override {
    return "password-hash = min\nsync-page-default = 7\nsync-page-max = 7\ncache-entries = 16";
  }
};

TEST_F(e2e_paging_test, a_device_joining_late_catches_up_the_whole_history_in_pages) {
  auto a = online("alice", "phone");
  for (uint64_t id = 1; id <= 100; ++id)
    ASSERT_FALSE(a->rpc.send(id, "bob", "m" + std::to_string(id), nullptr));
  auto late = online("bob", "new-laptop");
  EXPECT_EQ(late->info.max_seq, 100u);
  size_t pages = 0;
  for (; pages < 100; ++pages) {
    protocol::sync_result page;
    ASSERT_FALSE(late->rpc.sync(late->epoch, late->cursor, 0, &page));
    EXPECT_LE(page.entries.size(), 7u); // the server's page cap, whatever the client asks
    for (auto& e : page.entries) {
      late->seen.push_back(e);
      late->cursor = e.seq;
    }
    if (late->cursor >= page.max_seq)
      break;
  }
  EXPECT_EQ(pages + 1, 15u); // ceil(100 / 7): most pages from storage, the last from the cache
  ASSERT_EQ(late->seen.size(), 100u);
  for (size_t i = 0; i < late->seen.size(); ++i)
    EXPECT_EQ(late->seen[i].body, "m" + std::to_string(i + 1));
}

TEST_F(e2e_test, two_devices_of_one_user_sending_at_once) {
  constexpr int per_device = 50;
  std::vector<protocol::send_result> results[2];
  std::vector<std::thread> threads;
  for (int d = 0; d < 2; ++d)
    threads.emplace_back([&, d] {
      device dev; // one client per thread: KJ loops are per thread
      ASSERT_FALSE(dev.open(srv->address(), "alice", "dev" + std::to_string(d)));
      for (int i = 0; i < per_device; ++i) {
        protocol::send_result r;
        auto err = dev.rpc.send(1000 * (d + 1) + i, "bob", "d" + std::to_string(d), &r);
        ASSERT_FALSE(err) << err.to_string();
        results[d].push_back(r);
      }
    });
  for (auto& t : threads)
    t.join();
  std::set<uint32_t> seqs;
  for (auto& rs : results)
    for (auto& r : rs)
      EXPECT_TRUE(seqs.insert(r.seq).second) << "seq " << r.seq << " given twice";
  EXPECT_EQ(seqs.size(), 2u * per_device);
  auto mine = online("alice", "tablet");
  mine->catch_up();
  ASSERT_EQ(mine->seen.size(), 2u * per_device);
  for (size_t i = 1; i < mine->seen.size(); ++i)
    EXPECT_LT(mine->seen[i - 1].seq, mine->seen[i].seq);
  auto b = online("bob", "phone");
  b->catch_up();
  EXPECT_EQ(b->seen.size(), 2u * per_device);
}

TEST_F(e2e_test, a_device_offline_across_several_restarts_misses_nothing) {
  auto bob_epoch = online("bob", "phone")->epoch; // bob's phone was here once, then offline
  std::vector<std::string> sent;
  for (int round = 0; round < 3; ++round) {
    auto a = online("alice", "phone");
    for (int i = 0; i < 5; ++i) {
      sent.push_back("r" + std::to_string(round) + "m" + std::to_string(i));
      ASSERT_FALSE(a->rpc.send(100 * round + i + 1, "bob", sent.back(), nullptr));
    }
    a.reset();
    if (round % 2 == 0)
      srv->kill();
    else
      EXPECT_EQ(srv->stop(), 0);
    ASSERT_TRUE(srv->start());
  }
  auto b = online("bob", "phone");
  EXPECT_EQ(b->epoch, bob_epoch);
  b->catch_up();
  EXPECT_EQ(bodies(b->seen), sent);
}

} // namespace
} // namespace missive::test

namespace missive::test {
namespace {

TEST_F(e2e_test, an_operator_epoch_reset_makes_devices_read_the_mailbox_again) {
  auto a = online("alice", "phone");
  ASSERT_FALSE(a->rpc.send(1, "bob", "one", nullptr));
  ASSERT_FALSE(a->rpc.send(2, "bob", "two", nullptr));
  protocol::device bob(device_options("bob", "phone"));
  std::vector<std::string> seen;
  auto step_until = [&](size_t n) {
    for (int i = 0; i < 200 && seen.size() < n; ++i) {
      auto ev = bob.step(std::chrono::milliseconds(20));
      if (ev.reset)
        seen.clear();
      for (auto& e : ev.entries)
        seen.push_back(e.body);
    }
  };
  step_until(2);
  ASSERT_EQ(seen, (std::vector<std::string>{"one", "two"}));
  auto old_epoch = bob.epoch();

  a.reset();
  ASSERT_EQ(srv->stop(), 0);
  // The server must be stopped: the database is locked while it runs.
  auto r = run_command({MISSIVE_SERVER_BIN, "--data", (dir.path / "data").string(),
                        "--reset-epoch", "bob"},
                       dir.path);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("reset epoch of bob"), std::string::npos) << r.out;
  auto unknown = run_command({MISSIVE_SERVER_BIN, "--data", (dir.path / "data").string(),
                              "--reset-epoch", "nobody"},
                             dir.path);
  EXPECT_EQ(unknown.code, 2);
  ASSERT_TRUE(srv->start());

  // Bob's device reconnects, hears the epoch changed, and reads everything again.
  seen.clear();
  step_until(2);
  EXPECT_EQ(seen, (std::vector<std::string>{"one", "two"}));
  EXPECT_NE(bob.epoch(), old_epoch) << bob.fatal().to_string() << " / " << bob.last_error().to_string();
}

TEST_F(e2e_test, a_retried_send_finds_its_first_result_across_an_epoch_reset) {
  auto a = online("alice", "phone");
  protocol::send_result first;
  ASSERT_FALSE(a->rpc.send(7, "bob", "x", &first));
  a.reset();
  ASSERT_EQ(srv->stop(), 0);
  ASSERT_EQ(run_command({MISSIVE_SERVER_BIN, "--data", (dir.path / "data").string(),
                         "--reset-epoch", "*"},
                        dir.path)
              .code,
            0);
  ASSERT_TRUE(srv->start());
  auto a2 = online("alice", "phone");
  protocol::send_result again;
  ASSERT_FALSE(a2->rpc.send(7, "bob", "x", &again));
  auto b = online("bob", "phone");
  b->catch_up();
  EXPECT_EQ(b->seen.size(), 1u);
}

} // namespace
} // namespace missive::test

namespace missive::test {
namespace {

/// The same server with three gateway threads: connections land on different threads.
class e2e_threads_test : public e2e_test {
protected:
  std::string config() override { return "password-hash = min\ngateway-threads = 3"; }
};

TEST_F(e2e_threads_test, devices_on_different_gateway_threads_chat_and_the_server_stops_cleanly) {
  // Six connections, round-robin over three threads: each pair spans threads.
  std::vector<std::unique_ptr<device>> alice, bob;
  for (int i = 0; i < 3; ++i) {
    alice.push_back(online("alice", "a" + std::to_string(i)));
    bob.push_back(online("bob", "b" + std::to_string(i)));
  }
  for (int i = 0; i < 3; ++i) {
    protocol::send_result r;
    ASSERT_FALSE(alice[i]->rpc.send(10 + i, "bob", "m" + std::to_string(i), &r));
  }
  for (auto& b : bob) {
    ASSERT_TRUE(b->receive(3));
    EXPECT_EQ(bodies(b->seen), (std::vector<std::string>{"m0", "m1", "m2"}));
  }
  EXPECT_EQ(srv->stop(), 0);
  EXPECT_NE(srv->proc().out().find("missive-server stopped"), std::string::npos);
}

} // namespace
} // namespace missive::test

// End to end: the send policy of the real missive-server over real Cap'n Proto RPC — the
// blocklist, the rate limit, the size limits and the spam rules with their SIGHUP reload.

#include <csignal>
#include <fstream>

#include <gtest/gtest.h>

#include "missive/protocol/client.hpp"
#include "missive/protocol/device.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;
using protocol::error_code;

class policy_e2e : public ::testing::Test {
protected:
  void start(const std::string& extra_config) {
    srv = std::make_unique<server>(dir.path, "password-hash = min\n" + extra_config);
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice", "bob", "mallory"}));
  }

  std::unique_ptr<protocol::client> login(const std::string& user) { return srv->login(user); }

  static protocol::error send(protocol::client& c, uint64_t id, const std::string& to,
                              const std::string& body, protocol::send_result* out = nullptr) {
    protocol::send_result r;
    return c.send(id, to, body, out ? out : &r);
  }

  static size_t mailbox_size(protocol::client& c) { return mailbox(c).size(); }

  void write_rules(const std::string& text) {
    std::ofstream(rules) << text;
  }

  temp_dir dir;
  std::filesystem::path rules = dir.path / "spam.rules";
  std::unique_ptr<server> srv;
};

TEST_F(policy_e2e, block_unblock_and_list_over_rpc) {
  start("");
  auto bob = login("bob");
  auto mallory = login("mallory");
  ASSERT_FALSE(bob->block("mallory"));
  auto err = send(*mallory, 1, "bob", "hi");
  EXPECT_EQ(err.code, error_code::blocked) << err.to_string();
  EXPECT_NE(err.message.find("does not accept messages from mallory"), std::string::npos);
  EXPECT_EQ(mailbox_size(*bob), 0u);
  EXPECT_EQ(mailbox_size(*mallory), 0u);
  std::vector<std::string> list;
  ASSERT_FALSE(bob->list_blocked(&list));
  EXPECT_EQ(list, (std::vector<std::string>{"mallory"}));
  EXPECT_EQ(bob->block("bob").code, error_code::invalid_argument);
  EXPECT_EQ(bob->block("nobody").code, error_code::unknown_user);
  ASSERT_FALSE(bob->unblock("mallory"));
  EXPECT_FALSE(send(*mallory, 2, "bob", "sorry"));
  EXPECT_EQ(mailbox_size(*bob), 1u);
}

TEST_F(policy_e2e, the_blocklist_survives_sigkill) {
  start("");
  {
    auto bob = login("bob");
    ASSERT_FALSE(bob->block("mallory"));
  }
  srv->kill();
  ASSERT_TRUE(srv->start());
  auto mallory = login("mallory");
  EXPECT_EQ(send(*mallory, 1, "bob", "hi").code, error_code::blocked);
}

TEST_F(policy_e2e, a_fast_sender_is_rate_limited_with_a_retry_time) {
  start("rate-limit-burst = 3\nrate-limit-per-second = 0.01");
  auto alice = login("alice");
  for (uint64_t id = 1; id <= 3; ++id)
    ASSERT_FALSE(send(*alice, id, "bob", "m"));
  auto err = send(*alice, 4, "bob", "m");
  EXPECT_EQ(err.code, error_code::rate_limited) << err.to_string();
  EXPECT_GT(err.retry_after_ms, 50000u);
  EXPECT_LE(err.retry_after_ms, 100000u);
  EXPECT_EQ(mailbox_size(*alice), 3u);
  auto bob = login("bob");
  EXPECT_FALSE(send(*bob, 1, "alice", "not limited by alice's bucket"));
}

TEST_F(policy_e2e, a_resilient_device_keeps_rate_limited_sends_queued_and_delivers_them_later) {
  start("rate-limit-burst = 1\nrate-limit-per-second = 5");
  protocol::device_options opts;
  opts.server = srv->address();
  opts.user = "alice";
  opts.password = "secret1";
  opts.device = "phone";
  protocol::device d(opts);
  for (int i = 0; i < 3; ++i)
    d.queue_send("bob", "m" + std::to_string(i));
  size_t acked = 0, rejected = 0;
  bool limited = false;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (acked + rejected < 3 && std::chrono::steady_clock::now() < deadline) {
    auto ev = d.step(50ms);
    acked += ev.acked.size();
    rejected += ev.rejected.size();
    limited |= d.last_error().code == error_code::rate_limited;
  }
  EXPECT_EQ(acked, 3u);
  EXPECT_EQ(rejected, 0u);
  EXPECT_TRUE(limited);
  EXPECT_EQ(d.reconnects(), 0u); // a rate limit is no reason to drop the connection
  auto bob = login("bob");
  EXPECT_EQ(mailbox_size(*bob), 3u);
}

TEST_F(policy_e2e, body_and_whole_request_have_limits) {
  start("max-body-bytes = 1000\nmax-request-bytes = 1001");
  auto alice = login("alice");
  auto body = send(*alice, 1, "bob", std::string(1001, 'x'));
  EXPECT_EQ(body.code, error_code::too_large);
  EXPECT_NE(body.message.find("body of 1001 bytes"), std::string::npos) << body.message;
  // Within the body limit, but the request around it (recipient, framing) is over its own.
  auto request = send(*alice, 2, "bob", std::string(990, 'x'));
  EXPECT_EQ(request.code, error_code::too_large);
  EXPECT_NE(request.message.find("request of"), std::string::npos) << request.message;
  EXPECT_FALSE(send(*alice, 3, "bob", "small"));
  EXPECT_EQ(mailbox_size(*alice), 1u);
}

TEST_F(policy_e2e, spam_rules_reload_on_sighup_and_a_bad_file_keeps_the_old_rules) {
  write_rules("# test rules\nreject keyword lottery\n");
  start("spam-rules = " + rules.string());
  auto alice = login("alice");
  auto err = send(*alice, 1, "bob", "You won the LOTTERY");
  EXPECT_EQ(err.code, error_code::spam) << err.to_string();
  EXPECT_FALSE(send(*alice, 2, "bob", "casino night?"));

  write_rules("allow regex ^casino night\\?$\nreject keyword casino\n");
  srv->proc().signal(SIGHUP);
  ASSERT_TRUE(srv->proc().wait_for_error("spam rules reloaded: 2 rules", 10s))
    << srv->proc().err();
  EXPECT_FALSE(send(*alice, 3, "bob", "You won the LOTTERY"));
  EXPECT_EQ(send(*alice, 4, "bob", "online casino").code, error_code::spam);
  EXPECT_FALSE(send(*alice, 5, "bob", "casino night?"));

  write_rules("reject keyword casino\nreject regex (unclosed\n");
  srv->proc().signal(SIGHUP);
  auto log = srv->proc().wait_for_error("spam rules NOT reloaded", 10s);
  ASSERT_TRUE(log) << srv->proc().err();
  EXPECT_NE(log->find(":2: bad regular expression `(unclosed`"), std::string::npos) << *log;
  EXPECT_EQ(send(*alice, 6, "bob", "online casino").code, error_code::spam);
  EXPECT_FALSE(send(*alice, 7, "bob", "You won the LOTTERY"));
  EXPECT_EQ(mailbox_size(*alice), 4u); // ids 2, 3, 5, 7
}

TEST(policy_e2e_startup, a_bad_spam_rules_file_stops_startup_with_its_line) {
  temp_dir dir;
  std::ofstream(dir.path / "bad.rules") << "reject keyword ok\nban keyword x\n";
  std::ofstream(dir.path / "bad.conf") << "spam-rules = " << (dir.path / "bad.rules").string()
                                        << "\n";
  auto r = run_command({MISSIVE_SERVER_BIN, "--config", (dir.path / "bad.conf").string(),
                        "--listen", "127.0.0.1:0", "--data", (dir.path / "data").string()},
                       dir.path);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("bad.rules:2: expected `reject` or `allow`, got `ban`"), std::string::npos)
    << r.err;
}

} // namespace
} // namespace missive::test

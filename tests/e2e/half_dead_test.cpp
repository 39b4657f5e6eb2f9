// A connection that stays open but carries nothing (a NAT that forgot it, a peer that froze):
// both sides must notice, through the fault proxy's blackhole.

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "missive/protocol/device.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;

/// A server (with `config`) and the fault proxy in front of it, whose SIGUSR2 turns every
/// connection through it into one that is open but carries nothing.
struct half_dead : ::testing::Test {
  void start(const std::string& config) {
    srv.emplace(dir.path, config);
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice", "bob"}));
    proxy.emplace(std::vector<std::string>{MISSIVE_PROXY_BIN, "--upstream", srv->address()},
                  dir.path, "proxy");
    auto out = proxy->wait_for_output("listening on ", 20s);
    ASSERT_TRUE(out);
    auto pos = out->find("listening on ") + 13;
    proxy_address = out->substr(pos, out->find('\n', pos) - pos);
  }

  temp_dir dir;
  std::optional<server> srv;
  std::optional<process> proxy;
  std::string proxy_address;
};

/// Waits (bounded) for the server to say it closed the connection of `who` because of `why`.
bool server_closed(server& srv, const std::string& who, const std::string& why) {
  auto line = "closing the connection of " + who + ": " + why;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (srv.proc().err().find(line) == std::string::npos
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  return srv.proc().err().find(line) != std::string::npos;
}

TEST_F(half_dead, the_server_drops_a_silent_device_and_the_device_reconnects) {
  ASSERT_NO_FATAL_FAILURE(
    start("password-hash = min\nheartbeat-interval-ms = 300\npush-timeout-ms = 1000"));

  protocol::device_options opts;
  opts.server = proxy_address;
  opts.user = "bob";
  opts.password = "secret1";
  opts.device = "phone";
  opts.call_timeout = 1000ms;
  opts.backoff_min = 20ms;
  opts.backoff_max = 200ms;
  protocol::device bob(opts);
  auto until = [&](auto done, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline)
      bob.step(50ms);
    return done();
  };
  ASSERT_TRUE(until([&] { return bob.online(); }, 10s));

  // A quiet but healthy connection is kept: heartbeats are answered.
  auto quiet_until = std::chrono::steady_clock::now() + 1s;
  until([&] { return std::chrono::steady_clock::now() > quiet_until; }, 2s);
  EXPECT_EQ(bob.reconnects(), 0u);
  EXPECT_EQ(srv->proc().err().find("closing the connection"), std::string::npos);

  proxy->signal(SIGUSR2); // bob's connection is now open but dead
  // The server notices within a heartbeat and a push timeout, and drops the device.
  EXPECT_TRUE(server_closed(*srv, "bob/phone", "no answer to heartbeat")) << srv->proc().err();

  // Meanwhile alice writes; bob's device notices the silence, reconnects and catches up.
  protocol::client alice;
  ASSERT_FALSE(alice.connect(srv->address()));
  ASSERT_FALSE(alice.login("alice", "secret1", "laptop", nullptr));
  ASSERT_FALSE(alice.send(1, "bob", "while you were away", nullptr));
  std::vector<protocol::entry> got;
  auto deadline2 = std::chrono::steady_clock::now() + 15s;
  while (got.empty() && std::chrono::steady_clock::now() < deadline2) {
    auto ev = bob.step(50ms);
    got.insert(got.end(), ev.entries.begin(), ev.entries.end());
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, "while you were away");
  EXPECT_GE(bob.reconnects(), 1u);
}

TEST_F(half_dead, a_notify_the_device_does_not_answer_closes_its_connection) {
  // Heartbeats would come only after a minute: only the notify can time out here.
  ASSERT_NO_FATAL_FAILURE(
    start("password-hash = min\nheartbeat-interval-ms = 60000\npush-timeout-ms = 400"));
  protocol::client bob;
  ASSERT_FALSE(bob.connect(proxy_address));
  ASSERT_FALSE(bob.login("bob", "secret1", "phone", nullptr));
  protocol::client alice;
  ASSERT_FALSE(alice.connect(srv->address()));
  ASSERT_FALSE(alice.login("alice", "secret1", "laptop", nullptr));

  // Answered notifies keep the connection.
  ASSERT_FALSE(alice.send(1, "bob", "one", nullptr));
  notice n;
  ASSERT_TRUE(bob.wait_push(5s, &n));
  bob.pump(600ms); // more than the push timeout, answering
  EXPECT_EQ(srv->proc().err().find("closing the connection"), std::string::npos)
    << srv->proc().err();

  proxy->signal(SIGUSR2); // bob's connection is now open but dead
  ASSERT_FALSE(alice.send(2, "bob", "two", nullptr)); // stored; its notify goes unanswered
  EXPECT_TRUE(server_closed(*srv, "bob/phone", "notify not confirmed")) << srv->proc().err();
  EXPECT_EQ(srv->proc().err().find("closing the connection of alice"), std::string::npos);
}

} // namespace
} // namespace missive::test

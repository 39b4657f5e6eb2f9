// A connection that stays open but carries nothing (a NAT that forgot it, a peer that froze):
// both sides must notice, through the fault proxy's blackhole.

#include <gtest/gtest.h>

#include "missive/protocol/device.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;

TEST(half_dead, the_server_drops_a_silent_device_and_the_device_reconnects) {
  temp_dir dir;
  server srv(dir.path, "password-hash = min\nheartbeat-interval-ms = 300\npush-timeout-ms = 1000");
  ASSERT_TRUE(srv.start());
  ASSERT_TRUE(srv.create_accounts({"alice", "bob"}));
  process proxy({MISSIVE_PROXY_BIN, "--upstream", srv.address()}, dir.path, "proxy");
  auto out = proxy.wait_for_output("listening on ", 20s);
  ASSERT_TRUE(out);
  auto pos = out->find("listening on ") + 13;
  auto proxy_address = out->substr(pos, out->find('\n', pos) - pos);

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
  EXPECT_EQ(srv.proc().err().find("closing the connection"), std::string::npos);

  proxy.signal(SIGUSR2); // bob's connection is now open but dead
  // The server notices within a heartbeat and a push timeout, and drops the device.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (srv.proc().err().find("closing the connection of bob/phone") == std::string::npos
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_NE(srv.proc().err().find("closing the connection of bob/phone"), std::string::npos)
    << srv.proc().err();

  // Meanwhile alice writes; bob's device notices the silence, reconnects and catches up.
  protocol::client alice;
  ASSERT_FALSE(alice.connect(srv.address()));
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

} // namespace
} // namespace missive::test

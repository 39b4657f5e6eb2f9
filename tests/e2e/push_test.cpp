// End to end: third-party push from the real missive-server through the `webhook` provider to
// a local HTTP receiver standing in for the push gateway (Matrix push gateway format).

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "load_push.hpp"
#include "missive/protocol/client.hpp"
#include "support/http_receiver.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

/// `user`'s phone registers its push token and goes offline.
void go_offline_with_token(server& srv, const std::string& user, const std::string& token) {
  auto phone = srv.login(user, "phone");
  ASSERT_FALSE(phone->set_push_token("com.example.chat.ios", token));
  phone->disconnect();
}

class push_e2e : public ::testing::Test {
protected:
  void start(const std::string& extra = "") {
    srv = std::make_unique<server>(dir.path, "password-hash = min\n"
                                             "push-provider = webhook\n"
                                             "push-gateway-url = "
                                               + gateway.url()
                                               + "\n"
                                                 "push-disconnect-delay-ms = 300\n"
                                                 "push-min-interval-ms = 1500\n"
                                                 "push-retry-min-ms = 200\n"
                                                 "push-retry-max-ms = 400\n"
                                               + extra);
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice", "bob"}));
    alice = login("alice", "phone");
  }

  std::unique_ptr<protocol::client> login(const std::string& user, const std::string& device) {
    return srv->login(user, device);
  }

  /// Bob's phone registers its token and goes offline.
  void register_bob_phone(const std::string& token = "pushkey-1") {
    go_offline_with_token(*srv, "bob", token);
  }

  /// A server whose push gateway is unreachable (nothing listens on port 1).
  void start_unreachable(int max_attempts) {
    srv = std::make_unique<server>(dir.path, "password-hash = min\npush-provider = webhook\n"
                                             "push-gateway-url = http://127.0.0.1:1/notify\n"
                                             "push-disconnect-delay-ms = 0\n"
                                             "push-retry-min-ms = 100\npush-max-attempts = "
                                               + std::to_string(max_attempts) + "\n");
    ASSERT_TRUE(srv->start());
  }

  void send(uint64_t id, const std::string& body) {
    protocol::send_result r;
    auto err = alice->send(id, "bob", body, &r);
    ASSERT_FALSE(err) << err.to_string();
  }

  static json notification(const http_receiver::request& r) {
    auto doc = json::parse(r.body, nullptr, false);
    EXPECT_TRUE(doc.is_object()) << r.body;
    return doc.is_object() ? doc["notification"] : json{};
  }

  temp_dir dir;
  http_receiver gateway;
  std::unique_ptr<server> srv;
  std::unique_ptr<protocol::client> alice;
};

TEST_F(push_e2e, an_offline_device_is_woken_in_the_matrix_push_format_without_content) {
  start();
  register_bob_phone();
  send(1, "secret plans");
  ASSERT_TRUE(gateway.wait_for(1, 10s));
  auto r = gateway.requests()[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/_matrix/push/v1/notify");
  EXPECT_EQ(r.content_type, "application/json");
  auto n = notification(r);
  ASSERT_EQ(n["devices"].size(), 1u);
  EXPECT_EQ(n["devices"][0]["pushkey"], "pushkey-1");
  EXPECT_EQ(n["devices"][0]["app_id"], "com.example.chat.ios");
  EXPECT_EQ(n["counts"]["unread"], 1);
  EXPECT_EQ(r.body.find("secret plans"), std::string::npos) << "no body leaves without previews";
  EXPECT_FALSE(n.contains("content"));
  EXPECT_FALSE(n.contains("sender"));
}

TEST_F(push_e2e, previews_carry_the_sender_and_the_start_of_the_body_when_allowed) {
  start("push-previews = true\n");
  register_bob_phone();
  send(1, "lunch?");
  ASSERT_TRUE(gateway.wait_for(1, 10s));
  auto n = notification(gateway.requests()[0]);
  EXPECT_EQ(n["sender"], "alice");
  EXPECT_EQ(n["content"]["body"], "lunch?");
}

TEST_F(push_e2e, an_online_device_gets_its_notify_and_no_push) {
  start();
  auto phone = login("bob", "phone");
  ASSERT_FALSE(phone->set_push_token("com.example.chat.ios", "pushkey-1"));
  send(1, "hi");
  protocol::notice n;
  ASSERT_TRUE(phone->wait_push(10s, &n));
  // Long enough for the delay and a retry round: nothing may arrive.
  phone->pump(1s);
  EXPECT_TRUE(gateway.requests().empty());
}

TEST_F(push_e2e, a_quick_reconnect_needs_no_push) {
  start("push-disconnect-delay-ms = 2000\n");
  auto phone = login("bob", "phone");
  ASSERT_FALSE(phone->set_push_token("com.example.chat.ios", "pushkey-1"));
  phone->disconnect();
  send(1, "hi");
  auto back = login("bob", "phone"); // well within the delay
  back->pump(2500ms);
  EXPECT_TRUE(gateway.requests().empty());
}

TEST_F(push_e2e, a_burst_is_coalesced_into_few_pushes_with_the_final_unread_count) {
  start();
  register_bob_phone();
  for (uint64_t id = 1; id <= 10; ++id)
    send(id, "m" + std::to_string(id));
  // The first push goes after the disconnect delay, the next not before the interval is over.
  ASSERT_TRUE(gateway.wait_for(1, 10s));
  if (notification(gateway.requests()[0])["counts"]["unread"] != 10) { // the burst straddled it
    ASSERT_TRUE(gateway.wait_for(2, 10s));
  }
  alice->pump(2s); // one more interval: nothing else may come
  auto rs = gateway.requests();
  EXPECT_LE(rs.size(), 2u);
  EXPECT_EQ(notification(rs.back())["counts"]["unread"], 10);
  if (rs.size() == 2) {
    EXPECT_GE(rs[1].at - rs[0].at, 1400ms);
  }
}

TEST_F(push_e2e, a_gateway_that_fails_is_retried_until_it_takes_the_push) {
  start();
  gateway.script({{503, "{}"}, {502, "{}"}});
  register_bob_phone();
  send(1, "hi");
  ASSERT_TRUE(gateway.wait_for(3, 10s));
  alice->pump(1s);
  auto rs = gateway.requests();
  EXPECT_EQ(rs.size(), 3u); // two failures, one success, then quiet
  for (auto& r : rs)
    EXPECT_EQ(notification(r)["devices"][0]["pushkey"], "pushkey-1");
  auto log = srv->proc().err();
  EXPECT_NE(log.find("push gateway on bob/phone: HTTP 503"), std::string::npos) << log;
}

TEST_F(push_e2e, a_pushkey_the_gateway_rejects_is_removed_from_the_device) {
  start();
  gateway.script({{200, R"({"rejected": ["pushkey-1"]})"}});
  register_bob_phone();
  send(1, "hi");
  ASSERT_TRUE(gateway.wait_for(1, 10s));
  alice->pump(2s); // past the interval
  send(2, "hello?");
  alice->pump(2s);
  EXPECT_EQ(gateway.requests().size(), 1u);
  // A new token from the device works again.
  register_bob_phone("pushkey-2");
  send(3, "there you are");
  ASSERT_TRUE(gateway.wait_for(2, 10s));
  EXPECT_EQ(notification(gateway.requests()[1])["devices"][0]["pushkey"], "pushkey-2");
}

TEST_F(push_e2e, an_unreachable_gateway_is_logged_and_nothing_else_breaks) {
  start_unreachable(2);
  ASSERT_TRUE(srv->create_accounts({"alice", "bob"}));
  alice = login("alice", "phone");
  register_bob_phone();
  send(1, "hi");
  ASSERT_TRUE(srv->proc().wait_for_error("push gateway unreachable for bob/phone", 10s))
    << srv->proc().err();
  auto bob = login("bob", "laptop");
  protocol::sync_result page;
  ASSERT_FALSE(bob->sync(0, 0, 0, &page));
  EXPECT_EQ(page.entries.size(), 1u);
}

TEST_F(push_e2e, a_gateway_that_is_down_fills_the_log_with_one_line_not_one_per_attempt) {
  start_unreachable(3);
  ASSERT_TRUE(srv->create_accounts({"alice", "r0", "r1", "r2", "r3", "r4", "r5"}));
  alice = login("alice", "phone");
  for (int i = 0; i < 6; ++i) {
    auto user = "r" + std::to_string(i);
    go_offline_with_token(*srv, user, "key-" + user);
    protocol::send_result r;
    ASSERT_FALSE(alice->send(uint64_t(i + 1), user, "hi", &r));
  }
  // 18 attempts fail within about half a second (3 each, 100 then 200 ms apart): one line
  // within the report interval (10 s).
  ASSERT_TRUE(srv->proc().wait_for_error("push gateway unreachable for", 10s));
  alice->pump(1500ms);
  auto log = srv->proc().err();
  size_t lines = 0;
  for (auto pos = log.find("push gateway unreachable"); pos != std::string::npos;
       pos = log.find("push gateway unreachable", pos + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << log;
}

TEST(push_e2e_burst, a_burst_for_many_devices_waits_for_the_gateways_few_connections) {
  // A gateway that takes 200 ms per push, and a server allowed 2 pushes in flight: six
  // devices pushed at once must never have more than 2 requests (or connections) open.
  auto t0 = std::chrono::steady_clock::now();
  load::push_gateway gateway("127.0.0.1:0", 200ms, [t0] {
    return (std::chrono::steady_clock::now() - t0).count();
  });
  ASSERT_EQ(gateway.error(), "");
  temp_dir dir;
  server srv(dir.path, "password-hash = min\npush-provider = webhook\n"
                       "push-gateway-url = http://127.0.0.1:"
                         + std::to_string(gateway.port())
                         + "/_matrix/push/v1/notify\n"
                           "push-disconnect-delay-ms = 0\npush-gateway-connections = 2\n");
  ASSERT_TRUE(srv.start());
  ASSERT_TRUE(srv.create_accounts({"alice", "r0", "r1", "r2", "r3", "r4", "r5"}));
  std::vector<std::string> users{"alice"};
  for (int i = 0; i < 6; ++i)
    users.push_back("r" + std::to_string(i));
  for (int i = 1; i <= 6; ++i)
    go_offline_with_token(srv, users[i], "key-" + users[i]);
  auto alice = srv.login("alice", "phone");
  for (int i = 1; i <= 6; ++i) {
    protocol::send_result r;
    ASSERT_FALSE(alice->send(uint64_t(i), users[i], "hi", &r));
  }
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (gateway.devices().size() < 6 && std::chrono::steady_clock::now() < deadline)
    alice->pump(50ms);
  auto got = gateway.devices();
  ASSERT_EQ(got.size(), 6u) << srv.proc().err();
  for (int i = 1; i <= 6; ++i)
    EXPECT_EQ(got["key-" + users[i]].last_unread, 1u) << users[i];
  EXPECT_EQ(gateway.peak_requests(), 2u);
  EXPECT_LE(gateway.peak_connections(), 2u);
  EXPECT_EQ(gateway.malformed(), 0u);
}

TEST(push_e2e_config, webhook_without_a_url_stops_startup) {
  temp_dir dir;
  std::ofstream(dir.path / "p.conf") << "push-provider = webhook\n";
  auto r = run_command({MISSIVE_SERVER_BIN, "--config", (dir.path / "p.conf").string(), "--listen",
                        "127.0.0.1:0", "--data", (dir.path / "data").string()},
                       dir.path);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("push-provider = webhook needs push-gateway-url"), std::string::npos)
    << r.err;
}

} // namespace
} // namespace missive::test

// End to end: groups over real Cap'n Proto RPC against the real missive-server — operations,
// typed errors on the wire, system entries, fan-out, and a retried send across SIGKILL.

#include <algorithm>

#include <gtest/gtest.h>

#include "missive/protocol/client.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;
using protocol::error_code;

class group_e2e : public ::testing::Test {
protected:
  void SetUp() override {
    srv = std::make_unique<server>(dir.path, "password-hash = min\nmax-group-size = 4");
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice", "bob", "carol", "dave", "erin"}));
  }

  std::unique_ptr<protocol::client> login(const std::string& user,
                                          const std::string& device = "phone") {
    return srv->login(user, device);
  }

  static size_t count_body(const std::vector<protocol::entry>& xs, const std::string& body) {
    return std::count_if(xs.begin(), xs.end(), [&](auto& e) {
      return e.kind == protocol::entry_kind::message && e.body == body;
    });
  }

  temp_dir dir;
  std::unique_ptr<server> srv;
};

TEST_F(group_e2e, a_group_chat_over_rpc) {
  auto alice = login("alice");
  auto bob = login("bob");
  ASSERT_FALSE(alice->create_group("#team"));
  ASSERT_FALSE(alice->add_member("#team", "bob"));
  ASSERT_FALSE(alice->add_member("#team", "carol"));
  // Bob is online: the message is pushed to him.
  protocol::send_result r;
  ASSERT_FALSE(alice->send(1, "#team", "standup in 5", &r));
  bool got = false;
  for (int i = 0; i < 10 && !got; ++i) {
    protocol::notice n;
    if (!bob->wait_push(5s, &n))
      break;
    for (auto& e : n.entries)
      got |= e.body == "standup in 5" && e.to == "#team" && e.from == "alice";
    if (!n.complete)
      got |= count_body(mailbox(*bob), "standup in 5") == 1;
  }
  EXPECT_TRUE(got);
  // Carol was offline: she finds the system entries and the message when she syncs.
  auto carol = login("carol");
  auto box = mailbox(*carol);
  ASSERT_EQ(box.size(), 2u);
  EXPECT_EQ(box[0].kind, protocol::entry_kind::member_added);
  EXPECT_EQ(box[0].from, "alice");
  EXPECT_EQ(box[0].to, "#team");
  EXPECT_EQ(box[0].body, "carol");
  EXPECT_EQ(box[1].body, "standup in 5");
  std::vector<protocol::group_member> members;
  ASSERT_FALSE(carol->list_members("#team", &members));
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].user, "alice");
  EXPECT_EQ(members[0].role, protocol::group_role::owner);
  std::vector<std::string> groups;
  ASSERT_FALSE(carol->list_groups(&groups));
  EXPECT_EQ(groups, (std::vector<std::string>{"#team"}));
}

TEST_F(group_e2e, typed_errors_on_the_wire) {
  auto alice = login("alice");
  auto dave = login("dave");
  ASSERT_FALSE(alice->create_group("#team"));
  EXPECT_EQ(alice->create_group("#team").code, error_code::group_exists);
  EXPECT_EQ(alice->create_group("team").code, error_code::invalid_argument);
  EXPECT_EQ(alice->add_member("#nope", "bob").code, error_code::unknown_group);
  EXPECT_EQ(dave->add_member("#team", "dave").code, error_code::not_member);
  EXPECT_EQ(alice->leave_group("#team").code, error_code::not_allowed);
  ASSERT_FALSE(alice->add_member("#team", "bob"));
  auto bob = login("bob");
  EXPECT_EQ(bob->remove_member("#team", "alice").code, error_code::not_allowed);
  EXPECT_EQ(alice->remove_member("#team", "alice").code, error_code::invalid_argument);
  protocol::send_result r;
  EXPECT_EQ(dave->send(1, "#team", "hi", &r).code, error_code::not_member);
  EXPECT_EQ(dave->send(2, "#nope", "hi", &r).code, error_code::unknown_group);
  ASSERT_FALSE(alice->add_member("#team", "carol"));
  ASSERT_FALSE(alice->add_member("#team", "dave"));
  EXPECT_EQ(alice->add_member("#team", "erin").code, error_code::group_full);
  EXPECT_TRUE(mailbox(*login("erin")).empty());
}

TEST_F(group_e2e, a_retried_group_send_after_sigkill_stores_one_copy_per_member) {
  {
    auto alice = login("alice");
    ASSERT_FALSE(alice->create_group("#team"));
    ASSERT_FALSE(alice->add_member("#team", "bob"));
    ASSERT_FALSE(alice->add_member("#team", "carol"));
    protocol::send_result r;
    ASSERT_FALSE(alice->send(99, "#team", "exactly once", &r));
  }
  srv->kill();
  ASSERT_TRUE(srv->start());
  auto alice = login("alice");
  protocol::send_result r;
  ASSERT_FALSE(alice->send(99, "#team", "exactly once", &r)); // the answer was "lost"
  for (auto* user : {"alice", "bob", "carol"}) {
    auto c = login(user, "checker");
    EXPECT_EQ(count_body(mailbox(*c), "exactly once"), 1u) << user;
  }
}

} // namespace
} // namespace missive::test

// Groups on CAF's deterministic scheduler with a real LevelDB store: membership operations and
// their system entries, write diffusion of messages, idempotent retries, policy and limits.

#include "missive/actors/policy.hpp"

#include "fixture.hpp"

namespace missive::test {
namespace {

using kind = group_op::kind;
using storage::entry_kind;

class group_test : public actor_fixture {
protected:
  void SetUp() override {
    start(config);
    for (auto* u : {"alice", "bob", "carol", "dave"})
      register_user(u);
  }

  void restart() {
    stop();
    start(config);
  }

  /// alice owns #team with bob and carol.
  void make_team() {
    auto a = login("alice", "secret1", "phone");
    ASSERT_TRUE(group(a, kind::create, "#team"));
    ASSERT_TRUE(group(a, kind::add, "#team", "bob"));
    ASSERT_TRUE(group(a, kind::add, "#team", "carol"));
  }

  /// The entries of `user`'s mailbox as "from>to:kind:body".
  std::vector<std::string> mailbox(const std::string& user) {
    auto d = login(user, "secret1", "reader");
    std::vector<std::string> out;
    for (auto& e : read_all(d))
      out.push_back(e.from + ">" + e.to + ":" + std::to_string(static_cast<int>(e.kind)) + ":"
                    + e.body);
    return out;
  }

  settings config;
};

TEST_F(group_test, membership_changes_are_system_entries_in_the_members_mailboxes) {
  make_team();
  EXPECT_EQ(mailbox("alice"), (std::vector<std::string>{"alice>#team:1:#team",
                                                        "alice>#team:2:bob",
                                                        "alice>#team:2:carol"}));
  EXPECT_EQ(mailbox("bob"), (std::vector<std::string>{"alice>#team:2:bob", "alice>#team:2:carol"}));
  EXPECT_EQ(mailbox("carol"), (std::vector<std::string>{"alice>#team:2:carol"}));
  auto b = login("bob", "secret1", "phone");
  ASSERT_TRUE(group(b, kind::leave, "#team"));
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(group(a, kind::remove, "#team", "carol"));
  // Bob learns he left, carol that she was removed; neither sees later changes.
  EXPECT_EQ(mailbox("bob").back(), "bob>#team:4:bob");
  EXPECT_EQ(mailbox("carol").back(), "alice>#team:3:carol");
  EXPECT_EQ(mailbox("bob").size(), 3u);
  EXPECT_EQ(mailbox("alice").size(), 5u);
  auto list = members(a, "#team");
  ASSERT_TRUE(list);
  EXPECT_EQ(*list, (std::vector<group_member>{{"alice", group_role::owner}}));
}

TEST_F(group_test, pipelined_sends_that_find_the_groups_actor_gone_keep_their_order) {
  config.user_idle_timeout = std::chrono::milliseconds(1000);
  restart();
  make_team();
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "#team", "one")); // alice's actor now knows the group's
  idle_for_three(std::chrono::milliseconds(1000)); // the group's actor idles out
  // "two" and "three" go to the stopped actor and come back; "four" arrives in between.
  pipelined(a, 2, "#team", "two");
  pipelined(a, 3, "#team", "three");
  sched.prioritize(a.owner());
  sched.run_once();
  pipelined(a, 4, "#team", "four");
  run();
  ASSERT_TRUE(all_answered());
  auto b = login("bob", "secret1", "phone");
  EXPECT_EQ(bodies(read_all(b)), (std::vector<std::string>{"one", "two", "three", "four"}));
}

TEST_F(group_test, a_message_reaches_every_member_with_its_own_seq_and_one_outgoing_copy) {
  make_team();
  auto a = login("alice", "secret1", "phone");
  auto c = login("carol", "secret1", "phone");
  auto r = send(a, 42, "#team", "hello team");
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(r->seq, 4u); // alice's mailbox: created, added, added, this
  for (auto* user : {"alice", "bob", "carol"}) {
    auto box = mailbox(user);
    EXPECT_EQ(std::count(box.begin(), box.end(), "alice>#team:0:hello team"), 1) << user;
  }
  auto bob = login("bob", "secret1", "phone2");
  auto bob_box = read_all(bob);
  EXPECT_EQ(bob_box.back().seq, 3u); // bob's own numbering
  EXPECT_EQ(bob_box.back().client_msg_id, 42u);
  // A member's reply goes to everyone else too.
  ASSERT_TRUE(send(c, 1, "#team", "hi!"));
  EXPECT_EQ(mailbox("alice").back(), "carol>#team:0:hi!");
  // Pushed to the online members.
  ASSERT_FALSE(c.pushes->empty());
}

TEST_F(group_test, a_retried_client_msg_id_creates_no_second_copy_anywhere) {
  make_team();
  auto a = login("alice", "secret1", "phone");
  auto first = send(a, 7, "#team", "once");
  ASSERT_TRUE(first);
  auto again = send(a, 7, "#team", "once"); // from the actor's window
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *first);
  restart(); // the window is gone: the retry goes through the whole fan-out again
  a = login("alice", "secret1", "phone");
  auto after = send(a, 7, "#team", "once");
  ASSERT_TRUE(after) << caf::to_string(after.error());
  EXPECT_EQ(*after, *first);
  for (auto* user : {"alice", "bob", "carol"}) {
    auto box = mailbox(user);
    EXPECT_EQ(std::count(box.begin(), box.end(), "alice>#team:0:once"), 1) << user;
  }
}

TEST_F(group_test, bad_group_operations_get_typed_errors_and_change_nothing) {
  make_team();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  auto d = login("dave", "secret1", "phone");
  EXPECT_EQ(group(a, kind::create, "#team").error(), errc::group_exists);
  EXPECT_EQ(group(a, kind::create, "team").error(), errc::invalid_argument);
  EXPECT_EQ(group(a, kind::create, "#bad name").error(), errc::invalid_argument);
  EXPECT_EQ(group(a, kind::add, "#nope", "bob").error(), errc::unknown_group);
  EXPECT_EQ(group(a, kind::add, "#team", "nobody").error(), errc::unknown_user);
  EXPECT_EQ(group(b, kind::add, "#team", "dave").error(), errc::not_allowed);
  EXPECT_EQ(group(d, kind::add, "#team", "dave").error(), errc::not_member);
  EXPECT_EQ(group(a, kind::remove, "#team", "alice").error(), errc::invalid_argument);
  EXPECT_EQ(group(b, kind::remove, "#team", "carol").error(), errc::not_allowed);
  EXPECT_EQ(group(a, kind::remove, "#team", "dave").error(), errc::not_member);
  EXPECT_EQ(group(a, kind::leave, "#team").error(), errc::not_allowed);
  EXPECT_EQ(group(d, kind::leave, "#team").error(), errc::not_member);
  EXPECT_EQ(group(b, kind::set_admin, "#team", "carol").error(), errc::not_allowed);
  EXPECT_EQ(group(a, kind::set_admin, "#team", "dave").error(), errc::not_member);
  EXPECT_EQ(members(d, "#team").error(), errc::not_member);
  EXPECT_EQ(send(d, 1, "#team", "let me in").error(), errc::not_member);
  EXPECT_EQ(send(a, 2, "#nope", "hello?").error(), errc::unknown_group);
  EXPECT_EQ(send(a, 3, "#", "x").error(), errc::invalid_argument);
  EXPECT_EQ(members(a, "#team")->size(), 3u);
  EXPECT_EQ(mailbox("alice").size(), 3u); // nothing stored by any of it
  EXPECT_TRUE(mailbox("dave").empty());
}

TEST_F(group_test, admins_add_and_remove_members_but_not_admins_or_the_owner) {
  make_team();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  ASSERT_TRUE(group(a, kind::set_admin, "#team", "bob"));
  ASSERT_TRUE(group(a, kind::set_admin, "#team", "carol"));
  ASSERT_TRUE(group(b, kind::add, "#team", "dave"));
  EXPECT_EQ(group(b, kind::remove, "#team", "carol").error(), errc::not_allowed); // an admin
  EXPECT_EQ(group(b, kind::remove, "#team", "alice").error(), errc::not_allowed); // the owner
  ASSERT_TRUE(group(a, kind::unset_admin, "#team", "carol"));
  ASSERT_TRUE(group(b, kind::remove, "#team", "carol"));
  ASSERT_TRUE(group(b, kind::add, "#team", "dave")); // a member already: idempotent
  auto list = members(b, "#team");
  ASSERT_TRUE(list);
  EXPECT_EQ(*list, (std::vector<group_member>{{"alice", group_role::owner},
                                               {"bob", group_role::admin},
                                               {"dave", group_role::member}}));
  auto groups = groups_of(b);
  ASSERT_TRUE(groups);
  EXPECT_EQ(*groups, (std::vector<std::string>{"#team"}));
  auto c = login("carol", "secret1", "phone");
  EXPECT_TRUE(groups_of(c)->empty());
}

TEST_F(group_test, membership_survives_a_restart) {
  make_team();
  restart();
  auto b = login("bob", "secret1", "phone");
  ASSERT_TRUE(send(b, 1, "#team", "still here"));
  EXPECT_EQ(mailbox("carol").back(), "bob>#team:0:still here");
  EXPECT_EQ(members(b, "#team")->size(), 3u);
}

TEST_F(group_test, a_member_who_blocks_the_sender_is_skipped) {
  make_team();
  auto c = login("carol", "secret1", "phone");
  ASSERT_TRUE(block(c, "bob"));
  auto b = login("bob", "secret1", "phone");
  ASSERT_TRUE(send(b, 1, "#team", "hi all"));
  EXPECT_EQ(mailbox("alice").back(), "bob>#team:0:hi all");
  EXPECT_NE(mailbox("carol").back(), "bob>#team:0:hi all");
}

TEST_F(group_test, the_senders_policy_applies_and_groups_have_a_size_limit) {
  std::string err;
  auto slot = std::make_shared<policy::spam_rules_slot>(
    policy::spam_rules::parse("reject keyword casino\n", "rules", &err));
  policy::chain_options opts;
  opts.steps = {"size", "spam", "blocklist"};
  opts.spam = slot;
  config.policy = policy::build_chain(opts, &err);
  config.max_group_size = 3;
  restart();
  make_team();
  auto a = login("alice", "secret1", "phone");
  EXPECT_EQ(send(a, 1, "#team", "online casino").error(), errc::spam);
  EXPECT_EQ(mailbox("bob").size(), 2u);
  EXPECT_EQ(group(a, kind::add, "#team", "dave").error(), errc::group_full);
}

TEST_F(group_test, a_large_group_gets_every_copy_even_past_the_open_request_cap) {
  // The group actor keeps at most 128 deliveries open and queues the rest.
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(group(a, kind::create, "#big"));
  for (int i = 0; i < 300; ++i) {
    auto name = "m" + std::to_string(i);
    register_user(name);
    ASSERT_TRUE(group(a, kind::add, "#big", name)) << name;
  }
  ASSERT_TRUE(send(a, 1, "#big", "to all"));
  ASSERT_TRUE(send(a, 2, "#big", "again"));
  for (int i = 0; i < 300; i += 37) {
    auto box = mailbox("m" + std::to_string(i));
    EXPECT_EQ(std::count(box.begin(), box.end(), "alice>#big:0:to all"), 1) << i;
    EXPECT_EQ(std::count(box.begin(), box.end(), "alice>#big:0:again"), 1) << i;
  }
  auto last = mailbox("m299");
  EXPECT_EQ(last.back(), "alice>#big:0:again");
}

} // namespace
} // namespace missive::test

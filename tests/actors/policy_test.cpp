// The send policy: the rules on their own (plain unit tests), then the chain inside the user
// actors on CAF's deterministic scheduler with a real LevelDB store underneath.

#include "missive/actors/policy.hpp"

#include "fixture.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;

caf::error check_send(const policy::rule& r, std::string_view body, policy::user_state& st,
                      policy::clock::time_point now = {}, size_t request_bytes = 0) {
  return r.on_send(policy::send_view{"alice", "bob", body, request_bytes}, st, now);
}

TEST(policy_rules, size_limits_body_and_whole_request) {
  auto r = policy::size_limit(8, 100);
  policy::user_state st;
  EXPECT_FALSE(check_send(*r, "12345678", st, {}, 100));
  EXPECT_EQ(check_send(*r, "123456789", st, {}, 50), errc::too_large);
  EXPECT_EQ(check_send(*r, "short", st, {}, 101), errc::too_large);
}

TEST(policy_rules, rate_limit_is_a_token_bucket_that_says_when_to_retry) {
  auto r = policy::rate_limit(3, 2.0); // 3 at once, then one every 500 ms
  policy::user_state st;
  auto t0 = policy::clock::time_point{} + 1000s;
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(check_send(*r, "x", st, t0)) << i;
  auto err = check_send(*r, "x", st, t0);
  ASSERT_EQ(err, errc::rate_limited);
  ASSERT_GE(err.context().size(), 2u);
  EXPECT_EQ(err.context().get_as<uint32_t>(1), 500u);
  // 200 ms later 0.4 tokens have come back: 300 ms to go.
  err = check_send(*r, "x", st, t0 + 200ms);
  ASSERT_EQ(err, errc::rate_limited);
  EXPECT_EQ(err.context().get_as<uint32_t>(1), 300u);
  EXPECT_FALSE(check_send(*r, "x", st, t0 + 500ms));
  // A long pause refills to the burst, not beyond.
  auto later = t0 + 1h;
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(check_send(*r, "x", st, later)) << i;
  EXPECT_EQ(check_send(*r, "x", st, later), errc::rate_limited);
  // Per second 0 switches the step off.
  auto off = policy::rate_limit(1, 0);
  for (int i = 0; i < 10; ++i)
    EXPECT_FALSE(check_send(*off, "x", st, t0));
}

TEST(policy_rules, blocklist_refuses_only_blocked_senders) {
  auto r = policy::blocklist();
  policy::user_state bob;
  bob.blocked.insert("mallory");
  EXPECT_FALSE(r->on_deliver(policy::send_view{"alice", "bob", "hi"}, bob));
  EXPECT_EQ(r->on_deliver(policy::send_view{"mallory", "bob", "hi"}, bob), errc::blocked);
}

std::shared_ptr<const policy::spam_rules> parse(std::string_view text, std::string* err) {
  return policy::spam_rules::parse(text, "rules.txt", err);
}

TEST(policy_spam, first_matching_rule_decides_and_allow_rules_make_exceptions) {
  std::string err;
  auto rules = parse("# comment\n"
                     "\n"
                     "allow keyword invoice from ACME\n"
                     "reject keyword Free Money\n"
                     "reject regex ^buy (now|today)!*$\n",
                     &err);
  ASSERT_TRUE(rules) << err;
  EXPECT_EQ(rules->size(), 3u);
  EXPECT_EQ(rules->match("hello"), nullptr);
  auto hit = rules->match("get FREE money here");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->line, 4u);
  EXPECT_EQ(hit->action, policy::spam_rule::verdict::reject);
  hit = rules->match("Buy Today!!");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->line, 5u);
  EXPECT_EQ(rules->match("please buy today"), nullptr); // anchored
  hit = rules->match("your invoice from acme: free money inside");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->action, policy::spam_rule::verdict::allow);
  // Bodies are bytes: a NUL does not end the match early.
  std::string with_nul("ok\0free money", 13);
  EXPECT_NE(rules->match(with_nul), nullptr);
}

TEST(policy_spam, a_bad_rules_file_is_refused_with_its_line) {
  std::string err;
  EXPECT_FALSE(parse("reject keyword ok\ndeny keyword x\n", &err));
  EXPECT_EQ(err.rfind("rules.txt:2: expected `reject` or `allow`", 0), 0u) << err;
  EXPECT_FALSE(parse("reject word x\n", &err));
  EXPECT_NE(err.find("rules.txt:1: expected `keyword` or `regex`"), std::string::npos) << err;
  EXPECT_FALSE(parse("reject keyword\n", &err));
  EXPECT_NE(err.find("rules.txt:1: the rule has no pattern"), std::string::npos) << err;
  EXPECT_FALSE(parse("\n\nreject regex (unclosed\n", &err));
  EXPECT_NE(err.find("rules.txt:3: bad regular expression `(unclosed`"), std::string::npos) << err;
}

TEST(policy_spam, the_filter_reads_the_rules_in_force_at_each_send) {
  std::string err;
  auto slot = std::make_shared<policy::spam_rules_slot>();
  auto r = policy::spam_filter(slot);
  policy::user_state st;
  EXPECT_FALSE(check_send(*r, "free money", st)); // no rules yet
  slot->set(parse("reject keyword free money\n", &err));
  EXPECT_EQ(check_send(*r, "free money", st), errc::spam);
  slot->set(parse("reject keyword lottery\n", &err));
  EXPECT_FALSE(check_send(*r, "free money", st));
}

TEST(policy_chain, is_built_from_names_in_order) {
  std::string err;
  policy::chain_options opts;
  auto c = policy::build_chain(opts, &err);
  ASSERT_TRUE(c) << err;
  std::vector<std::string_view> names;
  for (auto& r : c->rules())
    names.push_back(r->name());
  EXPECT_EQ(names, (std::vector<std::string_view>{"size", "rate-limit", "spam", "blocklist"}));
  opts.steps = {"size", "friends-only"};
  EXPECT_FALSE(policy::build_chain(opts, &err));
  EXPECT_NE(err.find("unknown policy step `friends-only`"), std::string::npos) << err;
  opts.steps = {"size", "size"};
  EXPECT_FALSE(policy::build_chain(opts, &err));
  EXPECT_NE(err.find("listed twice"), std::string::npos) << err;
}

// -- inside the actors ------------------------------------------------------------------------

class policy_actor_test : public actor_fixture {
protected:
  void SetUp() override {
    start(config);
    register_user("alice");
    register_user("bob");
    register_user("mallory");
  }

  void restart() {
    stop();
    start(config);
  }

  settings config;
};

TEST_F(policy_actor_test, a_blocked_sender_is_refused_and_nothing_is_stored_anywhere) {
  auto b = login("bob", "secret1", "phone");
  auto m = login("mallory", "secret1", "phone");
  ASSERT_TRUE(send(m, 1, "bob", "before"));
  ASSERT_TRUE(block(b, "mallory"));
  EXPECT_EQ(send(m, 2, "bob", "after").error(), errc::blocked);
  EXPECT_EQ(read_all(b).size(), 1u);
  EXPECT_EQ(read_all(m).size(), 1u); // no outgoing copy of the refused send either
  // Blocking is one-way: bob still writes to mallory.
  EXPECT_TRUE(send(b, 1, "mallory", "bye"));
  // Others still reach bob.
  auto a = login("alice", "secret1", "phone");
  EXPECT_TRUE(send(a, 1, "bob", "hi"));
  auto list = blocked_by(b);
  ASSERT_TRUE(list);
  EXPECT_EQ(*list, (std::vector<std::string>{"mallory"}));
  ASSERT_TRUE(block(b, "mallory", false));
  auto again = send(m, 3, "bob", "sorry");
  ASSERT_TRUE(again) << caf::to_string(again.error());
  std::vector<std::string> bodies;
  for (auto& e : read_all(b))
    bodies.push_back(e.body);
  EXPECT_EQ(bodies, (std::vector<std::string>{"before", "bye", "hi", "sorry"}));
}

TEST_F(policy_actor_test, the_blocklist_is_durable_across_a_restart) {
  {
    auto b = login("bob", "secret1", "phone");
    ASSERT_TRUE(block(b, "mallory"));
    ASSERT_TRUE(block(b, "alice"));
    ASSERT_TRUE(block(b, "alice", false));
  }
  restart();
  auto b = login("bob", "secret1", "phone");
  auto m = login("mallory", "secret1", "phone");
  auto a = login("alice", "secret1", "phone");
  EXPECT_EQ(send(m, 1, "bob", "hi").error(), errc::blocked);
  EXPECT_TRUE(send(a, 1, "bob", "hi"));
  EXPECT_EQ(*blocked_by(b), (std::vector<std::string>{"mallory"}));
}

TEST_F(policy_actor_test, blocking_yourself_unknown_or_malformed_users_is_refused) {
  auto b = login("bob", "secret1", "phone");
  EXPECT_EQ(block(b, "bob").error(), errc::invalid_argument);
  EXPECT_EQ(block(b, "nobody").error(), errc::unknown_user);
  EXPECT_EQ(block(b, "bad name").error(), errc::invalid_argument);
  EXPECT_TRUE(blocked_by(b)->empty());
  EXPECT_TRUE(block(b, "nobody", false)); // unblocking what is not blocked changes nothing
}

TEST_F(policy_actor_test, the_blocklist_has_a_size_limit) {
  config.max_blocked = 1;
  restart();
  auto b = login("bob", "secret1", "phone");
  ASSERT_TRUE(block(b, "mallory"));
  EXPECT_TRUE(block(b, "mallory")); // already there: no new slot needed
  EXPECT_EQ(block(b, "alice").error(), errc::invalid_argument);
  EXPECT_EQ(*blocked_by(b), (std::vector<std::string>{"mallory"}));
}

TEST_F(policy_actor_test, a_retry_of_a_send_stored_before_the_block_keeps_its_first_result) {
  auto b = login("bob", "secret1", "phone");
  auto m = login("mallory", "secret1", "phone");
  auto first = send(m, 7, "bob", "hello");
  ASSERT_TRUE(first);
  ASSERT_TRUE(block(b, "mallory"));
  // The answer was lost and mallory's device retries after her actor forgot the send (a
  // restart): the retry reaches bob's actor, which now blocks her.
  restart();
  b = login("bob", "secret1", "phone");
  m = login("mallory", "secret1", "phone");
  auto retry = send(m, 7, "bob", "hello");
  ASSERT_TRUE(retry) << caf::to_string(retry.error());
  EXPECT_EQ(*retry, *first);
  EXPECT_EQ(read_all(b).size(), 1u);
}

TEST_F(policy_actor_test, rate_limited_sends_store_nothing_and_say_when_to_retry) {
  policy::chain_options opts;
  opts.steps = {"rate-limit"};
  opts.rate_limit_burst = 2;
  opts.rate_limit_per_second = 0.001; // nothing comes back within the test
  std::string err;
  config.policy = policy::build_chain(opts, &err);
  restart();
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "1"));
  ASSERT_TRUE(send(a, 2, "bob", "2"));
  auto third = send(a, 3, "bob", "3");
  ASSERT_EQ(third.error(), errc::rate_limited);
  EXPECT_GT(third.error().context().get_as<uint32_t>(1), 900000u);
  // A retry of an answered send is no new send: it is not charged and gets its result.
  auto retry = send(a, 2, "bob", "2");
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->seq, 2u);
  EXPECT_EQ(read_all(a).size(), 2u);
  // Each user has a bucket of its own.
  auto b = login("bob", "secret1", "phone");
  EXPECT_TRUE(send(b, 1, "alice", "hi"));
}

TEST_F(policy_actor_test, spam_is_refused_before_any_seq_is_used) {
  std::string err;
  auto slot = std::make_shared<policy::spam_rules_slot>(
    policy::spam_rules::parse("reject keyword free money\n", "rules", &err));
  policy::chain_options opts;
  opts.steps = {"spam"};
  opts.spam = slot;
  config.policy = policy::build_chain(opts, &err);
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  EXPECT_EQ(send(a, 1, "bob", "FREE MONEY now").error(), errc::spam);
  EXPECT_TRUE(read_all(b).empty());
  auto ok = send(a, 2, "bob", "lunch?");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->seq, 1u);
}

} // namespace
} // namespace missive::test

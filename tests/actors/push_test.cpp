// Third-party push: when the dispatcher pushes to a device without a session, how often, and
// what it does with the gateway's answers. On CAF's deterministic scheduler: time moves only
// when the test advances it, and the provider answers only when the test says so.

#include <deque>

#include "fixture.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;

/// A push provider that records each push and holds its completion for the test.
class recorder final : public push_provider {
public:
  void send(offline_push p, std::function<void(push_outcome)> done) override {
    sent.push_back(p);
    waiting.push_back(std::move(done));
  }

  /// Answers the oldest push still waiting.
  void answer(push_outcome::kind what) {
    ASSERT_FALSE(waiting.empty());
    auto done = std::move(waiting.front());
    waiting.pop_front();
    done(push_outcome{what, "test"});
  }

  std::vector<offline_push> sent;
  std::deque<std::function<void(push_outcome)>> waiting;
};

class push_test : public actor_fixture {
protected:
  void SetUp() override {
    config.third_party_push = provider;
    config.push.disconnect_delay = 2s;
    config.push.min_interval = 10s;
    config.push.retry_min = 1s;
    config.push.retry_max = 4s;
    config.push.max_attempts = 3;
    start(config);
    register_user("alice");
    register_user("bob");
  }

  caf::expected<caf::unit_t> set_token(device& d, const std::string& platform,
                                       const std::string& token) {
    return device_call<caf::unit_t>(d, push_atom::value, platform, token);
  }

  /// Bob's phone registers, then goes offline (its session ends).
  /// Returns the phone's resume token.
  std::string register_bob_phone_and_leave(const std::string& token = "tok-1") {
    auto phone = login("bob", "secret1", "phone");
    EXPECT_TRUE(set_token(phone, "com.example.ios", token));
    logout(phone);
    return phone.login->has_value() && **phone.login ? (**phone.login)->resume_token : "";
  }

  void advance(std::chrono::milliseconds d) {
    sched.advance_time(d);
    run();
  }

  std::shared_ptr<recorder> provider = std::make_shared<recorder>();
  settings config;
};

TEST_F(push_test, an_offline_device_gets_one_push_after_the_disconnect_delay) {
  register_bob_phone_and_leave();
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  EXPECT_TRUE(provider->sent.empty()); // the device left just now: it may be back in a moment
  advance(2s);
  ASSERT_EQ(provider->sent.size(), 1u);
  auto& p = provider->sent[0];
  EXPECT_EQ(p.user, "bob");
  EXPECT_EQ(p.device, "phone");
  EXPECT_EQ(p.platform, "com.example.ios");
  EXPECT_EQ(p.token, "tok-1");
  EXPECT_EQ(p.unread, 1u);
  EXPECT_EQ(p.from, "alice");
  EXPECT_EQ(p.body, "hi");
  provider->answer(push_outcome::kind::delivered);
  run();
  advance(60s);
  EXPECT_EQ(provider->sent.size(), 1u); // nothing new: no second push
}

TEST_F(push_test, an_online_device_and_the_senders_own_copies_cause_no_push) {
  auto phone = login("bob", "secret1", "phone");
  ASSERT_TRUE(set_token(phone, "com.example.ios", "tok-1"));
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  // Bob writes from another device: his own outgoing copy is not unread for his phone.
  auto laptop = login("bob", "secret1", "laptop");
  ASSERT_TRUE(send(laptop, 1, "alice", "hello"));
  advance(60s);
  EXPECT_TRUE(provider->sent.empty());
  EXPECT_EQ(phone.pushes->size(), 1u); // the session got the first notice
}

TEST_F(push_test, a_quick_reconnect_needs_no_push) {
  register_bob_phone_and_leave();
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  advance(1s);
  auto phone = login("bob", "secret1", "phone"); // back within the delay
  advance(60s);
  EXPECT_TRUE(provider->sent.empty());
}

TEST_F(push_test, a_device_that_hangs_up_while_logging_in_is_detached_at_once) {
  auto resume_token = register_bob_phone_and_leave();
  advance(2s);
  // The phone logs in again but hangs up before the answer: its session ends mid-login. (By
  // its resume token: with the password, a session that ended before the password check is
  // not logged in at all, login_test.)
  auto session = std::make_shared<session_double>("bob", n.config);
  auto answer = std::make_shared<std::optional<caf::expected<login_ok>>>();
  missive::login(sys, n, "bob", "", "phone", session, capture<login_ok>(answer), resume_token);
  session->end();
  run();
  ASSERT_TRUE(answer->has_value() && **answer); // the login itself went through
  advance(2s); // the disconnect delay since that detach
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  EXPECT_TRUE(session->pushes.empty());
  EXPECT_EQ(provider->sent.size(), 1u); // offline, and for long enough: pushed at once
}

TEST_F(push_test, a_session_that_ended_without_a_detach_counts_as_offline_at_the_next_message) {
  auto phone = login("bob", "secret1", "phone");
  ASSERT_TRUE(set_token(phone, "com.example.ios", "tok-1"));
  phone.session->end(); // hung up; its detach never arrives
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  EXPECT_TRUE(phone.pushes->empty());
  EXPECT_TRUE(provider->sent.empty()); // it left just now, as far as the user actor knows
  advance(2s);
  EXPECT_EQ(provider->sent.size(), 1u);
}

TEST_F(push_test, pushes_are_coalesced_to_one_per_interval_with_the_newest_unread_count) {
  register_bob_phone_and_leave();
  advance(2s); // long gone
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "one"));
  ASSERT_EQ(provider->sent.size(), 1u);
  provider->answer(push_outcome::kind::delivered);
  run();
  for (uint64_t id = 2; id <= 4; ++id)
    ASSERT_TRUE(send(a, id, "bob", "more"));
  advance(9s);
  EXPECT_EQ(provider->sent.size(), 1u); // the interval is not over
  advance(1s);
  ASSERT_EQ(provider->sent.size(), 2u);
  EXPECT_EQ(provider->sent[1].unread, 4u);
}

TEST_F(push_test, a_failed_push_is_retried_with_backoff_then_given_up) {
  register_bob_phone_and_leave();
  advance(2s);
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  ASSERT_EQ(provider->sent.size(), 1u);
  provider->answer(push_outcome::kind::retry); // gateway down
  run();
  advance(999ms);
  EXPECT_EQ(provider->sent.size(), 1u);
  advance(1ms); // first retry after 1 s
  ASSERT_EQ(provider->sent.size(), 2u);
  provider->answer(push_outcome::kind::retry);
  run();
  advance(1999ms);
  EXPECT_EQ(provider->sent.size(), 2u);
  advance(1ms); // then 2 s
  ASSERT_EQ(provider->sent.size(), 3u);
  provider->answer(push_outcome::kind::retry); // third attempt: max_attempts reached
  run();
  advance(60s);
  EXPECT_EQ(provider->sent.size(), 3u);
  // The next message starts afresh.
  ASSERT_TRUE(send(a, 2, "bob", "again"));
  advance(10s);
  ASSERT_EQ(provider->sent.size(), 4u);
  EXPECT_EQ(provider->sent[3].unread, 2u);
}

TEST_F(push_test, a_gateway_that_comes_back_gets_the_push_with_what_arrived_meanwhile) {
  register_bob_phone_and_leave();
  advance(2s);
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  provider->answer(push_outcome::kind::retry);
  run();
  ASSERT_TRUE(send(a, 2, "bob", "still there?"));
  advance(1s);
  ASSERT_EQ(provider->sent.size(), 2u);
  EXPECT_EQ(provider->sent[1].unread, 2u);
  EXPECT_EQ(provider->sent[1].body, "still there?");
  provider->answer(push_outcome::kind::delivered);
  run();
  advance(60s);
  EXPECT_EQ(provider->sent.size(), 2u);
}

TEST_F(push_test, a_rejected_pushkey_is_forgotten_for_good) {
  register_bob_phone_and_leave();
  advance(2s);
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  ASSERT_EQ(provider->sent.size(), 1u);
  provider->answer(push_outcome::kind::rejected);
  run();
  ASSERT_TRUE(send(a, 2, "bob", "hello?"));
  advance(60s);
  EXPECT_EQ(provider->sent.size(), 1u);
  // Also after a restart: the registration is gone from storage.
  stop();
  start(config);
  a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 3, "bob", "anyone?"));
  advance(60s);
  EXPECT_EQ(provider->sent.size(), 1u);
}

TEST_F(push_test, a_registration_survives_a_restart_and_can_be_removed) {
  register_bob_phone_and_leave("tok-9");
  stop();
  start(config);
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  ASSERT_EQ(provider->sent.size(), 1u); // no session since the restart: no delay
  EXPECT_EQ(provider->sent[0].token, "tok-9");
  provider->answer(push_outcome::kind::delivered);
  run();
  auto phone = login("bob", "secret1", "phone");
  ASSERT_TRUE(set_token(phone, "", ""));
  logout(phone);
  ASSERT_TRUE(send(a, 2, "bob", "hi again"));
  advance(60s);
  EXPECT_EQ(provider->sent.size(), 1u);
}

TEST_F(push_test, a_session_that_never_confirmed_its_notice_gets_a_push_when_it_ends) {
  auto phone = login("bob", "secret1", "phone");
  ASSERT_TRUE(set_token(phone, "com.example.ios", "tok-1"));
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  // The notice went out but the device never acknowledged; then its connection is closed
  // (the gateway's push timeout).
  logout(phone);
  advance(1999ms);
  EXPECT_TRUE(provider->sent.empty());
  advance(1ms);
  ASSERT_EQ(provider->sent.size(), 1u);
  EXPECT_EQ(provider->sent[0].unread, 1u);
  // With what a preview needs, as a push to a device already offline has.
  EXPECT_EQ(provider->sent[0].from, "alice");
  EXPECT_EQ(provider->sent[0].body, "hi");
}

TEST_F(push_test, a_device_that_leaves_after_a_quiet_period_still_gets_the_preview) {
  stop();
  config.user_idle_timeout = 1s;
  start(config);
  auto phone = login("bob", "secret1", "phone");
  ASSERT_TRUE(set_token(phone, "com.example.ios", "tok-1"));
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  // Quiet periods pass while the phone stays online without acknowledging: bob's actor lets
  // go of what it can, but not of what the phone's push still needs.
  for (int i = 0; i < 3; ++i)
    advance(1s);
  logout(phone);
  advance(2s);
  ASSERT_EQ(provider->sent.size(), 1u);
  EXPECT_EQ(provider->sent[0].unread, 1u);
  EXPECT_EQ(provider->sent[0].from, "alice");
  EXPECT_EQ(provider->sent[0].body, "hi");
}

TEST_F(push_test, an_acknowledging_device_that_leaves_gets_no_push) {
  auto phone = login("bob", "secret1", "phone");
  ASSERT_TRUE(set_token(phone, "com.example.ios", "tok-1"));
  auto a = login("alice", "secret1", "phone");
  auto sent = send(a, 1, "bob", "hi");
  ASSERT_TRUE(sent);
  auto page = sync(phone, 0, 0);
  ASSERT_TRUE(page);
  ASSERT_TRUE(ack(phone, page->epoch, page->max_seq));
  logout(phone);
  advance(60s);
  EXPECT_TRUE(provider->sent.empty());
}

TEST_F(push_test, bad_registrations_are_refused) {
  auto phone = login("bob", "secret1", "phone");
  EXPECT_EQ(set_token(phone, "", "tok").error(), errc::invalid_argument);
  EXPECT_EQ(set_token(phone, "bad app id", "tok").error(), errc::invalid_argument);
  EXPECT_EQ(set_token(phone, "ios", "has space").error(), errc::invalid_argument);
  EXPECT_EQ(set_token(phone, "ios", std::string(4097, 'k')).error(), errc::invalid_argument);
  EXPECT_TRUE(set_token(phone, "ios", std::string(4096, 'k')));
}

} // namespace
} // namespace missive::test

// Logins by password and by resume token, on CAF's deterministic scheduler with a real LevelDB
// store underneath.

#include <algorithm>

#include "fixture.hpp"

namespace missive::test {
namespace {

class login_test : public actor_fixture {
protected:
  void SetUp() override {
    start(config);
    register_user("alice");
    register_user("bob");
  }

  /// Logs in and returns the answer (the test fails if there is none).
  static caf::expected<login_ok> result_of(const device& d) {
    if (!d.login->has_value())
      return caf::make_error(caf::sec::request_timeout);
    return **d.login;
  }

  /// A password login of alice's `id` that must succeed; returns its resume token.
  std::string token_for(const std::string& id) {
    auto d = login("alice", "secret1", id);
    auto r = result_of(d);
    EXPECT_TRUE(r) << caf::to_string(r.error());
    return r ? r->resume_token : std::string{};
  }

  caf::expected<login_ok> resume(const std::string& user, const std::string& id,
                                 const std::string& token) {
    return result_of(login(user, "", id, true, token));
  }

  /// Alice's phone's stored token record, as persistence reads it.
  storage::resume_record stored() {
    auto r = ask<storage::resume_record>(n.persistence, resume_atom::value, lookup_atom::value,
                                         std::string{"alice"}, std::string{"phone"});
    EXPECT_TRUE(r.value) << caf::to_string(r.error);
    return r.value.value_or(storage::resume_record{});
  }

  /// Stores `rec` as alice's phone's token record (durably, before it returns).
  void store(const storage::resume_record& rec) {
    ASSERT_TRUE(ask<ok_atom>(n.persistence, resume_atom::value, std::string{"alice"},
                             std::string{"phone"}, rec)
                  .value);
  }

  /// The error of a login, or none if it succeeded.
  static caf::error error_of(const caf::expected<login_ok>& r) {
    return r ? caf::error{} : r.error();
  }

  settings config;
};

TEST_F(login_test, a_password_login_issues_a_token_that_logs_the_device_in_without_it) {
  auto token = token_for("phone");
  ASSERT_EQ(token.size(), 32u);
  EXPECT_EQ(token_for("laptop").size(), 32u);
  EXPECT_NE(token_for("laptop"), token); // random, not derived from the user or device
  auto r = resume("alice", "phone", token);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(r->resume_token, token); // the same token stays valid
  EXPECT_NE(r->epoch, 0u);
  // The session works like a password login's: it sends and is pushed to.
  auto phone = login("alice", "", "phone", true, token);
  auto bob = login("bob", "secret1", "phone");
  ASSERT_TRUE(send(bob, 1, "alice", "hi"));
  run();
  ASSERT_FALSE(phone.session->pushes.empty());
  EXPECT_EQ(phone.session->pushes.back().note.max_seq, 1u);
  EXPECT_TRUE(send(phone, 1, "bob", "hello"));
}

TEST_F(login_test, only_the_devices_current_token_is_accepted) {
  auto token = token_for("phone");
  auto other = token;
  other[5] ^= 1;
  EXPECT_EQ(error_of(resume("alice", "phone", other)), errc::bad_credentials);
  EXPECT_EQ(error_of(resume("alice", "laptop", token)), errc::bad_credentials); // another device
  EXPECT_EQ(error_of(resume("bob", "phone", token)), errc::bad_credentials);    // another user
  EXPECT_EQ(error_of(resume("alice", "phone", token.substr(0, 31))), errc::bad_credentials);
  EXPECT_EQ(error_of(resume("nobody", "phone", token)), errc::bad_credentials);
  // A new password login of the device replaces its token.
  auto next = token_for("phone");
  EXPECT_NE(next, token);
  EXPECT_EQ(error_of(resume("alice", "phone", token)), errc::bad_credentials);
  EXPECT_TRUE(resume("alice", "phone", next));
}

TEST_F(login_test, a_token_past_its_lifetime_is_refused_and_the_password_still_works) {
  auto token = token_for("phone");
  auto rec = stored();
  EXPECT_EQ(rec.token_hash.size(), 32u);
  EXPECT_EQ(rec.token_hash.find(token), std::string::npos); // only a hash is stored
  // Issued one TTL and a minute ago.
  auto aged = rec;
  aged.issued_ms -= (n.config->resume_token_ttl + std::chrono::minutes(1)).count();
  store(aged);
  EXPECT_EQ(error_of(resume("alice", "phone", token)), errc::bad_credentials);
  // Issued one minute short of the TTL: still good.
  aged.issued_ms += std::chrono::milliseconds(std::chrono::minutes(2)).count();
  store(aged);
  EXPECT_TRUE(resume("alice", "phone", token));
  EXPECT_TRUE(result_of(login("alice", "secret1", "phone")));
}

TEST_F(login_test, a_token_used_past_half_its_life_is_renewed_and_stays_the_same) {
  auto token = token_for("phone");
  auto ttl = n.config->resume_token_ttl.count();
  auto fresh = stored();
  // A quarter of its life gone: used, not renewed.
  auto young = fresh;
  young.issued_ms -= ttl / 4;
  store(young);
  ASSERT_TRUE(resume("alice", "phone", token));
  EXPECT_EQ(stored(), young);
  // Three quarters gone: renewed to now, same hash, same token in the answer.
  auto old = fresh;
  old.issued_ms -= ttl * 3 / 4;
  store(old);
  auto r = resume("alice", "phone", token);
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(r->resume_token, token);
  auto renewed = stored();
  EXPECT_EQ(renewed.token_hash, fresh.token_hash);
  EXPECT_GE(renewed.issued_ms, fresh.issued_ms);
}

TEST_F(login_test, a_renewal_never_brings_back_a_replaced_token) {
  auto first = token_for("phone");
  auto first_rec = stored();
  auto renew = [&](const storage::resume_record& rec) {
    caf::anon_send(n.persistence, resume_atom::value, renew_atom::value, std::string{"alice"},
                   std::string{"phone"}, rec);
  };
  // Replaced and committed, then a late renewal of the first token.
  auto second = token_for("phone");
  renew(first_rec);
  run();
  EXPECT_EQ(error_of(resume("alice", "phone", first)), errc::bad_credentials);
  EXPECT_TRUE(resume("alice", "phone", second));
  // Replaced in the same batch as the renewal, the replacement first.
  auto second_rec = stored();
  auto third_rec = second_rec;
  third_rec.token_hash[0] ^= 1;
  caf::anon_send(n.persistence, resume_atom::value, std::string{"alice"}, std::string{"phone"},
                 third_rec);
  renew(second_rec);
  run();
  EXPECT_EQ(stored().token_hash, third_rec.token_hash);
  EXPECT_EQ(error_of(resume("alice", "phone", second)), errc::bad_credentials);
}

TEST_F(login_test, a_password_check_is_skipped_once_the_device_has_hung_up) {
  auto session = std::make_shared<session_double>("alice", n.config);
  session->end(); // the client gave up waiting and closed its connection
  slot<login_ok> out = std::make_shared<std::optional<caf::expected<login_ok>>>();
  missive::login(sys, n, "alice", "secret1", "phone", session, capture<login_ok>(out));
  run();
  ASSERT_TRUE(out->has_value());
  EXPECT_EQ(error_of(**out), errc::unavailable);
  EXPECT_TRUE(result_of(login("alice", "secret1", "phone"))); // a device still there is checked
}

TEST_F(login_test, a_registration_is_skipped_once_its_client_has_hung_up) {
  auto gone = std::make_shared<hangup_flag>();
  gone->end(); // the client's call timed out and it hung up
  auto r = ask<ok_atom>(n.accounts, register_atom::value, std::string{"carol"},
                        std::string{"secret1"}, hangup_flag_ptr{gone});
  EXPECT_EQ(r.error, errc::unavailable);
  // Nothing was created: the client's retry creates the account instead of finding it taken.
  auto waiting = std::make_shared<hangup_flag>();
  auto retry = ask<ok_atom>(n.accounts, register_atom::value, std::string{"carol"},
                            std::string{"secret1"}, hangup_flag_ptr{waiting});
  EXPECT_TRUE(retry.value) << caf::to_string(retry.error);
}

TEST_F(login_test, a_checker_itself_skips_the_hash_of_a_client_that_has_gone) {
  // The pool answers a gone client's request before it reaches a checker (tests above); a
  // checker looks again right before it hashes, as a check first waits for the stored hash.
  auto checker = spawn_accounts(sys, n.persistence, hash_cost::min, false);
  auto gone = std::make_shared<hangup_flag>();
  gone->end();
  auto check = ask<ok_atom>(checker, verify_atom::value, std::string{"alice"},
                            std::string{"secret1"}, hangup_flag_ptr{gone});
  EXPECT_EQ(check.error, errc::unavailable);
  auto sign_up = ask<ok_atom>(checker, register_atom::value, std::string{"carol"},
                              std::string{"secret1"}, hangup_flag_ptr{gone});
  EXPECT_EQ(sign_up.error, errc::unavailable);
  auto again = ask<ok_atom>(checker, register_atom::value, std::string{"carol"},
                            std::string{"secret1"}, hangup_flag_ptr{});
  EXPECT_TRUE(again.value) << caf::to_string(again.error); // the skipped one created nothing
  caf::anon_send_exit(checker, caf::exit_reason::user_shutdown);
  run();
}

TEST_F(login_test, tokens_survive_a_restart) {
  auto token = token_for("phone");
  stop();
  start(config);
  auto r = resume("alice", "phone", token);
  EXPECT_TRUE(r) << caf::to_string(r.error());
}

TEST_F(login_test, with_a_ttl_of_zero_no_token_is_issued_or_accepted) {
  auto token = token_for("phone");
  stop();
  config.resume_token_ttl = std::chrono::milliseconds(0);
  start(config);
  auto r = result_of(login("alice", "secret1", "phone"));
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_TRUE(r->resume_token.empty());
  EXPECT_EQ(error_of(resume("alice", "phone", token)), errc::bad_credentials);
}

// -- the pool of password checkers, over checkers that answer when the test says --

class password_pool_test : public actor_fixture {
protected:
  /// A checker that holds each request until the test answers it.
  struct checker {
    accounts_actor handle;
    std::shared_ptr<std::vector<std::pair<std::string, caf::response_promise>>> held =
      std::make_shared<std::vector<std::pair<std::string, caf::response_promise>>>();
    /// The users of the requests it holds, oldest first.
    std::vector<std::string> users() const {
      std::vector<std::string> out;
      for (auto& [user, rp] : *held)
        out.push_back(user);
      return out;
    }
    /// Makes it answer its oldest request (a promise is delivered from inside its actor).
    void answer(caf::error err = {}) {
      caf::anon_send(caf::actor_cast<caf::actor>(handle), done_atom::value, std::move(err));
    }
  };

  checker make_checker() {
    checker c;
    auto held = c.held;
    auto actor = sys.spawn([held](caf::event_based_actor* self) -> caf::behavior {
      auto hold = [=](const std::string& user) {
        held->emplace_back(user, self->make_response_promise());
        return held->back().second;
      };
      return {
        [=](register_atom, const std::string& user, const std::string&, const hangup_flag_ptr&) {
          return hold(user);
        },
        [=](verify_atom, const std::string& user, const std::string&, const hangup_flag_ptr&) {
          return hold(user);
        },
        [=](done_atom, caf::error& err) {
          auto rp = held->front().second;
          held->erase(held->begin());
          if (err)
            rp.deliver(std::move(err));
          else
            rp.deliver(ok_atom::value);
        },
      };
    });
    c.handle = caf::actor_cast<accounts_actor>(actor);
    made.push_back(c);
    return c;
  }

  /// Whatever a checker still holds is answered, so that its actor can end with the system
  /// (a promise held in its own behavior keeps it alive), also after a failed assertion.
  void TearDown() override {
    for (auto& c : made)
      for (auto n = c.held->size(); n > 0; --n)
        c.answer();
    run();
  }

  std::vector<checker> made;

  /// Sends the pool a request without waiting; the answer lands in the slot.
  template <class... Ts>
  std::shared_ptr<answer<ok_atom>> request(const accounts_actor& pool, Ts... xs) {
    auto out = std::make_shared<answer<ok_atom>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(caf::actor_cast<caf::actor>(pool), caf::infinite, xs...)
        .then([=](ok_atom x) { out->value = x; }, [=](caf::error& err) { out->error = err; });
    });
    return out;
  }

  /// A pool over two checkers, `a` and `b`, each busy with a request (of u1 and u2).
  accounts_actor busy_pool(size_t max_waiting) {
    a = make_checker();
    b = make_checker();
    auto pool = spawn_account_pool(sys, {a.handle, b.handle}, max_waiting);
    verify(pool, "u1");
    verify(pool, "u2");
    run();
    EXPECT_EQ(a.users().size() + b.users().size(), 2u);
    return pool;
  }

  checker a;
  checker b;

  /// Asks the pool to check `user`'s password without waiting.
  std::shared_ptr<answer<ok_atom>> verify(const accounts_actor& pool, const std::string& user,
                                          hangup_flag_ptr caller = {}) {
    return request(pool, verify_atom::value, user, std::string{"pw"}, std::move(caller));
  }
};

TEST_F(password_pool_test, each_checker_gets_one_request_at_a_time_and_the_rest_wait_in_order) {
  a = make_checker();
  b = make_checker();
  auto pool = spawn_account_pool(sys, {a.handle, b.handle}, 100);
  auto first = verify(pool, "u1");
  run();
  auto second = verify(pool, "u2");
  run();
  auto third = verify(pool, "u3");
  auto fourth = verify(pool, "u4");
  run();
  // Two checks run at once; the third and fourth wait.
  ASSERT_EQ(a.users().size() + b.users().size(), 2u);
  ASSERT_EQ(a.users().size(), 1u);
  auto& first_one = a.users().front() == "u1" ? a : b;
  auto& second_one = a.users().front() == "u1" ? b : a;
  EXPECT_EQ(second_one.users(), std::vector<std::string>{"u2"});

  // The checker that answers first takes the oldest waiting request, whichever it is.
  second_one.answer(caf::make_error(errc::bad_credentials, "wrong user or password"));
  run();
  EXPECT_EQ(second->error, errc::bad_credentials);
  EXPECT_FALSE(first->value || first->error);
  EXPECT_EQ(second_one.users(), std::vector<std::string>{"u3"});
  EXPECT_EQ(first_one.users(), std::vector<std::string>{"u1"});

  first_one.answer();
  run();
  EXPECT_TRUE(first->value);
  EXPECT_EQ(first_one.users(), std::vector<std::string>{"u4"});
  second_one.answer();
  first_one.answer();
  run();
  EXPECT_TRUE(third->value);
  EXPECT_TRUE(fourth->value);
  EXPECT_TRUE(a.users().empty() && b.users().empty());
}

TEST_F(password_pool_test, bad_input_is_answered_at_once_while_every_checker_is_busy) {
  auto pool = busy_pool(100);
  auto bad_name = verify(pool, "no spaces");
  auto sign_up = request(pool, register_atom::value, std::string{"carol"}, std::string{"short"},
                         hangup_flag_ptr{});
  run();
  EXPECT_EQ(bad_name->error, errc::bad_credentials);
  EXPECT_EQ(sign_up->error, errc::invalid_argument);
  EXPECT_EQ(a.users().size() + b.users().size(), 2u); // neither waited for a checker
}

TEST_F(password_pool_test, a_full_queue_refuses_more_but_makes_room_by_dropping_the_gone) {
  auto pool = busy_pool(2);
  auto leaving = std::make_shared<hangup_flag>();
  auto third = verify(pool, "u3", leaving);
  auto fourth = verify(pool, "u4");
  run();
  auto fifth = verify(pool, "u5");
  run();
  EXPECT_EQ(fifth->error, errc::unavailable); // two wait already: try again later
  leaving->end(); // the third's client hangs up while it waits
  auto sixth = verify(pool, "u6");
  run();
  EXPECT_EQ(third->error, errc::unavailable); // answered as the full queue made room
  EXPECT_FALSE(sixth->value || sixth->error); // waits behind the fourth
  a.answer();
  b.answer();
  run();
  // The freed checkers take the fourth and the sixth.
  std::vector<std::string> now{a.users().front(), b.users().front()};
  std::sort(now.begin(), now.end());
  EXPECT_EQ(now, (std::vector<std::string>{"u4", "u6"}));
  a.answer();
  b.answer();
  run();
  EXPECT_TRUE(fourth->value && sixth->value);
}

TEST_F(password_pool_test, a_storm_of_refusals_searches_the_queue_once_per_sixteenth_of_it) {
  // A queue of 32: a refusal searches it for clients that hung up only after 32 / 16 = 2
  // refusals without a search, so that thousands of retrying devices are refused cheaply.
  auto pool = busy_pool(32);
  auto leaving = std::make_shared<hangup_flag>();
  std::vector<std::shared_ptr<answer<ok_atom>>> waiting{verify(pool, "w0", leaving)};
  for (int i = 1; i < 32; ++i)
    waiting.push_back(verify(pool, "w" + std::to_string(i)));
  run();
  leaving->end(); // a place is free from now on, but nobody has looked
  auto first = verify(pool, "x1");
  run();
  auto second = verify(pool, "x2");
  run();
  EXPECT_EQ(first->error, errc::unavailable);
  EXPECT_EQ(second->error, errc::unavailable);
  EXPECT_FALSE(waiting[0]->error) << "searched before two refusals";
  auto third = verify(pool, "x3"); // the search: w0's place goes to it
  run();
  EXPECT_EQ(waiting[0]->error, errc::unavailable);
  EXPECT_FALSE(third->value || third->error);
  auto fourth = verify(pool, "x4"); // full again, and just searched
  run();
  EXPECT_EQ(fourth->error, errc::unavailable);
  // Every request still waiting is checked in turn, so that the test's actors can end.
  while (!a.held->empty() || !b.held->empty()) {
    for (auto* c : {&a, &b})
      if (!c->held->empty())
        c->answer();
    run();
  }
  EXPECT_TRUE(third->value);
}

TEST_F(password_pool_test, a_request_whose_client_has_gone_takes_no_checker) {
  a = make_checker();
  auto pool = spawn_account_pool(sys, {a.handle}, 100);
  verify(pool, "u1");
  auto leaving = std::make_shared<hangup_flag>();
  auto second = verify(pool, "u2", leaving);
  auto third = verify(pool, "u3");
  run();
  leaving->end();
  a.answer();
  run();
  EXPECT_EQ(second->error, errc::unavailable);
  EXPECT_EQ(a.users(), std::vector<std::string>{"u3"});
  a.answer();
  run();
  EXPECT_TRUE(third->value);
}

TEST_F(password_pool_test, the_checkers_end_with_the_pool) {
  a = make_checker();
  b = make_checker();
  auto pool = spawn_account_pool(sys, {a.handle, b.handle}, 100);
  caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
  run();
  for (auto* c : {&a, &b}) {
    auto r = ask<ok_atom>(c->handle, register_atom::value, std::string{"u"}, std::string{"pw"},
                          hangup_flag_ptr{});
    EXPECT_FALSE(r.value);
    EXPECT_EQ(r.error, caf::sec::request_receiver_down);
  }
}

} // namespace
} // namespace missive::test

// The user actor's send, sync and session behaviour, on CAF's deterministic scheduler with a
// real LevelDB store underneath.

#include "fixture.hpp"

namespace missive::test {
namespace {

class user_test : public actor_fixture {
protected:
  void SetUp() override {
    start(config);
    register_user("alice");
    register_user("bob");
  }

  /// Restarts the node over the same database, as after a crash of everything in memory.
  void restart() {
    stop();
    start(config);
  }

  /// Sends "m1" … "mN" from `a` to bob with client ids 1 … N; their results, in order.
  std::vector<send_result> send_to_bob(device& a, uint64_t n) {
    std::vector<send_result> out;
    for (uint64_t id = 1; id <= n; ++id) {
      auto r = send(a, id, "bob", "m" + std::to_string(id));
      EXPECT_TRUE(r) << "send " << id;
      if (!r)
        break;
      out.push_back(*r);
    }
    return out;
  }

  static std::vector<uint32_t> seqs(const std::vector<entry>& xs) {
    std::vector<uint32_t> out;
    for (auto& e : xs)
      out.push_back(e.seq);
    return out;
  }

  settings config;
};

TEST_F(user_test, login_reports_the_mailbox_and_rejects_bad_credentials) {
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(a.login->has_value());
  ASSERT_TRUE(**a.login) << caf::to_string((*a.login)->error());
  EXPECT_NE((**a.login)->epoch, 0u);
  EXPECT_EQ((**a.login)->max_seq, 0u);
  auto wrong = login("alice", "nope-nope", "phone");
  ASSERT_TRUE(wrong.login->has_value());
  EXPECT_EQ((*wrong.login)->error(), errc::bad_credentials);
  auto nobody = login("nobody", "secret1", "phone");
  ASSERT_TRUE(nobody.login->has_value());
  EXPECT_EQ((*nobody.login)->error(), errc::bad_credentials);
}

TEST_F(user_test, registration_rejects_taken_and_malformed_names) {
  auto taken = ask<ok_atom>(n.accounts, register_atom::value, std::string{"alice"},
                            std::string{"another1"}, hangup_flag_ptr{});
  EXPECT_EQ(taken.error, errc::user_exists);
  auto bad = ask<ok_atom>(n.accounts, register_atom::value, std::string{"al ice"},
                          std::string{"secret1"}, hangup_flag_ptr{});
  EXPECT_EQ(bad.error, errc::invalid_argument);
  auto short_pw = ask<ok_atom>(n.accounts, register_atom::value, std::string{"carol"},
                               std::string{"abc"}, hangup_flag_ptr{});
  EXPECT_EQ(short_pw.error, errc::invalid_argument);
}

TEST_F(user_test, send_stores_both_copies_and_pushes_to_every_online_device) {
  auto a_phone = login("alice", "secret1", "phone");
  auto a_tablet = login("alice", "secret1", "tablet");
  auto b_phone = login("bob", "secret1", "phone");
  auto b_laptop = login("bob", "secret1", "laptop");
  auto r = send(a_phone, 7, "bob", "hi bob");
  ASSERT_TRUE(r) << caf::to_string(r.error());
  EXPECT_EQ(r->seq, 1u);

  for (auto* d : {&b_phone, &b_laptop}) {
    ASSERT_EQ(d->pushes->size(), 1u);
    auto& note = d->pushes->front().note;
    EXPECT_EQ(note.after_seq, 0u);
    EXPECT_EQ(note.max_seq, 1u);
    ASSERT_TRUE(note.complete);
    ASSERT_EQ(note.entries.size(), 1u);
    EXPECT_EQ(note.entries[0].body, "hi bob");
    EXPECT_EQ(note.entries[0].from, "alice");
    EXPECT_EQ(note.entries[0].client_msg_id, 7u);
  }
  // The sender's other devices are pushed the outgoing copy; the sending device gets it with
  // the send's answer instead of a notify of its own.
  ASSERT_EQ(a_tablet.pushes->size(), 1u);
  ASSERT_EQ(a_tablet.pushes->front().note.entries.size(), 1u);
  EXPECT_EQ(a_tablet.pushes->front().note.entries[0].to, "bob");
  EXPECT_TRUE(a_phone.pushes->empty());
  ASSERT_EQ(a_phone.answers->size(), 1u);
  auto& own = a_phone.answers->front();
  EXPECT_EQ(own.after_seq, 0u);
  EXPECT_EQ(own.max_seq, r->seq);
  ASSERT_TRUE(own.complete);
  ASSERT_EQ(own.entries.size(), 1u);
  EXPECT_EQ(own.entries[0].seq, r->seq);
  EXPECT_EQ(own.entries[0].to, "bob");
  EXPECT_TRUE(b_phone.answers->empty());
  auto bob_box = read_all(b_laptop);
  auto alice_box = read_all(a_tablet);
  ASSERT_EQ(bob_box.size(), 1u);
  ASSERT_EQ(alice_box.size(), 1u);
  EXPECT_EQ(alice_box[0].seq, r->seq);
  EXPECT_EQ(alice_box[0].server_time_ms, r->server_time_ms);
  EXPECT_EQ(bob_box[0].server_time_ms, r->server_time_ms);
  EXPECT_EQ(bob_box[0].body, alice_box[0].body);
}

TEST_F(user_test, seqs_are_per_mailbox_and_increase) {
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "one"));
  ASSERT_TRUE(send(b, 1, "alice", "two")); // same client id, other sender: not a duplicate
  ASSERT_TRUE(send(a, 2, "alice", "note to self"));
  auto r = send(a, 3, "bob", "three");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->seq, 4u);
  EXPECT_EQ(seqs(read_all(a)), (std::vector<uint32_t>{1, 2, 3, 4}));
  EXPECT_EQ(seqs(read_all(b)), (std::vector<uint32_t>{1, 2, 3}));
  auto self_note = read_all(a)[2];
  EXPECT_EQ(self_note.from, "alice");
  EXPECT_EQ(self_note.to, "alice");
}

TEST_F(user_test, a_retried_client_msg_id_returns_the_first_result_and_stores_nothing) {
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  auto first = send(a, 99, "bob", "once");
  ASSERT_TRUE(first);
  auto again = send(a, 99, "bob", "once");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->seq, first->seq);
  EXPECT_EQ(again->server_time_ms, first->server_time_ms);

  // Two copies of the same send in flight at once: one entry, one answer for both.
  auto out1 = std::make_shared<std::optional<caf::expected<send_result>>>();
  auto out2 = std::make_shared<std::optional<caf::expected<send_result>>>();
  a.session->queue.sending(100);
  a.session->queue.sending(100);
  caf::anon_send(a.owner(), send_atom::value, outgoing{100, "bob", "twice"}, capture<send_result>(out1));
  caf::anon_send(a.owner(), send_atom::value, outgoing{100, "bob", "twice"}, capture<send_result>(out2));
  run();
  ASSERT_TRUE(out1->has_value() && **out1);
  ASSERT_TRUE(out2->has_value() && **out2);
  EXPECT_EQ((**out1)->seq, (**out2)->seq);
  // The one copy rides on the first answer; nothing is left for the second or a notify.
  EXPECT_TRUE(a.session->queue.answered(100, true).has_value());
  EXPECT_FALSE(a.session->queue.answered(100, true).has_value());
  a.session->pump();
  EXPECT_FALSE(a.session->queue.has_pending());

  EXPECT_EQ(read_all(b).size(), 2u);
  EXPECT_EQ(read_all(a).size(), 2u);

  // After a restart the window is gone; the dedup record in storage answers.
  restart();
  auto a2 = login("alice", "secret1", "phone");
  auto b2 = login("bob", "secret1", "phone");
  auto after_restart = send(a2, 99, "bob", "once");
  ASSERT_TRUE(after_restart);
  EXPECT_EQ(after_restart->seq, first->seq);
  EXPECT_EQ(read_all(b2).size(), 2u);
  EXPECT_EQ(read_all(a2).size(), 2u);
}

TEST_F(user_test, pipelined_sends_to_a_new_recipient_are_stored_in_the_order_they_came) {
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  // Two sends reach alice's actor before it knows bob's; the directory answers the first
  // look-up; a third send arrives before the answer to a second look-up could.
  pipelined(a, 1, "bob", "one");
  pipelined(a, 2, "bob", "two");
  sched.prioritize(a.owner());
  sched.run_once();
  sched.prioritize(a.owner());
  sched.run_once();
  sched.prioritize(n.directory);
  sched.run_once();
  pipelined(a, 3, "bob", "three");
  run();
  ASSERT_TRUE(all_answered());
  EXPECT_EQ(bodies(read_all(b)), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(seqs(read_all(a)), (std::vector<uint32_t>{1, 2, 3}));
}

TEST_F(user_test, seq_continues_after_restart_and_never_reuses) {
  auto a = login("alice", "secret1", "phone");
  for (uint64_t id = 1; id <= 3; ++id)
    ASSERT_TRUE(send(a, id, "bob", "m" + std::to_string(id)));
  restart();
  auto a2 = login("alice", "secret1", "phone");
  auto b2 = login("bob", "secret1", "phone");
  EXPECT_EQ((**a2.login)->max_seq, 3u);
  auto r = send(a2, 4, "bob", "m4");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->seq, 4u);
  auto bob_box = read_all(b2);
  ASSERT_EQ(seqs(bob_box), (std::vector<uint32_t>{1, 2, 3, 4}));
  EXPECT_EQ(bob_box[0].body, "m1");
  EXPECT_EQ(bob_box[3].body, "m4");
}

TEST_F(user_test, bad_sends_get_typed_errors_and_store_nothing) {
  config.max_body_bytes = 8;
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  EXPECT_EQ(send(a, 1, "nobody", "hi").error(), errc::unknown_user);
  EXPECT_EQ(send(a, 2, "bob", "123456789").error(), errc::too_large);
  EXPECT_EQ(send(a, 0, "bob", "hi").error(), errc::invalid_argument);
  EXPECT_EQ(send(a, 3, "", "hi").error(), errc::invalid_argument);
  EXPECT_EQ(send(a, 4, "b o b", "hi").error(), errc::invalid_argument);
  EXPECT_TRUE(read_all(a).empty());
  EXPECT_TRUE(read_all(b).empty());
  EXPECT_TRUE(b.pushes->empty());
  // A failed send costs no seq: the next one is 1.
  auto ok = send(a, 5, "bob", "12345678");
  ASSERT_TRUE(ok) << caf::to_string(ok.error());
  EXPECT_EQ(ok->seq, 1u);
  // The id of a failed send is not burnt either.
  auto retry = send(a, 2, "bob", "short");
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->seq, 2u);
}

TEST_F(user_test, sync_checks_epoch_and_cursor) {
  auto a = login("alice", "secret1", "phone");
  auto epoch = (**a.login)->epoch;
  ASSERT_TRUE(send(a, 1, "bob", "x"));
  auto stale = sync(a, epoch + 1, 0);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error(), errc::stale_epoch);
  EXPECT_EQ(stale.error().context().get_as<uint32_t>(1), epoch);
  auto ahead = sync(a, epoch, 2);
  ASSERT_FALSE(ahead);
  EXPECT_EQ(ahead.error(), errc::cursor_ahead);
  auto ok = sync(a, epoch, 0);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->epoch, epoch);
  EXPECT_EQ(ok->max_seq, 1u);
  auto any_epoch = sync(a, 0, 1);
  ASSERT_TRUE(any_epoch);
  EXPECT_TRUE(any_epoch->entries.empty());
  EXPECT_EQ(ack(a, epoch + 1, 1).error(), errc::stale_epoch);
  EXPECT_EQ(ack(a, epoch, 2).error(), errc::cursor_ahead);
}

TEST_F(user_test, sync_pages_through_cache_and_storage_in_order) {
  config.cache_entries = 4;
  config.sync_page_max = 3;
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  ASSERT_EQ(send_to_bob(a, 10).size(), 10u);
  auto old = sync(b, 0, 0, 100); // capped at 3; from storage (cache holds 7..10)
  ASSERT_TRUE(old);
  EXPECT_EQ(seqs(old->entries), (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(old->max_seq, 10u);
  auto recent = sync(b, 0, 8, 100); // from the cache
  ASSERT_TRUE(recent);
  EXPECT_EQ(seqs(recent->entries), (std::vector<uint32_t>{9, 10}));
  auto all = read_all(b);
  ASSERT_EQ(all.size(), 10u);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i].body, "m" + std::to_string(i + 1));
}

TEST_F(user_test, notices_merge_while_a_push_is_in_flight) {
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone", false); // not ready for pushes yet
  for (uint64_t id = 1; id <= 3; ++id)
    ASSERT_TRUE(send(a, id, "bob", "m" + std::to_string(id)));
  EXPECT_TRUE(b.pushes->empty());
  arm(b);
  ASSERT_EQ(b.pushes->size(), 1u);
  auto& note = b.pushes->front().note;
  EXPECT_EQ(note.after_seq, 0u);
  EXPECT_EQ(note.max_seq, 3u);
  ASSERT_TRUE(note.complete);
  EXPECT_EQ(seqs(note.entries), (std::vector<uint32_t>{1, 2, 3}));
}

TEST_F(user_test, the_own_copy_waits_for_the_answer_only_while_nothing_else_is_pending) {
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  // Bob writes first: alice's device is pushed that at once (it is not her own send).
  ASSERT_TRUE(send(b, 1, "alice", "from bob"));
  ASSERT_EQ(a.pushes->size(), 1u);
  // Alice's notify is still unconfirmed (not re-armed): Bob's next message waits in the
  // connection, and alice's own send then takes it along with her own copy.
  ASSERT_TRUE(send(b, 2, "alice", "again"));
  EXPECT_EQ(a.pushes->size(), 1u);
  auto r = send(a, 1, "bob", "reply");
  ASSERT_TRUE(r);
  ASSERT_EQ(a.answers->size(), 1u);
  auto& note = a.answers->front();
  EXPECT_EQ(note.after_seq, 1u);
  EXPECT_EQ(note.max_seq, r->seq);
  ASSERT_TRUE(note.complete);
  EXPECT_EQ(seqs(note.entries), (std::vector<uint32_t>{2, 3}));
  // Nothing is left for the next notify.
  arm(a);
  EXPECT_EQ(a.pushes->size(), 1u);
  // A send that fails holds nothing back.
  auto refused = send(a, 2, "nobody", "x");
  EXPECT_FALSE(refused);
  EXPECT_EQ(a.answers->size(), 1u);
}

TEST_F(user_test, large_messages_are_announced_without_their_body) {
  config.push_inline_max_bytes = 4;
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "a long body"));
  ASSERT_EQ(b.pushes->size(), 1u);
  EXPECT_FALSE(b.pushes->front().note.complete);
  EXPECT_TRUE(b.pushes->front().note.entries.empty());
  EXPECT_EQ(b.pushes->front().note.max_seq, 1u);
}

TEST_F(user_test, a_second_login_of_a_device_replaces_the_first) {
  auto a = login("alice", "secret1", "phone");
  auto old = login("bob", "secret1", "phone");
  auto fresh = login("bob", "secret1", "phone");
  ASSERT_EQ(old.pushes->size(), 1u);
  EXPECT_TRUE(old.pushes->front().closed);
  EXPECT_EQ(old.pushes->front().reason, errc::session_replaced);
  EXPECT_EQ(sync(old, 0, 0).error(), errc::session_replaced);
  ASSERT_TRUE(send(a, 1, "bob", "hi"));
  EXPECT_EQ(fresh.pushes->size(), 1u);
  EXPECT_EQ(old.pushes->size(), 1u); // nothing more for the replaced session
}

TEST_F(user_test, when_the_user_actor_ends_its_sessions_end_and_calls_fail_unavailable) {
  auto a = login("alice", "secret1", "phone");
  auto b = login("alice", "secret1", "tablet");
  caf::anon_send_exit(a.owner(), caf::exit_reason::kill);
  run();
  for (auto* d : {&a, &b}) {
    ASSERT_TRUE(d->session->closed);
    EXPECT_EQ(d->pushes->back().reason, errc::unavailable);
    EXPECT_EQ(sync(*d, 0, 0).error(), errc::unavailable);
  }
  auto again = login("alice", "secret1", "phone"); // a new actor takes over
  ASSERT_TRUE(again.login->has_value() && **again.login);
  ASSERT_TRUE(send(again, 1, "bob", "back"));
}

TEST_F(user_test, acknowledged_cursor_comes_back_at_the_next_login) {
  auto a = login("alice", "secret1", "phone");
  auto epoch = (**a.login)->epoch;
  ASSERT_TRUE(send(a, 1, "bob", "x"));
  ASSERT_TRUE(send(a, 2, "bob", "y"));
  ASSERT_TRUE(ack(a, epoch, 1));
  logout(a);
  restart();
  auto again = login("alice", "secret1", "phone");
  EXPECT_EQ((**again.login)->cursor, 1u);
  auto other = login("alice", "secret1", "tablet");
  EXPECT_EQ((**other.login)->cursor, 0u);
}

TEST_F(user_test, an_idle_user_actor_stops_and_a_new_one_continues_the_mailbox) {
  config.user_idle_timeout = std::chrono::milliseconds(1000);
  restart();
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "while bob is offline"));
  auto first = ask<user_actor>(n.directory, lookup_atom::value, std::string{"bob"});
  ASSERT_TRUE(first.value);
  // Two idle periods: the first tick sees the send's activity, the second stops the actor.
  idle_for_three(std::chrono::milliseconds(1000));
  auto second = ask<user_actor>(n.directory, lookup_atom::value, std::string{"bob"});
  ASSERT_TRUE(second.value);
  EXPECT_NE(*first.value, *second.value);
  ASSERT_TRUE(send(a, 2, "bob", "after the restart of bob's actor"));
  auto b = login("bob", "secret1", "phone");
  EXPECT_EQ(seqs(read_all(b)), (std::vector<uint32_t>{1, 2}));
  // Alice is online, so her actor stays.
  auto alice1 = ask<user_actor>(n.directory, lookup_atom::value, std::string{"alice"});
  idle_for_three(std::chrono::milliseconds(1000));
  auto alice2 = ask<user_actor>(n.directory, lookup_atom::value, std::string{"alice"});
  EXPECT_EQ(*alice1.value, *alice2.value);
}

TEST_F(user_test, a_retry_of_a_send_that_left_a_busy_users_window_gets_its_first_result) {
  config.dedup_window = 2;
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  auto first = send_to_bob(a, 5);
  ASSERT_EQ(first.size(), 5u);
  // Send 5 is in the window: answered from memory, nothing reserved.
  auto recent = send(a, 5, "bob", "m5");
  ASSERT_TRUE(recent);
  EXPECT_EQ(recent->seq, first[4].seq);
  // Send 1 left it three sends ago: its dedup record answers, with its first result; the seq
  // reserved on the way is left unused, so the next send skips one.
  auto old = send(a, 1, "bob", "m1");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->seq, first[0].seq);
  EXPECT_EQ(old->server_time_ms, first[0].server_time_ms);
  auto next = send(a, 6, "bob", "m6");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->seq, 7u);
  auto to_bob = read_all(b);
  EXPECT_EQ(bodies(to_bob), (std::vector<std::string>{"m1", "m2", "m3", "m4", "m5", "m6"}));
  EXPECT_EQ(seqs(to_bob), (std::vector<uint32_t>{1, 2, 3, 4, 5, 7}));
  EXPECT_EQ(seqs(read_all(a)), (std::vector<uint32_t>{1, 2, 3, 4, 5, 7}));
}

TEST_F(user_test, a_quiet_online_user_drops_its_cache_and_window_and_answers_from_storage) {
  config.user_idle_timeout = std::chrono::milliseconds(1000);
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  auto first = send_to_bob(a, 3);
  ASSERT_EQ(first.size(), 3u);
  auto alice1 = ask<user_actor>(n.directory, lookup_atom::value, std::string{"alice"});
  // Both stay online and quiet for two periods: their actors stay, without cache or window.
  idle_for_three(std::chrono::milliseconds(1000));
  auto alice2 = ask<user_actor>(n.directory, lookup_atom::value, std::string{"alice"});
  EXPECT_EQ(*alice1.value, *alice2.value);

  auto page = sync(b, 0, 1, 100); // from storage now
  ASSERT_TRUE(page);
  EXPECT_EQ(bodies(page->entries), (std::vector<std::string>{"m2", "m3"}));
  EXPECT_EQ(page->max_seq, 3u);
  EXPECT_EQ(seqs(sync(b, 0, 3, 100)->entries), std::vector<uint32_t>{});

  // A retry is answered from its dedup record with its first result, as after a restart;
  // the seq it reserved on the way is left unused, so the next send skips one.
  auto again = send(a, 2, "bob", "m2");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->seq, first[1].seq);
  EXPECT_EQ(again->server_time_ms, first[1].server_time_ms);
  auto next = send(a, 4, "bob", "m4");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->seq, 5u);
  auto to_bob = read_all(b);
  EXPECT_EQ(bodies(to_bob), (std::vector<std::string>{"m1", "m2", "m3", "m4"}));
  EXPECT_EQ(seqs(to_bob), (std::vector<uint32_t>{1, 2, 3, 5}));
  EXPECT_EQ(seqs(read_all(a)), (std::vector<uint32_t>{1, 2, 3, 5}));
}

} // namespace
} // namespace missive::test

namespace missive::test {
namespace {

TEST_F(user_test, pipelined_sends_that_find_the_recipients_actor_gone_keep_their_order) {
  config.user_idle_timeout = std::chrono::milliseconds(1000);
  restart();
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "one")); // alice's actor now knows bob's
  idle_for_three(std::chrono::milliseconds(1000)); // bob is offline: his actor idles out
  // "two" and "three" go to the stopped actor and come back; "four" arrives in between.
  pipelined(a, 2, "bob", "two");
  pipelined(a, 3, "bob", "three");
  sched.prioritize(a.owner());
  sched.run_once();
  pipelined(a, 4, "bob", "four");
  run();
  ASSERT_TRUE(all_answered());
  auto b = login("bob", "secret1", "phone");
  EXPECT_EQ(bodies(read_all(b)), (std::vector<std::string>{"one", "two", "three", "four"}));
}

// A sender finds its recipient's actor in the node's table of active users, which the
// directory clears only when the actor's down message reaches it. Until then a send can go to
// an actor that has just stopped: it comes back and is sent again through the directory.
TEST_F(user_test, a_send_to_an_actor_that_just_stopped_goes_to_its_successor) {
  auto a = login("alice", "secret1", "phone");
  ASSERT_TRUE(send(a, 1, "bob", "one"));
  auto old_bob = ask<user_actor>(n.directory, lookup_atom::value, std::string{"bob"});
  ASSERT_TRUE(old_bob.value);
  caf::anon_send_exit(*old_bob.value, caf::exit_reason::kill);
  sched.prioritize(*old_bob.value);
  sched.run_once(); // bob's actor stops; the directory has not seen its down message yet
  pipelined(a, 2, "bob", "two");
  sched.prioritize(a.owner());
  sched.run_once(); // alice's actor sends "two" to the stopped actor
  run();
  ASSERT_TRUE(all_answered());
  auto new_bob = ask<user_actor>(n.directory, lookup_atom::value, std::string{"bob"});
  ASSERT_TRUE(new_bob.value);
  EXPECT_NE(*new_bob.value, *old_bob.value);
  auto b = login("bob", "secret1", "phone");
  EXPECT_EQ(bodies(read_all(b)), (std::vector<std::string>{"one", "two"}));
}

TEST_F(user_test, a_used_up_seq_space_moves_the_mailbox_to_a_new_epoch) {
  config.max_seq = 6; // keeps the newest 3 entries at a switch
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  auto old_epoch = (**b.login)->epoch;
  std::vector<send_result> acked;
  for (uint64_t id = 1; id <= 8; ++id) {
    auto r = send(a, id, "bob", "m" + std::to_string(id));
    ASSERT_TRUE(r) << caf::to_string(r.error());
    acked.push_back(*r);
  }
  // Bob's device hears of the new epoch (once it is ready for its next push); its old cursor
  // is now stale.
  arm(b);
  ASSERT_FALSE(b.pushes->empty());
  auto new_epoch = b.pushes->back().note.epoch;
  EXPECT_NE(new_epoch, old_epoch);
  EXPECT_EQ(sync(b, old_epoch, 0).error(), errc::stale_epoch);
  EXPECT_EQ(sync(b, old_epoch, 0).error().context().get_as<uint32_t>(1), new_epoch);
  // From zero in the new epoch: the carried-over tail, then what came after the switch.
  auto box = read_all(b, new_epoch);
  std::vector<std::string> bodies;
  for (auto& e : box)
    bodies.push_back(e.body);
  EXPECT_EQ(bodies, (std::vector<std::string>{"m4", "m5", "m6", "m7", "m8"}));
  EXPECT_EQ(seqs(box), (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  // Alice's own mailbox switched too (8 outgoing copies), and a retry of a carried-over send
  // returns its seq in the new epoch without storing anything.
  auto again = send(a, 6, "bob", "m6");
  ASSERT_TRUE(again);
  auto alice_box = read_all(a);
  EXPECT_EQ(alice_box.size(), 5u);
  bool found = false;
  for (auto& e : alice_box)
    found |= e.client_msg_id == 6 && e.seq == again->seq;
  EXPECT_TRUE(found);
  EXPECT_EQ(read_all(b, new_epoch).size(), 5u);
  // The switch survives a restart.
  restart();
  auto b2 = login("bob", "secret1", "phone");
  EXPECT_EQ((**b2.login)->epoch, new_epoch);
  EXPECT_EQ((**b2.login)->max_seq, 5u);
}

} // namespace
} // namespace missive::test

namespace missive::test {
namespace {

TEST_F(user_test, retention_keeps_the_newest_entries_and_flags_what_expired) {
  config.retention_max_entries = 3;
  config.retention_interval = std::chrono::milliseconds(1000);
  config.cache_entries = 2; // older pages come from storage
  restart();
  auto a = login("alice", "secret1", "phone");
  auto b = login("bob", "secret1", "phone");
  for (uint64_t id = 1; id <= 6; ++id)
    ASSERT_TRUE(send(a, id, "bob", "m" + std::to_string(id)));
  auto before = sync(b, 0, 0, 100);
  ASSERT_TRUE(before);
  EXPECT_EQ(before->entries.size(), 6u);
  EXPECT_FALSE(before->expired);

  sched.advance_time(std::chrono::milliseconds(1000)); // the background sweep runs
  run();
  auto after = sync(b, 0, 0, 100);
  ASSERT_TRUE(after);
  EXPECT_EQ(seqs(after->entries), (std::vector<uint32_t>{4, 5, 6}));
  EXPECT_TRUE(after->expired); // cursor 0 pointed into deleted history: said, not hidden
  auto caught_up = sync(b, 0, 4, 100);
  ASSERT_TRUE(caught_up);
  EXPECT_EQ(seqs(caught_up->entries), (std::vector<uint32_t>{5, 6}));
  EXPECT_FALSE(caught_up->expired);
  EXPECT_EQ(read_all(a).size(), 3u); // alice's outgoing copies expire the same way

  // A sweep that empties nothing more changes nothing; seqs go on, never reused.
  restart();
  auto a2 = login("alice", "secret1", "phone");
  auto r = send(a2, 7, "bob", "m7");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->seq, 7u);
}

} // namespace
} // namespace missive::test

// The persistence actor's group commit and its idempotent appends.

#include "fixture.hpp"

namespace missive::test {
namespace {

class persistence_test : public actor_fixture {};

entry make(uint32_t seq, uint64_t id) {
  return entry{seq, "alice", "bob", id, 1000 + seq, "x"};
}

TEST_F(persistence_test, a_send_already_stored_or_already_in_the_batch_is_not_written_again) {
  start();
  register_user("alice");
  register_user("bob");
  std::vector<caf::expected<dedup_hit>> answers(3, caf::make_error(caf::sec::request_timeout));
  auto p = n.persistence;
  sys.spawn([&answers, p](caf::event_based_actor* self) {
    // Three appends before any commit: the same send twice (as a retry would), one other.
    std::vector<std::vector<mailbox_append>> batches{
      {{"bob", "alice", make(1, 7), false}, {"alice", "alice", make(1, 7), true}},
      {{"bob", "alice", make(2, 7), false}, {"alice", "alice", make(2, 7), true}},
      {{"bob", "alice", make(3, 8), false}, {"alice", "alice", make(3, 8), true}}};
    for (size_t i = 0; i < batches.size(); ++i)
      self->request(p, caf::infinite, append_atom::value, batches[i])
        .then([&answers, i](dedup_hit& h) { answers[i] = h; },
              [&answers, i](caf::error& e) { answers[i] = e; });
  });
  run();
  ASSERT_TRUE(answers[0] && answers[1] && answers[2]);
  EXPECT_FALSE(answers[0]->found);
  EXPECT_TRUE(answers[1]->found);
  EXPECT_EQ(answers[1]->result.seq, 1u); // the first attempt's result
  EXPECT_FALSE(answers[2]->found);
  auto page = ask<entry_page>(n.persistence, read_atom::value, std::string{"bob"}, 0u, 100u, 100u);
  ASSERT_TRUE(page.value);
  ASSERT_EQ(page.value->entries.size(), 2u);
  EXPECT_EQ(page.value->entries[0].client_msg_id, 7u);
  EXPECT_EQ(page.value->entries[1].client_msg_id, 8u);

  // After the commit, the stored dedup record answers.
  auto again = ask<dedup_hit>(n.persistence, append_atom::value,
                              std::vector<mailbox_append>{{"bob", "alice", make(9, 8), false},
                                                          {"alice", "alice", make(9, 8), true}});
  ASSERT_TRUE(again.value);
  EXPECT_TRUE(again.value->found);
  EXPECT_EQ(again.value->result.seq, 3u);
}

/// One 1:1 send as the recipient's actor hands it over: B's copy, then A's keyed copy.
std::vector<mailbox_append> send_of(uint32_t seq, uint64_t id) {
  return {{"bob", "alice", make(seq, id), false}, {"alice", "alice", make(seq, id), true}};
}

TEST_F(persistence_test, a_send_stored_before_a_restart_is_found_after_it) {
  start();
  register_user("alice");
  register_user("bob");
  ASSERT_TRUE(ask<dedup_hit>(n.persistence, append_atom::value, send_of(1, 7)).value);
  stop();
  start(); // a new persistence actor: it knows no mailbox's keys yet
  auto retry = ask<dedup_hit>(n.persistence, append_atom::value, send_of(2, 7));
  ASSERT_TRUE(retry.value);
  EXPECT_TRUE(retry.value->found);
  EXPECT_EQ(retry.value->result.seq, 1u);
  auto fresh = ask<dedup_hit>(n.persistence, append_atom::value, send_of(2, 9));
  ASSERT_TRUE(fresh.value);
  EXPECT_FALSE(fresh.value->found);
  auto fresh_retry = ask<dedup_hit>(n.persistence, append_atom::value, send_of(3, 9));
  ASSERT_TRUE(fresh_retry.value);
  EXPECT_TRUE(fresh_retry.value->found); // committed since: remembered, then read
  EXPECT_EQ(fresh_retry.value->result.seq, 2u);
  auto looked_up = ask<dedup_hit>(n.persistence, lookup_atom::value, std::string{"alice"},
                                  uint64_t{7});
  ASSERT_TRUE(looked_up.value);
  EXPECT_TRUE(looked_up.value->found);
  auto page = ask<entry_page>(n.persistence, read_atom::value, std::string{"bob"}, 0u, 100u, 100u);
  ASSERT_TRUE(page.value);
  EXPECT_EQ(page.value->entries.size(), 2u); // ids 7 and 9, once each
}

/// An index small enough to test its bounds, read a few keys per commit.
settings small_index() {
  settings s;
  s.dedup_index_per_mailbox = 64;
  s.dedup_index_read_step = 4; // keys per commit
  return s;
}

TEST_F(persistence_test, a_mailbox_with_more_sends_than_are_kept_in_memory_finds_every_retry) {
  start(small_index());
  register_user("alice");
  register_user("bob");
  // More keys than the actor keeps per mailbox: it looks every one up from then on.
  const uint32_t sends = 80;
  for (uint32_t i = 1; i <= sends; ++i)
    ASSERT_TRUE(ask<dedup_hit>(n.persistence, append_atom::value, send_of(i, 100 + i)).value);
  for (uint32_t i : {1u, 64u, 65u, sends}) {
    auto retry = ask<dedup_hit>(n.persistence, append_atom::value, send_of(sends + 1, 100 + i));
    ASSERT_TRUE(retry.value);
    EXPECT_TRUE(retry.value->found) << "send " << i;
    EXPECT_EQ(retry.value->result.seq, i);
  }
  stop();
  start(small_index()); // read again: over the bound once read far enough
  for (uint32_t round = 0; round < 40; ++round)
    for (uint32_t i : {1u, 40u, sends}) {
      auto retry = ask<dedup_hit>(n.persistence, append_atom::value, send_of(sends + 1, 100 + i));
      ASSERT_TRUE(retry.value);
      EXPECT_TRUE(retry.value->found) << "send " << i << " after a restart, round " << round;
    }
}

TEST_F(persistence_test, retries_are_found_while_and_after_a_mailbox_is_read_in_steps) {
  start(small_index());
  register_user("alice");
  register_user("bob");
  // 40 sends before a restart: read 4 keys per commit afterwards, so over 10 commits.
  uint32_t seq = 0;
  for (uint64_t id = 100; id < 140; ++id)
    ASSERT_TRUE(ask<dedup_hit>(n.persistence, append_atom::value, send_of(++seq, id)).value);
  stop();
  start(small_index());
  auto send = [&](uint64_t id) {
    auto r = ask<dedup_hit>(n.persistence, append_atom::value, send_of(seq + 1, id));
    EXPECT_TRUE(r.value) << "id " << id;
    if (r.value && !r.value->found)
      ++seq;
    return r.value ? r.value->found : false;
  };
  // The first new send starts the reading; the next ones sort before where it stands (ids
  // below 100), so only being remembered as they are appended makes them known.
  EXPECT_FALSE(send(500));
  for (uint64_t id = 1; id <= 30; ++id) {
    EXPECT_FALSE(send(id)) << "new send " << id;
    EXPECT_TRUE(send(100 + id)) << "retry of " << 100 + id << " while reading";
    EXPECT_TRUE(send(id)) << "retry of " << id << " just sent";
  }
  // Long read to the end by now: every stored send is still found, new ones are not.
  for (uint64_t id : {1, 15, 30, 100, 120, 139, 500})
    EXPECT_TRUE(send(id)) << "retry of " << id << " after the reading";
  EXPECT_FALSE(send(501));
  EXPECT_TRUE(send(501));
  auto page = ask<entry_page>(n.persistence, read_atom::value, std::string{"bob"}, 0u, 1000u,
                              1000u);
  ASSERT_TRUE(page.value);
  EXPECT_EQ(page.value->entries.size(), 40u + 1 + 30 + 1); // each send once
}

TEST_F(persistence_test, the_dedup_records_a_renumbering_writes_are_found) {
  start();
  register_user("alice");
  register_user("bob");
  register_user("carol");
  // Bob's copy of alice's send has no dedup record of its own...
  ASSERT_TRUE(ask<dedup_hit>(n.persistence, append_atom::value, send_of(1, 7)).value);
  // ...and bob's mailbox becomes known through a keyed append of another origin (as a group
  // fan-out makes them).
  entry from_carol{2, "carol", "bob", 5, 1002, "y"};
  auto keyed = ask<dedup_hit>(n.persistence, append_atom::value,
                              std::vector<mailbox_append>{{"bob", "carol", from_carol, true}});
  ASSERT_TRUE(keyed.value);
  EXPECT_FALSE(keyed.value->found);
  // Renumbering writes a record for every entry it keeps, alice's included.
  auto renumbered = ask<mailbox_state>(n.persistence, renumber_atom::value, std::string{"bob"},
                                       10u);
  ASSERT_TRUE(renumbered.value);
  auto again = ask<dedup_hit>(n.persistence, append_atom::value,
                              std::vector<mailbox_append>{{"bob", "alice", make(3, 7), true}});
  ASSERT_TRUE(again.value);
  EXPECT_TRUE(again.value->found) << "the renumbered record must not be taken for absent";
  EXPECT_EQ(again.value->result.seq, 1u);
}

/// Reports a slow commit gets: the operator hears of the first at once, of the next ones at
/// most once per interval, counted.
class slow_commit_test : public persistence_test {
protected:
  void start_reporting(std::chrono::microseconds slow) {
    settings s;
    s.slow_commit = slow;
    s.slow_commit_report_interval = std::chrono::seconds(10);
    s.warn = [lines = lines](const std::string& text) { lines->push_back(text); };
    start(s);
  }

  /// One commit: an append of a new send.
  void commit() {
    ++seq;
    ASSERT_TRUE(ask<dedup_hit>(n.persistence, append_atom::value, send_of(seq, seq)).value);
  }

  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
  uint32_t seq = 0;
};

TEST_F(slow_commit_test, slow_commits_are_reported_at_once_then_at_most_once_per_interval) {
  start_reporting(std::chrono::microseconds(1)); // every commit is slow
  commit();
  ASSERT_EQ(lines->size(), 1u);
  EXPECT_NE(lines->front().find("slow commits: 1 took 0 ms or more, the longest"),
            std::string::npos)
    << lines->front();
  EXPECT_NE(lines->front().find("(a batch of 1 request;"), std::string::npos) << lines->front();
  commit();
  commit();
  EXPECT_EQ(lines->size(), 1u); // within the interval: counted, not printed
  sched.advance_time(std::chrono::seconds(10));
  commit();
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_NE(lines->back().find("slow commits: 3 took 0 ms or more since the last report"),
            std::string::npos)
    << lines->back();
}

TEST_F(slow_commit_test, commits_under_the_threshold_or_with_reports_off_are_not_reported) {
  start_reporting(std::chrono::seconds(60)); // no commit of a test's store takes a minute
  commit();
  commit();
  EXPECT_TRUE(lines->empty());
  stop();
  start_reporting(std::chrono::microseconds(0)); // off
  commit();
  EXPECT_TRUE(lines->empty());
}

} // namespace
} // namespace missive::test

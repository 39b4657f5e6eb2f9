#include <gtest/gtest.h>

#include "missive/actors/node.hpp"
#include "missive/actors/push_queue.hpp"

namespace missive {
namespace {

notice make(uint32_t after, std::vector<uint32_t> seqs, uint32_t epoch = 5) {
  notice n{"bob", epoch, after, seqs.empty() ? after : seqs.back(), true, {}};
  for (auto s : seqs)
    n.entries.push_back(entry{s, "alice", "bob", s, 0, "x"});
  return n;
}

TEST(notice, contiguous_notices_merge_their_entries) {
  settings limits;
  auto pending = make(0, {1, 2});
  merge_notice(pending, make(2, {3}), limits);
  EXPECT_TRUE(pending.complete);
  EXPECT_EQ(pending.after_seq, 0u);
  EXPECT_EQ(pending.max_seq, 3u);
  ASSERT_EQ(pending.entries.size(), 3u);
  EXPECT_EQ(pending.entries[2].seq, 3u);
}

TEST(notice, a_gap_drops_the_inline_entries) {
  settings limits;
  auto pending = make(0, {1});
  merge_notice(pending, make(4, {5}), limits);
  EXPECT_FALSE(pending.complete);
  EXPECT_TRUE(pending.entries.empty());
  EXPECT_EQ(pending.max_seq, 5u);
  // Once incomplete, it stays so: the device must sync.
  merge_notice(pending, make(5, {6}), limits);
  EXPECT_FALSE(pending.complete);
  EXPECT_EQ(pending.max_seq, 6u);
}

TEST(notice, limits_drop_the_inline_entries) {
  settings limits;
  limits.push_inline_max_entries = 2;
  auto pending = make(0, {1, 2});
  trim_notice(pending, limits);
  EXPECT_TRUE(pending.complete);
  merge_notice(pending, make(2, {3}), limits);
  EXPECT_FALSE(pending.complete);
  EXPECT_TRUE(pending.entries.empty());
  limits.push_inline_max_bytes = 0;
  auto big = make(0, {1});
  trim_notice(big, limits);
  EXPECT_FALSE(big.complete);
}

TEST(notice, a_new_epoch_replaces_the_pending_notice) {
  settings limits;
  auto pending = make(0, {1, 2}, 5);
  merge_notice(pending, make(0, {1}, 6), limits);
  EXPECT_EQ(pending.epoch, 6u);
  EXPECT_TRUE(pending.complete);
  EXPECT_EQ(pending.max_seq, 1u);
}

/// A copy in bob's mailbox of bob's own send `id` (seq `seq`).
notice own_copy(uint32_t seq, uint64_t id) {
  notice n{"bob", 5, seq - 1, seq, true, {}};
  n.entries.push_back(entry{seq, "bob", "alice", id, 0, "mine"});
  return n;
}

TEST(push_queue, one_notify_in_flight_and_later_notices_merge) {
  settings limits;
  push_queue q("bob", limits);
  EXPECT_FALSE(q.next());
  q.add(make(0, {1}));
  auto first = q.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->max_seq, 1u);
  EXPECT_TRUE(q.in_flight());
  q.add(make(1, {2}));
  q.add(make(2, {3}));
  EXPECT_FALSE(q.next()); // still waiting for the device
  q.confirmed();
  auto second = q.next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->after_seq, 1u);
  EXPECT_EQ(second->max_seq, 3u);
  EXPECT_EQ(second->entries.size(), 2u);
}

TEST(push_queue, the_own_copy_of_an_unanswered_send_waits_for_its_answer) {
  settings limits;
  push_queue q("bob", limits);
  q.sending(42);
  q.add(own_copy(1, 42));
  EXPECT_FALSE(q.next()); // the answer carries it
  auto rides = q.answered(42, true);
  ASSERT_TRUE(rides);
  ASSERT_EQ(rides->entries.size(), 1u);
  EXPECT_EQ(rides->entries[0].client_msg_id, 42u);
  EXPECT_FALSE(q.has_pending());
  EXPECT_FALSE(q.next());
  EXPECT_FALSE(q.in_flight());
}

TEST(push_queue, anything_else_pending_goes_by_notify_with_the_own_copy) {
  settings limits;
  push_queue q("bob", limits);
  q.sending(42);
  q.add(own_copy(1, 42));
  q.add(make(1, {2})); // from alice
  auto n = q.next();
  ASSERT_TRUE(n);
  EXPECT_EQ(n->entries.size(), 2u);
  EXPECT_FALSE(q.answered(42, true)); // nothing left to ride on the answer
}

TEST(push_queue, copies_of_other_sends_or_devices_are_not_held) {
  settings limits;
  push_queue q("bob", limits);
  q.sending(42);
  q.add(own_copy(1, 7)); // bob's send with id 7: from another device, or answered already
  EXPECT_TRUE(q.next());
}

TEST(push_queue, a_failed_send_takes_nothing_and_releases_what_waited) {
  settings limits;
  push_queue q("bob", limits);
  q.sending(42);
  q.sending(43);
  q.add(own_copy(1, 43));
  EXPECT_FALSE(q.answered(42, false)); // refused: nothing rides on it
  EXPECT_FALSE(q.next());              // 43 is still under way
  EXPECT_TRUE(q.answered(43, true));
}

TEST(push_queue, an_epoch_notice_without_entries_is_never_held) {
  settings limits;
  push_queue q("bob", limits);
  q.sending(42);
  q.add(notice{"bob", 6, 0, 0, false, {}});
  auto n = q.next();
  ASSERT_TRUE(n);
  EXPECT_EQ(n->epoch, 6u);
}

} // namespace
} // namespace missive

#include <gtest/gtest.h>

#include "missive/actors/node.hpp"

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

} // namespace
} // namespace missive

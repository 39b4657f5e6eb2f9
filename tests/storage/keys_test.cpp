#include "missive/storage/keys.hpp"

#include <gtest/gtest.h>

namespace missive::storage {
namespace {

TEST(keys, entry_keys_sort_by_numeric_seq) {
  // Big-endian: byte order is numeric order, also across byte boundaries.
  EXPECT_LT(keys::entry("bob", 255), keys::entry("bob", 256));
  EXPECT_LT(keys::entry("bob", 1), keys::entry("bob", 0x01000000));
  EXPECT_LT(keys::entry("bob", 0xfffffffe), keys::entry("bob", 0xffffffff));
}

TEST(keys, one_users_range_never_contains_anothers) {
  // "bo" must not be a prefix range of "bob": names are length-prefixed.
  auto bo_last = keys::entry("bo", UINT32_MAX);
  auto bob_first = keys::entry("bob", 0);
  EXPECT_NE(bob_first.substr(0, bo_last.size() - 4), bo_last.substr(0, bo_last.size() - 4));
  uint32_t seq = 0;
  EXPECT_FALSE(keys::parse_entry(bob_first, "bo", &seq));
  EXPECT_TRUE(keys::parse_entry(bob_first, "bob", &seq));
  EXPECT_EQ(seq, 0u);
}

TEST(keys, parse_entry_reads_back_the_seq) {
  uint32_t seq = 0;
  ASSERT_TRUE(keys::parse_entry(keys::entry("alice", 123456789), "alice", &seq));
  EXPECT_EQ(seq, 123456789u);
  EXPECT_FALSE(keys::parse_entry(keys::meta("alice"), "alice", &seq));
  EXPECT_FALSE(keys::parse_entry(keys::entry("alice", 1).substr(0, 5), "alice", &seq));
}

TEST(keys, spaces_do_not_collide) {
  EXPECT_NE(keys::account("a"), keys::meta("a"));
  EXPECT_NE(keys::dedup("a", "b", 1), keys::dedup("a", "b", 2));
  EXPECT_NE(keys::dedup("ab", "c", 1), keys::dedup("a", "bc", 1));
  EXPECT_NE(keys::device("ab", "c"), keys::device("a", "bc"));
  EXPECT_EQ(keys::entry("x", 7)[0], static_cast<char>(keys::space::entry));
}

} // namespace
} // namespace missive::storage

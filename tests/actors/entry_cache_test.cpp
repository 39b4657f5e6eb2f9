// The user actor's cache of recent entries (actors/src/entry_cache.hpp): bounded in entries and
// in bytes, contiguous behind after(), the newest always kept.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "entry_cache.hpp"

namespace {

using missive::entry_cache;
using missive::storage::entry;

entry make(uint32_t seq, size_t body_bytes) {
  entry e;
  e.seq = seq;
  e.from = "alice";
  e.to = "bob";
  e.body = std::string(body_bytes, 'x');
  return e;
}

std::vector<uint32_t> seqs(const entry_cache& c) {
  std::vector<uint32_t> out;
  for (auto& e : c)
    out.push_back(e.seq);
  return out;
}

TEST(entry_cache, keeps_the_newest_within_its_count) {
  entry_cache c;
  c.clear(10);
  for (uint32_t seq = 11; seq <= 20; ++seq)
    c.push(make(seq, 8), 4, 1 << 20);
  EXPECT_EQ(seqs(c), (std::vector<uint32_t>{17, 18, 19, 20}));
  EXPECT_EQ(c.after(), 16u); // a sync after 16 or later is served from here
  EXPECT_EQ(c.bytes(), 4 * entry_cache::cost(make(0, 8)));
}

TEST(entry_cache, large_bodies_leave_few_entries_and_the_newest_stays) {
  const size_t max_bytes = 64 * 1024;
  entry_cache c;
  for (uint32_t seq = 1; seq <= 8; ++seq)
    c.push(make(seq, 64), 256, max_bytes);
  EXPECT_EQ(c.size(), 8u);
  // Three bodies of 30,000 bytes do not fit in 64 KiB with everything else: two do.
  for (uint32_t seq = 9; seq <= 11; ++seq)
    c.push(make(seq, 30000), 256, max_bytes);
  EXPECT_EQ(seqs(c), (std::vector<uint32_t>{10, 11}));
  EXPECT_EQ(c.after(), 9u);
  EXPECT_LE(c.bytes(), max_bytes);
  EXPECT_EQ(c.bytes(), 2 * entry_cache::cost(make(0, 30000)));
  // One entry larger than the bound on its own: it stays, alone.
  c.push(make(12, 100000), 256, max_bytes);
  EXPECT_EQ(seqs(c), (std::vector<uint32_t>{12}));
  EXPECT_EQ(c.after(), 11u);
  // Small ones push it out again.
  c.push(make(13, 64), 256, max_bytes);
  EXPECT_EQ(seqs(c), (std::vector<uint32_t>{13}));
  EXPECT_EQ(c.bytes(), entry_cache::cost(make(0, 64)));
}

TEST(entry_cache, drop_and_clear_keep_after_and_bytes_right) {
  entry_cache c;
  for (uint32_t seq = 1; seq <= 3; ++seq)
    c.push(make(seq, 100), 256, 1 << 20);
  c.drop_oldest();
  EXPECT_EQ(c.after(), 1u);
  EXPECT_EQ(c.bytes(), 2 * entry_cache::cost(make(0, 100)));
  c.clear(7);
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c.after(), 7u);
  EXPECT_EQ(c.bytes(), 0u);
}

} // namespace

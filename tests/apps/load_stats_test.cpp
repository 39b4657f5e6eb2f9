#include "load_stats.hpp"

#include <gtest/gtest.h>

#include <random>
#include <unordered_set>

namespace missive::load {
namespace {

TEST(histogram, bucket_edges_are_within_two_percent) {
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 129ull, 1000ull, 65535ull, 123456789ull}) {
    auto edge = histogram::upper_edge(histogram::index_of(v));
    EXPECT_GE(edge, v);
    EXPECT_LE(edge, v + v / 50 + 1) << v;
  }
  EXPECT_LT(histogram::index_of(1ull << 50), histogram::bucket_count); // clamped, not out of range
}

TEST(histogram, percentiles_of_a_known_distribution) {
  histogram h;
  for (uint64_t v = 1; v <= 1000; ++v) // 1..1000 us, once each
    h.record(v);
  auto s = h.take();
  EXPECT_EQ(s.total(), 1000u);
  EXPECT_NEAR(double(s.percentile(0.5)), 500.0, 10.0);
  EXPECT_NEAR(double(s.percentile(0.99)), 990.0, 16.0);
  EXPECT_EQ(s.max, 1000u);
  EXPECT_EQ(s.percentile(1.0), 1000u);
}

TEST(histogram, an_interval_is_the_difference_of_two_snapshots) {
  histogram h;
  h.record(5000);
  auto before = h.take();
  for (int i = 0; i < 10; ++i)
    h.record(10);
  auto interval = h.take().since(before);
  EXPECT_EQ(interval.total(), 10u);
  EXPECT_EQ(interval.percentile(0.99), 10u);
  EXPECT_EQ(interval.max, 10u); // not the 5000 from before
}

TEST(id_set, each_id_is_new_once_through_growth_and_collisions) {
  id_set ids;
  std::unordered_set<uint64_t> reference;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    // The tool's shape (run, sender, counter) mixed with arbitrary ids and repeats.
    uint64_t id = i % 3 == 0 ? rng() : (uint64_t{5} << 48) | (uint64_t(i % 97) << 24) | (i / 97);
    if (i % 5 == 0 && i > 0)
      id = *reference.begin(); // a duplicate
    EXPECT_EQ(ids.insert(id), reference.insert(id).second) << "id " << id;
  }
  EXPECT_EQ(ids.size(), reference.size());
  EXPECT_TRUE(ids.insert(0)); // zero is an id like any other
  EXPECT_FALSE(ids.insert(0));
  EXPECT_EQ(ids.size(), reference.size() + 1);
}

TEST(send_number, the_latest_send_with_the_ids_remainder) {
  EXPECT_EQ(send_number(5, 5), 5u);
  EXPECT_EQ(send_number(5, 1), 1u);
  constexpr uint32_t wrap = uint32_t{1} << 24;
  EXPECT_EQ(send_number(wrap + 2, 2), wrap + 2);
  EXPECT_EQ(send_number(wrap + 2, 0), wrap);         // send 2^24 carries 0
  EXPECT_EQ(send_number(wrap + 2, wrap - 1), wrap - 1); // answered after the counter wrapped
  EXPECT_EQ(send_number(3 * wrap, 7), 2 * wrap + 7);
}

} // namespace
} // namespace missive::load

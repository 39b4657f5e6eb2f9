#include "load_push.hpp"
#include "load_stats.hpp"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cmath>
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

TEST(histogram, a_percentile_among_more_values_than_recorded_counts_the_rest_as_later) {
  histogram h;
  for (uint64_t v = 1; v <= 100; ++v)
    h.record(v);
  auto s = h.take();
  EXPECT_EQ(s.percentile_among(0.99, 100), s.percentile(0.99)); // all of them recorded
  EXPECT_EQ(s.percentile_among(0.5, 200), 100u); // the 100th of 200 is the last recorded
  EXPECT_EQ(s.percentile_among(0.99, 101), 100u); // rank 100 of 101: the last recorded
  EXPECT_EQ(s.percentile_among(0.99, 102), histogram::snapshot::unknown); // rank 101: not yet
  EXPECT_EQ(s.percentile_among(0.99, 0), 0u);
}

TEST(ramp_plan, each_step_sends_at_its_rate_and_times_follow_from_the_number) {
  constexpr int64_t second = 1'000'000'000;
  // 10 users, steps of 2 s at 100 and 250 msg/s in all: a user sends every 100 ms, then 40 ms.
  ramp_plan plan({100, 250}, 10, 2 * second, 0.5);
  EXPECT_EQ(plan.sends(), 20u + 50u);
  EXPECT_EQ(plan.planned_ns(1), 50'000'000);             // half an interval into step 0
  EXPECT_EQ(plan.planned_ns(20), 50'000'000 + 19 * 100'000'000LL);
  EXPECT_EQ(plan.planned_ns(21), 2 * second + 20'000'000); // step 1's first
  EXPECT_EQ(plan.planned_ns(70), 2 * second + 20'000'000 + 49 * 40'000'000LL);
  for (uint32_t n = 2; n <= plan.sends(); ++n) // in order, each within its step
    EXPECT_GT(plan.planned_ns(n), plan.planned_ns(n - 1)) << n;
  EXPECT_LT(plan.planned_ns(plan.sends()), 4 * second);
  // A step shorter than one interval: some users send nothing in it.
  ramp_plan sparse({1}, 10, second, 0.5); // every 10 s, first at 5 s: after the step
  EXPECT_EQ(sparse.sends(), 0u);
  ramp_plan once({1, 1000}, 10, second, 0.05); // first at 0.5 s in step 0, then every 10 ms
  EXPECT_EQ(once.sends(), 1u + 100u);
  EXPECT_EQ(once.planned_ns(2), second + 500'000);
}

TEST(judge_step, a_step_passes_on_its_percentiles_and_never_by_losing_its_slowest) {
  histogram fast;
  for (int i = 0; i < 1000; ++i)
    fast.record(i < 995 ? 1000 : 50'000); // 1 ms, and 0.5% at 50 ms
  auto v = judge_step(fast.take(), 1000, 5000, 20'000);
  EXPECT_EQ(v.delivered, 1000u);
  EXPECT_LE(v.p99_us, 1020u);
  EXPECT_GE(v.p999_us, 49'000u); // the slow half percent is the p99.9
  EXPECT_FALSE(v.met);
  EXPECT_TRUE(judge_step(fast.take(), 1000, 5000, 60'000).met);
  // The same deliveries where 1010 were due: the 10 missing are later than all of them.
  auto missing = judge_step(fast.take(), 1010, 5000, 60'000);
  EXPECT_EQ(missing.p999_us, histogram::snapshot::unknown);
  EXPECT_EQ(missing.max_us, histogram::snapshot::unknown);
  EXPECT_FALSE(missing.met);
  EXPECT_TRUE(judge_step(histogram{}.take(), 0, 1, 1).met); // nothing was due
}

TEST(push_gateway, reads_the_pushkey_and_unread_count_of_a_matrix_push_and_nothing_else) {
  std::string key;
  uint32_t unread = 7;
  EXPECT_TRUE(push_gateway::parse(
    R"({"notification": {"devices": [{"app_id": "a", "pushkey": "k1"}],)"
    R"( "counts": {"unread": 3}, "prio": "high"}})",
    &key, &unread));
  EXPECT_EQ(key, "k1");
  EXPECT_EQ(unread, 3u);
  EXPECT_TRUE(push_gateway::parse(R"({"notification": {"devices": [{"pushkey": "k2"}]}})", &key,
                                  &unread));
  EXPECT_EQ(key, "k2");
  EXPECT_EQ(unread, 0u); // no counts: nothing unread
  for (const char* bad : {"", "not json", "[]", R"({"notification": 1})",
                          R"({"notification": {"devices": []}})",
                          R"({"notification": {"devices": [{"pushkey": 5}]}})"})
    EXPECT_FALSE(push_gateway::parse(bad, &key, &unread)) << bad;
}

TEST(cpu_ms, counts_the_cpu_a_process_used_whatever_its_name) {
  // A command name with spaces and a parenthesis, as /proc/PID/stat shows it: "(a) b c)".
  char name[16] = {};
  prctl(PR_GET_NAME, name);
  prctl(PR_SET_NAME, "a) b c");
  auto start = cpu_ms(getpid());
  // Burn at least 100 ms of CPU (bounded: 20 s of wall time).
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  volatile double sink = 0;
  while (cpu_ms(0) < start + 100 && std::chrono::steady_clock::now() < give_up)
    for (int i = 0; i < 100000; ++i)
      sink = sink + std::sqrt(double(i));
  auto self = cpu_ms(0), by_pid = cpu_ms(getpid());
  prctl(PR_SET_NAME, name);
  EXPECT_GE(self, start + 100);
  EXPECT_GE(by_pid, self);
  EXPECT_LT(by_pid, self + 1000);
  EXPECT_GT(rss_kib(getpid()), 0u);
  EXPECT_EQ(cpu_ms(-1), 0u);
  EXPECT_EQ(cpu_ms(INT_MAX), 0u); // no such process
  EXPECT_EQ(rss_kib(INT_MAX), 0u);
}

} // namespace
} // namespace missive::load

// The limiter behind storm-prone log lines (slow commits, push gateway failures):
// actors/include/missive/actors/report_limiter.hpp.

#include "missive/actors/report_limiter.hpp"

#include <gtest/gtest.h>

namespace missive {
namespace {

using namespace std::chrono_literals;

TEST(report_limiter, the_first_at_once_then_one_per_interval_counting_what_was_held_back) {
  report_limiter r(10s);
  report_limiter::clock::time_point t0{};
  EXPECT_EQ(r.note(t0), 1u);
  EXPECT_EQ(r.reports(), 1u);
  EXPECT_EQ(r.note(t0 + 1s), 0u);
  EXPECT_EQ(r.note(t0 + 9s), 0u);
  EXPECT_EQ(r.note(t0 + 10s), 3u); // the two held back and this one
  EXPECT_EQ(r.reports(), 2u);
  EXPECT_EQ(r.note(t0 + 19s), 0u); // the interval counts from the last report
  EXPECT_EQ(r.note(t0 + 60s), 2u);
  EXPECT_EQ(r.note(t0 + 61s), 0u);
  EXPECT_EQ(r.reports(), 3u);
}

} // namespace
} // namespace missive

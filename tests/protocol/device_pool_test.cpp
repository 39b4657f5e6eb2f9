// The device pool's timer (device_pool::schedule): ticks run on the pool's thread, in time
// order, again at each time they return, until they return nothing.

#include "missive/protocol/device_pool.hpp"

#include <gtest/gtest.h>

#include <future>
#include <stdexcept>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace missive::protocol {
namespace {

using clock = device_pool::clock;
using namespace std::chrono_literals;

struct journal {
  std::mutex mutex;
  std::vector<std::string> lines;
  void add(std::string line) {
    std::lock_guard<std::mutex> guard(mutex);
    lines.push_back(std::move(line));
  }
};

TEST(device_pool_schedule, a_tick_repeats_at_the_times_it_returns_until_it_returns_nothing) {
  device_pool pool;
  std::promise<void> done;
  std::vector<clock::time_point> ran;
  auto first = clock::now() + 5ms;
  pool.schedule(first, [&, n = 0]() mutable -> std::optional<clock::time_point> {
    ran.push_back(clock::now());
    if (++n < 4)
      return first + n * 2ms;
    done.set_value();
    return std::nullopt;
  });
  ASSERT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
  ASSERT_EQ(ran.size(), 4u);
  for (size_t i = 0; i < ran.size(); ++i)
    EXPECT_GE(ran[i], first + int(i) * 2ms) << "tick " << i << " ran early";
}

TEST(device_pool_schedule, ticks_run_in_time_order_on_the_pools_thread) {
  device_pool pool;
  journal j;
  std::promise<std::thread::id> late_thread;
  auto now = clock::now();
  // Added in the opposite order of their times; the second arms the timer earlier.
  pool.schedule(now + 60ms, [&]() -> std::optional<clock::time_point> {
    j.add("late");
    late_thread.set_value(std::this_thread::get_id());
    return std::nullopt;
  });
  pool.schedule(now + 20ms, [&]() -> std::optional<clock::time_point> {
    j.add("early");
    return std::nullopt;
  });
  auto thread = late_thread.get_future();
  ASSERT_EQ(thread.wait_for(10s), std::future_status::ready);
  EXPECT_NE(thread.get(), std::this_thread::get_id());
  std::lock_guard<std::mutex> guard(j.mutex);
  EXPECT_EQ(j.lines, (std::vector<std::string>{"early", "late"}));
}

TEST(device_pool_schedule, a_tick_already_due_runs_at_once_and_pending_ticks_end_with_the_pool) {
  journal j;
  std::promise<void> due;
  {
    device_pool pool;
    pool.schedule(clock::now() - 1s, [&]() -> std::optional<clock::time_point> {
      due.set_value();
      return std::nullopt;
    });
    ASSERT_EQ(due.get_future().wait_for(10s), std::future_status::ready);
    pool.schedule(clock::now() + 1h, [&]() -> std::optional<clock::time_point> {
      j.add("never");
      return std::nullopt;
    });
  } // the pool stops with a tick pending: it is dropped, not run
  EXPECT_TRUE(j.lines.empty());
}

TEST(device_pool_schedule, a_tick_that_throws_is_dropped_and_the_others_go_on) {
  device_pool pool;
  std::promise<void> done;
  int runs = 0;
  auto now = clock::now();
  pool.schedule(now + 1ms, []() -> std::optional<clock::time_point> {
    throw std::runtime_error("a broken tick");
  });
  pool.schedule(now + 2ms, [&]() -> std::optional<clock::time_point> {
    if (++runs < 3)
      return clock::now() + 1ms;
    done.set_value();
    return std::nullopt;
  });
  ASSERT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(runs, 3);
}

} // namespace
} // namespace missive::protocol

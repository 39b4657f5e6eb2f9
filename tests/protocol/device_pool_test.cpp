// The device pool's timer (device_pool::schedule): ticks run on the pool's thread, in time
// order, again at each time they return, until they return nothing. And a send's answer never
// comes inside the send, so a handler may send again from it.

#include "missive/protocol/device_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
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

/// A device that never logs in (nothing listens at its address) and, on each answer, sends
/// again until `total` were sent, noting how deep in its own sends each answer came.
class resender final : public device_handler {
public:
  device_pool* pool = nullptr;
  device_pool::device_id id = 0;
  int total = 0;
  int sent = 0;
  int depth = 0;     // sends under way on the stack
  int max_depth = 0; // the deepest an answer came
  std::vector<error_code> codes;
  std::promise<void> done;

  void send() {
    ++sent;
    ++depth;
    pool->send(id, uint64_t(sent), "nobody", "x");
    --depth;
  }
  void on_login(const error&, const session_info&) override {}
  void on_ack(uint64_t, const error& err, const send_result&) override {
    max_depth = std::max(max_depth, depth);
    codes.push_back(err.code);
    if (sent < total)
      send();
    else if (int(codes.size()) == total)
      done.set_value();
  }
  void on_entries(std::vector<entry>&&) override {}
  void on_closed(const error&) override {}
};

TEST(device_pool_send, an_answer_never_comes_inside_the_send_so_a_handler_may_send_again) {
  device_pool pool;
  auto h = std::make_shared<resender>();
  h->pool = &pool;
  h->total = 100000; // as deep as a recursion would overflow the stack
  // Port 1 on loopback: the connection is refused, the device never logs in.
  h->id = pool.add_device({"127.0.0.1:1", "u", "p", "d"}, h);
  pool.schedule(clock::now(), [h]() -> std::optional<clock::time_point> {
    h->send();
    return std::nullopt;
  });
  ASSERT_EQ(h->done.get_future().wait_for(60s), std::future_status::ready);
  EXPECT_EQ(h->max_depth, 0) << "an answer came inside send()";
  ASSERT_EQ(h->codes.size(), 100000u);
  EXPECT_EQ(h->codes.front(), error_code::not_logged_in);
  EXPECT_EQ(h->codes.back(), error_code::not_logged_in);
}

} // namespace
} // namespace missive::protocol

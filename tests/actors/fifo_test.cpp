// The user actor's ring queue (actors/src/fifo.hpp): order kept through wrap-around and growth,
// and a popped element freed at once.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "fifo.hpp"

namespace {

using missive::fifo;

std::vector<int> contents(const fifo<int>& q) {
  return {q.begin(), q.end()};
}

TEST(fifo, keeps_order_through_wrap_and_growth) {
  fifo<int> q;
  EXPECT_TRUE(q.empty());
  int next_in = 0, next_out = 0;
  // Push three, pop two, for a while: the live run wraps around the ring and makes it grow
  // while wrapped.
  for (int round = 0; round < 40; ++round) {
    for (int i = 0; i < 3; ++i)
      q.push_back(next_in++);
    for (int i = 0; i < 2; ++i) {
      ASSERT_EQ(q.front(), next_out);
      q.pop_front();
      ++next_out;
    }
    std::vector<int> expected;
    for (int v = next_out; v < next_in; ++v)
      expected.push_back(v);
    ASSERT_EQ(contents(q), expected) << "round " << round;
    ASSERT_EQ(q.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
      ASSERT_EQ(q[i], expected[i]);
  }
  while (!q.empty()) {
    EXPECT_EQ(q.front(), next_out++);
    q.pop_front();
  }
  EXPECT_EQ(next_out, next_in);
  q.push_back(7);
  EXPECT_EQ(contents(q), std::vector<int>{7});
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.begin(), q.end());
}

TEST(fifo, grows_while_wrapped) {
  fifo<int> q;
  for (int v : {0, 1, 2, 3}) // the first ring (4 slots) full
    q.push_back(v);
  q.pop_front();
  q.pop_front();
  q.push_back(4); // wraps to the ring's first slots
  q.push_back(5);
  q.push_back(6); // full and wrapped: grows
  EXPECT_EQ(contents(q), (std::vector<int>{2, 3, 4, 5, 6}));
  EXPECT_EQ(q.front(), 2);
  EXPECT_EQ(q[4], 6);
}

TEST(fifo, a_popped_element_is_freed_at_once) {
  fifo<std::shared_ptr<std::string>> q;
  auto body = std::make_shared<std::string>("body");
  q.push_back(body);
  q.push_back(std::make_shared<std::string>("next"));
  EXPECT_EQ(body.use_count(), 2);
  q.pop_front();
  EXPECT_EQ(body.use_count(), 1); // not kept in the ring until its slot is used again
  EXPECT_EQ(*q.front(), "next");
}

} // namespace

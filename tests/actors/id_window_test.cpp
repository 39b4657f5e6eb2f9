// The user actor's window of recent send results (actors/src/id_window.hpp): what a hash map
// and a queue of ids would hold, through growth, wrap-around and deletions that shift probe
// runs back.
#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <unordered_map>

#include "id_window.hpp"

namespace {

using missive::id_window;

TEST(id_window, keeps_the_newest_ids_up_to_its_limit) {
  id_window<int> w(5);
  EXPECT_EQ(w.find(1), nullptr);
  for (int i = 1; i <= 20; ++i)
    w.add(uint64_t(i), i * 10);
  EXPECT_EQ(w.size(), 5u);
  for (int i = 1; i <= 20; ++i) {
    auto* v = w.find(uint64_t(i));
    if (i <= 15) {
      EXPECT_EQ(v, nullptr) << i;
    } else {
      ASSERT_NE(v, nullptr) << i;
      EXPECT_EQ(*v, i * 10);
    }
  }
  w.add(18, 7); // already there: new value, same place in the order
  EXPECT_EQ(*w.find(18), 7);
  w.add(21, 210); // 16 goes, 18 stays
  EXPECT_EQ(w.find(16), nullptr);
  EXPECT_EQ(*w.find(18), 7);
  w.clear();
  EXPECT_EQ(w.size(), 0u);
  EXPECT_EQ(w.find(21), nullptr);
  w.add(3, 30);
  EXPECT_EQ(*w.find(3), 30);

  id_window<int> none(0);
  none.add(1, 1);
  EXPECT_EQ(none.find(1), nullptr);
}

// Against a model, with ids that differ only in their high bits, consecutive ones, repeats
// and random ones, for several limits.
TEST(id_window, answers_as_a_map_with_a_queue_of_ids_would) {
  for (size_t limit : {1u, 3u, 7u, 64u, 1000u}) {
    id_window<uint64_t> w(limit);
    std::unordered_map<uint64_t, uint64_t> model;
    std::deque<uint64_t> order;
    std::mt19937_64 rng(limit);
    std::vector<uint64_t> seen;
    for (uint64_t step = 1; step <= 20000; ++step) {
      uint64_t id;
      switch (rng() % 4) {
        case 0: id = step << 40; break;           // high bits only
        case 1: id = step; break;                 // consecutive
        case 2: id = seen.empty() ? 1 : seen[rng() % seen.size()]; break; // a repeat
        default: id = rng(); break;
      }
      seen.push_back(id);
      w.add(id, step);
      if (auto it = model.find(id); it != model.end()) {
        it->second = step;
      } else {
        if (order.size() == limit) {
          model.erase(order.front());
          order.pop_front();
        }
        model.emplace(id, step);
        order.push_back(id);
      }
      ASSERT_EQ(w.size(), model.size()) << "limit " << limit << " step " << step;
      if (step % 97 == 0 || step > 19900)
        for (auto x : seen) {
          auto* v = w.find(x);
          auto it = model.find(x);
          ASSERT_EQ(v != nullptr, it != model.end()) << "limit " << limit << " id " << x;
          if (v) {
            ASSERT_EQ(*v, it->second);
          }
        }
      if (seen.size() > 2000)
        seen.erase(seen.begin(), seen.begin() + 1000);
    }
  }
}

} // namespace

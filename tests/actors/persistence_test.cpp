// The persistence actor's group commit and its idempotent appends.

#include "fixture.hpp"

namespace missive::test {
namespace {

class persistence_test : public actor_fixture {};

entry make(uint32_t seq, uint64_t id) {
  return entry{seq, "alice", "bob", id, 1000 + seq, "x"};
}

TEST_F(persistence_test, a_send_already_stored_or_already_in_the_batch_is_not_written_again) {
  start();
  register_user("alice");
  register_user("bob");
  std::vector<caf::expected<dedup_hit>> answers(3, caf::make_error(caf::sec::request_timeout));
  auto p = n.persistence;
  sys.spawn([&answers, p](caf::event_based_actor* self) {
    // Three appends before any commit: the same send twice (as a retry would), one other.
    std::vector<std::vector<mailbox_append>> batches{
      {{"bob", "alice", make(1, 7), false}, {"alice", "alice", make(1, 7), true}},
      {{"bob", "alice", make(2, 7), false}, {"alice", "alice", make(2, 7), true}},
      {{"bob", "alice", make(3, 8), false}, {"alice", "alice", make(3, 8), true}}};
    for (size_t i = 0; i < batches.size(); ++i)
      self->request(p, caf::infinite, append_atom::value, batches[i])
        .then([&answers, i](dedup_hit& h) { answers[i] = h; },
              [&answers, i](caf::error& e) { answers[i] = e; });
  });
  run();
  ASSERT_TRUE(answers[0] && answers[1] && answers[2]);
  EXPECT_FALSE(answers[0]->found);
  EXPECT_TRUE(answers[1]->found);
  EXPECT_EQ(answers[1]->result.seq, 1u); // the first attempt's result
  EXPECT_FALSE(answers[2]->found);
  auto page = ask<entry_page>(n.persistence, read_atom::value, std::string{"bob"}, 0u, 100u, 100u);
  ASSERT_TRUE(page.value);
  ASSERT_EQ(page.value->entries.size(), 2u);
  EXPECT_EQ(page.value->entries[0].client_msg_id, 7u);
  EXPECT_EQ(page.value->entries[1].client_msg_id, 8u);

  // After the commit, the stored dedup record answers.
  auto again = ask<dedup_hit>(n.persistence, append_atom::value,
                              std::vector<mailbox_append>{{"bob", "alice", make(9, 8), false},
                                                          {"alice", "alice", make(9, 8), true}});
  ASSERT_TRUE(again.value);
  EXPECT_TRUE(again.value->found);
  EXPECT_EQ(again.value->result.seq, 3u);
}

} // namespace
} // namespace missive::test

#include "missive/storage/store.hpp"
#include "missive/storage/keys.hpp"

#include <algorithm>

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

namespace missive::storage {
namespace {

class store_test : public ::testing::Test {
protected:
  void open() {
    db.reset();
    options opts;
    opts.path = dir.path.string();
    auto s = store::open(opts, &db);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }

  entry make(uint32_t seq, std::string from = "alice", std::string to = "bob") {
    return entry{seq, from, to, 1000 + seq, 17, "body " + std::to_string(seq)};
  }

  /// Every entry of `user`'s mailbox (a failed read fails the test).
  std::vector<entry> entries_of(const std::string& user) {
    std::vector<entry> out;
    auto s = db->read_entries(user, 0, UINT32_MAX, 1000, &out);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return out;
  }

  test::temp_dir dir;
  std::unique_ptr<store> db;
};

TEST_F(store_test, append_writes_entry_and_dedup_atomically) {
  open();
  write_batch b;
  b.append("bob", "alice", make(5));
  ASSERT_TRUE(db->write(b).ok());
  EXPECT_EQ(entries_of("bob"), std::vector<entry>{make(5)});
  dedup_record d;
  ASSERT_TRUE(db->get_dedup("bob", "alice", 1005, &d).ok());
  EXPECT_EQ(d.seq, 5u);
  EXPECT_TRUE(db->get_dedup("bob", "alice", 1006, &d).is_not_found());
  EXPECT_TRUE(db->get_dedup("alice", "alice", 1005, &d).is_not_found());
}

TEST_F(store_test, an_entry_only_append_writes_no_dedup_record) {
  open();
  write_batch b;
  b.append_entry("bob", make(5));
  b.append("alice", "alice", make(7)); // the send's key, in the same batch
  ASSERT_TRUE(db->write(b).ok());
  EXPECT_EQ(entries_of("bob"), std::vector<entry>{make(5)});
  dedup_record d;
  EXPECT_TRUE(db->get_dedup("bob", "alice", 1005, &d).is_not_found());
  ASSERT_TRUE(db->get_dedup("alice", "alice", 1007, &d).ok());
  EXPECT_EQ(d.seq, 7u);
}

TEST_F(store_test, probe_dedup_finds_exactly_what_get_dedup_finds) {
  open();
  write_batch b;
  b.put_account("bob", "h");
  b.put_meta("bob", mailbox_meta{5, 0});
  for (uint32_t seq = 1; seq <= 4; ++seq)
    b.append("bob", "alice", make(seq));
  b.append("bo", "alice", make(9));   // a name that is a prefix of "bob"
  b.append("bobb", "alice", make(8)); // one that "bob" is a prefix of
  ASSERT_TRUE(db->write(b).ok());
  open(); // these are now in a table; what follows is in the memtable
  b.clear();
  b.append("bob", "alice", make(6));
  b.append("bob", "carol", make(7));
  ASSERT_TRUE(db->write(b).ok());
  uint32_t floor = 0;
  size_t deleted = 0;
  ASSERT_TRUE(db->expire("bob", 5, 0, 100, &floor, &deleted).ok()); // deletes seq 1's records
  ASSERT_EQ(deleted, 1u);
  struct query {
    std::string mailbox, origin;
    uint64_t id;
  };
  std::vector<query> queries{
    {"bob", "alice", 1001},  {"bob", "alice", 1002}, {"bob", "alice", 1004},
    {"bob", "alice", 1006},  {"bob", "carol", 1007}, {"bob", "alice", 1005},
    {"bob", "alice", 999},   {"bob", "alice", 5000}, {"bob", "carol", 1006},
    {"bob", "dave", 1007},   {"bo", "alice", 1009},  {"bo", "alice", 1001},
    {"bobb", "alice", 1008}, {"bobb", "alice", 1002}, {"carol", "alice", 1002},
    {"zzz", "alice", 1},     {"", "", 0}};
  size_t found = 0;
  for (auto& q : queries) {
    dedup_record got, probed;
    auto g = db->get_dedup(q.mailbox, q.origin, q.id, &got);
    auto p = db->probe_dedup(q.mailbox, q.origin, q.id, &probed);
    SCOPED_TRACE(q.mailbox + "/" + q.origin + "/" + std::to_string(q.id));
    ASSERT_TRUE(g.ok() || g.is_not_found()) << g.to_string();
    EXPECT_EQ(p.code(), g.code()) << p.to_string();
    if (g.ok() && p.ok()) {
      ++found;
      EXPECT_EQ(probed.seq, got.seq);
      EXPECT_EQ(probed.server_time_ms, got.server_time_ms);
    }
  }
  EXPECT_EQ(found, 6u); // bob's 2, 4, 6 and 7 (not the expired 1), bo's 9, bobb's 8
}

TEST_F(store_test, list_dedup_keys_lists_one_mailboxs_keys_in_steps) {
  open();
  write_batch b;
  b.append("bob", "alice", make(5));
  b.append("bob", "carol", make(6, "carol"));
  b.append("bob", "alice", make(7));
  b.append("bo", "alice", make(8));      // a name that is a prefix of another
  b.append("bobby", "alice", make(9));   // and one that extends it
  b.append_entry("bob", make(10));       // no key of its own
  ASSERT_TRUE(db->write(b).ok());
  std::vector<std::string> all;
  ASSERT_TRUE(db->list_dedup_keys("bob", {}, 100, &all).ok());
  std::vector<std::string> expected{keys::dedup("bob", "alice", 1005),
                                    keys::dedup("bob", "alice", 1007),
                                    keys::dedup("bob", "carol", 1006)};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(all, expected);
  std::vector<std::string> two;
  ASSERT_TRUE(db->list_dedup_keys("bob", {}, 2, &two).ok());
  EXPECT_EQ(two, std::vector<std::string>(expected.begin(), expected.begin() + 2));
  // Resumed after the last key read: the rest, then nothing (never a neighbour's keys).
  std::vector<std::string> rest;
  ASSERT_TRUE(db->list_dedup_keys("bob", two.back(), 100, &rest).ok());
  EXPECT_EQ(rest, std::vector<std::string>(expected.begin() + 2, expected.end()));
  std::vector<std::string> after_last;
  ASSERT_TRUE(db->list_dedup_keys("bob", rest.back(), 100, &after_last).ok());
  EXPECT_TRUE(after_last.empty());
  std::vector<std::string> none;
  ASSERT_TRUE(db->list_dedup_keys("dave", {}, 100, &none).ok());
  EXPECT_TRUE(none.empty());
}

TEST_F(store_test, blocklists_are_per_user_and_survive_a_reopen) {
  open();
  write_batch b;
  b.put_block("bob", "mallory");
  b.put_block("bob", "eve");
  b.put_block("bobby", "alice"); // a neighbour's list must not leak in
  b.put_block("bo", "carol");
  ASSERT_TRUE(db->write(b).ok());
  write_batch unblock;
  unblock.erase_block("bob", "eve");
  unblock.put_block("bob", "mallory"); // blocking twice is one entry
  ASSERT_TRUE(db->write(unblock).ok());
  open();
  std::vector<std::string> out;
  ASSERT_TRUE(db->list_blocks("bob", &out).ok());
  EXPECT_EQ(out, (std::vector<std::string>{"mallory"}));
  out.clear();
  ASSERT_TRUE(db->list_blocks("nobody", &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST_F(store_test, push_records_are_per_device_and_survive_a_reopen) {
  open();
  write_batch b;
  b.put_push("bob", "phone", push_record{"com.example.ios", "tok-1"});
  b.put_push("bob", "tablet", push_record{"com.example.android", "tok-2"});
  b.put_push("bobby", "phone", push_record{"x", "y"}); // a neighbour's must not leak in
  ASSERT_TRUE(db->write(b).ok());
  write_batch change;
  change.erase_push("bob", "tablet");
  change.put_push("bob", "phone", push_record{"com.example.ios", std::string(600, 'k')});
  ASSERT_TRUE(db->write(change).ok());
  open();
  std::vector<std::pair<std::string, push_record>> out;
  ASSERT_TRUE(db->list_pushes("bob", &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, "phone");
  EXPECT_EQ(out[0].second, (push_record{"com.example.ios", std::string(600, 'k')}));
}

TEST_F(store_test, groups_members_and_memberships) {
  open();
  write_batch b;
  b.put_group("team", group_record{"alice", 5, 1});
  b.put_member("team", "alice", group_role::owner);
  b.put_member("team", "bob", group_role::member);
  b.put_member("teamx", "bob", group_role::admin);
  ASSERT_TRUE(db->write(b).ok());
  write_batch change;
  change.put_member("team", "bob", group_role::admin);
  change.erase_member("teamx", "bob");
  ASSERT_TRUE(db->write(change).ok());
  open();
  group_record g;
  ASSERT_TRUE(db->get_group("team", &g).ok());
  EXPECT_EQ(g, (group_record{"alice", 5, 1}));
  EXPECT_TRUE(db->get_group("nope", &g).is_not_found());
  std::vector<std::pair<std::string, group_role>> members;
  ASSERT_TRUE(db->list_members("team", &members).ok());
  std::sort(members.begin(), members.end()); // key order is length-prefixed, not alphabetical
  EXPECT_EQ(members, (std::vector<std::pair<std::string, group_role>>{
                       {"alice", group_role::owner}, {"bob", group_role::admin}}));
  std::vector<std::string> groups;
  ASSERT_TRUE(db->list_groups_of("bob", &groups).ok());
  EXPECT_EQ(groups, (std::vector<std::string>{"team"}));
}

TEST_F(store_test, read_entries_honours_after_upto_and_limit) {
  open();
  write_batch b;
  for (uint32_t seq : {1u, 2u, 4u, 7u, 9u})
    b.append("bob", "alice", make(seq));
  b.append("bobby", "alice", make(3)); // a neighbour's range must not leak in
  ASSERT_TRUE(db->write(b).ok());
  auto seqs = [&](uint32_t after, uint32_t upto, uint32_t limit) {
    std::vector<entry> out;
    EXPECT_TRUE(db->read_entries("bob", after, upto, limit, &out).ok());
    std::vector<uint32_t> s;
    for (auto& e : out)
      s.push_back(e.seq);
    return s;
  };
  EXPECT_EQ(seqs(0, 100, 100), (std::vector<uint32_t>{1, 2, 4, 7, 9}));
  EXPECT_EQ(seqs(2, 100, 100), (std::vector<uint32_t>{4, 7, 9}));
  EXPECT_EQ(seqs(2, 7, 100), (std::vector<uint32_t>{4, 7}));
  EXPECT_EQ(seqs(0, 100, 2), (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(seqs(9, 100, 100).empty());
  EXPECT_TRUE(seqs(5, 5, 100).empty());
}

TEST_F(store_test, last_seq_is_one_seek_over_the_users_range) {
  open();
  uint32_t last = 99;
  ASSERT_TRUE(db->last_seq("bob", &last).ok());
  EXPECT_EQ(last, 0u); // empty database
  write_batch b;
  b.append("bo", "x", make(70000));
  b.append("bob", "x", make(3));
  b.append("bob", "x", make(300));
  b.append("bobby", "x", make(9));
  ASSERT_TRUE(db->write(b).ok());
  ASSERT_TRUE(db->last_seq("bob", &last).ok());
  EXPECT_EQ(last, 300u);
  ASSERT_TRUE(db->last_seq("bobby", &last).ok()); // last user in the key space
  EXPECT_EQ(last, 9u);
  ASSERT_TRUE(db->last_seq("carol", &last).ok());
  EXPECT_EQ(last, 0u);
  b.clear();
  b.append("bob", "x", make(UINT32_MAX));
  ASSERT_TRUE(db->write(b).ok());
  ASSERT_TRUE(db->last_seq("bob", &last).ok());
  EXPECT_EQ(last, UINT32_MAX);
}

TEST_F(store_test, everything_survives_reopening) {
  open();
  write_batch b;
  b.put_account("alice", "hash");
  b.put_meta("alice", mailbox_meta{77, 0});
  b.append("alice", "alice", make(1));
  b.put_device("alice", "phone", device_record{77, 1});
  b.put_resume("alice", "phone", resume_record{"hash-of-token", 1234});
  ASSERT_TRUE(db->write(b).ok());
  open();
  std::string hash;
  ASSERT_TRUE(db->get_account("alice", &hash).ok());
  EXPECT_EQ(hash, "hash");
  mailbox_meta m;
  ASSERT_TRUE(db->get_meta("alice", &m).ok());
  EXPECT_EQ(m.epoch, 77u);
  device_record d;
  ASSERT_TRUE(db->get_device("alice", "phone", &d).ok());
  EXPECT_EQ(d, (device_record{77, 1}));
  resume_record t;
  ASSERT_TRUE(db->get_resume("alice", "phone", &t).ok());
  EXPECT_EQ(t, (resume_record{"hash-of-token", 1234}));
  EXPECT_TRUE(db->get_resume("alice", "laptop", &t).is_not_found());
  uint32_t last = 0;
  ASSERT_TRUE(db->last_seq("alice", &last).ok());
  EXPECT_EQ(last, 1u);
  EXPECT_TRUE(db->get_account("bob", &hash).is_not_found());
}

TEST_F(store_test, a_locked_database_cannot_be_opened_twice) {
  open();
  std::unique_ptr<store> second;
  options opts;
  opts.path = dir.path.string();
  auto s = store::open(opts, &second);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), errc::io_error);
}

} // namespace
} // namespace missive::storage

namespace missive::storage {
namespace {

TEST_F(store_test, renumber_keeps_the_newest_entries_under_a_new_epoch) {
  open();
  write_batch b;
  b.put_account("bob", "h");
  b.put_meta("bob", mailbox_meta{5, 0});
  for (uint32_t seq : {3u, 4u, 8u, 9u, 12u})
    b.append("bob", "alice", make(seq));
  b.append("bobby", "alice", make(1)); // a neighbour is untouched
  ASSERT_TRUE(db->write(b).ok());
  uint32_t last = 0;
  ASSERT_TRUE(db->renumber("bob", 6, 3, &last).ok());
  EXPECT_EQ(last, 3u);
  mailbox_meta m;
  ASSERT_TRUE(db->get_meta("bob", &m).ok());
  EXPECT_EQ(m.epoch, 6u);
  std::vector<entry> out;
  ASSERT_TRUE(db->read_entries("bob", 0, UINT32_MAX, 100, &out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].seq, 1u);
  EXPECT_EQ(out[0].client_msg_id, 1008u); // was seq 8
  EXPECT_EQ(out[2].client_msg_id, 1012u); // was seq 12
  dedup_record d;
  ASSERT_TRUE(db->get_dedup("bob", "alice", 1012, &d).ok());
  EXPECT_EQ(d.seq, 3u);
  ASSERT_TRUE(db->last_seq("bob", &last).ok());
  EXPECT_EQ(last, 3u);
  ASSERT_TRUE(db->last_seq("bobby", &last).ok());
  EXPECT_EQ(last, 1u);
  std::vector<std::string> users;
  ASSERT_TRUE(db->list_users(&users).ok());
  EXPECT_EQ(users, (std::vector<std::string>{"bob"}));
}

} // namespace
} // namespace missive::storage

namespace missive::storage {
namespace {

TEST_F(store_test, expire_deletes_the_oldest_entries_and_raises_the_floor) {
  open();
  write_batch b;
  b.put_account("bob", "h");
  b.put_meta("bob", mailbox_meta{5, 0});
  for (uint32_t seq = 1; seq <= 6; ++seq) {
    auto e = make(seq);
    e.server_time_ms = 1000 * seq;
    b.append("bob", "alice", e);
  }
  ASSERT_TRUE(db->write(b).ok());
  uint32_t floor = 0;
  size_t deleted = 0;
  // Count: keep the newest 4.
  ASSERT_TRUE(db->expire("bob", 4, 0, 100, &floor, &deleted).ok());
  EXPECT_EQ(deleted, 2u);
  EXPECT_EQ(floor, 2u);
  std::vector<entry> out;
  ASSERT_TRUE(db->read_entries("bob", 0, 100, 100, &out).ok());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].seq, 3u);
  dedup_record d;
  EXPECT_TRUE(db->get_dedup("bob", "alice", 1001, &d).is_not_found());
  EXPECT_TRUE(db->get_dedup("bob", "alice", 1003, &d).ok());
  // Age: everything stamped before 4500 goes, at most one per call.
  ASSERT_TRUE(db->expire("bob", 0, 4500, 1, &floor, &deleted).ok());
  EXPECT_EQ(deleted, 1u);
  EXPECT_EQ(floor, 3u);
  ASSERT_TRUE(db->expire("bob", 0, 4500, 100, &floor, &deleted).ok());
  EXPECT_EQ(deleted, 1u);
  EXPECT_EQ(floor, 4u);
  // Everything too old: the mailbox is empty, but its seqs are never handed out again.
  ASSERT_TRUE(db->expire("bob", 0, 1000000, 100, &floor, &deleted).ok());
  EXPECT_EQ(deleted, 2u);
  EXPECT_EQ(floor, 6u);
  mailbox_meta m;
  ASSERT_TRUE(db->get_meta("bob", &m).ok());
  EXPECT_EQ(m.seq_floor, 6u);
  EXPECT_EQ(m.epoch, 5u);
  // Nothing left to do is not an error.
  ASSERT_TRUE(db->expire("bob", 1, 1000000, 100, &floor, &deleted).ok());
  EXPECT_EQ(deleted, 0u);
  std::vector<std::string> users;
  ASSERT_TRUE(db->list_users_after("", 10, &users).ok());
  EXPECT_EQ(users, (std::vector<std::string>{"bob"}));
  users.clear();
  ASSERT_TRUE(db->list_users_after("bob", 10, &users).ok());
  EXPECT_TRUE(users.empty());
}

} // namespace
} // namespace missive::storage

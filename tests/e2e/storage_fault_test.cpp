// A disk that stops taking writes: the real server under a file size limit (RLIMIT_FSIZE),
// so LevelDB's own writes fail with a real I/O error.

#include <gtest/gtest.h>

#include "missive/protocol/client.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using protocol::error_code;

TEST(storage_fault, a_failed_write_is_never_acknowledged_and_reads_go_on) {
  temp_dir dir;
  // One sender fills the disk as fast as it can: no rate limit.
  server srv(dir.path, "password-hash = min\nrate-limit-per-second = 0");
  ASSERT_TRUE(srv.start());
  ASSERT_TRUE(srv.create_accounts({"alice", "bob"}));
  srv.stop();
  ASSERT_TRUE(srv.start(256 * 1024)); // every file the server writes stops at 256 KiB

  protocol::client alice;
  ASSERT_FALSE(alice.connect(srv.address()));
  ASSERT_FALSE(alice.login("alice", "secret1", "phone", nullptr));
  std::string body(200, 'x');
  uint32_t last_acked = 0;
  uint64_t failed_id = 0;
  protocol::error failure;
  for (uint64_t id = 1; id <= 20000; ++id) {
    protocol::send_result r;
    auto err = alice.send(id, "bob", body, &r);
    if (err) {
      failure = err;
      failed_id = id;
      break;
    }
    last_acked = r.seq;
  }
  ASSERT_NE(failed_id, 0u) << "the file size limit was never reached";
  EXPECT_EQ(failure.code, error_code::storage_failure) << failure.to_string();
  ASSERT_GT(last_acked, 0u);

  // The server still serves reads, and tells nobody about the failed write.
  protocol::client bob;
  ASSERT_FALSE(bob.connect(srv.address()));
  protocol::session_info info;
  ASSERT_FALSE(bob.login("bob", "secret1", "phone", &info));
  EXPECT_TRUE(bob.resume_token().empty()); // it could not be stored: none is handed out
  EXPECT_EQ(info.max_seq, last_acked); // alice wrote only to bob: seqs match one to one
  protocol::sync_result page;
  ASSERT_FALSE(bob.sync(0, last_acked - 1, 10, &page));
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(page.entries[0].client_msg_id, failed_id - 1);
  EXPECT_EQ(page.max_seq, last_acked);
  // Writes keep failing with the same typed error; nothing moves.
  EXPECT_EQ(alice.send(failed_id + 1, "bob", "more", nullptr).code, error_code::storage_failure);
  ASSERT_FALSE(bob.sync(0, 0, 1, &page));
  EXPECT_EQ(page.max_seq, last_acked);

  // Space is back (the operator freed it) and the server restarted: every acknowledged send
  // is there; the failed one, retried with its id, makes exactly one entry.
  srv.kill();
  ASSERT_TRUE(srv.start());
  protocol::client alice2;
  ASSERT_FALSE(alice2.connect(srv.address()));
  ASSERT_FALSE(alice2.login("alice", "secret1", "phone", nullptr));
  protocol::send_result retried;
  ASSERT_FALSE(alice2.send(failed_id, "bob", body, &retried));
  EXPECT_GT(retried.seq, last_acked);
  protocol::client bob2;
  ASSERT_FALSE(bob2.connect(srv.address()));
  ASSERT_FALSE(bob2.login("bob", "secret1", "phone", nullptr));
  std::vector<protocol::entry> all;
  uint32_t cursor = 0;
  for (int pages = 0; pages < 1000; ++pages) {
    ASSERT_FALSE(bob2.sync(0, cursor, 0, &page));
    all.insert(all.end(), page.entries.begin(), page.entries.end());
    if (page.entries.empty() || all.back().seq >= page.max_seq)
      break;
    cursor = all.back().seq;
  }
  ASSERT_EQ(all.size(), failed_id); // ids 1..failed_id, each once
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i].client_msg_id, i + 1);
}

} // namespace
} // namespace missive::test

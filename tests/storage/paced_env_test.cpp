// LevelDB's environment with paced table writes (storage/src/paced_env.hpp): the pause that
// holds the background thread to its share of the time, table files written byte for byte,
// and a database that flushes and compacts under pacing keeping every entry; whether a watched
// database keeps up (the pauses and the yields are only for while it does).

#include "paced_env.hpp"

#include <gtest/gtest.h>
#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "missive/storage/store.hpp"
#include "support/temp_dir.hpp"

namespace missive::storage {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(paced_env, the_pause_holds_the_work_to_its_share_of_the_time) {
  EXPECT_EQ(pause_after(milliseconds(2), 50), milliseconds(2));
  EXPECT_EQ(pause_after(milliseconds(1), 25), milliseconds(3));
  EXPECT_EQ(pause_after(milliseconds(3), 75), milliseconds(1));
  EXPECT_EQ(pause_after(milliseconds(5), 100), nanoseconds(0)); // unpaced
  EXPECT_EQ(pause_after(milliseconds(5), 0), nanoseconds(0));   // not a share: unpaced
  EXPECT_EQ(pause_after(nanoseconds(-1), 50), nanoseconds(0));  // a clock step back
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Writes `total` bytes in pieces of `piece` through the env to `name`, and returns them.
std::string write_through(paced_env& env, const std::filesystem::path& name, size_t total,
                          size_t piece) {
  leveldb::WritableFile* raw = nullptr;
  EXPECT_TRUE(env.NewWritableFile(name.string(), &raw).ok());
  std::unique_ptr<leveldb::WritableFile> file(raw);
  std::string all;
  for (size_t i = 0; all.size() < total; ++i) {
    std::string p(std::min(piece, total - all.size()), static_cast<char>('a' + i % 26));
    EXPECT_TRUE(file->Append(p).ok());
    all += p;
  }
  EXPECT_TRUE(file->Sync().ok());
  EXPECT_TRUE(file->Close().ok());
  return all;
}

TEST(paced_env, a_table_file_is_written_byte_for_byte_across_its_steps) {
  test::temp_dir dir;
  paced_env env(50, false);
  // Pieces that do not divide the step: steps end in the middle of an append.
  auto total = 5 * paced_env::step / 2 + 1234;
  auto table = dir.path / "000007.ldb";
  auto written = write_through(env, table, total, 3000);
  EXPECT_EQ(read_file(table), written);
  // Other files (the log, the manifest) are LevelDB's own, unwrapped.
  auto log = dir.path / "000008.log";
  auto log_written = write_through(env, log, 1000, 100);
  EXPECT_EQ(read_file(log), log_written);
}

TEST(paced_env, leveldb_keeps_up_below_six_level0_tables_and_one_and_a_half_memtables) {
  const size_t memtable = 32u << 20;
  EXPECT_TRUE(keeps_up(0, 0, memtable));
  EXPECT_TRUE(keeps_up(5, memtable, memtable)); // a full memtable: switched, not yet behind
  EXPECT_FALSE(keeps_up(6, memtable, memtable));
  EXPECT_TRUE(keeps_up(0, memtable + memtable / 2, memtable));
  EXPECT_FALSE(keeps_up(0, memtable + memtable / 2 + 1, memtable)); // a flush is too slow
}

TEST(paced_env, six_or_seven_level0_tables_are_behind_only_once_the_next_flush_is_near) {
  const size_t memtable = 32u << 20;
  // Restarted after a saturating load: 6 level-0 tables, the memtable nearly empty.
  EXPECT_TRUE(keeps_up(6, 0, memtable));
  EXPECT_TRUE(keeps_up(7, memtable / 2, memtable));
  EXPECT_FALSE(keeps_up(6, memtable / 2 + 1, memtable)); // its flush would make 7
  EXPECT_FALSE(keeps_up(7, memtable / 2 + 1, memtable)); // and 8, where writes are delayed
  EXPECT_FALSE(keeps_up(8, 0, memtable));
  EXPECT_FALSE(keeps_up(12, 0, memtable));
}

TEST(paced_env, pauses_and_yields_only_while_a_watched_database_keeps_up) {
  test::temp_dir dir;
  paced_env env(100, false);
  env.give_way(true);
  EXPECT_FALSE(env.yields()) << "no database watched";
  EXPECT_TRUE(env.keeps_up()) << "no database watched: paced as configured";
  std::unique_ptr<leveldb::Cache> cache(leveldb::NewLRUCache(1 << 20));
  leveldb::Options lo;
  lo.create_if_missing = true;
  lo.env = &env;
  lo.block_cache = cache.get();
  lo.write_buffer_size = 64 * 1024;
  leveldb::DB* raw = nullptr;
  ASSERT_TRUE(leveldb::DB::Open(lo, (dir.path / "db").string(), &raw).ok());
  std::unique_ptr<leveldb::DB> db(raw);
  env.watch(db.get(), cache.get(), lo.write_buffer_size);
  EXPECT_TRUE(env.keeps_up()) << "a fresh database keeps up";
  EXPECT_TRUE(env.yields());
  env.give_way(false);
  EXPECT_FALSE(env.yields()) << "keeps up, but does not give way";
  env.give_way(true);
  // Unpaced (duty 100) but giving way: tables go through the yielding path, byte for byte.
  auto table = dir.path / "000099.ldb";
  auto written = write_through(env, table, 3 * paced_env::step + 77, 4000);
  EXPECT_EQ(read_file(table), written);
  // A memtable far larger than one and a half write buffers (LevelDB switches only between
  // writes, so one large batch fills it past its size): behind, so no pauses and no yields.
  leveldb::WriteBatch batch;
  for (int i = 0; i < 200; ++i)
    batch.Put("key" + std::to_string(i), std::string(1024, 'v'));
  ASSERT_TRUE(db->Write(leveldb::WriteOptions{}, &batch).ok());
  EXPECT_FALSE(env.keeps_up()) << "the memtable holds 200 KiB over a 64 KiB write buffer";
  EXPECT_FALSE(env.yields());
  env.watch(nullptr, nullptr, 0);
  EXPECT_TRUE(env.keeps_up()) << "no longer watched";
  EXPECT_FALSE(env.yields()) << "no longer watched";
}

TEST(paced_env, a_store_that_flushes_and_compacts_under_pacing_keeps_every_entry) {
  test::temp_dir dir;
  options opts;
  opts.path = dir.path.string();
  opts.sync = false;
  // Tables of a few steps each: several flushes, and compactions after them.
  opts.write_buffer_bytes = 256 * 1024;
  opts.background_duty_percent = 50;
  std::unique_ptr<store> db;
  ASSERT_TRUE(store::open(opts, &db).ok());
  const uint32_t n = 8000;
  for (uint32_t seq = 1; seq <= n; ++seq) {
    write_batch b;
    b.append("bob", "alice", entry{seq, "alice", "bob", 1000 + seq, 17,
                                   std::string(200, static_cast<char>('a' + seq % 26))});
    ASSERT_TRUE(db->write(b).ok());
  }
  db.reset();
  size_t tables = 0;
  for (auto& f : std::filesystem::directory_iterator(dir.path))
    tables += f.path().extension() == ".ldb";
  EXPECT_GT(tables, 0u) << "no table was written: the paced path did not run";
  ASSERT_TRUE(store::open(opts, &db).ok());
  std::vector<entry> all;
  ASSERT_TRUE(db->read_entries("bob", 0, UINT32_MAX, UINT32_MAX, &all).ok());
  ASSERT_EQ(all.size(), n);
  for (uint32_t seq = 1; seq <= n; ++seq) {
    EXPECT_EQ(all[seq - 1].seq, seq);
    EXPECT_EQ(all[seq - 1].body, std::string(200, static_cast<char>('a' + seq % 26)));
  }
}

} // namespace
} // namespace missive::storage

// The write-ahead log written in place over zeros laid ahead (storage/src/direct_log.hpp): what a
// sync leaves on the disk, and what a crash leaves for LevelDB's recovery.

#include "direct_log.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "missive/storage/store.hpp"
#include "support/temp_dir.hpp"

namespace missive::storage {
namespace {

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// `n` bytes that differ from record to record and from zeros.
std::string record(size_t n, int i) {
  std::string out(n, '\0');
  for (size_t k = 0; k < n; ++k)
    out[k] = static_cast<char>('a' + (k * 7 + static_cast<size_t>(i)) % 26);
  return out;
}

/// A direct log in `dir`, or the test skipped where the file system refuses O_DIRECT.
#define CREATE_OR_SKIP(log, name)                                                                \
  auto log = direct_log::create((name).string());                                                \
  if (!log) {                                                                                    \
    GTEST_SKIP() << "no O_DIRECT log here (" << std::strerror(errno) << "): " << (name);       \
  }

TEST(direct_log, a_sync_puts_every_appended_byte_on_the_disk_followed_by_zeros) {
  test::temp_dir dir;
  auto name = dir.path / "000001.log";
  CREATE_OR_SKIP(log, name);
  std::string expected;
  // Records that end inside blocks, straddle block boundaries and span several blocks.
  for (int i = 0; i < 40; ++i) {
    auto r = record(i % 3 == 0 ? 5000 : 300 + static_cast<size_t>(i), i);
    ASSERT_TRUE(log->Append(r).ok());
    ASSERT_TRUE(log->Flush().ok());
    expected += r;
    if (i % 2 == 1) {
      ASSERT_TRUE(log->Sync().ok());
    }
  }
  ASSERT_TRUE(log->Sync().ok());
  auto on_disk = read_all(name); // through the page cache, as another process would read it
  ASSERT_GE(on_disk.size(), expected.size() + 1);
  EXPECT_GE(on_disk.size(), direct_log::ahead); // zeros laid ahead of the writer
  EXPECT_EQ(on_disk.substr(0, expected.size()), expected);
  EXPECT_EQ(on_disk.find_first_not_of('\0', expected.size()), std::string::npos);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(read_all(name), expected); // the zeros cut off
}

TEST(direct_log, a_log_longer_than_the_zeros_laid_at_first_waits_for_more) {
  test::temp_dir dir;
  auto name = dir.path / "000002.log";
  CREATE_OR_SKIP(log, name);
  std::string expected;
  for (int i = 0; expected.size() < 3 * direct_log::ahead + 12345; ++i) {
    auto r = record(100 * 1024 + static_cast<size_t>(i), i);
    ASSERT_TRUE(log->Append(r).ok());
    ASSERT_TRUE(log->Sync().ok());
    expected += r;
  }
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(read_all(name), expected);
}

TEST(direct_log, a_batch_of_many_pieces_grows_the_buffer_and_keeps_every_byte) {
  test::temp_dir dir;
  auto name = dir.path / "000003.log";
  CREATE_OR_SKIP(log, name);
  std::string expected;
  // As LevelDB writes a large batch: pieces of up to 32 KiB, one sync for all. 6 MB grows the
  // buffer many times over; then a smaller batch, and a larger one.
  int piece = 0;
  for (size_t batch : {size_t{6} << 20, size_t{100} << 10, size_t{9} << 20}) {
    for (size_t appended = 0; appended < batch; ++piece) {
      auto r = record(piece % 2 == 0 ? 7 : 32 * 1024 - 7, piece);
      ASSERT_TRUE(log->Append(r).ok());
      expected += r;
      appended += r.size();
    }
    ASSERT_TRUE(log->Sync().ok());
  }
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(read_all(name), expected);
}

// What a crash leaves: the log with its zeros ahead, no Close. A copy of the database taken while
// it is open is that image; LevelDB must recover every synced write from it.
TEST(direct_log, leveldb_recovers_every_synced_write_from_a_log_that_ends_in_zeros) {
  test::temp_dir dir, copy;
  options opts;
  opts.path = (dir.path / "db").string();
  std::unique_ptr<store> db;
  ASSERT_TRUE(store::open(opts, &db).ok());
  for (uint32_t seq = 1; seq <= 500; ++seq) {
    write_batch b;
    b.append("bob", "alice", entry{seq, "alice", "bob", 1000 + seq, 17, record(200, int(seq))});
    ASSERT_TRUE(db->write(b).ok());
  }
  bool zeros_after_records = false;
  for (auto& f : std::filesystem::directory_iterator(opts.path)) {
    if (f.path().extension() == ".log") {
      auto text = read_all(f.path());
      zeros_after_records = text.size() >= direct_log::ahead && text.back() == '\0'
                            && text.find_first_not_of('\0') == 0;
    }
    std::filesystem::copy(f.path(), copy.path / f.path().filename());
  }
  if (!zeros_after_records)
    GTEST_SKIP() << "the log was written the ordinary way here (no O_DIRECT)";
  db.reset();
  options copied = opts;
  copied.path = copy.path.string();
  ASSERT_TRUE(store::open(copied, &db).ok());
  std::vector<entry> out;
  ASSERT_TRUE(db->read_entries("bob", 0, UINT32_MAX, 1000, &out).ok());
  ASSERT_EQ(out.size(), 500u);
  for (uint32_t seq = 1; seq <= 500; ++seq)
    EXPECT_EQ(out[seq - 1].body, record(200, int(seq))) << seq;
  // Writes go on after the recovery, into a new log.
  write_batch b;
  b.append("bob", "alice", entry{501, "alice", "bob", 1501, 17, "after"});
  EXPECT_TRUE(db->write(b).ok());
}

} // namespace
} // namespace missive::storage

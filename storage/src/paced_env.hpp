#pragma once

#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/env.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace missive::storage {

/// LevelDB's environment with its background work paced.
///
/// A memtable flush builds a 25–30 MB table on LevelDB's background thread in about 200 ms of
/// CPU, and compactions after it more; on a machine whose cores the server already keeps busy,
/// that thread's burst delays everything else — the write-ahead log's writes took 3.5–14 ms
/// instead of 0.3–0.5 during a flush, and the open loop's worst seconds were the flush seconds
/// (BENCHMARKS.md, "Session 6"). Here every table file (`.ldb`: flushes and compactions, which
/// LevelDB writes one at a time on that thread) is written through to the disk `step` bytes at
/// a time (`sync_file_range`, waiting for it), and after each step the thread pauses so that it
/// works at most `duty_percent` of the time: a step that took 1 ms is followed by a 1 ms pause
/// at 50%. The pause scales with the machine (a fast one has short steps), so the background
/// work is never held to a fixed rate it could fall behind of; it takes longer, not more. Once
/// the watched database falls behind (keeps_up), the pauses stop until it has caught up: under
/// a sustained saturating load a paced flush took as long as the next memtable took to fill,
/// and LevelDB stopped every write for seconds. Writing through in steps also keeps the table's
/// pages from piling up for one large fsync at the end. While the database keeps up, the
/// thread may also yield the core often (give_way).
/// The write-ahead log is a `direct_log` (see there) when asked for; the manifest and
/// everything else pass through untouched.
class paced_env final : public leveldb::EnvWrapper {
public:
  static constexpr uint64_t step = 128 * 1024;
  /// While LevelDB keeps up, its background thread yields the core this often (bytes of table
  /// written), see give_way.
  static constexpr uint64_t yield_step = 8 * 1024;

  /// `duty_percent` 100 (or more): no pauses and no writing through. `direct_logs`: write-ahead
  /// logs are `direct_log`s where the file system allows (only if every write is synchronous).
  paced_env(unsigned duty_percent, bool direct_logs);

  /// For table files created from now on. The store opens its database unpaced (the log's
  /// recovery into a table is the start-up time, and no write waits for it) and paces after.
  void set_duty_percent(unsigned duty_percent) { duty_percent_ = duty_percent; }

  /// From now on every table file asks, each `step`, whether `db` keeps up with its background
  /// work (keeps_up): the pauses and the yields are only for while it does. `cache` is the
  /// database's block cache, `write_buffer_bytes` its memtable size. `db` null: stop watching
  /// (before the database closes).
  void watch(leveldb::DB* db, const leveldb::Cache* cache, size_t write_buffer_bytes);

  /// While the watched database keeps up, the background thread writing a table yields the
  /// core every `yield_step` bytes, so a server thread that wakes on its core runs within
  /// microseconds instead of waiting for the end of the background thread's time slice (under
  /// `SCHED_BATCH` a waking thread never preempts a running one). Once behind, it takes its
  /// turns like any other thread: yielding then would starve it on a busy machine until writes
  /// stall. Off by default.
  void give_way(bool on) { give_way_ = on; }

  /// Whether the watched database keeps up now; true when none is watched.
  bool keeps_up() const;

  /// Whether the background thread should yield now: it gives way, a database is watched and
  /// keeps up.
  bool yields() const { return yields_when(keeps_up()); }

  /// yields(), given what keeps_up() said (one look at the database per step).
  bool yields_when(bool keeps_up) const {
    return keeps_up && give_way_ && db_.load() != nullptr;
  }

  leveldb::Status NewWritableFile(const std::string& name, leveldb::WritableFile** result) override;

private:
  std::atomic<unsigned> duty_percent_;
  bool direct_logs_;
  std::atomic<leveldb::DB*> db_{nullptr};
  std::atomic<const leveldb::Cache*> cache_{nullptr};
  std::atomic<size_t> write_buffer_bytes_{0};
  std::atomic<bool> give_way_{false};
};

/// Whether LevelDB keeps up with its background work: fewer than 6 level-0 tables (it compacts
/// them from 4 and delays every write by 1 ms from 8), or 6–7 while `memtable_bytes` (the
/// memtable filling plus the one being flushed, if any) is at most half a memtable — the flush
/// that adds the next level-0 table is not near; and `memtable_bytes` at most one and a half
/// memtables — more means a flush is still running while the next memtable is half full, and
/// LevelDB stops all writes once it is full.
bool keeps_up(uint64_t level0_tables, size_t memtable_bytes, size_t write_buffer_bytes);

/// How long to pause after a step that took `worked`, to work `duty_percent` of the time.
std::chrono::nanoseconds pause_after(std::chrono::nanoseconds worked, unsigned duty_percent);

} // namespace missive::storage

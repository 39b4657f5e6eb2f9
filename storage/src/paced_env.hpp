#pragma once

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
/// work is never held to a fixed rate it could fall behind of; it takes longer, not more.
/// Writing through in steps also keeps the table's pages from piling up for one large fsync at
/// the end. The write-ahead log is a `direct_log` (see there) when asked for; the manifest and
/// everything else pass through untouched.
class paced_env final : public leveldb::EnvWrapper {
public:
  static constexpr uint64_t step = 128 * 1024;

  /// `duty_percent` 100 (or more): no pauses and no writing through. `direct_logs`: write-ahead
  /// logs are `direct_log`s where the file system allows (only if every write is synchronous).
  paced_env(unsigned duty_percent, bool direct_logs);

  /// For table files created from now on. The store opens its database unpaced (the log's
  /// recovery into a table is the start-up time, and no write waits for it) and paces after.
  void set_duty_percent(unsigned duty_percent) { duty_percent_ = duty_percent; }

  leveldb::Status NewWritableFile(const std::string& name, leveldb::WritableFile** result) override;

private:
  std::atomic<unsigned> duty_percent_;
  bool direct_logs_;
};

/// How long to pause after a step that took `worked`, to work `duty_percent` of the time.
std::chrono::nanoseconds pause_after(std::chrono::nanoseconds worked, unsigned duty_percent);

} // namespace missive::storage

#pragma once

#include <leveldb/env.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace missive::storage {

/// LevelDB's write-ahead log written in place, with O_DIRECT | O_DSYNC, over zeros laid ahead.
///
/// LevelDB appends each batch to its log and calls `fdatasync`. On ext4 an append grows the
/// file, so each of those syncs also commits the journal (the new size): two writes to the disk
/// in turn and a wake-up of the journal's kernel thread. With both cores busy a 300-byte append
/// and sync took p50 0.15, p99 2.3–3.6 ms here; written in place over blocks that already hold
/// zeros, with O_DIRECT | O_DSYNC, the same record took p50 0.10, p99 0.5 ms — one write to the
/// disk, durable when it returns, nothing else to commit (BENCHMARKS.md, session 9).
///
/// A background thread keeps the file filled with zeros up to `ahead` bytes past what was
/// written (an ordinary descriptor: write, then `fdatasync`, which commits the new size and the
/// file's creation); a sync writes the 4 KiB blocks holding the unwritten tail over them.
/// LevelDB's log reader skips zeros after the last record (its own mmap writer once left such
/// padding), so recovery after a crash reads the log as before; `Close` cuts the zeros off.
///
/// Appends wait in memory for `Sync`; `Flush` writes nothing. That is only right when every
/// write to the database is synchronous — the store uses this file with `durability = sync`
/// alone, where each log record is followed by a `Sync`.
class direct_log final : public leveldb::WritableFile {
public:
  static constexpr size_t block = 4096;
  /// Zeros laid per step of the background thread, and how far ahead of the writer it keeps.
  static constexpr uint64_t ahead = 1 << 20;
  /// Zeros laid before the first record, in `create` (on the writer's path: LevelDB opens a new
  /// log when its memtable is full); the background thread lays the next `ahead` at once.
  static constexpr uint64_t first = 64 * 1024;

  /// Creates (truncates) `name` and lays its first zeros. nullptr, with errno set, where that
  /// fails or the file system does not do O_DIRECT (tmpfs before Linux 6.6): LevelDB's own
  /// file will do then.
  static std::unique_ptr<direct_log> create(const std::string& name);

  ~direct_log() override;

  leveldb::Status Append(const leveldb::Slice& data) override;
  leveldb::Status Close() override;
  leveldb::Status Flush() override;
  leveldb::Status Sync() override;

private:
  direct_log(std::string name, int fd, int zero_fd);

  /// Writes the unwritten tail (whole blocks, padded with zeros) and keeps its last partial
  /// block for the next.
  leveldb::Status write_tail();
  /// Waits until the file holds zeros up to `end`; asks the background thread for more first.
  leveldb::Status wait_for_zeros(uint64_t end);
  void lay_zeros();
  void stop_laying();

  std::string name_;
  int fd_;      // O_DIRECT | O_DSYNC: the log's records
  int zero_fd_; // ordinary: the zeros laid ahead
  /// The file from `base_` (a block boundary) on: `length_` bytes, less than a block after
  /// each write, the first `written_` of them already on the disk.
  char* tail_ = nullptr;
  size_t capacity_ = 0;
  uint64_t base_ = 0;
  size_t length_ = 0;
  size_t written_ = 0;
  bool closed_ = false;

  std::mutex mutex_;
  std::condition_variable changed_;
  uint64_t zeros_ = 0;   // the file holds zeros (or records) up to here, size committed
  uint64_t wanted_ = 0;  // the background thread lays zeros up to here
  int zero_error_ = 0;   // errno of a failed step; the thread stops
  std::atomic<bool> stopping_{false};
  std::thread layer_;
};

} // namespace missive::storage

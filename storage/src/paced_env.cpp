#include "paced_env.hpp"

#include "direct_log.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <thread>

namespace missive::storage {

using clock_type = std::chrono::steady_clock;

std::chrono::nanoseconds pause_after(std::chrono::nanoseconds worked, unsigned duty_percent) {
  if (duty_percent == 0 || duty_percent >= 100 || worked.count() <= 0)
    return std::chrono::nanoseconds(0);
  return worked * (100 - duty_percent) / duty_percent;
}

namespace {

/// A table file being written: see paced_env.
class paced_file final : public leveldb::WritableFile {
public:
  paced_file(leveldb::WritableFile* inner, const std::string& name, unsigned duty_percent,
             const paced_env& env)
    : inner_(inner),
      // A second descriptor for sync_file_range: LevelDB's file does not show its own. If it
      // cannot be opened, the file is written unpaced, as LevelDB would.
      fd_(duty_percent > 0 && duty_percent < 100 ? ::open(name.c_str(), O_WRONLY | O_CLOEXEC)
                                                 : -1),
      duty_percent_(duty_percent),
      env_(env),
      keeps_up_(env.keeps_up()),
      yields_(env.yields_when(keeps_up_)),
      step_started_(clock_type::now()) {}

  ~paced_file() override {
    if (fd_ >= 0)
      ::close(fd_);
  }

  leveldb::Status Append(const leveldb::Slice& data) override {
    auto s = inner_->Append(data);
    written_ += data.size();
    if (!s.ok())
      return s;
    if (written_ - stepped_ >= paced_env::step) {
      stepped_ = written_;
      keeps_up_ = env_.keeps_up();
      yields_ = env_.yields_when(keeps_up_);
      if (fd_ >= 0)
        s = end_step();
    }
    if (yields_ && written_ - yielded_ >= paced_env::yield_step) {
      yielded_ = written_;
      ::sched_yield();
    }
    return s;
  }

  leveldb::Status Close() override { return inner_->Close(); }
  leveldb::Status Flush() override { return inner_->Flush(); }
  leveldb::Status Sync() override { return inner_->Sync(); }

private:
  /// Writes the step's bytes through to the disk, then pauses if the database keeps up.
  leveldb::Status end_step() {
    auto s = inner_->Flush(); // from LevelDB's buffer into the page cache
    if (!s.ok())
      return s;
    // Errors are left to the table's own Sync, which LevelDB checks before using the file.
    (void)::sync_file_range(fd_, static_cast<off_t>(synced_),
                            static_cast<off_t>(written_ - synced_),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                              | SYNC_FILE_RANGE_WAIT_AFTER);
    synced_ = written_;
    auto now = clock_type::now();
    auto duty = keeps_up_ ? duty_percent_ : 100u;
    std::this_thread::sleep_for(pause_after(now - step_started_, duty));
    step_started_ = clock_type::now();
    return s;
  }

  std::unique_ptr<leveldb::WritableFile> inner_;
  int fd_; // -1: not paced
  unsigned duty_percent_;
  const paced_env& env_;
  bool keeps_up_; // as of the last step: pause only while the database keeps up
  bool yields_;
  uint64_t written_ = 0;
  uint64_t stepped_ = 0; // bytes written when the last step ended
  uint64_t synced_ = 0;  // bytes written through so far
  uint64_t yielded_ = 0; // bytes written at the last yield
  clock_type::time_point step_started_;
};

bool ends_with(const std::string& name, const char* suffix) {
  size_t n = std::strlen(suffix);
  return name.size() > n && name.compare(name.size() - n, n, suffix) == 0;
}

} // namespace

paced_env::paced_env(unsigned duty_percent, bool direct_logs)
  : leveldb::EnvWrapper(leveldb::Env::Default()), duty_percent_(duty_percent),
    direct_logs_(direct_logs) {}

leveldb::Status paced_env::NewWritableFile(const std::string& name,
                                           leveldb::WritableFile** result) {
  if (direct_logs_ && ends_with(name, ".log")) {
    if (auto log = direct_log::create(name)) {
      *result = log.release();
      return leveldb::Status::OK();
    }
  }
  auto s = target()->NewWritableFile(name, result);
  unsigned duty = duty_percent_;
  bool paced = duty > 0 && duty < 100;
  if (s.ok() && (paced || (give_way_ && db_.load() != nullptr)) && ends_with(name, ".ldb"))
    *result = new paced_file(*result, name, duty, *this);
  return s;
}

void paced_env::watch(leveldb::DB* db, const leveldb::Cache* cache, size_t write_buffer_bytes) {
  if (db == nullptr) {
    db_ = nullptr; // the cache stays: a table being written may still ask
    return;
  }
  cache_ = cache;
  write_buffer_bytes_ = write_buffer_bytes;
  db_ = db;
}

bool paced_env::keeps_up() const {
  leveldb::DB* db = db_.load();
  if (db == nullptr)
    return true;
  std::string level0, memory;
  if (!db->GetProperty("leveldb.num-files-at-level0", &level0)
      || !db->GetProperty("leveldb.approximate-memory-usage", &memory))
    return true;
  // The memory is the block cache's charge plus the memtables'.
  size_t total = std::stoull(memory);
  size_t cached = cache_.load()->TotalCharge();
  return storage::keeps_up(std::stoull(level0), total > cached ? total - cached : 0,
                           write_buffer_bytes_.load());
}

bool keeps_up(uint64_t level0_tables, size_t memtable_bytes, size_t write_buffer_bytes) {
  if (level0_tables >= 8 || memtable_bytes > write_buffer_bytes + write_buffer_bytes / 2)
    return false;
  // 6 or 7 level-0 tables: behind once the next flush is near (the memtable half full). Until
  // then the paced work still has half a memtable's time, and a server restarted after a
  // saturating load (6 level-0 tables, a nearly empty memtable) does not pay its compactions
  // at full speed while it serves.
  return level0_tables < 6 || memtable_bytes <= write_buffer_bytes / 2;
}

} // namespace missive::storage

#include "paced_env.hpp"

#include "direct_log.hpp"

#include <fcntl.h>
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
  paced_file(leveldb::WritableFile* inner, const std::string& name, unsigned duty_percent)
    : inner_(inner),
      // A second descriptor for sync_file_range: LevelDB's file does not show its own. If it
      // cannot be opened, the file is written unpaced, as LevelDB would.
      fd_(::open(name.c_str(), O_WRONLY | O_CLOEXEC)),
      duty_percent_(duty_percent),
      step_started_(clock_type::now()) {}

  ~paced_file() override {
    if (fd_ >= 0)
      ::close(fd_);
  }

  leveldb::Status Append(const leveldb::Slice& data) override {
    auto s = inner_->Append(data);
    written_ += data.size();
    if (s.ok() && fd_ >= 0 && written_ - synced_ >= paced_env::step)
      s = end_step();
    return s;
  }

  leveldb::Status Close() override { return inner_->Close(); }
  leveldb::Status Flush() override { return inner_->Flush(); }
  leveldb::Status Sync() override { return inner_->Sync(); }

private:
  /// Writes the step's bytes through to the disk, then pauses.
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
    std::this_thread::sleep_for(pause_after(now - step_started_, duty_percent_));
    step_started_ = clock_type::now();
    return s;
  }

  std::unique_ptr<leveldb::WritableFile> inner_;
  int fd_;
  unsigned duty_percent_;
  uint64_t written_ = 0;
  uint64_t synced_ = 0; // bytes written through so far
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
  if (s.ok() && duty > 0 && duty < 100 && ends_with(name, ".ldb"))
    *result = new paced_file(*result, name, duty);
  return s;
}

} // namespace missive::storage

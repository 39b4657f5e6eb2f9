#include "direct_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace missive::storage {

namespace {

uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

leveldb::Status io_error(const std::string& name, const char* what, int err) {
  return leveldb::Status::IOError(name, std::string(what) + ": " + std::strerror(err));
}

/// Writes all of `data` at `offset`; 0 or errno.
int write_fully(int fd, const char* data, size_t size, uint64_t offset) {
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

/// Zeros from `from` to `to`, on the disk with the file's new size when it returns; 0 or errno.
/// Gives up (ECANCELED) between pieces once `stop` is set.
int fill_zeros(int fd, uint64_t from, uint64_t to, const std::atomic<bool>* stop = nullptr) {
  static const char zeros[64 * 1024] = {};
  for (uint64_t at = from; at < to;) {
    if (stop && stop->load())
      return ECANCELED;
    size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof zeros, to - at));
    if (int err = write_fully(fd, zeros, n, at))
      return err;
    at += n;
  }
  return ::fdatasync(fd) == 0 ? 0 : errno;
}

} // namespace

std::unique_ptr<direct_log> direct_log::create(const std::string& name) {
  int zero_fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (zero_fd < 0)
    return nullptr;
  int fd = ::open(name.c_str(), O_WRONLY | O_DIRECT | O_DSYNC | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ::close(zero_fd);
    errno = err;
    return nullptr;
  }
  auto log = std::unique_ptr<direct_log>(new direct_log(name, fd, zero_fd));
  // The first zeros before the first record: their sync also commits the file's creation, which
  // the records' own writes (data only) would not. Then one block written the direct way tells
  // whether the file system takes it.
  int err = log->tail_ ? fill_zeros(zero_fd, 0, first) : ENOMEM;
  if (err == 0) {
    std::memset(log->tail_, 0, block);
    err = write_fully(fd, log->tail_, block, 0);
  }
  if (err != 0) {
    log.reset();
    errno = err;
    return nullptr;
  }
  log->layer_ = std::thread([raw = log.get()] { raw->lay_zeros(); });
  return log;
}

direct_log::direct_log(std::string name, int fd, int zero_fd)
  : name_(std::move(name)), fd_(fd), zero_fd_(zero_fd), capacity_(64 * 1024), zeros_(first),
    wanted_(first + ahead) { // the background thread goes on at once
  tail_ = static_cast<char*>(std::aligned_alloc(block, capacity_));
}

direct_log::~direct_log() {
  if (!closed_)
    (void)Close();
  std::free(tail_);
}

leveldb::Status direct_log::Append(const leveldb::Slice& data) {
  if (length_ + data.size() > capacity_) {
    // Doubling: LevelDB appends a batch in pieces of at most 32 KiB, and growing just enough
    // for each copied the batch so far into fresh pages every time, quadratic in the batch
    // (with 60 KB messages, 90% of the persistence thread went to those copies).
    size_t bigger = std::max(static_cast<size_t>(round_up(length_ + data.size(), 64 * 1024)),
                             2 * capacity_);
    auto* grown = static_cast<char*>(std::aligned_alloc(block, bigger));
    if (!grown)
      return io_error(name_, "append", ENOMEM);
    std::memcpy(grown, tail_, length_);
    std::free(tail_);
    tail_ = grown;
    capacity_ = bigger;
  }
  std::memcpy(tail_ + length_, data.data(), data.size());
  length_ += data.size();
  return leveldb::Status::OK();
}

leveldb::Status direct_log::Flush() { return leveldb::Status::OK(); }

leveldb::Status direct_log::Sync() { return write_tail(); }

leveldb::Status direct_log::write_tail() {
  if (written_ == length_)
    return leveldb::Status::OK();
  size_t padded = static_cast<size_t>(round_up(length_, block));
  if (auto s = wait_for_zeros(base_ + padded); !s.ok())
    return s;
  std::memset(tail_ + length_, 0, padded - length_);
  // The whole tail: after the last write it kept only its last partial block, whose bytes
  // already on the disk are rewritten unchanged, so a torn write cannot lose them.
  if (int err = write_fully(fd_, tail_, padded, base_))
    return io_error(name_, "write", err);
  size_t whole = length_ / block * block;
  std::memmove(tail_, tail_ + whole, length_ - whole);
  base_ += whole;
  length_ -= whole;
  written_ = length_;
  return leveldb::Status::OK();
}

leveldb::Status direct_log::wait_for_zeros(uint64_t end) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (end + ahead > wanted_) {
    wanted_ = round_up(end, ahead) + ahead;
    changed_.notify_all();
  }
  changed_.wait(lock, [&] { return zeros_ >= end || zero_error_ != 0; });
  if (zeros_ < end)
    return io_error(name_, "laying zeros ahead of the log", zero_error_);
  return leveldb::Status::OK();
}

void direct_log::lay_zeros() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || wanted_ > zeros_; });
    if (stopping_)
      return;
    uint64_t from = zeros_, to = wanted_;
    lock.unlock();
    int err = fill_zeros(zero_fd_, from, to, &stopping_);
    lock.lock();
    if (stopping_)
      return;
    if (err != 0) {
      zero_error_ = err;
      changed_.notify_all();
      return;
    }
    zeros_ = to;
    changed_.notify_all();
  }
}

void direct_log::stop_laying() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true; // a step under way stops after its current piece
  }
  changed_.notify_all();
  if (layer_.joinable())
    layer_.join();
}

leveldb::Status direct_log::Close() {
  if (closed_)
    return leveldb::Status::OK();
  auto s = write_tail();
  stop_laying();
  closed_ = true;
  // The zeros after the last record go; a crash before this leaves them for the reader to skip.
  if (s.ok() && ::ftruncate(zero_fd_, static_cast<off_t>(base_ + length_)) != 0)
    s = io_error(name_, "truncate", errno);
  ::close(fd_);
  ::close(zero_fd_);
  return s;
}

} // namespace missive::storage

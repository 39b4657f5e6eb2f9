#include "batched_stream.hpp"

#include <kj/debug.h>

#include <algorithm>
#include <cstring>

namespace missive::protocol {

batched_stream::batched_stream(kj::Own<kj::AsyncIoStream> inner)
  : inner_(kj::mv(inner)), tasks_(*this) {}

size_t batched_stream::take_buffered(kj::byte* out, size_t max) {
  size_t n = std::min(max, read_end_ - read_pos_);
  if (n > 0)
    std::memcpy(out, read_buf_ + read_pos_, n);
  consume(n);
  return n;
}

void batched_stream::consume(size_t n) {
  KJ_REQUIRE(n <= read_end_ - read_pos_);
  read_pos_ += n;
  if (read_pos_ == read_end_ && read_buf_ != nullptr) {
    heap_ = nullptr; // an idle connection keeps no read buffer on the heap
    read_buf_ = nullptr;
    read_pos_ = read_end_ = 0;
  }
}

kj::Promise<bool> batched_stream::fill(size_t n) {
  KJ_REQUIRE(n <= chunk);
  size_t have = read_end_ - read_pos_;
  if (have >= n)
    return true;
  // Move what is buffered to the front of a buffer with room for n bytes: small_ while n fits
  // in it (an idle connection's pending read holds nothing on the heap), else a chunk.
  size_t room = read_buf_ == small_ ? small : heap_.size();
  if (read_buf_ == nullptr || room < n) {
    kj::byte* to = small_;
    kj::Array<kj::byte> bigger;
    if (n > small) {
      bigger = kj::heapArray<kj::byte>(chunk);
      to = bigger.begin();
    }
    if (have > 0)
      std::memmove(to, read_buf_ + read_pos_, have);
    heap_ = kj::mv(bigger);
    read_buf_ = to;
  } else if (read_pos_ > 0) {
    std::memmove(read_buf_, read_buf_ + read_pos_, have);
  }
  read_pos_ = 0;
  read_end_ = have;
  room = read_buf_ == small_ ? small : heap_.size();
  return inner_->tryRead(read_buf_ + read_end_, 1, room - read_end_)
    .then([this, n](size_t got) -> kj::Promise<bool> {
      if (got == 0)
        return false;
      read_end_ += got;
      return fill(n);
    });
}

bool batched_stream::try_write_now(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  if (write_failure_ != nullptr || shutdown_requested_ || pending_.size() > high_water)
    return false;
  for (auto piece : pieces)
    pending_.insert(pending_.end(), piece.begin(), piece.end());
  schedule_flush();
  return true;
}

kj::Promise<size_t> batched_stream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  auto* out = static_cast<kj::byte*>(buffer);
  size_t got = take_buffered(out, max_bytes);
  if (got >= min_bytes)
    return got;
  // Here the buffer is empty: whatever is read next goes into small_ or a new heap_.
  size_t room = max_bytes - got;
  if (got == 0 && max_bytes <= direct_read_max) {
    return inner_->tryRead(small_, min_bytes, sizeof(small_)).then([this, out, room](size_t n) {
      read_buf_ = small_;
      read_end_ = n;
      return take_buffered(out, room);
    });
  }
  heap_ = kj::heapArray<kj::byte>(std::max(room, chunk));
  return inner_->tryRead(heap_.begin(), min_bytes - got, heap_.size())
    .then([this, out, got, room](size_t n) {
      read_buf_ = heap_.begin();
      read_end_ = n;
      return got + take_buffered(out + got, room);
    });
}

kj::Promise<void> batched_stream::write(const void* buffer, size_t size) {
  KJ_IF_MAYBE(e, write_failure_) {
    return kj::cp(**e);
  }
  KJ_REQUIRE(!shutdown_requested_, "write after shutdownWrite()");
  auto* bytes = static_cast<const kj::byte*>(buffer);
  pending_.insert(pending_.end(), bytes, bytes + size);
  return queued();
}

kj::Promise<void> batched_stream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  KJ_IF_MAYBE(e, write_failure_) {
    return kj::cp(**e);
  }
  KJ_REQUIRE(!shutdown_requested_, "write after shutdownWrite()");
  for (auto piece : pieces)
    pending_.insert(pending_.end(), piece.begin(), piece.end());
  return queued();
}

kj::Promise<void> batched_stream::queued() {
  schedule_flush();
  if (pending_.size() <= high_water)
    return kj::READY_NOW;
  // Too much behind a slow socket: this writer waits for the write under way.
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiting_writers_.push_back(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void batched_stream::schedule_flush() {
  // While a write is under way, its completion sends what gathered meanwhile.
  if (flush_scheduled_ || writing_)
    return;
  flush_scheduled_ = true;
  tasks_.add(kj::evalLast([this]() {
    flush_scheduled_ = false;
    return flush();
  }));
}

kj::Promise<void> batched_stream::flush() {
  if (writing_)
    return kj::READY_NOW;
  if (pending_.empty()) {
    if (shutdown_requested_ && !shut_down_) {
      shut_down_ = true;
      // Deferred, so nobody waits for its outcome: a peer gone already (ENOTCONN) leaves
      // nothing to shut down, and its error is dropped.
      (void)kj::runCatchingExceptions([&]() { inner_->shutdownWrite(); });
    }
    return kj::READY_NOW;
  }
  writing_ = true;
  std::vector<kj::byte> out;
  out.swap(pending_); // the vector's buffer moves with it, so the pointer below stays valid
  auto* data = out.data();
  auto size = out.size();
  // A socket stream may throw from write() itself (its first write() failed: EPIPE) instead
  // of returning a broken promise; both go to the failure branch below.
  return kj::evalNow([&]() { return inner_->write(data, size); })
    .attach(kj::mv(out))
    .then(
      [this]() {
        writing_ = false;
        auto writers = std::move(waiting_writers_);
        waiting_writers_.clear();
        for (auto& w : writers)
          w->fulfill();
        return flush();
      },
      [this](kj::Exception&& e) {
        writing_ = false;
        pending_.clear();
        auto writers = std::move(waiting_writers_);
        waiting_writers_.clear();
        for (auto& w : writers)
          w->reject(kj::cp(e));
        write_failure_ = kj::heap(kj::mv(e));
      });
}

kj::Promise<void> batched_stream::whenWriteDisconnected() {
  return inner_->whenWriteDisconnected();
}

void batched_stream::shutdownWrite() {
  shutdown_requested_ = true;
  if (!writing_ && pending_.empty() && !shut_down_) {
    shut_down_ = true;
    inner_->shutdownWrite();
  }
  // Otherwise flush() shuts down once the buffered bytes are written.
}

void batched_stream::abortRead() {
  inner_->abortRead();
}

void batched_stream::getsockopt(int level, int option, void* value, kj::uint* length) {
  inner_->getsockopt(level, option, value, length);
}

void batched_stream::setsockopt(int level, int option, const void* value, kj::uint length) {
  inner_->setsockopt(level, option, value, length);
}

void batched_stream::getsockname(struct sockaddr* addr, kj::uint* length) {
  inner_->getsockname(addr, length);
}

void batched_stream::getpeername(struct sockaddr* addr, kj::uint* length) {
  inner_->getpeername(addr, length);
}

kj::Maybe<int> batched_stream::getFd() const {
  return inner_->getFd();
}

void batched_stream::taskFailed(kj::Exception&& e) {
  // flush() turns a failed write into write_failure_; nothing else runs in tasks_.
  KJ_LOG(ERROR, "batched_stream: unexpected task failure", e);
}

} // namespace missive::protocol

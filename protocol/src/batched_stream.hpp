#pragma once

#include <kj/async-io.h>

#include <cstddef>
#include <vector>

namespace missive::protocol {

/// The socket under one RPC connection, with fewer system calls per message.
///
/// Cap'n Proto 0.9.2 writes each RPC message with its own `writev` as soon as the previous one
/// is written, and reads each message with two `read`s (its first word, then the rest) plus one
/// that finds the socket empty. Here:
///
/// - Writes are gathered: every message written during one event-loop turn is copied into one
///   buffer, sent with a single write when the loop has nothing else to run (`kj::evalLast`).
///   No latency is added — the loop would otherwise go to sleep in `epoll_wait` — and a write
///   completes at once unless more than `high_water` bytes wait behind a socket that is full,
///   which keeps Cap'n Proto's backpressure.
/// - A read for more than a message's first word reads up to `chunk` bytes and keeps what
///   follows for the next reads. A read of a message's first word into an empty buffer reads
///   up to `small` bytes into a buffer inside the stream: the small messages that make up most
///   of the traffic then arrive whole in that one read (a separate read for the rest of each
///   message would be one more system call per message), and an idle connection — whose
///   pending read is such a read — holds no buffer on the heap.
///
/// Errors: a failed write fails every later write (and the writes waiting on it) with the same
/// exception; reads report the socket's own errors and end of stream. `shutdownWrite` sends
/// what is buffered first. Bytes still buffered when the stream is destroyed are dropped, as
/// Cap'n Proto drops its queued writes when its connection is destroyed.
class batched_stream final : public kj::AsyncIoStream, private kj::TaskSet::ErrorHandler {
public:
  static constexpr size_t chunk = 8192;
  static constexpr size_t direct_read_max = 8; // a message's first word
  // Holds the messages of a send's usual round (a send with a 64-byte body, its answer with
  // the own copy, a notify, Finish) whole, and keeps the stream in jemalloc's 640-byte class.
  static constexpr size_t small = 384;
  static constexpr size_t high_water = 64 * 1024;

  explicit batched_stream(kj::Own<kj::AsyncIoStream> inner);

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, kj::uint* length) override;
  void setsockopt(int level, int option, const void* value, kj::uint length) override;
  void getsockname(struct sockaddr* addr, kj::uint* length) override;
  void getpeername(struct sockaddr* addr, kj::uint* length) override;
  kj::Maybe<int> getFd() const override;

  // For a reader that takes whole messages out of the buffer itself (`rpc_connection`), so
  // that a message already read costs no promise:
  /// The bytes read from the socket and not taken yet.
  kj::ArrayPtr<const kj::byte> buffered() const {
    return kj::arrayPtr(read_buf_ + read_pos_, read_end_ - read_pos_);
  }
  /// Drops the first `n` of them.
  void consume(size_t n);
  /// Waits until at least `n` bytes (at most `chunk`) are buffered; false if the stream ended
  /// first.
  kj::Promise<bool> fill(size_t n);

  /// Queues `pieces` for the next write now, if nothing stands in the way (a failed write, a
  /// shutdown, more than `high_water` bytes waiting); false if the caller must use `write()`.
  bool try_write_now(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces);

private:
  size_t take_buffered(kj::byte* out, size_t max);
  kj::Promise<void> queued();
  void schedule_flush();
  kj::Promise<void> flush();
  void taskFailed(kj::Exception&& e) override;

  kj::Own<kj::AsyncIoStream> inner_;

  // Reading: bytes read past what was asked for, [read_pos_, read_end_) of read_buf_, which is
  // small_ or heap_.
  kj::byte small_[small];
  kj::Array<kj::byte> heap_;
  kj::byte* read_buf_ = nullptr;
  size_t read_pos_ = 0;
  size_t read_end_ = 0;

  // Writing: bytes waiting for the next write; at most one write to inner_ at a time.
  std::vector<kj::byte> pending_;
  bool flush_scheduled_ = false;
  bool writing_ = false;
  bool shutdown_requested_ = false;
  bool shut_down_ = false;
  kj::Maybe<kj::Own<kj::Exception>> write_failure_; // on the heap: an exception is 368 bytes
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> waiting_writers_;
  kj::TaskSet tasks_;
};

} // namespace missive::protocol

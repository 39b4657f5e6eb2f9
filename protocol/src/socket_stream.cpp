#include "socket_stream.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <kj/debug.h>

namespace missive::protocol {

socket_stream::socket_stream(kj::UnixEventPort& port, int fd)
  : fd_(fd),
    observer_(port, fd,
              kj::UnixEventPort::FdObserver::OBSERVE_READ
                | kj::UnixEventPort::FdObserver::OBSERVE_WRITE) {}

kj::Promise<kj::Own<socket_stream>> socket_stream::connect(kj::UnixEventPort& port, int fd,
                                                           const struct sockaddr* addr,
                                                           kj::uint length) {
  kj::AutoCloseFd owned(fd);
  if (::connect(fd, addr, length) != 0 && errno != EINPROGRESS) {
    int error = errno;
    return kj::evalNow(
      [error]() -> kj::Own<socket_stream> { KJ_FAIL_SYSCALL("connect", error); });
  }
  auto stream = kj::heap<socket_stream>(port, owned.release());
  auto& observer = stream->observer_;
  // Writable once connected, or once the connection failed (SO_ERROR says which).
  return observer.whenBecomesWritable().then([stream = kj::mv(stream)]() mutable {
    int error = 0;
    socklen_t size = sizeof(error);
    KJ_SYSCALL(::getsockopt(stream->fd_, SOL_SOCKET, SO_ERROR, &error, &size));
    if (error != 0)
      KJ_FAIL_SYSCALL("connect", error);
    return kj::mv(stream);
  });
}

kj::Promise<size_t> socket_stream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  return kj::evalNow(
    [&]() { return read_some(static_cast<kj::byte*>(buffer), min_bytes, max_bytes, 0); });
}

kj::Promise<size_t> socket_stream::read_some(kj::byte* out, size_t min_bytes, size_t max_bytes,
                                             size_t done) {
  KJ_IF_MAYBE(wait, readable_) {
    auto readable = kj::mv(*wait);
    readable_ = nullptr;
    return readable.then(
      [this, out, min_bytes, max_bytes, done]() {
        return read_some(out, min_bytes, max_bytes, done);
      });
  }
  ssize_t n;
  KJ_NONBLOCKING_SYSCALL(n = ::read(fd_, out, max_bytes)) {
    return done; // only without exceptions: the macro throws
  }
  if (n < 0) { // EAGAIN
    return observer_.whenBecomesReadable().then(
      [this, out, min_bytes, max_bytes, done]() {
        return read_some(out, min_bytes, max_bytes, done);
      });
  }
  if (n == 0)
    return done; // the end of the stream
  auto got = static_cast<size_t>(n);
  if (got < max_bytes) {
    // The socket is empty now, unless the peer finished writing (then read() returns 0 at once).
    KJ_IF_MAYBE(at_end, observer_.atEndHint()) {
      if (!*at_end)
        readable_ = observer_.whenBecomesReadable();
    }
  }
  if (got >= min_bytes)
    return done + got;
  return read_some(out + got, min_bytes - got, max_bytes - got, done + got);
}

kj::Promise<void> socket_stream::write(const void* buffer, size_t size) {
  return kj::evalNow([&]() { return write_all(static_cast<const kj::byte*>(buffer), size); });
}

kj::Promise<void> socket_stream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  if (pieces.size() == 0)
    return kj::READY_NOW;
  // The caller keeps `pieces` (and what they point to) until the promise resolves.
  return write(pieces[0].begin(), pieces[0].size()).then([this, pieces]() {
    return write(pieces.slice(1, pieces.size()));
  });
}

kj::Promise<void> socket_stream::write_all(const kj::byte* data, size_t size) {
  while (size > 0) {
    ssize_t n;
    KJ_NONBLOCKING_SYSCALL(n = ::send(fd_, data, size, MSG_NOSIGNAL)) {
      return kj::READY_NOW; // only without exceptions: the macro throws
    }
    if (n < 0) { // the socket's buffer is full
      return observer_.whenBecomesWritable().then(
        [this, data, size]() { return write_all(data, size); });
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return kj::READY_NOW;
}

kj::Promise<void> socket_stream::whenWriteDisconnected() {
  return observer_.whenWriteDisconnected();
}

void socket_stream::shutdownWrite() {
  KJ_SYSCALL(::shutdown(fd_, SHUT_WR));
}

void socket_stream::abortRead() {
  KJ_SYSCALL(::shutdown(fd_, SHUT_RD));
}

void socket_stream::getsockopt(int level, int option, void* value, kj::uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getsockopt(fd_, level, option, value, &len));
  *length = len;
}

void socket_stream::setsockopt(int level, int option, const void* value, kj::uint length) {
  KJ_SYSCALL(::setsockopt(fd_, level, option, value, length));
}

void socket_stream::getsockname(struct sockaddr* addr, kj::uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getsockname(fd_, addr, &len));
  *length = len;
}

void socket_stream::getpeername(struct sockaddr* addr, kj::uint* length) {
  socklen_t len = *length;
  KJ_SYSCALL(::getpeername(fd_, addr, &len));
  *length = len;
}

} // namespace missive::protocol

// The gateway's socket stream (protocol/src/socket_stream.hpp): after a read that empties the
// socket it waits for readiness instead of reading again; nothing that arrives meanwhile may be
// missed, the end of the stream and a peer gone must look as they do on KJ's own stream.

#include "socket_stream.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>

namespace missive::protocol {
namespace {

struct socket_stream_test : ::testing::Test {
  ~socket_stream_test() noexcept override {
    if (peer >= 0)
      ::close(peer);
  }

  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    stream = kj::heap<socket_stream>(io.unixEventPort, fds[0]);
    peer = fds[1];
    // The peer end blocks: the test writes and reads it directly.
    ASSERT_EQ(fcntl(peer, F_SETFL, fcntl(peer, F_GETFL) & ~O_NONBLOCK), 0);
  }

  void peer_write(const std::string& s) {
    ASSERT_EQ(::write(peer, s.data(), s.size()), ssize_t(s.size()));
  }

  /// What one tryRead gives, or "<hung>" if it does not finish within 5 s.
  std::string read(size_t min, size_t max) {
    std::string out(max, '\0');
    auto n = stream->tryRead(out.data(), min, max)
               .then([](size_t n) -> kj::Maybe<size_t> { return n; })
               .exclusiveJoin(io.provider->getTimer().afterDelay(5 * kj::SECONDS).then(
                 []() -> kj::Maybe<size_t> { return nullptr; }))
               .wait(io.waitScope);
    KJ_IF_MAYBE(got, n) {
      out.resize(*got);
      return out;
    }
    return "<hung>";
  }

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Own<socket_stream> stream;
  int peer = -1;
};

TEST_F(socket_stream_test, data_that_comes_after_a_read_emptied_the_socket_is_read) {
  peer_write("abc");
  io.waitScope.poll(); // the loop has seen the socket readable: the peer is not at its end
  EXPECT_EQ(read(1, 100), "abc"); // short: the next read waits for readiness
  // Written before the next read is asked for, and its readiness event taken by the loop
  // before that read: a wait armed only when the read starts would never wake.
  peer_write("de");
  io.waitScope.poll();
  EXPECT_EQ(read(1, 100), "de");
  auto later = std::thread([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    peer_write("fgh");
  });
  EXPECT_EQ(read(1, 100), "fgh");
  later.join();
}

TEST_F(socket_stream_test, a_read_for_more_than_is_there_waits_for_the_rest) {
  peer_write("abc");
  auto rest = std::thread([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    peer_write("defg");
  });
  EXPECT_EQ(read(6, 6), "abcdef");
  rest.join();
  EXPECT_EQ(read(1, 100), "g");
}

TEST_F(socket_stream_test, the_end_of_the_stream_reads_short) {
  peer_write("last");
  ASSERT_EQ(::shutdown(peer, SHUT_WR), 0);
  EXPECT_EQ(read(1, 100), "last");
  EXPECT_EQ(read(1, 100), "");
  EXPECT_EQ(read(1, 100), "");
}

TEST_F(socket_stream_test, bytes_written_at_random_times_from_another_thread_all_arrive) {
  // The armed wait must never miss data: 2,000 writes of 1-64 bytes with random pauses, read
  // as they come; a lost readiness would hang the read (bounded below). A wait armed only
  // when the next read starts, rather than in the read that emptied the socket, fails here.
  constexpr int writes = 2000;
  std::string sent;
  std::mt19937 rng(7);
  std::vector<std::string> chunks;
  for (int i = 0; i < writes; ++i) {
    std::string c(1 + rng() % 64, char('a' + i % 26));
    sent += c;
    chunks.push_back(c);
  }
  auto writer = std::thread([this, &chunks] {
    std::mt19937 pause(11);
    for (auto& c : chunks) {
      peer_write(c);
      if (pause() % 4 == 0)
        std::this_thread::sleep_for(std::chrono::microseconds(pause() % 200));
    }
  });
  std::string got;
  auto& timer = io.provider->getTimer();
  while (got.size() < sent.size()) {
    std::string buf(100, '\0');
    auto n = stream->tryRead(buf.data(), 1, buf.size())
               .exclusiveJoin(timer.afterDelay(10 * kj::SECONDS).then([]() -> size_t {
                 return 0; // a read that hangs ends the test
               }))
               .wait(io.waitScope);
    if (n == 0)
      break;
    got.append(buf.data(), n);
    // Readiness events are taken between reads too (as in the server, whose loop has other
    // work): one that came in between must not be lost.
    io.waitScope.poll();
  }
  writer.join();
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
}

TEST_F(socket_stream_test, a_write_bigger_than_the_socket_buffer_arrives_whole_and_in_order) {
  std::string big(4 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = char(i * 7);
  std::string got;
  auto reader = std::thread([this, &got, n = big.size()] {
    std::string buf(65536, '\0');
    while (got.size() < n) {
      auto r = ::read(peer, buf.data(), buf.size());
      if (r <= 0)
        break;
      got.append(buf.data(), size_t(r));
    }
  });
  stream->write(big.data(), big.size()).wait(io.waitScope);
  reader.join();
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big);
}

TEST_F(socket_stream_test, writing_to_a_peer_gone_fails_disconnected_without_a_signal) {
  ::close(peer);
  peer = -1;
  // No SIGPIPE ends the process (this test binary does not ignore it).
  try {
    stream->write("x", 1).wait(io.waitScope);
    FAIL() << "the write succeeded";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED) << e.getDescription().cStr();
  }
}

/// A loopback TCP socket bound to a free port (listening if asked); its address.
int loopback_socket(bool listening, sockaddr_in* addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  *addr = sockaddr_in{};
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(*addr);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(addr), len), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(addr), &len), 0);
  if (listening) {
    EXPECT_EQ(::listen(fd, 4), 0);
  }
  return fd;
}

TEST(socket_stream_connect, connects_and_carries_bytes_both_ways) {
  auto io = kj::setupAsyncIo();
  sockaddr_in addr;
  int listener = loopback_socket(true, &addr);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  auto stream = socket_stream::connect(io.unixEventPort, fd, reinterpret_cast<sockaddr*>(&addr),
                                       sizeof(addr))
                  .wait(io.waitScope);
  int peer = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(peer, 0);
  stream->write("ping", 4).wait(io.waitScope);
  char buf[8] = {};
  ASSERT_EQ(::read(peer, buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  ASSERT_EQ(::write(peer, "pong", 4), 4);
  EXPECT_EQ(stream->tryRead(buf, 4, sizeof(buf)).wait(io.waitScope), 4u);
  EXPECT_EQ(std::string(buf, 4), "pong");
  ::close(peer);
  ::close(listener);
}

TEST(socket_stream_connect, a_refused_connection_fails_disconnected) {
  auto io = kj::setupAsyncIo();
  sockaddr_in addr;
  ::close(loopback_socket(false, &addr)); // a port nobody listens on
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  try {
    socket_stream::connect(io.unixEventPort, fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
      .wait(io.waitScope);
    FAIL() << "connected";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED) << e.getDescription().cStr();
  }
}

} // namespace
} // namespace missive::protocol

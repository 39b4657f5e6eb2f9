// The socket wrapper under every RPC connection (protocol/src/batched_stream.hpp): writes of
// one event-loop turn leave in one write, reads keep what follows a message, and order,
// end of stream, backpressure and write failures are what a plain socket would give.

#include "batched_stream.hpp"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <string>
#include <vector>

namespace missive::protocol {
namespace {

/// A stream that forwards to another and counts the calls that reach it; writes can be held
/// (left pending until released) or failed.
class counting_stream final : public kj::AsyncIoStream {
public:
  explicit counting_stream(kj::AsyncIoStream& inner) : inner_(inner) {}

  int reads = 0;
  int writes = 0;
  bool hold_writes = false;
  bool fail_writes = false;
  bool throw_writes = false; // as KJ's socket stream does when its first write() fails (EPIPE)
  bool shut_down = false;
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> held;

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    ++reads;
    return inner_.tryRead(buffer, min_bytes, max_bytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    ++writes;
    if (fail_writes)
      return KJ_EXCEPTION(DISCONNECTED, "peer went away");
    if (throw_writes)
      kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "broken pipe"));
    auto written = inner_.write(buffer, size);
    if (!hold_writes)
      return written;
    auto paf = kj::newPromiseAndFulfiller<void>();
    held.push_back(kj::mv(paf.fulfiller));
    return written.then([p = kj::mv(paf.promise)]() mutable { return kj::mv(p); });
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    ++writes;
    return inner_.write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_.whenWriteDisconnected(); }
  void shutdownWrite() override {
    shut_down = true;
    inner_.shutdownWrite();
  }

private:
  kj::AsyncIoStream& inner_;
};

struct batched_stream_test : ::testing::Test {
  ~batched_stream_test() noexcept override {} // KJ's members may throw from their destructors

  kj::EventLoop loop;
  kj::WaitScope ws{loop};
  kj::TwoWayPipe pipe = kj::newTwoWayPipe();
  kj::Own<counting_stream> counted = kj::heap<counting_stream>(*pipe.ends[0]);
  counting_stream& inner = *counted;
  batched_stream stream{kj::mv(counted)};
  kj::AsyncIoStream& peer = *pipe.ends[1];

  std::string peer_reads(size_t n) {
    std::string s(n, '\0');
    peer.read(s.data(), n).wait(ws);
    return s;
  }

  kj::Promise<void> write(const std::string& s) { return stream.write(s.data(), s.size()); }

  std::string read(size_t min, size_t max) {
    std::string s(max, '\0');
    auto n = stream.tryRead(s.data(), min, max).wait(ws);
    s.resize(n);
    return s;
  }
};

TEST_F(batched_stream_test, writes_of_one_turn_leave_in_one_write_in_order) {
  // As Cap'n Proto writes: each message once the previous write completed.
  auto p = write("one,").then([&]() { return write("two,"); }).then([&]() {
    return write("three");
  });
  p.wait(ws);
  EXPECT_EQ(peer_reads(13), "one,two,three");
  EXPECT_EQ(inner.writes, 1);
}

TEST_F(batched_stream_test, pieces_are_gathered_like_plain_writes) {
  std::string a = "head", b = "body";
  kj::ArrayPtr<const kj::byte> pieces[] = {kj::StringPtr(a).asBytes(),
                                           kj::StringPtr(b).asBytes()};
  stream.write(pieces).wait(ws);
  write("+tail").wait(ws);
  EXPECT_EQ(peer_reads(13), "headbody+tail");
  EXPECT_EQ(inner.writes, 1);
}

TEST_F(batched_stream_test, a_write_after_the_loop_went_idle_is_a_new_write) {
  write("first").wait(ws);
  EXPECT_EQ(peer_reads(5), "first"); // the loop ran dry: the first write left on its own
  write("second").wait(ws);
  EXPECT_EQ(peer_reads(6), "second");
  EXPECT_EQ(inner.writes, 2);
}

/// Three framed messages (an 8-byte first word, then a body of `body` bytes) arrive at once and
/// are read as Cap'n Proto reads them; returns how many reads reached the socket.
int reads_for_three_messages(batched_stream_test& t, size_t body) {
  std::string wire;
  for (char c : {'a', 'b', 'c'})
    wire += std::string(8, c) + std::string(body, static_cast<char>(c + 1));
  // (The in-memory pipe completes a write once it has all been read.)
  auto sent = t.peer.write(wire.data(), wire.size()).eagerlyEvaluate(nullptr);
  std::string got;
  for (int i = 0; i < 3; ++i) {
    got += t.read(8, 8);       // the first word
    got += t.read(body, body); // the body
  }
  EXPECT_EQ(got, wire);
  return t.inner.reads;
}

TEST_F(batched_stream_test, small_messages_arriving_together_take_one_read) {
  // The first word's read brings what fits in the stream's own buffer: here all three.
  EXPECT_EQ(reads_for_three_messages(*this, 100), 1); // 3 x 108 bytes
}

TEST_F(batched_stream_test, a_larger_message_and_what_follows_it_take_one_more_read) {
  // 924 bytes: the first read brings 384 of them, the second body's read all the rest.
  static_assert(batched_stream::small == 384);
  EXPECT_EQ(reads_for_three_messages(*this, 300), 2);
}

TEST_F(batched_stream_test, a_read_takes_no_more_than_asked_and_keeps_the_rest) {
  std::string wire = "0123456789abcdefghij";
  auto sent = peer.write(wire.data(), wire.size()).eagerlyEvaluate(nullptr);
  EXPECT_EQ(read(10, 10), "0123456789"); // a body-sized read: the surplus is kept
  EXPECT_EQ(read(1, 4), "abcd");
  EXPECT_EQ(read(1, 100), "efghij");
}

TEST_F(batched_stream_test, end_of_stream_returns_what_there_was) {
  std::string wire = "0123456789abc";
  auto sent = peer.write(wire.data(), wire.size())
                .then([&]() { peer.shutdownWrite(); })
                .eagerlyEvaluate(nullptr);
  EXPECT_EQ(read(10, 10), "0123456789");
  EXPECT_EQ(read(8, 8), "abc"); // fewer than asked: the peer is done
  EXPECT_EQ(read(8, 8), "");
}

TEST_F(batched_stream_test, shutdown_sends_what_is_buffered_first) {
  auto p = write("last words");
  stream.shutdownWrite();
  EXPECT_FALSE(inner.shut_down); // still buffered
  p.wait(ws);
  std::string s(64, '\0');
  auto n = peer.tryRead(s.data(), 64, 64).wait(ws);
  EXPECT_EQ(s.substr(0, n), "last words");
  EXPECT_TRUE(inner.shut_down);
}

TEST_F(batched_stream_test, a_writer_waits_behind_a_full_socket_past_the_high_water_mark) {
  inner.hold_writes = true;
  std::string big(batched_stream::high_water / 2 + 1, 'x');
  write(big).wait(ws);
  // The peer reads it all, yet the write stays pending (held), as behind a full socket.
  EXPECT_EQ(peer_reads(big.size()), big);
  ASSERT_EQ(inner.held.size(), 1u); // the first write is under way and not done
  write(big).wait(ws); // below the mark: buffered, done at once
  auto blocked = write(big);
  EXPECT_FALSE(blocked.poll(ws)); // over the mark: waits for the write under way
  inner.held.front()->fulfill();
  blocked.wait(ws);
  EXPECT_EQ(peer_reads(2 * big.size()), big + big);
}

TEST_F(batched_stream_test, a_failed_write_fails_every_later_write) {
  inner.fail_writes = true;
  write("lost").wait(ws); // buffered: the failure shows when the buffer is written
  ws.poll();
  auto later = write("after");
  EXPECT_THROW(later.wait(ws), kj::Exception);
  EXPECT_EQ(inner.writes, 1);
}

TEST_F(batched_stream_test, a_write_that_throws_at_once_fails_every_later_write_too) {
  inner.throw_writes = true;
  write("lost").wait(ws);
  ws.poll();
  auto later = write("after");
  EXPECT_THROW(later.wait(ws), kj::Exception);
  EXPECT_EQ(inner.writes, 1);
}

} // namespace
} // namespace missive::protocol

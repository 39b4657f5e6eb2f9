// The gateway's direct calls (protocol/README.md, "Direct calls"): sends and notifies read and
// written by the gateway itself instead of Cap'n Proto's RPC system. Every test runs against a
// server with `direct-calls = on` and one with `off`: whatever a device does with its calls
// (pipelining, cancelling, dropping its session, several sessions on one connection) it gets
// the same answers, but for the two places where a test checks which path made them.

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/raw_device.hpp"
#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;
using send_response = capnp::Response<wire::Session::SendResults>;

/// A receiver that keeps the bodies it is notified of, and answers with the notice's maxSeq.
class recording_receiver final : public wire::PushReceiver::Server {
public:
  explicit recording_receiver(std::vector<std::string>& bodies) : bodies_(bodies) {}

protected:
  kj::Promise<void> notify(NotifyContext ctx) override {
    for (auto e : ctx.getParams().getEntries())
      bodies_.emplace_back(e.getBody().asChars().begin(), e.getBody().size());
    ctx.getResults().setCursor(ctx.getParams().getMaxSeq());
    return kj::READY_NOW;
  }

private:
  std::vector<std::string>& bodies_;
};

/// A receiver whose device refuses every notify.
class refusing_receiver final : public wire::PushReceiver::Server {
protected:
  kj::Promise<void> notify(NotifyContext) override {
    KJ_FAIL_REQUIRE("this device refuses notifies");
  }
};

kj::Promise<send_response> send(wire::Session::Client session, uint64_t id, const std::string& to,
                                const std::string& body) {
  auto req = session.sendRequest();
  req.setClientMsgId(id);
  req.setTo(to);
  req.setBody(kj::StringPtr(body).asBytes());
  return req.send();
}

/// The promise's value, or an exception after 10 s (a call never answered).
template <class T>
T within(kj::AsyncIoContext& io, kj::Promise<T> p) {
  return io.provider->getTimer().timeoutAfter(10 * kj::SECONDS, kj::mv(p)).wait(io.waitScope);
}

/// Runs the event loop until `done()` or 10 s.
template <class Done>
bool until(kj::AsyncIoContext& io, Done done) {
  for (int i = 0; i < 1000 && !done(); ++i)
    io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope);
  return done();
}

/// How many entries of `session`'s mailbox carry `client_msg_id`.
size_t stored(kj::AsyncIoContext& io, wire::Session::Client session, uint64_t client_msg_id) {
  auto req = session.syncRequest();
  req.setLimit(1000);
  auto page = within(io, req.send());
  size_t n = 0;
  for (auto e : page.getEntries())
    n += e.getClientMsgId() == client_msg_id;
  return n;
}

/// `user`'s phone, logged in on a connection of its own, keeping the bodies it is notified of.
struct online_phone {
  online_phone(kj::AsyncIoContext& io, const std::string& address, const std::string& user)
    : dev(io, address), in(dev.login(user, "phone", kj::heap<recording_receiver>(got))) {}

  wire::Session::Client session() { return in.getSession(); }

  std::vector<std::string> got;
  raw_device dev;
  capnp::Response<wire::Gateway::LoginResults> in;
};

struct direct_calls : ::testing::TestWithParam<bool> {
  void SetUp() override {
    srv.emplace(dir.path, std::string("password-hash = min\ndirect-calls = ")
                            + (GetParam() ? "on" : "off"));
    ASSERT_TRUE(srv->start());
    ASSERT_TRUE(srv->create_accounts({"alice", "bob"}));
  }

  /// Runs `body` on a thread of its own with its own event loop (this thread has the server's
  /// client's).
  template <class Body>
  void run(Body body) {
    std::thread t([&] {
      auto io = kj::setupAsyncIo();
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { body(io); })) {
        ADD_FAILURE() << e->getDescription().cStr();
      }
    });
    t.join();
  }

  temp_dir dir;
  std::optional<server> srv;
};

INSTANTIATE_TEST_SUITE_P(paths, direct_calls, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "direct" : "rpc_system"; });

TEST_P(direct_calls, sends_pipelined_on_the_login_keep_their_order_with_the_ones_after) {
  run([&](kj::AsyncIoContext& io) {
    std::vector<std::string> got;
    raw_device dev(io, srv->address());
    auto login = dev.login_request("alice", "phone", kj::heap<recording_receiver>(got)).send();
    std::vector<kj::Promise<send_response>> sends;
    auto pipelined = login.getSession(); // before the login is answered
    for (uint64_t id = 1; id <= 3; ++id)
      sends.push_back(send(pipelined, id, "bob", "pipelined"));
    auto in = within(io, kj::mv(login));
    ASSERT_FALSE(in.hasError()) << in.getError().getMessage().cStr();
    for (uint64_t id = 4; id <= 6; ++id) // on the session itself, without waiting for the above
      sends.push_back(send(in.getSession(), id, "bob", "settled"));
    uint32_t last = 0;
    for (auto& p : sends) {
      auto r = within(io, kj::mv(p));
      ASSERT_FALSE(r.hasError()) << r.getError().getMessage().cStr();
      EXPECT_EQ(r.getSeq(), last + 1) << "stored out of the order sent";
      last = r.getSeq();
    }
  });
}

TEST_P(direct_calls, a_send_the_device_cancels_is_stored_at_most_once_and_the_connection_goes_on) {
  run([&](kj::AsyncIoContext& io) {
    online_phone alice(io, srv->address(), "alice");
    ASSERT_FALSE(alice.in.hasError());
    auto session = alice.session();
    // Dropped at once: its Finish leaves with its Call, before any answer.
    (void)send(session, 1, "bob", "cancelled");
    auto next = within(io, send(session, 2, "bob", "next"));
    EXPECT_FALSE(next.hasError()) << next.getError().getMessage().cStr();
    // The device retries the one it gave up on: it is there exactly once now.
    auto retried = within(io, send(session, 1, "bob", "cancelled"));
    EXPECT_FALSE(retried.hasError()) << retried.getError().getMessage().cStr();
    EXPECT_EQ(stored(io, session, 1), 1u);
    EXPECT_EQ(stored(io, session, 2), 1u);
  });
}

TEST_P(direct_calls, a_session_dropped_with_a_send_in_flight_still_answers_it) {
  run([&](kj::AsyncIoContext& io) {
    std::vector<std::string> got;
    raw_device dev(io, srv->address());
    kj::Promise<send_response> pending = nullptr;
    {
      auto in = dev.login("alice", "phone", kj::heap<recording_receiver>(got));
      ASSERT_FALSE(in.hasError());
      pending = send(in.getSession(), 1, "bob", "in flight");
    } // the device's last reference to the session goes: its Release follows the Call
    // Answered as if the session were still there: the send was under way.
    auto r = within(io, kj::mv(pending));
    EXPECT_FALSE(r.hasError()) << r.getError().getMessage().cStr();
    EXPECT_EQ(r.getSeq(), 1u);
    // The one difference a device can see: the RPC system keeps the session for the call, so
    // its own copy rides on the answer; on the direct path the session is gone, and the device
    // syncs the copy as it would after any lost notice.
    EXPECT_EQ(r.hasNotice(), !GetParam());
    // The same connection logs in again and retries: the message is there once.
    auto again = dev.login("alice", "phone", kj::heap<recording_receiver>(got));
    ASSERT_FALSE(again.hasError());
    auto retried = within(io, send(again.getSession(), 1, "bob", "in flight"));
    EXPECT_FALSE(retried.hasError()) << retried.getError().getMessage().cStr();
    EXPECT_EQ(retried.getSeq(), 1u); // the first one's
    EXPECT_EQ(stored(io, again.getSession(), 1), 1u);
  });
}

TEST_P(direct_calls, a_send_that_cannot_be_read_fails_alone_and_stores_nothing) {
  run([&](kj::AsyncIoContext& io) {
    online_phone alice(io, srv->address(), "alice");
    ASSERT_FALSE(alice.in.hasError());
    auto session = alice.session();
    // Session.send whose recipient field holds a struct where text belongs.
    auto bad = session.typelessRequest(wire::Session::_capnpPrivate::typeId, 0, nullptr);
    auto params = bad.initAs<wire::Session::SendParams>();
    params.setClientMsgId(7);
    params.setBody(kj::StringPtr("x").asBytes());
    bad.getAs<capnp::AnyStruct>().getPointerSection()[0].initAs<wire::Error>().setMessage("?");
    EXPECT_THROW(within(io, bad.send()), kj::Exception);
    // The connection and the session go on; the same id sends normally, once.
    auto ok = within(io, send(session, 7, "bob", "readable"));
    EXPECT_FALSE(ok.hasError()) << ok.getError().getMessage().cStr();
    ASSERT_TRUE(ok.hasNotice()); // its own copy rides on its answer, as always
    EXPECT_EQ(ok.getNotice().getEntries().size(), 1u);
    EXPECT_EQ(stored(io, session, 7), 1u);
  });
}

TEST_P(direct_calls, two_sessions_on_one_connection_each_get_their_own_answers_and_notifies) {
  run([&](kj::AsyncIoContext& io) {
    std::vector<std::string> to_alice, to_bob;
    raw_device dev(io, srv->address());
    auto alice = dev.login("alice", "phone", kj::heap<recording_receiver>(to_alice));
    auto bob = dev.login("bob", "phone", kj::heap<recording_receiver>(to_bob));
    ASSERT_FALSE(alice.hasError());
    ASSERT_FALSE(bob.hasError());

    auto a = within(io, send(alice.getSession(), 1, "bob", "from alice"));
    ASSERT_FALSE(a.hasError());
    ASSERT_TRUE(until(io, [&] { return !to_bob.empty(); }));
    auto b = within(io, send(bob.getSession(), 1, "alice", "from bob"));
    ASSERT_FALSE(b.hasError());
    ASSERT_TRUE(until(io, [&] { return !to_alice.empty(); }));
    // Each answer came back on its own session: the sender's own copy rides on it.
    ASSERT_TRUE(a.hasNotice());
    EXPECT_EQ(kj::StringPtr(a.getNotice().getEntries()[0].getTo()), "bob");
    ASSERT_TRUE(b.hasNotice());
    EXPECT_EQ(kj::StringPtr(b.getNotice().getEntries()[0].getTo()), "alice");
    // And each notify went to its own device's receiver.
    EXPECT_EQ(to_bob, std::vector<std::string>{"from alice"});
    EXPECT_EQ(to_alice, std::vector<std::string>{"from bob"});
  });
}

TEST_P(direct_calls, one_device_logging_in_twice_at_once_on_one_connection_still_chats) {
  run([&](kj::AsyncIoContext& io) {
    std::vector<std::string> first, second;
    raw_device dev(io, srv->address());
    auto l1 = dev.login_request("bob", "phone", kj::heap<recording_receiver>(first)).send();
    auto l2 = dev.login_request("bob", "phone", kj::heap<recording_receiver>(second)).send();
    auto r1 = within(io, kj::mv(l1));
    auto r2 = within(io, kj::mv(l2));
    ASSERT_FALSE(r1.hasError());
    ASSERT_FALSE(r2.hasError());
    // One session replaced the other; both answer their sends, and at least one stores it.
    auto s1 = within(io, send(r1.getSession(), 1, "alice", "one"));
    auto s2 = within(io, send(r2.getSession(), 2, "alice", "two"));
    EXPECT_TRUE(!s1.hasError() || !s2.hasError());
    // The device (whichever session is current) is notified of what alice sends.
    online_phone alice(io, srv->address(), "alice");
    ASSERT_FALSE(alice.in.hasError());
    ASSERT_FALSE(within(io, send(alice.session(), 1, "bob", "hello")).hasError());
    ASSERT_TRUE(until(io, [&] { return first.size() + second.size() > 0; }));
  });
}

TEST_P(direct_calls, a_device_that_refuses_a_notify_is_disconnected) {
  run([&](kj::AsyncIoContext& io) {
    raw_device bob(io, srv->address());
    auto in = bob.login("bob", "phone", kj::heap<refusing_receiver>());
    ASSERT_FALSE(in.hasError());
    bool gone = false;
    auto watch = bob.rpc.onDisconnect().then([&]() { gone = true; }).eagerlyEvaluate(nullptr);

    online_phone alice(io, srv->address(), "alice");
    ASSERT_FALSE(alice.in.hasError());
    ASSERT_FALSE(within(io, send(alice.session(), 1, "bob", "refused")).hasError());
    EXPECT_TRUE(until(io, [&] { return gone; }));
    // The reason says which path made the call: the gateway's own, or the RPC system's.
    auto line = std::string("closing the connection of bob/phone: notify not confirmed (")
                + (GetParam() ? "the device refused it: " : "remote exception: ");
    EXPECT_TRUE(until(io, [&] { return srv->proc().err().find(line) != std::string::npos; }))
      << srv->proc().err();
    // The sender's connection is not touched.
    EXPECT_FALSE(within(io, send(alice.session(), 2, "bob", "still here")).hasError());
  });
}

} // namespace
} // namespace missive::test

// The gateway's RPC network (protocol/src/rpc_network.hpp): one RPC system serving several
// client connections, each with its own bootstrap capability, over real sockets; a connection
// the server closes ends for its client alone. Its framing: messages that arrive together,
// messages bigger than the stream's buffer and of several segments come through whole, and a
// message over the size limit, bad framing or a stream cut mid-message end that connection
// alone. An interceptor sees every message first: what it takes (and answers itself) the RPC
// system never sees, and one it cannot read ends its connection alone.

#include "rpc_network.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <set>
#include <string>
#include <vector>

#include "missive.capnp.h"

namespace missive::protocol {
namespace {

/// A Gateway that records, for each call, the connection it was handed out for.
class recording_gateway final : public wire::Gateway::Server {
public:
  recording_gateway(uint64_t connection, std::vector<std::string>& log)
    : connection_(connection), log_(log) {}

protected:
  kj::Promise<void> createAccount(CreateAccountContext ctx) override {
    log_.push_back(std::to_string(connection_) + ":" + ctx.getParams().getUser().cStr());
    return kj::READY_NOW;
  }

private:
  uint64_t connection_;
  std::vector<std::string>& log_;
};

class recording_factory final : public capnp::BootstrapFactory<wire::ConnectionId> {
public:
  std::vector<uint64_t> bootstrapped;
  std::vector<std::string> calls;

  capnp::Capability::Client createFor(wire::ConnectionId::Reader id) override {
    bootstrapped.push_back(id.getId());
    return wire::Gateway::Client(kj::heap<recording_gateway>(id.getId(), calls));
  }
};

/// Takes createAccount calls for users named "direct-…" and answers them itself, fails on a
/// user named "unreadable", and counts the Returns the RPC system writes.
class answering_interceptor final : public rpc_interceptor {
public:
  answering_interceptor(rpc_connection& connection, std::vector<std::string>& taken,
                        int& returns)
    : connection_(connection), taken_(taken), returns_(returns) {}

  bool take(capnp::rpc::Message::Reader m) override {
    if (m.isFinish())
      return answered_.erase(m.getFinish().getQuestionId()) > 0;
    if (!m.isCall() || m.getCall().getInterfaceId() != wire::Gateway::_capnpPrivate::typeId)
      return false;
    auto call = m.getCall();
    std::string user =
      call.getParams().getContent().getAs<wire::Gateway::CreateAccountParams>().getUser().cStr();
    KJ_REQUIRE(user != "unreadable", "a message this interceptor cannot read");
    if (user.rfind("direct-", 0) != 0)
      return false;
    taken_.push_back(user);
    answered_.insert(call.getQuestionId());
    auto out = connection_.direct_message();
    auto ret = out->getBody().initAs<capnp::rpc::Message>().initReturn();
    ret.setAnswerId(call.getQuestionId());
    ret.initResults().getContent().initAs<wire::Gateway::CreateAccountResults>();
    out->send();
    return true;
  }

  void sending(capnp::rpc::Message::Reader m) override { returns_ += m.isReturn(); }

private:
  rpc_connection& connection_;
  std::vector<std::string>& taken_;
  int& returns_;
  std::set<uint32_t> answered_;
};

struct rpc_network_test : ::testing::Test {
  ~rpc_network_test() noexcept override {} // KJ's members may throw from their destructors

  /// The messages a client may send: 16 KiB.
  static capnp::ReaderOptions limits() {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = 2048;
    return o;
  }

  kj::AsyncIoContext io = kj::setupAsyncIo();
  recording_factory factory;
  rpc_network network{limits(), io.provider->getTimer(), kj::SECONDS};
  capnp::RpcSystem<wire::ConnectionId> rpc = capnp::makeRpcServer(network, factory);

  struct client {
    kj::Own<kj::AsyncIoStream> stream;
    kj::Own<capnp::TwoPartyClient> rpc;
    wire::Gateway::Client gateway = nullptr;
  };

  /// A socket pair: the server's end goes to the network (its connection in `*adopted`, if
  /// asked); the client's end.
  kj::Own<kj::AsyncIoStream> connect_raw(rpc_connection** adopted = nullptr) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    auto& c = network.adopt(
      io.lowLevelProvider->wrapSocketFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
    if (adopted != nullptr)
      *adopted = &c;
    return io.lowLevelProvider->wrapSocketFd(fds[1], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  }

  /// A connection whose client end gets a TwoPartyClient.
  client connect(rpc_connection** adopted = nullptr) {
    client c;
    c.stream = connect_raw(adopted);
    c.rpc = kj::heap<capnp::TwoPartyClient>(*c.stream);
    c.gateway = c.rpc->bootstrap().castAs<wire::Gateway>();
    return c;
  }

  /// The connection a recorded call came on.
  uint64_t connection_of(const std::string& user) {
    for (auto& call : factory.calls)
      if (call.substr(call.find(':') + 1) == user)
        return std::stoull(call.substr(0, call.find(':')));
    ADD_FAILURE() << "no call for " << user;
    return 0;
  }

  void create(client& c, const std::string& user) {
    auto req = c.gateway.createAccountRequest();
    req.setUser(user);
    req.setPassword("secret1");
    req.send().wait(io.waitScope);
  }

  /// True once the server closed the raw client's end (what it wrote before is read and
  /// dropped: an Abort, say); false if it stays open for 5 s.
  bool closed_by_server(kj::AsyncIoStream& raw) {
    return raw.readAllBytes()
      .then([](kj::Array<kj::byte>) { return true; }, [](kj::Exception&&) { return true; })
      .exclusiveJoin(
        io.provider->getTimer().afterDelay(5 * kj::SECONDS).then([]() { return false; }))
      .wait(io.waitScope);
  }
};

TEST_F(rpc_network_test, each_connection_gets_its_own_bootstrap_under_one_rpc_system) {
  auto a = connect();
  auto b = connect();
  create(a, "alice");
  create(b, "bob");
  create(a, "carol");
  ASSERT_EQ(factory.bootstrapped.size(), 2u);
  EXPECT_NE(factory.bootstrapped[0], factory.bootstrapped[1]);
  EXPECT_EQ(factory.calls.size(), 3u);
  EXPECT_NE(connection_of("alice"), connection_of("bob"));
  EXPECT_EQ(connection_of("alice"), connection_of("carol"));
}

TEST_F(rpc_network_test, a_connection_the_server_closes_ends_for_its_client_alone) {
  auto a = connect();
  auto b = connect();
  create(a, "alice");
  create(b, "bob");
  auto ida = connection_of("alice");
  KJ_IF_MAYBE(c, network.find(ida)) {
    c->close();
  } else {
    FAIL() << "connection " << ida << " not found";
  }
  // The client sees its connection end (bounded, so that a connection that stays open fails
  // the test instead of hanging it).
  auto ended = a.rpc->onDisconnect()
                 .then([]() { return true; })
                 .exclusiveJoin(io.provider->getTimer().afterDelay(5 * kj::SECONDS).then(
                   []() { return false; }));
  ASSERT_TRUE(ended.wait(io.waitScope));
  auto req = a.gateway.createAccountRequest();
  req.setUser("dave");
  req.setPassword("secret1");
  EXPECT_THROW(req.send().wait(io.waitScope), kj::Exception);
  create(b, "erin"); // the other connection goes on
  EXPECT_EQ(connection_of("erin"), connection_of("bob"));
  // The RPC system dropped the closed connection, and the socket with it.
  for (int i = 0; i < 10 && network.find(ida) != nullptr; ++i)
    io.waitScope.poll();
  EXPECT_TRUE(network.find(ida) == nullptr);
}

TEST_F(rpc_network_test, a_client_that_hangs_up_is_dropped) {
  auto a = connect();
  create(a, "alice");
  auto ida = connection_of("alice");
  ASSERT_TRUE(network.find(ida) != nullptr);
  a.gateway = nullptr;
  a.rpc = nullptr;
  a.stream = nullptr; // the client's socket closes
  for (int i = 0; i < 100 && network.find(ida) != nullptr; ++i)
    io.waitScope.poll();
  EXPECT_TRUE(network.find(ida) == nullptr);
}

TEST_F(rpc_network_test, calls_that_arrive_together_are_each_answered) {
  auto a = connect();
  auto answers = kj::heapArrayBuilder<kj::Promise<void>>(50);
  for (int i = 0; i < 50; ++i) { // written in one turn: they reach the server in few reads
    auto req = a.gateway.createAccountRequest();
    req.setUser("user" + std::to_string(i));
    req.setPassword("secret1");
    answers.add(req.send().ignoreResult());
  }
  kj::joinPromises(answers.finish()).wait(io.waitScope);
  ASSERT_EQ(factory.calls.size(), 50u);
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(factory.calls[i].substr(factory.calls[i].find(':') + 1), "user" + std::to_string(i));
}

TEST_F(rpc_network_test, a_message_bigger_than_the_read_buffer_in_several_segments_comes_whole) {
  auto a = connect();
  // 12 KiB: more than the stream's 8 KiB buffer, and more than the first segment of the
  // client's message (8 KiB), so a second segment holds it.
  std::string big(12 * 1024, 'x');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = char('a' + i % 26);
  create(a, big);
  create(a, "after");
  ASSERT_EQ(factory.calls.size(), 2u);
  EXPECT_EQ(factory.calls[0].substr(factory.calls[0].find(':') + 1), big);
  EXPECT_EQ(connection_of("after"), connection_of(big));
}

TEST_F(rpc_network_test, a_message_over_the_limit_ends_its_connection_alone) {
  auto a = connect();
  auto b = connect();
  create(a, "alice");
  std::string huge(40 * 1024, 'x'); // over the 16 KiB limit
  auto req = a.gateway.createAccountRequest();
  req.setUser(huge);
  req.setPassword("secret1");
  EXPECT_THROW(req.send().wait(io.waitScope), kj::Exception);
  EXPECT_EQ(factory.calls.size(), 1u);
  create(b, "bob");
  EXPECT_EQ(factory.calls.size(), 2u);
}

TEST_F(rpc_network_test, bad_framing_ends_its_connection_alone) {
  auto b = connect();
  // A segment count of 2^32 (the count less one is all ones), then 600 segments, then a first
  // segment that claims more than the limit: each is refused before anything is allocated.
  const uint32_t frames[][2] = {{0xffffffffu, 1}, {599u, 1}, {0u, 100000u}};
  for (auto& frame : frames) {
    auto raw = connect_raw();
    raw->write(frame, sizeof(frame)).wait(io.waitScope);
    EXPECT_TRUE(closed_by_server(*raw)) << frame[0] << " " << frame[1];
  }
  create(b, "bob"); // the other connection goes on
  EXPECT_EQ(factory.calls.size(), 1u);
}

TEST_F(rpc_network_test, a_stream_cut_mid_message_ends_its_connection) {
  auto raw = connect_raw();
  // One segment of 100 words announced, 2 words sent, then the client stops writing.
  const uint32_t frame[6] = {0u, 100u, 1u, 2u, 3u, 4u};
  raw->write(frame, sizeof(frame)).wait(io.waitScope);
  raw->shutdownWrite();
  EXPECT_TRUE(closed_by_server(*raw));
  auto b = connect();
  create(b, "bob");
  EXPECT_EQ(factory.calls.size(), 1u);
}

TEST_F(rpc_network_test, an_interceptor_answers_what_it_takes_and_the_rpc_system_the_rest) {
  std::vector<std::string> taken;
  int returns = 0;
  rpc_connection* adopted = nullptr;
  auto a = connect(&adopted);
  ASSERT_NE(adopted, nullptr);
  adopted->intercept(kj::heap<answering_interceptor>(*adopted, taken, returns));
  auto b = connect();
  for (auto user : {"alice", "direct-bob", "carol", "direct-dave", "erin"})
    create(a, user); // each answered, in turn, by one or the other
  EXPECT_EQ(taken, (std::vector<std::string>{"direct-bob", "direct-dave"}));
  EXPECT_EQ(factory.calls.size(), 3u); // the RPC system saw only the others
  EXPECT_EQ(returns, 3 + 1);           // its answers (and the bootstrap's), not the interceptor's
  // An interceptor that cannot read a message fails that connection alone.
  auto req = a.gateway.createAccountRequest();
  req.setUser("unreadable");
  EXPECT_THROW(req.send().wait(io.waitScope), kj::Exception);
  create(b, "frank");
  EXPECT_EQ(factory.calls.size(), 4u);
}

} // namespace
} // namespace missive::protocol

// missive-rpc-memory: how much heap Cap'n Proto's RPC itself takes per connection, with nothing
// of Missive on top: the floor under the server's memory per idle device (BENCHMARKS.md). Two
// ways to set connections up: the gateway's (`--shared`: one RPC system for all connections,
// over rpc_network) and Cap'n Proto's own (a TwoPartyVatNetwork and an RpcSystem each, what
// TwoPartyServer does).
//
//   missive-rpc-memory [--shared] [--connections N]   (needs 2 file descriptors per connection)
//
// Counts jemalloc's allocated bytes (stats.allocated), so allocator overhead is not included.

#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <capnp/rpc-twoparty.h>
#include <jemalloc/jemalloc.h>
#include <kj/async-io.h>

#include "missive.capnp.h"
#include "rpc_network.hpp"

namespace {

size_t allocated() {
  uint64_t epoch = 1;
  size_t size = sizeof(epoch);
  mallctl("epoch", &epoch, &size, &epoch, size); // refresh the statistics
  size_t bytes = 0;
  size = sizeof(bytes);
  mallctl("stats.allocated", &bytes, &size, nullptr, 0);
  return bytes;
}

/// A bootstrap capability that answers nothing: only the RPC machinery is measured.
class idle_gateway final : public missive::wire::Gateway::Server {};

class idle_factory final : public capnp::BootstrapFactory<missive::wire::ConnectionId> {
public:
  capnp::Capability::Client createFor(missive::wire::ConnectionId::Reader) override {
    return missive::wire::Gateway::Client(kj::heap<idle_gateway>());
  }
};

struct server_side {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

} // namespace

int main(int argc, char** argv) {
  int n = 4000;
  bool shared = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--shared") == 0) {
      shared = true;
    } else if (std::strcmp(argv[i], "--connections") == 0 && i + 1 < argc) {
      n = std::stoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: missive-rpc-memory [--shared] [--connections N]\n");
      return 2;
    }
  }
  auto io = kj::setupAsyncIo();
  // --shared: one network and RPC system for all connections (their own cost is not counted).
  idle_factory factory;
  kj::Own<missive::protocol::rpc_network> network;
  kj::Own<capnp::RpcSystem<missive::wire::ConnectionId>> shared_rpc;
  if (shared) {
    network = kj::heap<missive::protocol::rpc_network>(capnp::ReaderOptions(),
                                                        io.provider->getTimer(), kj::SECONDS);
    shared_rpc = kj::heap(capnp::makeRpcServer(*network, factory));
  }
  std::vector<server_side> servers;
  std::vector<kj::Own<kj::AsyncIoStream>> peers;
  servers.reserve(n);
  peers.reserve(n);
  auto settle = [&] {
    for (int i = 0; i < 100; ++i)
      io.waitScope.poll();
  };

  auto before = allocated();
  for (int i = 0; i < n; ++i) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      std::perror("socketpair (raise ulimit -n?)");
      return 1;
    }
    auto stream =
      io.lowLevelProvider->wrapSocketFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    peers.push_back(
      io.lowLevelProvider->wrapSocketFd(fds[1], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
    if (shared) {
      network->adopt(kj::mv(stream));
      continue;
    }
    server_side s;
    s.stream = kj::mv(stream);
    s.network = kj::heap<capnp::TwoPartyVatNetwork>(*s.stream, capnp::rpc::twoparty::Side::SERVER);
    s.rpc = kj::heap(capnp::makeRpcServer(*s.network, kj::heap<idle_gateway>()));
    servers.push_back(kj::mv(s));
  }
  auto constructed = allocated();
  settle(); // each RPC system accepts its connection and starts reading
  auto idle = allocated();

  std::vector<kj::Own<capnp::TwoPartyClient>> clients;
  clients.reserve(n);
  std::vector<missive::wire::Gateway::Client> caps;
  caps.reserve(n);
  for (int i = 0; i < n; ++i) {
    clients.push_back(kj::heap<capnp::TwoPartyClient>(*peers[i]));
    caps.push_back(clients.back()->bootstrap().castAs<missive::wire::Gateway>());
  }
  settle();
  auto bootstrapped = allocated();

  std::printf("%d connections, %s, heap bytes per connection (jemalloc stats.allocated):\n", n,
              shared ? "one RPC system for all (the gateway's way)"
                     : "a TwoPartyVatNetwork and RpcSystem each");
  std::printf("  server side, constructed: %zu\n", (constructed - before) / n);
  std::printf("  server side, accepted and reading (+ the connection's RPC state): %zu\n",
              (idle - before) / n);
  std::printf("  both sides once a client holds the bootstrap capability: %zu more\n",
              (bootstrapped - idle) / n);
  return 0;
}

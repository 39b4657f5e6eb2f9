// missive-rpc-memory: how much heap Cap'n Proto's RPC itself takes per connection, the way the
// gateway sets connections up (one TwoPartyVatNetwork and RPC system each), with nothing of
// Missive on top: the floor under the server's memory per idle device (BENCHMARKS.md).
//
//   missive-rpc-memory [--connections N]     (needs 2 file descriptors per connection)
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

struct server_side {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

} // namespace

int main(int argc, char** argv) {
  int n = 4000;
  if (argc == 3 && std::strcmp(argv[1], "--connections") == 0)
    n = std::stoi(argv[2]);
  else if (argc != 1) {
    std::fprintf(stderr, "usage: missive-rpc-memory [--connections N]\n");
    return 2;
  }
  auto io = kj::setupAsyncIo();
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
    server_side s;
    s.stream = io.lowLevelProvider->wrapSocketFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    peers.push_back(
      io.lowLevelProvider->wrapSocketFd(fds[1], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
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

  std::printf("%d connections, heap bytes per connection (jemalloc stats.allocated):\n", n);
  std::printf("  server side, constructed (TwoPartyVatNetwork + RpcSystem): %zu\n",
              (constructed - before) / n);
  std::printf("  server side, accepted and reading (+ the connection's RPC state): %zu\n",
              (idle - before) / n);
  std::printf("  both sides once a client holds the bootstrap capability: %zu more\n",
              (bootstrapped - idle) / n);
  return 0;
}

// missive-fault-proxy: a TCP proxy that injects the faults of weak networks, for tests.
//
//   missive-fault-proxy --upstream HOST:PORT [--listen HOST:PORT] [--seed N]
//                       [--delay-ms N] [--drop P] [--swallow P] [--blackhole P]
//
// Every chunk of bytes it forwards rolls the dice (P are probabilities per chunk):
//   --delay-ms N   hold each chunk 0..N ms (order within a direction is kept)
//   --drop P       client->server: close both sides instead of forwarding (request lost)
//   --swallow P    server->client: close both sides instead of forwarding (the server did
//                  the work, the answer is lost)
//   --blackhole P  stop forwarding in both directions but keep both sockets open (a
//                  half-dead connection: only timeouts notice)
// SIGUSR2 blackholes every connection open at that moment (later ones are served normally),
// for tests that need a half-dead connection at a chosen time.
// Prints "fault-proxy listening on HOST:PORT" once ready. Runs until killed.

#include <iostream>
#include <random>
#include <string>

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

namespace {

struct faults {
  int delay_ms = 0;
  double drop = 0, swallow = 0, blackhole = 0;
};

class proxy final : private kj::TaskSet::ErrorHandler {
public:
  proxy(kj::AsyncIoContext& io, kj::Own<kj::NetworkAddress> upstream, faults f, uint64_t seed)
    : io_(io), upstream_(kj::mv(upstream)), faults_(f), rng_(seed), tasks_(*this) {}

  /// Blackholes the connections open now.
  void silence_existing() { silenced_below_ = next_generation_; }

  kj::Promise<void> accept_loop(kj::ConnectionReceiver& listener) {
    return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream>&& client) {
      tasks_.add(serve(kj::mv(client)));
      return accept_loop(listener);
    });
  }

private:
  struct link {
    kj::Own<kj::AsyncIoStream> client;
    kj::Own<kj::AsyncIoStream> server;
    uint64_t generation;
    bool blackholed = false;
  };

  kj::Promise<void> serve(kj::Own<kj::AsyncIoStream> client) {
    return upstream_->connect().then(
      [this, client = kj::mv(client)](kj::Own<kj::AsyncIoStream>&& server) mutable {
        auto l = kj::heap<link>(link{kj::mv(client), kj::mv(server), next_generation_++});
        auto& ref = *l;
        // When either direction ends (EOF, error, an injected close) both sockets close.
        return pump(ref, *ref.client, *ref.server, true)
          .exclusiveJoin(pump(ref, *ref.server, *ref.client, false))
          .attach(kj::mv(l));
      });
  }

  bool roll(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  kj::Promise<void> pump(link& l, kj::AsyncIoStream& from, kj::AsyncIoStream& to, bool upward) {
    auto buf = kj::heapArray<kj::byte>(65536);
    auto ptr = buf.begin();
    return from.tryRead(ptr, 1, buf.size())
      .then([this, &l, &from, &to, upward, buf = kj::mv(buf)](size_t n) mutable
            -> kj::Promise<void> {
        if (l.generation < silenced_below_)
          l.blackholed = true;
        if (n == 0 || l.blackholed)
          return l.blackholed ? kj::Promise<void>(kj::NEVER_DONE) : kj::READY_NOW;
        if (roll(faults_.blackhole)) {
          l.blackholed = true;
          return kj::NEVER_DONE;
        }
        if (upward ? roll(faults_.drop) : roll(faults_.swallow))
          return kj::READY_NOW; // close both sides, this chunk never arrives
        int delay = faults_.delay_ms > 0
                      ? std::uniform_int_distribution<int>(0, faults_.delay_ms)(rng_)
                      : 0;
        auto forward = [this, &l, &from, &to, upward, n, buf = kj::mv(buf)]() mutable {
          if (l.generation < silenced_below_)
            l.blackholed = true;
          if (l.blackholed)
            return kj::Promise<void>(kj::NEVER_DONE);
          auto data = buf.begin();
          return to.write(data, n).attach(kj::mv(buf)).then(
            [this, &l, &from, &to, upward]() { return pump(l, from, to, upward); });
        };
        if (delay == 0)
          return forward();
        return io_.provider->getTimer()
          .afterDelay(delay * kj::MILLISECONDS)
          .then(kj::mv(forward));
      });
  }

  void taskFailed(kj::Exception&&) override {} // a broken connection is the point

  kj::AsyncIoContext& io_;
  kj::Own<kj::NetworkAddress> upstream_;
  faults faults_;
  std::mt19937_64 rng_;
  uint64_t next_generation_ = 0;
  uint64_t silenced_below_ = 0;
  kj::TaskSet tasks_;
};

kj::Promise<void> on_sigusr2(kj::UnixEventPort& port, proxy& p) {
  return port.onSignal(SIGUSR2).then([&port, &p](siginfo_t) {
    p.silence_existing();
    return on_sigusr2(port, p);
  });
}

int usage(const char* msg) {
  std::cerr << "missive-fault-proxy: " << msg
            << "\nusage: missive-fault-proxy --upstream HOST:PORT [--listen HOST:PORT] [--seed N]"
               " [--delay-ms N] [--drop P] [--swallow P] [--blackhole P]\n";
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0", upstream;
  uint64_t seed = 1;
  faults f;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc)
      return usage(("missing value for " + arg).c_str());
    std::string v = argv[++i];
    try {
      if (arg == "--listen") listen = v;
      else if (arg == "--upstream") upstream = v;
      else if (arg == "--seed") seed = std::stoull(v);
      else if (arg == "--delay-ms") f.delay_ms = std::stoi(v);
      else if (arg == "--drop") f.drop = std::stod(v);
      else if (arg == "--swallow") f.swallow = std::stod(v);
      else if (arg == "--blackhole") f.blackhole = std::stod(v);
      else return usage(("unknown option " + arg).c_str());
    } catch (...) {
      return usage(("bad value for " + arg).c_str());
    }
  }
  if (upstream.empty())
    return usage("--upstream is required");
  kj::UnixEventPort::captureSignal(SIGUSR2);
  auto io = kj::setupAsyncIo();
  auto& net = io.provider->getNetwork();
  auto up = net.parseAddress(upstream).wait(io.waitScope);
  auto addr = net.parseAddress(listen).wait(io.waitScope);
  auto listener = addr->listen();
  proxy p(io, kj::mv(up), f, seed);
  std::cout << "fault-proxy listening on " << listen.substr(0, listen.rfind(':')) << ":"
            << listener->getPort() << std::endl;
  p.accept_loop(*listener).exclusiveJoin(on_sigusr2(io.unixEventPort, p)).wait(io.waitScope);
  return 0;
}

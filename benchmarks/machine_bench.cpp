// How fast is this machine right now? Not Missive's code: the two costs every message pays
// that the machine sets — a loopback TCP round trip between two threads (what each RPC hop
// costs in wake-ups) and a durable write (what a synced batch costs: an fdatasync after a small
// append, and the write-ahead log's own O_DSYNC page, back to back and paced) — and two that
// tell one host from another: a null system call and a sort.
// On a shared VM both move by tens of percent from hour to hour, and the end-to-end figures
// with them: run this next to any `missive-load` measurement and record both.
//
//   build/benchmarks/missive_machine_bench

#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

/// Reads exactly `n` bytes; false at end of stream or on error.
bool read_full(int fd, char* buf, size_t n) {
  while (n > 0) {
    auto got = ::read(fd, buf, n);
    if (got <= 0)
      return false;
    buf += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/// 64 bytes to a thread that echoes them back, over loopback TCP, one at a time.
void BM_loopback_round_trip(benchmark::State& state) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0; // any free port
  socklen_t len = sizeof(addr);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0
      || ::listen(listener, 1) != 0
      || ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    state.SkipWithError("cannot listen on loopback");
    return;
  }
  std::thread echo([addr]() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
      std::abort();
    no_delay(fd);
    char buf[64];
    while (read_full(fd, buf, sizeof(buf)))
      if (::write(fd, buf, sizeof(buf)) != static_cast<ssize_t>(sizeof(buf)))
        break;
    ::close(fd);
  });
  int fd = ::accept(listener, nullptr, nullptr);
  no_delay(fd);
  char buf[64] = {};
  for (auto _ : state) {
    if (::write(fd, buf, sizeof(buf)) != static_cast<ssize_t>(sizeof(buf))
        || !read_full(fd, buf, sizeof(buf))) {
      state.SkipWithError("loopback connection failed");
      break;
    }
  }
  ::close(fd); // the echo thread sees the end of the stream and returns
  echo.join();
  ::close(listener);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_loopback_round_trip)->UseRealTime();

/// Appends 1 KiB to a file in the working directory and makes it durable, as the write-ahead
/// log does for each synced batch.
void BM_append_fdatasync(benchmark::State& state) {
  std::string path = "missive-machine-bench." + std::to_string(::getpid());
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    state.SkipWithError("cannot create a file in the working directory");
    return;
  }
  char buf[1024] = {};
  for (auto _ : state) {
    if (::write(fd, buf, sizeof(buf)) != static_cast<ssize_t>(sizeof(buf))
        || ::fdatasync(fd) != 0) {
      state.SkipWithError("write or fdatasync failed");
      break;
    }
  }
  ::close(fd);
  ::unlink(path.c_str());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_append_fdatasync)->UseRealTime();

/// Rewrites one 4 KiB page in place with O_DIRECT | O_DSYNC, as the write-ahead log commits a
/// synced batch (storage/src/direct_log.cpp), once every `range(0)` µs: 0 back to back, as under
/// load, and 1000 as for a server taking a message every millisecond. Reports the percentiles:
/// a disk slower or more variable when idle between writes sets the latency of a lightly
/// loaded server (BENCHMARKS.md, "Session 14"). Skipped where O_DIRECT is not supported.
/// `BM_dsync_write_tail` runs 10,000 such writes, one every 500 µs (about 7 s): every message
/// waits for one, so the rare slow write (the disk's p99.9 and max, and how many took over 1 and
/// 5 ms) is the floor under a durable server's tail at any rate (BENCHMARKS.md, "Session 22").
void BM_dsync_write(benchmark::State& state) {
  std::string path = "missive-machine-bench-dsync." + std::to_string(::getpid());
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0 || ::fsync(fd) != 0) {
    state.SkipWithError("cannot create a file in the working directory");
    return;
  }
  ::close(fd);
  fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_DSYNC | O_CLOEXEC);
  void* page = nullptr;
  if (fd < 0 || ::posix_memalign(&page, 4096, 4096) != 0) {
    state.SkipWithError("O_DIRECT is not supported here");
    ::unlink(path.c_str());
    return;
  }
  std::fill_n(static_cast<char*>(page), 4096, 'x');
  auto gap = std::chrono::microseconds(state.range(0));
  std::vector<double> us;
  for (auto _ : state) {
    if (gap.count() > 0)
      std::this_thread::sleep_for(gap);
    auto t0 = std::chrono::steady_clock::now();
    if (::pwrite(fd, page, 4096, 0) != 4096) {
      state.SkipWithError("pwrite failed");
      break;
    }
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
    state.SetIterationTime(took.count());
    us.push_back(took.count() * 1e6);
  }
  ::close(fd);
  ::unlink(path.c_str());
  std::free(page);
  if (us.empty())
    return;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, size_t(q * double(us.size())))]; };
  state.counters["p50_us"] = at(0.5);
  state.counters["p90_us"] = at(0.9);
  state.counters["p99_us"] = at(0.99);
  state.counters["p999_us"] = at(0.999);
  state.counters["max_us"] = us.back();
  auto over = [&](double limit) {
    return double(us.end() - std::upper_bound(us.begin(), us.end(), limit));
  };
  state.counters["over_1ms"] = over(1000);
  state.counters["over_5ms"] = over(5000);
}
BENCHMARK(BM_dsync_write)->Arg(0)->Arg(1000)->Iterations(1000)->UseManualTime();
BENCHMARK(BM_dsync_write)->Name("BM_dsync_write_tail")->Arg(500)->Iterations(10000)
  ->UseManualTime();

/// Enters and leaves the kernel once (getppid, which does nothing): what the host's kernel
/// entry costs, mitigations included. Every message pays it a few dozen times (reads, writes,
/// futex wake-ups), so a host where it doubles is a slower host for Missive.
void BM_null_syscall(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(::syscall(SYS_getppid));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_null_syscall);

/// Sorts 64 Ki pseudo-random integers: the host's speed at plain user-space work, to compare
/// one host with another.
void BM_sort_64k(benchmark::State& state) {
  std::vector<uint32_t> input(64 * 1024);
  std::mt19937 gen{1};
  for (auto& x : input)
    x = gen();
  for (auto _ : state) {
    auto v = input;
    std::sort(v.begin(), v.end());
    benchmark::DoNotOptimize(v.data());
  }
}
BENCHMARK(BM_sort_64k)->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();

// The actor layer without the network: how many sends per second does the user-actor send
// path sustain (sender actor -> recipient actor -> persistence -> both answered), and how fast
// is a 10,000-entry backlog read with sync? Real LevelDB files in a temp dir.
//
//   build/benchmarks/missive_actors_bench

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"
#include "missive/storage/store.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace missive;

struct bench_node {
  test::temp_dir dir;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  node n;

  explicit bench_node(bool sync, settings s = {}) {
    add_missive_types(cfg);
    cfg.set("scheduler.max-threads", 2);
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    storage::options opts;
    opts.path = dir.path.string();
    opts.sync = sync;
    std::unique_ptr<storage::store> db;
    if (!storage::store::open(opts, &db).ok())
      std::abort();
    s.password_hash = hash_cost::min;
    n = start_node(*sys, s, std::shared_ptr<storage::store>(std::move(db)));
    caf::scoped_actor self{*sys};
    for (auto* user : {"alice", "bob"})
      self->request(n.accounts, caf::infinite, register_atom::value, std::string{user},
                    std::string{"secret1"}, hangup_flag_ptr{})
        .receive([](ok_atom) {}, [](caf::error&) { std::abort(); });
  }

  user_actor user(const std::string& name) {
    caf::scoped_actor self{*sys};
    user_actor out;
    self->request(n.directory, caf::infinite, lookup_atom::value, name)
      .receive([&](user_actor& u) { out = u; }, [](caf::error&) { std::abort(); });
    return out;
  }

  ~bench_node() {
    stop_node(n);
    sys->await_all_actors_done();
  }
};

/// range(0): sends in flight; range(1): 1 = fsync'd batches, 0 = async.
void BM_user_send_path(benchmark::State& state) {
  bench_node b(state.range(1) == 1);
  auto alice = b.user("alice");
  auto window = static_cast<int>(state.range(0));
  caf::scoped_actor self{*b.sys};
  uint64_t id = 0;
  for (auto _ : state) {
    for (int i = 0; i < window; ++i)
      self->send(alice, send_atom::value, outgoing{++id, "bob", std::string(64, 'x')});
    for (int i = 0; i < window; ++i)
      self->receive([](send_result&) {}, [&](caf::error&) { state.SkipWithError("send failed"); });
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * window);
}
BENCHMARK(BM_user_send_path)
  ->ArgNames({"window", "sync"})
  ->Args({1, 0})
  ->Args({100, 0})
  ->Args({1, 1})
  ->Args({100, 1})
  ->Unit(benchmark::kMicrosecond)
  ->UseRealTime();

/// range(0) users each send one message to another at random, all at once, then wait for
/// every answer; range(1): 1 = fsync'd batches, 0 = async. Unlike BM_user_send_path, the user
/// actors' state is spread over many users (cache misses, as in a server under load), and a
/// sender meets most recipients for the first time.
void BM_user_send_path_many(benchmark::State& state) {
  bench_node b(state.range(1) == 1);
  auto users = static_cast<int>(state.range(0));
  std::vector<std::string> names;
  std::vector<user_actor> actors;
  caf::scoped_actor self{*b.sys};
  for (int i = 0; i < users; ++i) {
    names.push_back("u" + std::to_string(i));
    self->request(b.n.accounts, caf::infinite, register_atom::value, names.back(),
                  std::string{"secret1"}, hangup_flag_ptr{})
      .receive([](ok_atom) {}, [](caf::error&) { std::abort(); });
    actors.push_back(b.user(names.back()));
  }
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> other(1, users - 1);
  uint64_t id = 0;
  for (auto _ : state) {
    for (int i = 0; i < users; ++i)
      self->send(actors[i], send_atom::value,
                 outgoing{++id, names[(i + other(rng)) % users], std::string(64, 'x')});
    for (int i = 0; i < users; ++i)
      self->receive([](send_result&) {}, [&](caf::error&) { state.SkipWithError("send failed"); });
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * users);
}
BENCHMARK(BM_user_send_path_many)
  ->ArgNames({"users", "sync"})
  ->Args({1000, 0})
  ->Args({1000, 1})
  ->Unit(benchmark::kMillisecond)
  ->UseRealTime();

/// Reads a 10,000-entry backlog in pages of 1,000 from storage (the cache holds the newest 256).
void BM_sync_backlog(benchmark::State& state) {
  settings s;
  s.sync_page_max = 1000;
  bench_node b(false, s);
  auto alice = b.user("alice");
  auto bob = b.user("bob");
  caf::scoped_actor self{*b.sys};
  constexpr int backlog = 10000;
  for (int i = 0; i < backlog; i += 100) {
    for (int j = 0; j < 100; ++j)
      self->send(alice, send_atom::value, outgoing{uint64_t(i + j + 1), "bob", std::string(64, 'x')});
    for (int j = 0; j < 100; ++j)
      self->receive([](send_result&) {}, [](caf::error&) { std::abort(); });
  }
  for (auto _ : state) {
    uint32_t cursor = 0;
    size_t got = 0;
    for (;;) {
      sync_result page;
      self->request(bob, caf::infinite, sync_atom::value, 0u, cursor, 1000u)
        .receive([&](sync_result& r) { page = std::move(r); },
                 [&](caf::error&) { state.SkipWithError("sync failed"); });
      if (page.entries.empty())
        break;
      got += page.entries.size();
      cursor = page.entries.back().seq;
      if (cursor >= page.max_seq)
        break;
    }
    if (got != backlog)
      state.SkipWithError("backlog incomplete");
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * backlog);
}
BENCHMARK(BM_sync_backlog)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();

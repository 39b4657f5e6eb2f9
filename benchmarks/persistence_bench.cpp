// What does durability cost per appended entry? LevelDB synced batches of N entries against
// one synced put per entry, on real files in a temp dir, and the same through the persistence
// actor's group commit with many writers in flight.
//
//   make bench          (or build/benchmarks/missive_persistence_bench)

#include <chrono>
#include <random>

#include <benchmark/benchmark.h>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"
#include "missive/storage/store.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace missive;

std::unique_ptr<storage::store> open_store(const test::temp_dir& dir, bool sync) {
  std::unique_ptr<storage::store> db;
  storage::options opts;
  opts.path = dir.path.string();
  opts.sync = sync;
  if (!storage::store::open(opts, &db).ok())
    std::abort();
  return db;
}

storage::entry make_entry(uint32_t seq, size_t body_bytes = 64) {
  return storage::entry{seq, "alice", "bob", seq, 1700000000000, std::string(body_bytes, 'x')};
}

/// range(0): entries per batch; range(1): 1 = fsync each batch, 0 = async; range(2): body
/// bytes (64; 60,000 makes batches of megabytes, as large messages under load do).
void BM_store_append(benchmark::State& state) {
  test::temp_dir dir;
  auto db = open_store(dir, state.range(1) == 1);
  auto per_batch = static_cast<uint32_t>(state.range(0));
  auto body = static_cast<size_t>(state.range(2));
  uint32_t seq = 0;
  storage::write_batch batch;
  for (auto _ : state) {
    batch.clear();
    for (uint32_t i = 0; i < per_batch; ++i)
      batch.append("bob", "alice", make_entry(++seq, body));
    if (!db->write(batch).ok())
      state.SkipWithError("write failed");
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * per_batch);
  state.counters["us_per_entry"] = benchmark::Counter(
    double(state.iterations()) * per_batch, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_store_append)
  ->ArgNames({"batch", "sync", "body"})
  ->Args({1, 1, 64})
  ->Args({10, 1, 64})
  ->Args({100, 1, 64})
  ->Args({1, 0, 64})
  ->Args({100, 0, 64})
  ->Args({100, 1, 60000})
  ->Unit(benchmark::kMicrosecond)
  ->UseRealTime();

/// range(0) writers each keep one append request in flight against the persistence actor:
/// group commit puts whatever arrived during an fsync into the next batch.
void BM_persistence_group_commit(benchmark::State& state) {
  test::temp_dir dir;
  caf::actor_system_config cfg;
  add_missive_types(cfg);
  cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{cfg};
  auto persistence = spawn_persistence(
    sys, std::shared_ptr<storage::store>(open_store(dir, true)), true);
  auto writers = static_cast<int>(state.range(0));
  uint32_t seq = 0;
  int64_t appended = 0;
  for (auto _ : state) {
    // One round: every writer appends one entry; wait for all to be durable.
    caf::scoped_actor self{sys};
    for (int w = 0; w < writers; ++w)
      self->send(persistence, append_atom::value,
                 std::vector<mailbox_append>{{"bob", "alice", make_entry(++seq), false}});
    for (int w = 0; w < writers; ++w)
      self->receive([](dedup_hit&) {}, [&](caf::error&) { state.SkipWithError("append failed"); });
    appended += writers;
  }
  state.SetItemsProcessed(appended);
  state.counters["us_per_entry"] = benchmark::Counter(
    double(appended), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  caf::anon_send(persistence, stop_atom::value);
}
BENCHMARK(BM_persistence_group_commit)
  ->ArgName("writers")
  ->Arg(1)
  ->Arg(10)
  ->Arg(100)
  ->Unit(benchmark::kMicrosecond)
  ->UseRealTime();

/// A store whose dedup records span several levels: 1000 mailboxes x 300 keyed appends,
/// written in random order through a 1 MiB memtable. Built once, shared by the lookups below.
storage::store& leveled_store() {
  static test::temp_dir dir;
  static std::unique_ptr<storage::store> db = [] {
    std::unique_ptr<storage::store> x;
    storage::options opts;
    opts.path = dir.path.string();
    opts.sync = false;
    opts.write_buffer_bytes = 1u << 20;
    if (!storage::store::open(opts, &x).ok())
      std::abort();
    std::mt19937 gen{42};
    std::vector<uint32_t> seqs(1000);
    storage::write_batch batch;
    for (int b = 0; b < 300; ++b) {
      batch.clear();
      for (int i = 0; i < 1000; ++i) {
        auto m = gen() % seqs.size();
        auto user = "user" + std::to_string(m);
        batch.append(user, user, storage::entry{++seqs[m], user, "peer", seqs[m],
                                                1700000000000, std::string(64, 'x')});
      }
      if (!x->write(batch).ok())
        std::abort();
    }
    return x;
  }();
  return *db;
}

/// The dedup lookup of a new send (a miss) in leveled_store(), both ways in turn, so that
/// both meet the same tables (LevelDB compacts meanwhile: `Get`s charge seeks): `get_us` by
/// `get_dedup` (a `Get`: bloom filters spare it most reads), `probe_us` by `probe_dedup` (an
/// iterator positioned in every level-0 table and level, which charges no seek).
void BM_dedup_miss(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  auto& db = leveled_store();
  std::mt19937 gen{7};
  uint64_t id = uint64_t{1} << 40; // past every stored client msg id
  clock::duration get{}, probe{};
  for (auto _ : state) {
    for (int way = 0; way < 2; ++way) {
      auto user = "user" + std::to_string(gen() % 1000);
      storage::dedup_record rec;
      auto start = clock::now();
      auto s = way == 0 ? db.get_dedup(user, user, ++id, &rec)
                        : db.probe_dedup(user, user, ++id, &rec);
      (way == 0 ? get : probe) += clock::now() - start;
      if (!s.is_not_found())
        state.SkipWithError("a new key was found");
    }
  }
  auto us = [&](clock::duration d) {
    return std::chrono::duration<double, std::micro>(d).count() / double(state.iterations());
  };
  state.counters["get_us"] = us(get);
  state.counters["probe_us"] = us(probe);
}
BENCHMARK(BM_dedup_miss)->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();

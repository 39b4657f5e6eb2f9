// What does durability cost per appended entry? LevelDB synced batches of N entries against
// one synced put per entry, on real files in a temp dir, and the same through the persistence
// actor's group commit with many writers in flight.
//
//   make bench          (or build/benchmarks/missive_persistence_bench)

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

storage::entry make_entry(uint32_t seq) {
  return storage::entry{seq, "alice", "bob", seq, 1700000000000, std::string(64, 'x')};
}

/// range(0): entries per batch; range(1): 1 = fsync each batch, 0 = async.
void BM_store_append(benchmark::State& state) {
  test::temp_dir dir;
  auto db = open_store(dir, state.range(1) == 1);
  auto per_batch = static_cast<uint32_t>(state.range(0));
  uint32_t seq = 0;
  storage::write_batch batch;
  for (auto _ : state) {
    batch.clear();
    for (uint32_t i = 0; i < per_batch; ++i)
      batch.append("bob", "alice", make_entry(++seq));
    if (!db->write(batch).ok())
      state.SkipWithError("write failed");
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * per_batch);
  state.counters["us_per_entry"] = benchmark::Counter(
    double(state.iterations()) * per_batch, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_store_append)
  ->ArgNames({"batch", "sync"})
  ->Args({1, 1})
  ->Args({10, 1})
  ->Args({100, 1})
  ->Args({1, 0})
  ->Args({100, 0})
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

} // namespace

BENCHMARK_MAIN();

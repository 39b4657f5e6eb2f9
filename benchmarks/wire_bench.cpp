// What does Cap'n Proto cost per entry on the wire? Encoding an entry into a message and
// framing it, and reading it back, as the gateway and the clients do for every push and sync.
//
//   build/benchmarks/missive_wire_bench

#include <benchmark/benchmark.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include "convert.hpp"

namespace {

using namespace missive;

storage::entry sample(size_t body) {
  return storage::entry{42, "alice", "bob", 0x1234567890ULL, 1700000000000, std::string(body, 'x')};
}

void BM_entry_encode(benchmark::State& state) {
  auto e = sample(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    capnp::MallocMessageBuilder builder;
    protocol::write_entry(builder.initRoot<wire::Entry>(), e);
    auto words = capnp::messageToFlatArray(builder);
    benchmark::DoNotOptimize(words.begin());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_entry_encode)->ArgName("body")->Arg(64)->Arg(1024);

void BM_entry_decode(benchmark::State& state) {
  capnp::MallocMessageBuilder builder;
  protocol::write_entry(builder.initRoot<wire::Entry>(),
                        sample(static_cast<size_t>(state.range(0))));
  auto words = capnp::messageToFlatArray(builder);
  for (auto _ : state) {
    capnp::FlatArrayMessageReader reader(words);
    auto e = protocol::read_entry(reader.getRoot<wire::Entry>());
    benchmark::DoNotOptimize(e.body.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_entry_decode)->ArgName("body")->Arg(64)->Arg(1024);

} // namespace

BENCHMARK_MAIN();

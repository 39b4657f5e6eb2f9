// missive-fill: fills a stopped server's database with synthetic mailbox entries, for volume
// measurements (start-up time and catch-up with millions of stored entries).
//
//   build/benchmarks/missive-fill --data DIR --users N --entries-per-user M
//
// Writes entries (and their dedup records) for users fill0..fill{N-1} straight through the
// storage layer, in batches, without fsync. The users get a mailbox but no account: they exist
// only to make the database big. Bounded: it writes exactly N*M entries and stops.

#include <chrono>
#include <iostream>
#include <string>

#include "missive/storage/store.hpp"

int main(int argc, char** argv) {
  std::string data;
  uint64_t users = 1000, per_user = 10000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--data") data = v;
    else if (k == "--users") users = std::stoull(v);
    else if (k == "--entries-per-user") per_user = std::stoull(v);
    else {
      std::cerr << "missive-fill: unknown option " << k << "\n";
      return 2;
    }
  }
  if (data.empty()) {
    std::cerr << "usage: missive-fill --data DIR [--users N] [--entries-per-user M]\n";
    return 2;
  }
  using namespace missive::storage;
  std::unique_ptr<store> db;
  options opts;
  opts.path = data;
  opts.sync = false;
  opts.background_duty_percent = 100; // a bulk load: nobody waits for a write meanwhile
  if (auto s = store::open(opts, &db); !s.ok()) {
    std::cerr << "missive-fill: " << s.to_string() << "\n";
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  write_batch batch;
  uint64_t written = 0;
  std::string body(64, 'x');
  for (uint64_t u = 0; u < users; ++u) {
    auto user = "fill" + std::to_string(u);
    batch.put_meta(user, mailbox_meta{1, 0});
    for (uint64_t seq = 1; seq <= per_user; ++seq) {
      batch.append(user, "filler", entry{static_cast<uint32_t>(seq), "filler", user, seq,
                                         1700000000000, body});
      if (batch.count() >= 1000) {
        if (auto s = db->write(batch); !s.ok()) {
          std::cerr << "missive-fill: " << s.to_string() << "\n";
          return 1;
        }
        batch.clear();
      }
      ++written;
    }
  }
  if (auto s = db->write(batch); !s.ok()) {
    std::cerr << "missive-fill: " << s.to_string() << "\n";
    return 1;
  }
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "wrote " << written << " entries for " << users << " users in " << secs << " s\n";
  return 0;
}

// missive-chaos: weak networks and crashes under load, then an independent check.
//
// Starts the real missive-server and a fault-injecting proxy in front of it; simulated users
// with several devices each send through the proxy (dropped requests, lost answers, half-dead
// connections, delays) while the server is killed with SIGKILL and restarted at random moments.
// The devices are the resilient client of missive-cli (protocol/device.hpp). When every send is
// acknowledged, a checker reads every mailbox back over a direct connection and verifies
// DESIGN.md §3: every acknowledged send is present exactly once in the sender's and the
// recipient's mailbox; no (origin, clientMsgId) appears twice; seqs strictly increase; no seq
// seen before a crash names a different entry later; every device reaches maxSeq.
//
// Prints `acked N, lost 0, duplicated 0, reordered 0, seq reused 0, kills K` and exits non-zero
// on any anomaly. Every loop is bounded in count and time; traffic stays on 127.0.0.1.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "missive/protocol/client.hpp"
#include "missive/protocol/device.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace missive;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string server_bin, proxy_bin;
  int users = 4;
  int devices = 2;
  int messages = 200;
  int kills = 3;
  uint64_t seed = 0;
  double max_seconds = 100;
  double drop = 0.01, swallow = 0.01, blackhole = 0.002;
  int delay_ms = 3;
};

/// A started child process and the address it printed.
struct service {
  std::unique_ptr<test::process> proc;
  std::string address;
};

service start(std::vector<std::string> argv, const std::filesystem::path& dir,
              const std::string& tag, const std::string& needle) {
  service s;
  s.proc = std::make_unique<test::process>(std::move(argv), dir, tag);
  auto out = s.proc->wait_for_output(needle, 20s);
  if (!out)
    throw std::runtime_error(tag + " did not start: " + s.proc->err());
  auto pos = out->find(needle) + needle.size();
  s.address = out->substr(pos, out->find_first_of(" \n", pos) - pos);
  return s;
}

using msg_key = std::pair<std::string, uint64_t>; // (origin user, client msg id)

struct sim_device {
  std::string user;
  std::string id;
  std::unique_ptr<protocol::device> dev;
  std::vector<protocol::entry> seen; // everything learned, in order (reset clears)
};

std::string user_name(int i) {
  return "user" + std::to_string(i);
}

} // namespace

int main(int argc, char** argv) {
  options o;
  o.seed = std::random_device{}();
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--server-bin") o.server_bin = v;
    else if (k == "--proxy-bin") o.proxy_bin = v;
    else if (k == "--users") o.users = std::stoi(v);
    else if (k == "--devices") o.devices = std::stoi(v);
    else if (k == "--messages") o.messages = std::stoi(v);
    else if (k == "--kills") o.kills = std::stoi(v);
    else if (k == "--seed") o.seed = std::stoull(v);
    else if (k == "--max-seconds") o.max_seconds = std::stod(v);
    else if (k == "--drop") o.drop = std::stod(v);
    else if (k == "--swallow") o.swallow = std::stod(v);
    else if (k == "--blackhole") o.blackhole = std::stod(v);
    else if (k == "--delay-ms") o.delay_ms = std::stoi(v);
    else {
      std::cerr << "missive-chaos: unknown option " << k << "\n";
      return 2;
    }
  }
  if (o.server_bin.empty() || o.proxy_bin.empty() || o.users < 2) {
    std::cerr << "usage: missive-chaos --server-bin PATH --proxy-bin PATH [--users N>=2]"
                 " [--devices M] [--messages K] [--kills X] [--seed S] [--max-seconds T]"
                 " [--drop P] [--swallow P] [--blackhole P] [--delay-ms N]\n";
    return 2;
  }
  std::cout << "chaos: seed " << o.seed << ", " << o.users << " users x " << o.devices
            << " devices, " << o.messages << " messages, " << o.kills << " kills" << std::endl;
  std::mt19937_64 rng(o.seed);
  auto deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                        std::chrono::duration<double>(o.max_seconds));
  test::temp_dir dir;
  {
    std::ofstream conf(dir.path / "chaos.conf");
    // Heartbeats every second: a device whose connection the proxy blackholed while it had no
    // call open notices within about three seconds (twice the interval and a call timeout),
    // not the default 61, and the server drops its side as fast.
    conf << "password-hash = min\nuser-idle-timeout-ms = 300\n"
            "heartbeat-interval-ms = 1000\npush-timeout-ms = 2000\n";
  }
  std::vector<std::string> server_argv{o.server_bin, "--config", (dir.path / "chaos.conf").string(),
                                       "--data", (dir.path / "data").string(), "--listen"};
  std::mutex server_mutex; // the killer thread restarts the server
  auto argv0 = server_argv;
  argv0.push_back("127.0.0.1:0");
  auto server = start(argv0, dir.path, "server0", "listening on ");
  server_argv.push_back(server.address);
  auto proxy = start({o.proxy_bin, "--upstream", server.address, "--seed", std::to_string(o.seed),
                      "--drop", std::to_string(o.drop), "--swallow", std::to_string(o.swallow),
                      "--blackhole", std::to_string(o.blackhole), "--delay-ms",
                      std::to_string(o.delay_ms)},
                     dir.path, "proxy", "listening on ");

  for (int u = 0; u < o.users; ++u) {
    protocol::client c;
    protocol::error err = c.connect(server.address);
    if (!err)
      err = c.create_account(user_name(u), "secret1");
    if (err) {
      std::cerr << "chaos: cannot register " << user_name(u) << ": " << err.to_string() << "\n";
      return 1;
    }
  }

  std::vector<sim_device> devices;
  for (int u = 0; u < o.users; ++u)
    for (int d = 0; d < o.devices; ++d) {
      protocol::device_options opts;
      opts.server = proxy.address;
      opts.user = user_name(u);
      opts.password = "secret1";
      opts.device = "d" + std::to_string(d);
      opts.call_timeout = 1000ms;
      opts.backoff_min = 10ms;
      opts.backoff_max = 400ms;
      devices.push_back({opts.user, opts.device, std::make_unique<protocol::device>(opts), {}});
    }

  // -- the killer: SIGKILL at random amounts of progress, restart on the same port ---------------
  std::atomic<int> acked_count{0};
  std::atomic<int> kills_done{0};
  std::atomic<bool> stop_killer{false};
  std::vector<int> thresholds;
  for (int k = 0; k < o.kills; ++k)
    thresholds.push_back(std::uniform_int_distribution<int>(o.messages / 10,
                                                            o.messages * 9 / 10)(rng));
  std::sort(thresholds.begin(), thresholds.end());
  std::string killer_error;             // written by the killer before it sets killer_failed
  std::atomic<bool> killer_failed{false}; // no server to send to: the load stops at once
  std::thread killer([&, seed = rng()]() {
    std::mt19937_64 krng(seed);
    for (size_t k = 0; k < thresholds.size() && !stop_killer; ++k) {
      while (acked_count < thresholds[k] && !stop_killer && clock_type::now() < deadline)
        std::this_thread::sleep_for(1ms);
      if (stop_killer || clock_type::now() >= deadline)
        return;
      std::this_thread::sleep_for(std::chrono::microseconds(
        std::uniform_int_distribution<int>(0, 20000)(krng))); // land mid-call
      std::lock_guard<std::mutex> guard(server_mutex);
      server.proc->signal(SIGKILL);
      server.proc->wait();
      ++kills_done;
      try {
        server = start(server_argv, dir.path, "server" + std::to_string(k + 1), "listening on ");
      } catch (const std::exception& e) {
        killer_error = e.what();
        killer_failed = true;
        return;
      }
    }
  });

  // -- load: queue sends on random devices, step every device ------------------------------------
  std::map<msg_key, protocol::send_result> acks; // every acknowledged send
  std::map<msg_key, std::string> recipient_of;
  std::map<std::string, std::map<uint32_t, msg_key>> observed; // user -> seq -> entry key
  uint64_t ack_conflicts = 0, seq_reused = 0, reordered = 0, resets = 0, rejected = 0;

  auto record = [&](sim_device& d, protocol::device_events& ev) {
    if (ev.reset) {
      ++resets;
      d.seen.clear();
    }
    for (auto& [id, r] : ev.acked) {
      msg_key key{d.user, id};
      auto [it, fresh] = acks.emplace(key, r);
      if (fresh)
        ++acked_count;
      else if (it->second.seq != r.seq || it->second.server_time_ms != r.server_time_ms)
        ++ack_conflicts;
    }
    rejected += ev.rejected.size();
    for (auto& e : ev.entries) {
      if (!d.seen.empty() && e.seq <= d.seen.back().seq)
        ++reordered;
      d.seen.push_back(e);
      msg_key key{e.from, e.client_msg_id};
      auto [it, fresh] = observed[d.user].emplace(e.seq, key);
      if (!fresh && it->second != key)
        ++seq_reused;
    }
  };

  int queued = 0;
  auto pending = [&]() {
    size_t n = 0;
    for (auto& d : devices)
      n += d.dev->pending().size();
    return n;
  };
  while ((queued < o.messages || pending() > 0) && clock_type::now() < deadline
         && !killer_failed) {
    if (queued < o.messages) {
      auto& d = devices[std::uniform_int_distribution<size_t>(0, devices.size() - 1)(rng)];
      auto to = user_name(std::uniform_int_distribution<int>(0, o.users - 1)(rng));
      auto body = d.user + "/" + d.id + " #" + std::to_string(queued);
      auto id = d.dev->queue_send(to, body);
      recipient_of[{d.user, id}] = to;
      ++queued;
    }
    for (auto& d : devices) {
      auto ev = d.dev->step(0ms);
      record(d, ev);
      if (d.dev->fatal()) {
        std::cerr << "chaos: device " << d.user << "/" << d.id
                  << " failed for good: " << d.dev->fatal().to_string() << "\n";
        stop_killer = true;
        killer.join();
        return 1;
      }
    }
  }
  stop_killer = true;
  killer.join();
  if (killer_failed) { // the server did not come back: nothing to check against
    std::cerr << "chaos: " << killer_error << "\nchaos: FAILED (seed " << o.seed << ")\n";
    return 1;
  }

  // -- convergence: every device catches up to its mailbox's max --------------------------------
  std::map<std::string, std::vector<protocol::entry>> mailbox; // read directly, no proxy
  auto read_mailbox = [&](const std::string& user) {
    std::vector<protocol::entry> all;
    protocol::client c;
    protocol::error err = c.connect(server.address);
    if (!err)
      err = c.login(user, "secret1", "checker", nullptr);
    uint32_t cursor = 0;
    for (int pages = 0; !err && pages < 100000; ++pages) {
      protocol::sync_result page;
      err = c.sync(0, cursor, 0, &page);
      if (err || page.entries.empty())
        break;
      for (auto& e : page.entries)
        all.push_back(e);
      cursor = all.back().seq;
      if (cursor >= page.max_seq)
        break;
    }
    if (err)
      throw std::runtime_error("checker cannot read " + user + ": " + err.to_string());
    return all;
  };
  for (int u = 0; u < o.users; ++u)
    mailbox[user_name(u)] = read_mailbox(user_name(u));
  auto converged = [&]() {
    for (auto& d : devices) {
      auto& box = mailbox[d.user];
      if (d.dev->cursor() < (box.empty() ? 0u : box.back().seq))
        return false;
    }
    return true;
  };
  while (!converged() && clock_type::now() < deadline)
    for (auto& d : devices) {
      auto ev = d.dev->step(5ms);
      record(d, ev);
    }

  // -- the checker --------------------------------------------------------------------------------
  uint64_t lost = 0, duplicated = ack_conflicts, devices_behind = 0;
  for (auto& [user, box] : mailbox) {
    std::map<msg_key, int> count;
    for (size_t i = 0; i < box.size(); ++i) {
      if (i > 0 && box[i].seq <= box[i - 1].seq)
        ++reordered;
      if (++count[{box[i].from, box[i].client_msg_id}] > 1)
        ++duplicated;
    }
    // What any device saw at any time must still be there, under the same seq.
    std::map<uint32_t, msg_key> final_keys;
    for (auto& e : box)
      final_keys[e.seq] = {e.from, e.client_msg_id};
    for (auto& [seq, key] : observed[user]) {
      auto it = final_keys.find(seq);
      if (it == final_keys.end())
        ++lost;
      else if (it->second != key)
        ++seq_reused;
    }
    (void) user;
  }
  for (auto& [key, result] : acks) {
    auto& [sender, id] = key;
    const std::string& to = recipient_of[key];
    // Present in the recipient's mailbox and (unless a note to self) in the sender's.
    std::vector<std::string> owners{to};
    if (sender != to)
      owners.push_back(sender);
    for (auto& owner : owners) {
      int n = 0;
      for (auto& e : mailbox[owner])
        if (e.from == sender && e.client_msg_id == id)
          ++n;
      if (n == 0)
        ++lost;
    }
    // The sender's acknowledged seq names this very entry.
    bool found = false;
    for (auto& e : mailbox[sender])
      found |= e.seq == result.seq && e.client_msg_id == id && e.from == sender;
    if (!found)
      ++seq_reused;
  }
  for (auto& d : devices) {
    auto& box = mailbox[d.user];
    if (d.dev->cursor() < (box.empty() ? 0u : box.back().seq))
      ++devices_behind;
    else if (d.seen.size() != box.size())
      ++devices_behind; // reached maxSeq but missed entries on the way
  }
  uint64_t unacked = pending();
  uint64_t reconnects = 0;
  for (auto& d : devices)
    reconnects += d.dev->reconnects();

  std::cout << "acked " << acks.size() << ", lost " << lost << ", duplicated " << duplicated
            << ", reordered " << reordered << ", seq reused " << seq_reused << ", kills "
            << kills_done << std::endl;
  std::cout << "chaos: queued " << queued << ", unacked " << unacked << ", rejected " << rejected
            << ", devices behind " << devices_behind << ", resets " << resets << ", reconnects "
            << reconnects << std::endl;
  bool ok = lost == 0 && duplicated == 0 && reordered == 0 && seq_reused == 0 && unacked == 0
            && rejected == 0 && devices_behind == 0 && resets == 0 && kills_done == o.kills
            && killer_error.empty() && queued == o.messages;
  if (!killer_error.empty())
    std::cerr << "chaos: " << killer_error << "\n";
  if (!ok)
    std::cerr << "chaos: FAILED (seed " << o.seed << ")\n";
  return ok ? 0 : 1;
}

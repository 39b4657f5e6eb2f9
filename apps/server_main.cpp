// missive-server: one Missive node. Wires storage, actors and the Cap'n Proto gateway together.
//
//   missive-server [--config FILE] [--listen HOST:PORT] [--data DIR]

#include <fstream>
#include <random>
#include <iostream>
#include <sstream>

#include <caf/all.hpp>
#include <jemalloc/jemalloc.h>

#include "missive/actors/node.hpp"
#include "missive/protocol/gateway.hpp"
#include "missive/storage/store.hpp"
#include "server_config.hpp"

// jemalloc (linked in, CMakeLists.txt) reads its options from this symbol, before MALLOC_CONF;
// main() starts its background thread (below).
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "max_background_threads:1";
}

namespace {

constexpr const char* usage =
  "usage: missive-server [--config FILE] [--listen HOST:PORT] [--data DIR]\n"
  "  --config FILE       options in config/missive.conf syntax, over the embedded defaults\n"
  "  --listen HOST:PORT  address of the gateway (default 127.0.0.1:7070; port 0 = any free)\n"
  "  --data DIR          LevelDB directory (default ./data)\n"
  "  --print-config      print the embedded default configuration and exit\n"
  "  --reset-epoch USER  with the server stopped: move USER's mailbox to a new epoch (all\n"
  "                      entries kept, renumbered from 1; devices resync from zero) and exit.\n"
  "                      `--reset-epoch '*'` resets every mailbox, e.g. after restoring a backup\n";

int fail(const std::string& message, int code = 2) {
  std::cerr << "missive-server: " << message << "\n";
  return code;
}

/// Operator command: new epochs for one or all mailboxes, on a stopped server's database.
int reset_epochs(missive::storage::store& db, const std::string& which) {
  std::vector<std::string> users;
  if (which == "*") {
    if (auto s = db.list_users(&users); !s.ok())
      return fail("cannot list users: " + s.to_string());
  } else {
    std::string hash;
    if (auto s = db.get_account(which, &hash); !s.ok())
      return fail("no mailbox for user " + which + " (" + s.to_string() + ")");
    users.push_back(which);
  }
  std::random_device rd;
  for (auto& user : users) {
    uint32_t epoch = 0, last = 0;
    while (epoch == 0)
      epoch = rd();
    if (auto s = db.renumber(user, epoch, UINT32_MAX, &last); !s.ok())
      return fail("cannot reset " + user + ": " + s.to_string());
    std::cout << "reset epoch of " << user << " to " << epoch << " (" << last << " entries)\n";
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  using namespace missive;
  app::server_config cfg;
  try {
    cfg = app::default_config();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  std::string listen, data, reset_epoch;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      return 0;
    } else if (arg == "--print-config") {
      std::cout << app::default_config_text();
      return 0;
    } else if (arg == "--config") {
      auto path = value();
      if (!path)
        return fail("--config needs a file\n" + std::string(usage));
      std::ifstream in(path);
      if (!in)
        return fail(std::string("cannot read config file ") + path);
      std::stringstream text;
      text << in.rdbuf();
      if (auto err = app::apply_config(cfg, text.str(), path); !err.empty())
        return fail(err);
    } else if (arg == "--listen") {
      auto v = value();
      if (!v)
        return fail("--listen needs HOST:PORT\n" + std::string(usage));
      listen = v;
    } else if (arg == "--data") {
      auto v = value();
      if (!v)
        return fail("--data needs a directory\n" + std::string(usage));
      data = v;
    } else if (arg == "--reset-epoch") {
      auto v = value();
      if (!v)
        return fail("--reset-epoch needs a user (or '*')\n" + std::string(usage));
      reset_epoch = v;
    } else {
      return fail("unknown argument " + arg + "\n" + usage);
    }
  }
  if (!listen.empty()) {
    if (auto err = app::apply_config(cfg, "listen = " + listen, "--listen"); !err.empty())
      return fail(err);
  }
  if (!data.empty())
    cfg.storage.path = data;
  // Before any thread exists, so that every thread of the server inherits it.
  if (auto err = app::apply_thread_policy(cfg.scheduling); !err.empty())
    std::cerr << "missive-server: " << err << " (continuing under the default)" << std::endl;
  // Without a background thread jemalloc returns freed pages to the system only while the
  // program allocates, so a server gone quiet after a busy hour kept the busy hour's RSS; with
  // it, they go back once jemalloc's decay time (10 s) has passed (BENCHMARKS.md, "Session
  // 19"). Started here, after the policy, so that it runs under it too.
  bool background = true;
  if (mallctl("background_thread", nullptr, nullptr, &background, sizeof(background)) != 0)
    std::cerr << "missive-server: jemalloc's background thread did not start (freed memory "
                 "returns to the system only while the server allocates)" << std::endl;
  if (auto err = app::build_policy(cfg); !err.empty())
    return fail(err);
  if (auto err = app::build_push(cfg); !err.empty())
    return fail(err);

  // Before any thread exists, so that only the gateway's event loop receives them.
  protocol::capture_stop_signals();

  std::unique_ptr<storage::store> db;
  if (auto s = storage::store::open(cfg.storage, &db); !s.ok())
    return fail("cannot open the database in " + cfg.storage.path + ": " + s.to_string()
                + "\n  Check that the directory is writable and that no other missive-server"
                  " uses it; a corrupt database must be restored from a backup.");

  if (!reset_epoch.empty())
    return reset_epochs(*db, reset_epoch);

  caf::actor_system_config sys_cfg;
  add_missive_types(sys_cfg);
  configure_scheduler(cfg, sys_cfg);
  sys_cfg.set("logger.verbosity", caf::atom("quiet"));
  sys_cfg.set("logger.file-verbosity", caf::atom("quiet"));
  sys_cfg.set("logger.console-verbosity", caf::atom("quiet"));
  caf::actor_system sys{sys_cfg};
  cfg.actors.warn = [](const std::string& text) {
    std::cerr << "missive-server: " << text << std::endl;
  };
  auto n = start_node(sys, cfg.actors, std::shared_ptr<storage::store>(std::move(db)));
  int rc = 0;
  try {
    protocol::run_gateway(sys, n, cfg.gateway, [&](const std::string& address) {
      std::cout << "missive-server listening on " << address << " (data in "
                << cfg.storage.path << ", durability " << (cfg.storage.sync ? "sync" : "async")
                << ")" << std::endl;
    }, [&]() { std::cerr << "missive-server: " << app::reload_spam_rules(cfg) << std::endl; });
  } catch (const std::exception& e) {
    rc = fail(e.what());
  }
  stop_node(n);
  sys.await_all_actors_done();
  if (rc == 0)
    std::cout << "missive-server stopped" << std::endl;
  return rc;
}

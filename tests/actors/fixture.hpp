#pragma once

// Runs Missive's actors on CAF's deterministic test scheduler: nothing happens until the test
// calls run(), timers fire only when the test advances the clock, and no test sleeps.

#include <filesystem>
#include <optional>
#include <random>

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "missive/actors/node.hpp"
#include "missive/storage/store.hpp"

namespace missive::test {

/// A fresh directory under the system temp dir, removed at destruction.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path()
           / ("missive-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

struct test_config : caf::actor_system_config {
  test_config() {
    add_missive_types(*this);
    set("scheduler.policy", caf::atom("testing"));
    set("logger.verbosity", caf::atom("quiet"));
    set("logger.file-verbosity", caf::atom("quiet"));
    set("logger.console-verbosity", caf::atom("quiet"));
  }
};

/// Captures the answer to one request.
template <class T>
struct answer {
  std::optional<T> value;
  caf::error error;
  bool done() const { return value.has_value() || static_cast<bool>(error); }
};

class actor_fixture : public ::testing::Test {
public:
  actor_fixture() : sys(cfg), sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {}

  ~actor_fixture() override {
    if (started)
      stop_node(n);
    run();
  }

  /// Opens the store in `dir` and spawns the node's actors, all on the test scheduler.
  void start(settings s = {}) {
    s.password_hash = hash_cost::min;
    storage::options opts;
    opts.path = dir.path.string();
    opts.sync = false; // the deterministic tests are about order, not fsync
    std::unique_ptr<storage::store> db;
    auto st = storage::store::open(opts, &db);
    ASSERT_TRUE(st.ok()) << st.to_string();
    n = start_node(sys, s, std::shared_ptr<storage::store>(std::move(db)), false);
    started = true;
    run();
  }

  /// Stops the node and waits until its store is closed.
  void stop() {
    stop_node(n);
    run();
    started = false;
  }

  void run() {
    sched.run();
  }

  /// Sends a request from a fresh helper actor, runs the scheduler and returns the answer.
  template <class T, class Handle, class... Ts>
  answer<T> ask(const Handle& dest, Ts&&... xs) {
    auto out = std::make_shared<answer<T>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(caf::actor_cast<caf::actor>(dest), caf::infinite, xs...)
        .then([=](T& x) { out->value = std::move(x); },
              [=](caf::error& err) { out->error = std::move(err); });
    });
    run();
    return *out;
  }

  temp_dir dir;
  test_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  node n;
  bool started = false;
};

} // namespace missive::test

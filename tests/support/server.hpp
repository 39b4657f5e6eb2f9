#pragma once

// The real missive-server binary on a free loopback port, over a data dir that outlives it
// (so a test can kill it and start it again on the same data).

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "missive/protocol/client.hpp"
#include "support/process.hpp"

namespace missive::test {

class server {
public:
  /// `config` is extra missive.conf text (e.g. "max-body-bytes = 16").
  server(const std::filesystem::path& dir, std::string config = {})
    : dir_(dir), config_(std::move(config)) {}

  /// Starts the server and waits until it listens; returns false (with a gtest failure) if not.
  bool start(long max_file_bytes = 0) {
    auto conf = dir_ / "test.conf";
    std::ofstream(conf) << config_ << "\n";
    ++starts_;
    proc_ = std::make_unique<process>(
      // The first start picks a free port; restarts come back on the same one, so that
      // clients reconnect to where they were.
      std::vector<std::string>{MISSIVE_SERVER_BIN, "--config", conf.string(), "--listen",
                               address_.empty() ? "127.0.0.1:0" : address_, "--data",
                               (dir_ / "data").string()},
      dir_, "server" + std::to_string(starts_), std::vector<std::string>{}, max_file_bytes);
    auto out = proc_->wait_for_output("listening on ", std::chrono::seconds(20));
    if (!out) {
      ADD_FAILURE() << "server did not start: " << proc_->out() << proc_->err();
      return false;
    }
    auto pos = out->find("listening on ") + 13;
    address_ = out->substr(pos, out->find_first_of(" \n", pos) - pos);
    return true;
  }

  /// The extra config text of the next start().
  void set_config(std::string config) { config_ = std::move(config); }

  /// SIGKILL: no chance to flush anything.
  void kill() {
    proc_->signal(SIGKILL);
    proc_->wait();
  }

  /// SIGTERM; returns the exit code.
  int stop() {
    proc_->signal(SIGTERM);
    return proc_->wait(std::chrono::seconds(30));
  }

  /// Creates accounts (password "secret1") over a direct connection; false on any failure.
  bool create_accounts(std::initializer_list<const char*> users) const {
    for (auto* user : users) {
      protocol::client c;
      auto err = c.connect(address_);
      if (!err)
        err = c.create_account(user, "secret1");
      if (err) {
        ADD_FAILURE() << user << ": " << err.to_string();
        return false;
      }
    }
    return true;
  }

  /// A client connected and logged in as `user` (password "secret1") on `device`; a failure is
  /// a gtest failure (the client is returned anyway).
  std::unique_ptr<protocol::client> login(const std::string& user,
                                          const std::string& device = "phone") const {
    auto c = std::make_unique<protocol::client>();
    auto err = c->connect(address_);
    if (!err)
      err = c->login(user, "secret1", device, nullptr);
    EXPECT_FALSE(err) << user << "/" << device << ": " << err.to_string();
    return c;
  }

  const std::string& address() const { return address_; }
  process& proc() { return *proc_; }

private:
  std::filesystem::path dir_;
  std::string config_;
  std::unique_ptr<process> proc_;
  std::string address_;
  int starts_ = 0;
};

/// Every entry of the client's mailbox (up to 1000), read with one sync from zero.
inline std::vector<protocol::entry> mailbox(protocol::client& c) {
  protocol::sync_result page;
  auto err = c.sync(0, 0, 1000, &page);
  EXPECT_FALSE(err) << err.to_string();
  return page.entries;
}

} // namespace missive::test

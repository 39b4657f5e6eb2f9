#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "missive/protocol/client.hpp"

namespace missive::protocol {

struct device_options {
  std::string server = "127.0.0.1:7070"; // HOST:PORT
  std::string user;
  std::string password;
  std::string device = "cli";
  /// Where the cursor, the unacknowledged sends and the device's resume token are kept across
  /// client restarts (a file only its owner may read); empty keeps them in memory only.
  std::string state_file;
  /// false: a send-only device that never syncs nor moves its cursor (e.g. `missive-cli send`,
  /// so that the next `sync` still prints everything).
  bool receive = true;
  std::chrono::milliseconds call_timeout{5000};
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
};

/// A send the server has not acknowledged yet.
struct pending_send {
  uint64_t client_msg_id = 0;
  std::string to;
  std::string body;
};

/// What one step of a device brought.
struct device_events {
  /// Sends the server acknowledged: client msg id and result. After a lost response the same
  /// id can be acknowledged again, with the same result.
  std::vector<std::pair<uint64_t, send_result>> acked;
  /// Sends the server refused for good (unknown user, too large, malformed, blocked by the
  /// recipient, spam): not retried. A rate-limited send stays queued and is retried when the
  /// server said it would pass.
  std::vector<std::pair<pending_send, error>> rejected;
  /// New mailbox entries, in seq order.
  std::vector<entry> entries;
  /// The mailbox moved to a new epoch (or lost its history): `entries` start again from 0.
  bool reset = false;
  /// Retention deleted entries this device had not read yet.
  bool expired = false;
};

/// A device that survives weak networks: it connects and logs in on its own, with
/// exponential backoff after failures; re-sends every unacknowledged send with its original
/// client msg id (so a send whose answer was lost still makes exactly one entry); and after
/// every (re)connect catches up from its cursor before anything else. Single-threaded like
/// `client`; drive it by calling step().
class device {
public:
  explicit device(device_options opts);
  ~device();
  device(const device&) = delete;
  device& operator=(const device&) = delete;

  /// Queues a send. With a state file it is on disk before this returns, so it is re-sent
  /// even if this process dies. `client_msg_id` 0 picks a random one. Returns the id.
  uint64_t queue_send(const std::string& to, const std::string& body, uint64_t client_msg_id = 0);

  /// One step: (re)connect if it is time to, send what is pending, catch up, then wait up to
  /// `wait` for a push. Transport failures never escape: they schedule a reconnect.
  device_events step(std::chrono::milliseconds wait);

  bool online() const;
  uint32_t epoch() const { return epoch_; }
  uint32_t cursor() const { return cursor_; }
  const std::deque<pending_send>& pending() const { return pending_; }
  /// Set when retrying cannot help (bad credentials, the device id used elsewhere).
  const error& fatal() const { return fatal_; }
  /// The last failure, fatal or not (cleared by nothing: check online() first).
  const error& last_error() const { return last_error_; }
  /// Transport failures and reconnects so far.
  uint64_t reconnects() const { return reconnects_; }
  /// Whether the device holds a resume token: its reconnects then log in without the password
  /// (falling back to the password if the server refuses the token).
  bool has_resume_token() const { return !resume_token_.empty(); }

private:
  bool ensure_online(device_events& ev);
  bool flush_sends(device_events& ev);
  bool catch_up(device_events& ev);
  bool apply(const notice& n, device_events& ev);
  void take_entries(std::vector<entry>& xs, device_events& ev);
  void reset_mailbox(uint32_t epoch, device_events& ev);
  /// Handles a failed call: false for transport trouble (reconnect), fatal errors stick.
  void on_failure(const error& err);
  void load_state();
  void save_state();

  device_options opts_;
  std::unique_ptr<client> rpc_;
  bool online_ = false;
  std::chrono::steady_clock::time_point next_attempt_{};
  std::chrono::steady_clock::time_point send_after_{}; // the server rate-limited our sends

  std::chrono::milliseconds backoff_;
  uint32_t epoch_ = 0;
  uint32_t cursor_ = 0;
  uint32_t acked_cursor_ = 0;
  std::deque<pending_send> pending_;
  error fatal_;
  error last_error_;
  uint64_t reconnects_ = 0;
  std::string resume_token_; // kept in the state file, if there is one
};

} // namespace missive::protocol

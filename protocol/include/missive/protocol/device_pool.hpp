#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "missive/protocol/client.hpp"

namespace missive::protocol {

/// What a pooled device reports. Called on the pool's thread: keep it short (hand work to
/// another thread, e.g. with caf::anon_send).
class device_handler {
public:
  virtual ~device_handler() = default;
  /// Login finished (err set on failure); `info` is where the mailbox stood.
  virtual void on_login(const error& err, const session_info& info) = 0;
  /// Just before a successful on_login: the resume token the server returned (empty: none).
  virtual void on_resume_token(std::string token) {}
  /// A send was answered.
  virtual void on_ack(uint64_t client_msg_id, const error& err, const send_result& r) = 0;
  /// New mailbox entries, in seq order (from a push, or from a sync the device made itself).
  virtual void on_entries(std::vector<entry>&& entries) = 0;
  /// The connection broke; the device is gone.
  virtual void on_closed(const error& err) = 0;
  /// With spec.ack: the device reported its cursor up to `seq` (a notify's answer, or a
  /// confirmed ack call).
  virtual void on_cursor_acked(uint32_t seq) {}
};

struct pooled_device_spec {
  std::string server; // HOST:PORT
  std::string user;
  std::string password;
  std::string device;
  /// Acknowledge the cursor as a real client does: in the answer to every notify, and by an
  /// ack call after a sync (at most one in flight; later advances ride on the next).
  bool ack = false;
  /// Start at the mailbox's max seq at login, as a device installed now that does not want the
  /// history: what was stored before the login is neither synced nor reported.
  bool skip_history = false;
  /// Log in with this resume token (from an earlier login of the same device) instead of the
  /// password.
  std::string resume_token{};
  /// Register for third-party pushes right after login (`Session.setPushToken`): on_login
  /// comes once the server took the token, or reports why it did not. Empty: no call.
  std::string push_platform{};
  std::string push_token{};
  /// A login the server refuses as `unavailable` (its queue of password checks is full) is
  /// asked again after this pause, doubled at each refusal up to 16 times it, plus up to as
  /// much again at random, as a client would back off; 0 reports it to on_login.
  std::chrono::milliseconds retry_unavailable{0};
};

/// A KJ event loop on a thread of its own that hosts many device connections: for load tools,
/// where one thread per device would not scale. A device speaks Cap'n Proto's RPC protocol
/// message by message (no RpcSystem: the server sees a two-party client's messages, at a
/// fraction of the client's CPU). Sends are pipelined (no call waits for
/// another); pushes are applied inline when they continue the device's cursor, otherwise the
/// device syncs. Thread-safe: every public call may come from any thread.
class device_pool {
public:
  /// `source_addresses`: local addresses (e.g. 127.0.0.2) that connections bind to in turn, to
  /// go past one address's ephemeral ports; empty lets the kernel choose.
  explicit device_pool(std::vector<std::string> source_addresses = {});
  ~device_pool();
  device_pool(const device_pool&) = delete;
  device_pool& operator=(const device_pool&) = delete;

  using device_id = uint32_t;

  /// Connects and logs in a device (asynchronously); reports through `handler`.
  device_id add_device(pooled_device_spec spec, std::shared_ptr<device_handler> handler);

  /// Sends from a logged-in device; the answer comes through its handler's on_ack, always
  /// after this returns (a device not logged in answers `not_logged_in` on a later turn), so
  /// an on_ack may send again. Called on the pool's own thread (a `schedule` tick, a
  /// handler), the send starts at once.
  void send(device_id id, uint64_t client_msg_id, std::string to, std::string body);

  using clock = std::chrono::steady_clock;
  using tick = std::function<std::optional<clock::time_point>()>;

  /// Runs `fn` on the pool's thread at `first`, then again at each time it returns, until it
  /// returns nullopt. Timed to the microsecond (a timerfd; the event loop's own timers have
  /// millisecond steps), and all ticks due at one wake-up run together. For load tools: a
  /// send made by a tick leaves without a hand-off between threads. A tick that throws is
  /// logged and not run again.
  void schedule(clock::time_point first, tick fn);

  /// Drops a device's connection (it goes offline).
  void close(device_id id);

  /// Creates an account; `done` runs on the pool's thread.
  void create_account(std::string server, std::string user, std::string password,
                      std::function<void(const error&)> done);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace missive::protocol

#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "missive/actors/messages.hpp"

namespace missive::protocol {

/// Mirrors ErrorCode in missive.capnp, plus the client's own transport failures.
enum class error_code : uint8_t {
  none = 0,
  invalid_argument = 1,
  unknown_user = 2,
  bad_credentials = 3,
  user_exists = 4,
  too_large = 5,
  stale_epoch = 6,
  cursor_ahead = 7,
  storage_failure = 8,
  unavailable = 9,
  session_replaced = 10,
  seq_exhausted = 11,
  blocked = 12,
  rate_limited = 13,
  spam = 14,
  unknown_group = 15,
  group_exists = 16,
  not_member = 17,
  not_allowed = 18,
  group_full = 19,
  // Client-side only:
  disconnected = 100, // the connection failed or was closed
  timeout = 101,      // no answer in time; the call may or may not have been applied
  not_logged_in = 102,
};

const char* to_string(error_code x);

struct error {
  error_code code = error_code::none;
  std::string message;
  uint32_t epoch = 0;   // with stale_epoch: the mailbox's current epoch
  uint32_t max_seq = 0; // with cursor_ahead: the mailbox's current max seq
  uint32_t retry_after_ms = 0; // with rate_limited: when the send can pass

  explicit operator bool() const { return code != error_code::none; }
  std::string to_string() const;
};

// The client shares the server's plain message types (actors/messages.hpp):
//   session_info — where the mailbox stands at login (epoch, max_seq, cursor)
//   send_result  — the sender's seq and the server time of a send
//   sync_result  — one page of entries, with the mailbox's epoch and max_seq
//   notice       — one push (PushReceiver.notify), `user` left empty
using missive::entry;
using missive::group_member;
using missive::group_role;
using storage::entry_kind;
using missive::notice;
using missive::send_result;
using missive::session_info;
using missive::sync_result;

/// A blocking Missive client over one Cap'n Proto connection. It runs its own KJ event loop
/// on the thread that uses it: every call, and wait_push, drives that loop, so pushes are
/// received while a call waits. Not thread-safe; one instance per thread.
class client {
public:
  explicit client(std::chrono::milliseconds call_timeout = std::chrono::seconds(10));
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  error connect(const std::string& host_port);
  error create_account(const std::string& user, const std::string& password);
  /// Logs a device in with the user's password or, when `resume_token` is not empty, with the
  /// token an earlier login of the same device returned (resume_token(); the password is then
  /// not checked). A token that is no longer valid gets bad_credentials.
  error login(const std::string& user, const std::string& password, const std::string& device,
              session_info* out, const std::string& resume_token = {});
  /// The resume token the last successful login returned (empty: the server issued none).
  const std::string& resume_token() const;
  error send(uint64_t client_msg_id, const std::string& to, const std::string& body,
             send_result* out);
  error sync(uint32_t epoch, uint32_t after_seq, uint32_t limit, sync_result* out);
  error ack(uint32_t epoch, uint32_t seq);
  /// This user refuses (block) or accepts again (unblock) messages from `user`.
  error block(const std::string& user);
  error unblock(const std::string& user);
  error list_blocked(std::vector<std::string>* out);
  /// Registers this device for third-party pushes (empty token: unregister).
  error set_push_token(const std::string& platform, const std::string& token);

  /// Groups (names start with '#'); messages go to a group with send(…, "#team", …).
  error create_group(const std::string& group);
  error add_member(const std::string& group, const std::string& user);
  error remove_member(const std::string& group, const std::string& user);
  error leave_group(const std::string& group);
  error set_admin(const std::string& group, const std::string& user, bool admin);
  error list_members(const std::string& group, std::vector<group_member>* out);
  error list_groups(std::vector<std::string>* out);

  /// Waits up to `timeout` for the next push; false if none came, or at once if the
  /// connection is broken (see connected()).
  bool wait_push(std::chrono::milliseconds timeout, notice* out);

  /// Runs the thread's event loop for `duration` (other clients' pushes keep arriving).
  void pump(std::chrono::milliseconds duration);

  /// How often the server checks a quiet connection (from login; 0 before).
  std::chrono::milliseconds heartbeat_interval() const;
  /// When the server was last heard from: an answer, a push or a heartbeat.
  std::chrono::steady_clock::time_point last_heard() const;

  /// False before connect(), after disconnect() and once the server closed the connection.
  bool connected() const;

  /// Closes the connection (the server sees the device go offline).
  void disconnect();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace missive::protocol

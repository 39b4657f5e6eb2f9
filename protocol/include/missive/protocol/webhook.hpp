#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "missive/actors/push.hpp"

namespace missive::protocol {

struct webhook_options {
  /// The push gateway's notify endpoint, http:// or https://, e.g.
  /// http://127.0.0.1:5000/_matrix/push/v1/notify (Sygnal's default path).
  std::string url;
  /// An attempt not answered within this time counts as failed (and is retried).
  std::chrono::milliseconds timeout{5000};
  /// At most this many pushes in flight, each on a connection of its own (kept open for the
  /// next); the others wait in order. A burst of pushes (thousands of devices offline when
  /// a group is busy) must not open a connection each: that would take the server's file
  /// descriptors from its devices, and flood the gateway. The timeout counts from the start
  /// of an attempt, not from its wait.
  uint32_t max_in_flight = 256;
  /// Failed attempts are logged to stderr: the first at once, then at most one line per
  /// interval, counting the failures since the line before.
  std::chrono::milliseconds failure_report_interval{10000};
  /// Send the sender and the first bytes of the newest message's body along. Off by default:
  /// then no message content leaves the server, only the unread count.
  bool previews = false;
  size_t preview_max_bytes = 256;
};

/// The `webhook` push provider: one HTTP POST per push to a push gateway in the Matrix push
/// gateway format (POST /_matrix/push/v1/notify, `notification.devices[].pushkey`, `counts`),
/// so that an existing APNs/FCM relay such as Sygnal can sit behind it. Runs its own KJ event
/// loop thread (kj-http); `send` may be called from any thread. A gateway answer that lists the
/// device's pushkey under `rejected` reports the key dead. Logs failures to stderr (at most one
/// line per `failure_report_interval`).
/// Returns null and sets `*error` if the URL is unusable.
std::shared_ptr<push_provider> make_webhook(webhook_options opts, std::string* error);

} // namespace missive::protocol

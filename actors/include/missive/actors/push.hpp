#pragma once

// PushSvr's second half: third-party pushes (APNs/FCM through the operator's push gateway) for
// devices that have no live session. The push-dispatcher actor decides when and how often;
// a push_provider (the webhook in protocol/, a recorder in tests) does the talking.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace missive {

/// One third-party push for one device, as the dispatcher hands it to the provider.
struct offline_push {
  std::string user;
  std::string device;
  std::string platform; // the push gateway's app id
  std::string token;    // the device's push key there
  /// Entries from others the device has not acknowledged since it was last reached.
  uint32_t unread = 0;
  /// The newest such entry: for previews, which leave the server only if the config allows.
  std::string from;
  std::string body;
};

/// What became of a push.
struct push_outcome {
  enum class kind : uint8_t {
    delivered, // the gateway took it
    rejected,  // the gateway says the push key is dead: forget it
    retry,     // 5xx, timeout, no connection: try again later
    failed,    // refused for good (4xx): drop this push, keep the key
  };
  kind what = kind::delivered;
  std::string detail; // for the log
};

/// Sends pushes. `send` is called from the dispatcher actor and must not block; `done` may be
/// called from any thread, exactly once.
class push_provider {
public:
  virtual ~push_provider() = default;
  virtual void send(offline_push p, std::function<void(push_outcome)> done) = 0;
};

/// When the dispatcher pushes.
struct push_options {
  /// After a device's session ends, wait this long before pushing to it: a quick reconnect
  /// (a network switch) needs no push.
  std::chrono::milliseconds disconnect_delay{2000};
  /// At most one push per device per interval; what arrives meanwhile rides in the next one
  /// (with the newest unread count).
  std::chrono::milliseconds min_interval{5000};
  /// Retries after a failed attempt: backoff doubling from retry_min up to retry_max, at most
  /// max_attempts attempts per push.
  std::chrono::milliseconds retry_min{1000};
  std::chrono::milliseconds retry_max{60000};
  uint32_t max_attempts = 6;
};

} // namespace missive

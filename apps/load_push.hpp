#pragma once

// missive-load's push scenario: a stand-in for the operator's push gateway (the relay to
// APNs/FCM, which cannot run here). It takes the server's pushes in the Matrix push gateway
// format on a loopback address, answers each after a set delay (a real relay's round trip to
// APNs), and records per pushkey what arrived, and how many connections and requests the
// server held open at once.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace missive::load {

class push_gateway {
public:
  /// What arrived for one pushkey.
  struct device {
    uint32_t pushes = 0;
    uint32_t last_unread = 0; // `counts.unread` of the newest push
    int64_t first_ns = 0;     // arrival of the first push, on the caller's clock (`now_ns`)
    int64_t last_ns = 0;
  };

  /// Listens on `address` (HOST:PORT) on a thread of its own. `now_ns` times the arrivals.
  /// The first push for `fail_percent` % of the push keys (chosen by a hash of the key) is
  /// answered 503, as an overloaded relay would; their retries are taken. `error()` says why
  /// it is not listening.
  push_gateway(const std::string& address, std::chrono::microseconds answer_delay,
               std::function<int64_t()> now_ns, uint32_t fail_percent = 0);
  ~push_gateway() noexcept;
  push_gateway(const push_gateway&) = delete;
  push_gateway& operator=(const push_gateway&) = delete;

  const std::string& error() const { return error_; }
  /// The port it listens on (for an address given with port 0).
  uint32_t port() const { return port_; }
  std::map<std::string, device> devices() const;
  /// Requests that were not a push this gateway understands (answered 400).
  uint64_t malformed() const { return malformed_; }
  uint64_t pushes() const { return pushes_; }
  /// Pushes answered 503 (fail_percent); not counted in pushes() or devices().
  uint64_t refused() const { return refused_; }
  uint32_t peak_connections() const { return peak_connections_; }
  uint32_t peak_requests() const { return peak_requests_; }
  /// Connections the server opened in all.
  uint64_t connections() const { return connections_; }
  /// Accepts that failed (the tool out of file descriptors), each tried again 10 ms later.
  uint64_t accept_failures() const { return accept_failures_; }

  /// Reads a push body: the first device's pushkey and `counts.unread` (0 when absent).
  /// False for anything else.
  static bool parse(const std::string& body, std::string* pushkey, uint32_t* unread);

private:
  struct impl;
  friend struct impl;
  /// Records a push; false when it is to be answered 503 instead (a key's first, for
  /// fail_percent % of the keys).
  bool record(const std::string& pushkey, uint32_t unread);
  static void raise(std::atomic<uint32_t>& peak, uint32_t now);

  std::function<int64_t()> now_ns_;
  std::chrono::microseconds answer_delay_;
  uint32_t fail_percent_;
  std::string error_;
  uint32_t port_ = 0;
  mutable std::mutex mutex_;
  std::map<std::string, device> devices_; // guarded by mutex_
  std::set<std::string> refused_keys_;     // guarded by mutex_
  std::atomic<uint64_t> pushes_{0}, malformed_{0}, connections_{0}, accept_failures_{0},
    refused_{0};
  std::atomic<uint32_t> open_connections_{0}, open_requests_{0};
  std::atomic<uint32_t> peak_connections_{0}, peak_requests_{0};
  std::unique_ptr<impl> impl_;
  std::thread thread_;
};

} // namespace missive::load

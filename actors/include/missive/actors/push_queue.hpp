#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "missive/actors/messages.hpp"
#include "missive/actors/settings.hpp"

namespace missive {

/// What one device is owed in pushes, kept where its connection lives (the gateway thread):
/// at most one notify in flight, later notices merged into the next one; and the device's own
/// copies of its sends wait for the send's answer, which carries them (no notify of their own).
///
/// Single-threaded, no I/O: the gateway drives it, the tests drive it directly.
class push_queue {
public:
  push_queue(std::string user, const settings& limits) : user_(std::move(user)), limits_(limits) {}

  /// The mailbox grew (a notice from the user actor).
  void add(notice n);

  /// A send of this device is under way (its copy may come before its answer).
  void sending(uint64_t client_msg_id);

  /// The send's answer is going out. When it succeeded, whatever is pending rides on it;
  /// a failed send takes nothing.
  std::optional<notice> answered(uint64_t client_msg_id, bool ok);

  /// The notice to send as a notify now, if one may go: nothing in flight, something pending,
  /// and not only copies that a send's answer will carry. Marks it in flight.
  std::optional<notice> next();

  /// The notify in flight was confirmed by the device.
  void confirmed() { in_flight_ = false; }

  bool in_flight() const { return in_flight_; }
  bool has_pending() const { return pending_.has_value(); }

private:
  bool rides_on_answer(const notice& n) const;

  std::string user_;
  const settings& limits_;
  std::optional<notice> pending_;
  std::vector<uint64_t> sending_; // client msg ids of sends not answered yet
  bool in_flight_ = false;
};

} // namespace missive

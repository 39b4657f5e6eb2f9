#pragma once

// For log lines that come in storms (slow commits on a stalling disk, a push gateway that is
// down while thousands of devices are offline): the first is reported at once, then at most
// one per interval, and each report counts what happened since the one before it.

#include <chrono>
#include <cstdint>
#include <optional>

namespace missive {

class report_limiter {
public:
  using clock = std::chrono::steady_clock; // also CAF's actor clock
  explicit report_limiter(clock::duration interval) : interval_(interval) {}

  /// One more occurrence at `now`: how many to report now (this one and those held back
  /// since the last report), or 0 to hold it back.
  uint64_t note(clock::time_point now) {
    ++held_;
    if (last_ && now - *last_ < interval_)
      return 0;
    last_ = now;
    ++reports_;
    auto n = held_;
    held_ = 0;
    return n;
  }

  /// Reports made so far (a report after the first counts "since the last report").
  uint64_t reports() const { return reports_; }

private:
  clock::duration interval_;
  std::optional<clock::time_point> last_;
  uint64_t held_ = 0;
  uint64_t reports_ = 0;
};

} // namespace missive

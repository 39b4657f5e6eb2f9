#pragma once

#include <string>
#include <utility>

namespace missive::storage {

/// What a storage call can report. `not_found` is an expected outcome, not a failure.
enum class errc {
  ok = 0,
  not_found,
  already_exists,
  invalid_argument,
  corruption,
  io_error,
};

/// Result of a storage call, in LevelDB's style: `if (!s.ok()) return s;`.
class [[nodiscard]] status {
public:
  status() = default;
  status(errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static status ok_status() { return {}; }

  bool ok() const { return code_ == errc::ok; }
  bool is_not_found() const { return code_ == errc::not_found; }
  errc code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

private:
  errc code_ = errc::ok;
  std::string message_;
};

} // namespace missive::storage

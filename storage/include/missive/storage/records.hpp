#pragma once

#include <cstdint>
#include <string>

namespace missive::storage {

/// What an entry is: a message, or a system entry of a group (then `from` is who did it, `to`
/// the group, and `body` the member it is about).
enum class entry_kind : uint8_t {
  message = 0,
  group_created = 1,
  member_added = 2,
  member_removed = 3,
  member_left = 4,
};

/// One mailbox entry. `seq` is the position in the owning mailbox; `from`/`to` name the
/// sender and the recipient (a user, or a group as `#name`), so the same message stored in
/// several mailboxes differs only in seq.
struct entry {
  uint32_t seq = 0;
  std::string from;
  std::string to;
  uint64_t client_msg_id = 0;
  int64_t server_time_ms = 0;
  std::string body;
  entry_kind kind = entry_kind::message;

  friend bool operator==(const entry&, const entry&) = default;
};

/// A group: who owns it and when it was created.
struct group_record {
  std::string owner;
  int64_t created_ms = 0;
  /// Counts membership changes; names their system entries (dedup key) so that a repeated
  /// fan-out stores each at most once per member.
  uint64_t changes = 0;

  friend bool operator==(const group_record&, const group_record&) = default;
};

enum class group_role : uint8_t { member = 0, admin = 1, owner = 2 };

/// Per-mailbox state read once when a user actor activates.
/// The highest assigned seq is not kept here: it is the key of the mailbox's last entry
/// (one seek), so concurrent batches can never make it go backwards. `seq_floor` records a
/// seq that must never be reused even when no entry carries it any more (retention).
struct mailbox_meta {
  uint32_t epoch = 0;
  uint32_t seq_floor = 0;

  friend bool operator==(const mailbox_meta&, const mailbox_meta&) = default;
};

/// What an earlier append of `(origin, client_msg_id)` produced in one mailbox.
struct dedup_record {
  uint32_t seq = 0;
  int64_t server_time_ms = 0;

  friend bool operator==(const dedup_record&, const dedup_record&) = default;
};

/// What the server remembers about one device of a user.
struct device_record {
  uint32_t epoch = 0;
  uint32_t cursor = 0;

  friend bool operator==(const device_record&, const device_record&) = default;
};

/// Where a device's third-party pushes go: the push gateway's app id (`platform`) and the
/// device's push key there (an APNs/FCM token, as the device's app got it).
struct push_record {
  std::string platform;
  std::string token;

  friend bool operator==(const push_record&, const push_record&) = default;
};

/// A device's resume token, which logs it in again without its password: what the token hashes
/// to (the token itself is never stored) and when it was issued or last renewed.
struct resume_record {
  std::string token_hash;
  int64_t issued_ms = 0;

  friend bool operator==(const resume_record&, const resume_record&) = default;
};

} // namespace missive::storage

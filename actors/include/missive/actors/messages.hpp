#pragma once

// The plain data types of Missive's messages, free of CAF so that the client library can share
// them. vocabulary.hpp makes them CAF message types.

#include <cstdint>
#include <string>
#include <vector>

#include "missive/storage/records.hpp"

namespace missive {

using entry = storage::entry;

/// A device's third-party push registration.
struct push_registration {
  std::string device;
  std::string platform;
  std::string token;
};

/// What a user actor is activated with: read from storage in one request.
struct mailbox_state {
  uint32_t epoch = 0;
  uint32_t last_seq = 0;     // highest seq ever assigned and stored
  uint32_t expired_upto = 0; // retention deleted entries up to here (0: none)
  std::vector<std::string> blocked; // users this user refuses messages from
  std::vector<push_registration> pushes; // devices with a third-party push key
};

/// Entries read from storage, and how far retention has deleted the mailbox.
struct entry_page {
  std::vector<entry> entries;
  uint32_t expired_upto = 0;
};

/// A send as the sender's device made it.
struct outgoing {
  uint64_t client_msg_id = 0;
  std::string to;
  std::string body;
  uint32_t request_bytes = 0; // size of the whole request on the wire (0: not known)
};

/// The sender's answer: its own copy's seq and the time the server stamped on the message.
struct send_result {
  uint32_t seq = 0;
  int64_t server_time_ms = 0;

  friend bool operator==(const send_result&, const send_result&) = default;
};

/// Sender's actor -> recipient's actor: store this message in your mailbox, and store the
/// sender's outgoing copy (`sender_copy`, seq already assigned by the sender) in the same
/// atomic batch. Answered with the recipient's seq once both are durable.
struct delivery {
  entry sender_copy;
  /// A group fan-out: store only this recipient's copy, deduplicated on (recipient, origin,
  /// client msg id). `origin` is the sender (messages) or the group (system entries).
  bool group = false;
  std::string origin;
};

/// One mailbox write for the persistence actor. `key`: this append names the send — its entry
/// is written with the dedup record of `(mailbox, origin, client msg id)`, and if that record
/// exists already, nothing of the batch is written and the answer is the first result. An
/// append that is not the key (the recipient's copy of a 1:1 message) writes its entry only:
/// no retry ever looks it up by its own record.
struct mailbox_append {
  std::string mailbox;
  std::string origin;
  entry e;
  bool key = false;
};

using storage::group_role;

/// One member of a group.
struct group_member {
  std::string user;
  group_role role = group_role::member;

  friend bool operator==(const group_member&, const group_member&) = default;
};

/// A group as read at activation.
struct group_info {
  std::string name;
  storage::group_record record;
  std::vector<group_member> members;
};

/// A membership operation, by `actor` (the user asking).
struct group_op {
  enum class kind : uint8_t { create, add, remove, leave, set_admin, unset_admin };
  kind what = kind::add;
  std::string group;
  std::string actor;
  std::string user; // the member it is about (add, remove, set/unset admin)
};

/// A durable membership change for the persistence actor: the group's record (its change
/// counter moved) and one member added/changed (remove false) or removed.
struct member_change {
  std::string group;
  storage::group_record record;
  std::string user;
  bool remove = false;
  group_role role = group_role::member;
};

/// A device's cursor as the server keeps it.
struct device_cursor {
  std::string user;
  std::string device;
  uint32_t epoch = 0;
  uint32_t cursor = 0;
};

/// Answer to a sync: entries after the cursor in seq order, at most `limit`.
struct sync_result {
  uint32_t epoch = 0;
  uint32_t max_seq = 0;
  std::vector<entry> entries;
  /// Retention deleted entries after the cursor: `entries` start with the oldest retained one.
  bool expired = false;
};

/// What a device learns when its session attaches to its user actor.
struct session_info {
  uint32_t epoch = 0;
  uint32_t max_seq = 0;
  uint32_t cursor = 0; // last seq the device acknowledged in this epoch, 0 if none
};

/// "User X has new entries": every entry with seq in (after_seq, max_seq], in order. When
/// `entries` would be too big to carry, `complete` is false and the device must sync.
struct notice {
  std::string user;
  uint32_t epoch = 0;
  uint32_t after_seq = 0;
  uint32_t max_seq = 0;
  bool complete = true;
  std::vector<entry> entries;
};

/// Answer to an append: `found` true if the send had been stored before (then `result` is
/// what it got the first time and nothing new was written).
struct dedup_hit {
  bool found = false;
  send_result result;
};

} // namespace missive

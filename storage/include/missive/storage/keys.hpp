#pragma once

#include <cstdint>
#include <string>
#include <string_view>

// The only place that knows how keys are laid out. Every key starts with a one-byte key
// space; names are length-prefixed so that no user's range is a prefix of another's; numbers
// are big-endian so that byte order is numeric order.
namespace missive::storage::keys {

enum class space : uint8_t {
  account = 0x01,  // (user) -> password hash
  meta = 0x02,     // (user) -> mailbox_meta
  entry = 0x03,    // (user, seq) -> entry
  dedup = 0x04,    // (mailbox user, origin user, client msg id) -> dedup_record
  device = 0x05,   // (user, device) -> device_record
  block = 0x06,    // (user, blocked user) -> empty: `user` refuses messages from `blocked`
  push = 0x07,     // (user, device) -> push_record: where third-party pushes for the device go
  group = 0x08,    // (group) -> group_record
  member = 0x09,   // (group, user) -> role byte
  membership = 0x0A, // (user, group) -> empty: the groups a user belongs to
  resume = 0x0B,   // (user, device) -> resume_record: the device's login without its password
};

/// Longest user or device name a key can hold.
constexpr size_t max_name_bytes = 255;

std::string account(std::string_view user);
std::string meta(std::string_view user);
std::string entry(std::string_view user, uint32_t seq);
std::string dedup(std::string_view mailbox, std::string_view origin, uint64_t client_msg_id);
/// The prefix of every dedup key of `mailbox`.
std::string dedups_of(std::string_view mailbox);
std::string device(std::string_view user, std::string_view device);
std::string block(std::string_view user, std::string_view blocked);
/// The prefix of every block key of `user`.
std::string blocks_of(std::string_view user);
std::string push(std::string_view user, std::string_view device);
/// The prefix of every push key of `user`.
std::string pushes_of(std::string_view user);
std::string resume(std::string_view user, std::string_view device);
std::string group(std::string_view group);
std::string member(std::string_view group, std::string_view user);
std::string members_of(std::string_view group);
std::string membership(std::string_view user, std::string_view group);
std::string memberships_of(std::string_view user);

/// Reads the seq back out of a key made by `entry(user, seq)`; false if `key` is not one.
bool parse_entry(std::string_view key, std::string_view user, uint32_t* seq);

} // namespace missive::storage::keys

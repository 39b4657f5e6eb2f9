#include "missive/storage/keys.hpp"

#include "bytes.hpp"

namespace missive::storage::keys {

namespace {

std::string start(space s, std::string_view user) {
  std::string k;
  k.reserve(1 + 1 + user.size() + 16);
  k.push_back(static_cast<char>(s));
  bytes::put_str<uint8_t>(k, user.substr(0, max_name_bytes));
  return k;
}

} // namespace

std::string account(std::string_view user) {
  return start(space::account, user);
}

std::string meta(std::string_view user) {
  return start(space::meta, user);
}

std::string entry(std::string_view user, uint32_t seq) {
  auto k = start(space::entry, user);
  bytes::put_be<uint32_t>(k, seq);
  return k;
}

std::string dedup(std::string_view mailbox, std::string_view origin, uint64_t client_msg_id) {
  auto k = start(space::dedup, mailbox);
  bytes::put_str<uint8_t>(k, origin.substr(0, max_name_bytes));
  bytes::put_be<uint64_t>(k, client_msg_id);
  return k;
}

std::string dedups_of(std::string_view mailbox) {
  return start(space::dedup, mailbox);
}

std::string device(std::string_view user, std::string_view device) {
  auto k = start(space::device, user);
  bytes::put_str<uint8_t>(k, device.substr(0, max_name_bytes));
  return k;
}

std::string block(std::string_view user, std::string_view blocked) {
  auto k = start(space::block, user);
  bytes::put_str<uint8_t>(k, blocked.substr(0, max_name_bytes));
  return k;
}

std::string blocks_of(std::string_view user) {
  return start(space::block, user);
}

std::string push(std::string_view user, std::string_view device) {
  auto k = start(space::push, user);
  bytes::put_str<uint8_t>(k, device.substr(0, max_name_bytes));
  return k;
}

std::string pushes_of(std::string_view user) {
  return start(space::push, user);
}

std::string resume(std::string_view user, std::string_view device) {
  auto k = start(space::resume, user);
  bytes::put_str<uint8_t>(k, device.substr(0, max_name_bytes));
  return k;
}

std::string group(std::string_view group) {
  return start(space::group, group);
}

std::string member(std::string_view group, std::string_view user) {
  auto k = start(space::member, group);
  bytes::put_str<uint8_t>(k, user.substr(0, max_name_bytes));
  return k;
}

std::string members_of(std::string_view group) {
  return start(space::member, group);
}

std::string membership(std::string_view user, std::string_view group) {
  auto k = start(space::membership, user);
  bytes::put_str<uint8_t>(k, group.substr(0, max_name_bytes));
  return k;
}

std::string memberships_of(std::string_view user) {
  return start(space::membership, user);
}

bool parse_entry(std::string_view key, std::string_view user, uint32_t* seq) {
  auto prefix = start(space::entry, user);
  if (key.size() != prefix.size() + 4 || key.substr(0, prefix.size()) != prefix)
    return false;
  key.remove_prefix(prefix.size());
  return bytes::get_be<uint32_t>(key, seq);
}

} // namespace missive::storage::keys

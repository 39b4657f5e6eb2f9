#include "missive/storage/codec.hpp"

#include "bytes.hpp"

namespace missive::storage::codec {

namespace {

constexpr uint8_t version = 1;

bool check_version(std::string_view& in) {
  uint8_t v = 0;
  return bytes::get_be<uint8_t>(in, &v) && v == version;
}

} // namespace

/// Entries of kind `message` keep format 1; other kinds (format 2) add a kind byte at the end.
constexpr uint8_t entry_with_kind = 2;

std::string encode(const entry& x) {
  std::string out;
  out.reserve(32 + x.from.size() + x.to.size() + x.body.size());
  bytes::put_be<uint8_t>(out, x.kind == entry_kind::message ? version : entry_with_kind);
  bytes::put_be<uint32_t>(out, x.seq);
  bytes::put_str<uint8_t>(out, x.from);
  bytes::put_str<uint8_t>(out, x.to);
  bytes::put_be<uint64_t>(out, x.client_msg_id);
  bytes::put_be<int64_t>(out, x.server_time_ms);
  bytes::put_str<uint32_t>(out, x.body);
  if (x.kind != entry_kind::message)
    bytes::put_be<uint8_t>(out, static_cast<uint8_t>(x.kind));
  return out;
}

bool decode(std::string_view in, entry* x) {
  uint8_t v = 0;
  if (!bytes::get_be<uint8_t>(in, &v) || (v != version && v != entry_with_kind))
    return false;
  if (!(bytes::get_be(in, &x->seq) && bytes::get_str<uint8_t>(in, &x->from)
        && bytes::get_str<uint8_t>(in, &x->to) && bytes::get_be(in, &x->client_msg_id)
        && bytes::get_be(in, &x->server_time_ms) && bytes::get_str<uint32_t>(in, &x->body)))
    return false;
  x->kind = entry_kind::message;
  if (v == entry_with_kind) {
    uint8_t k = 0;
    if (!bytes::get_be<uint8_t>(in, &k) || k == 0 || k > static_cast<uint8_t>(entry_kind::member_left))
      return false;
    x->kind = static_cast<entry_kind>(k);
  }
  return in.empty();
}

std::string encode(const mailbox_meta& x) {
  std::string out;
  bytes::put_be<uint8_t>(out, version);
  bytes::put_be<uint32_t>(out, x.epoch);
  bytes::put_be<uint32_t>(out, x.seq_floor);
  return out;
}

bool decode(std::string_view in, mailbox_meta* x) {
  return check_version(in) && bytes::get_be(in, &x->epoch) && bytes::get_be(in, &x->seq_floor)
         && in.empty();
}

std::string encode(const dedup_record& x) {
  std::string out;
  bytes::put_be<uint8_t>(out, version);
  bytes::put_be<uint32_t>(out, x.seq);
  bytes::put_be<int64_t>(out, x.server_time_ms);
  return out;
}

bool decode(std::string_view in, dedup_record* x) {
  return check_version(in) && bytes::get_be(in, &x->seq) && bytes::get_be(in, &x->server_time_ms)
         && in.empty();
}

std::string encode(const device_record& x) {
  std::string out;
  bytes::put_be<uint8_t>(out, version);
  bytes::put_be<uint32_t>(out, x.epoch);
  bytes::put_be<uint32_t>(out, x.cursor);
  return out;
}

bool decode(std::string_view in, device_record* x) {
  return check_version(in) && bytes::get_be(in, &x->epoch) && bytes::get_be(in, &x->cursor)
         && in.empty();
}

std::string encode(const push_record& x) {
  std::string out;
  bytes::put_be<uint8_t>(out, version);
  bytes::put_str<uint8_t>(out, x.platform);
  bytes::put_str<uint16_t>(out, x.token);
  return out;
}

bool decode(std::string_view in, push_record* x) {
  return check_version(in) && bytes::get_str<uint8_t>(in, &x->platform)
         && bytes::get_str<uint16_t>(in, &x->token) && in.empty();
}

std::string encode(const resume_record& x) {
  std::string out;
  bytes::put_be<uint8_t>(out, version);
  bytes::put_str<uint8_t>(out, x.token_hash);
  bytes::put_be<int64_t>(out, x.issued_ms);
  return out;
}

bool decode(std::string_view in, resume_record* x) {
  return check_version(in) && bytes::get_str<uint8_t>(in, &x->token_hash)
         && bytes::get_be(in, &x->issued_ms) && in.empty();
}

std::string encode(const group_record& x) {
  std::string out;
  bytes::put_be<uint8_t>(out, version);
  bytes::put_str<uint8_t>(out, x.owner);
  bytes::put_be<int64_t>(out, x.created_ms);
  bytes::put_be<uint64_t>(out, x.changes);
  return out;
}

bool decode(std::string_view in, group_record* x) {
  return check_version(in) && bytes::get_str<uint8_t>(in, &x->owner)
         && bytes::get_be(in, &x->created_ms) && bytes::get_be(in, &x->changes) && in.empty();
}

} // namespace missive::storage::codec

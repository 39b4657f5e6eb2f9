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

std::string encode(const entry& x) {
  std::string out;
  out.reserve(32 + x.from.size() + x.to.size() + x.body.size());
  bytes::put_be<uint8_t>(out, version);
  bytes::put_be<uint32_t>(out, x.seq);
  bytes::put_str<uint8_t>(out, x.from);
  bytes::put_str<uint8_t>(out, x.to);
  bytes::put_be<uint64_t>(out, x.client_msg_id);
  bytes::put_be<int64_t>(out, x.server_time_ms);
  bytes::put_str<uint32_t>(out, x.body);
  return out;
}

bool decode(std::string_view in, entry* x) {
  return check_version(in) && bytes::get_be(in, &x->seq) && bytes::get_str<uint8_t>(in, &x->from)
         && bytes::get_str<uint8_t>(in, &x->to) && bytes::get_be(in, &x->client_msg_id)
         && bytes::get_be(in, &x->server_time_ms) && bytes::get_str<uint32_t>(in, &x->body)
         && in.empty();
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

} // namespace missive::storage::codec

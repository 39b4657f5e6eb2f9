#pragma once

// The part of MQTT 3.1.1 that `missive-mqtt-load` speaks (OASIS MQTT 3.1.1, section 2 and 3):
// CONNECT, SUBSCRIBE, PUBLISH at QoS 0 or 1, PUBACK and DISCONNECT out; CONNACK, SUBACK,
// PUBLISH and PUBACK in. Plain functions over std::string buffers, so the test can check them
// without a broker.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace missive::mqtt {

enum class packet_type : uint8_t {
  connect = 1, connack = 2, publish = 3, puback = 4, subscribe = 8, suback = 9,
  disconnect = 14,
};

inline void put_u16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

inline void put_string(std::string& out, std::string_view s) {
  put_u16(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

/// The fixed header: the first byte, then the remaining length in 1 to 4 bytes of 7 bits.
inline void put_fixed_header(std::string& out, uint8_t first, size_t remaining) {
  out += static_cast<char>(first);
  do {
    auto b = static_cast<uint8_t>(remaining % 128);
    remaining /= 128;
    if (remaining > 0)
      b |= 0x80;
    out += static_cast<char>(b);
  } while (remaining > 0);
}

/// CONNECT without will, user name or password. `clean_session` false asks the broker to keep
/// the session (subscriptions and undelivered QoS 1 messages) across connections; `keep_alive`
/// 0 turns the broker's keep-alive check off.
inline void put_connect(std::string& out, std::string_view client_id, bool clean_session,
                        uint16_t keep_alive = 0) {
  size_t remaining = 2 + 4 + 1 + 1 + 2 + 2 + client_id.size();
  put_fixed_header(out, 0x10, remaining);
  put_string(out, "MQTT");
  out += static_cast<char>(4); // protocol level: 3.1.1
  out += static_cast<char>(clean_session ? 0x02 : 0x00);
  put_u16(out, keep_alive);
  put_string(out, client_id);
}

/// SUBSCRIBE to one topic filter at `qos`.
inline void put_subscribe(std::string& out, uint16_t packet_id, std::string_view filter,
                          uint8_t qos) {
  put_fixed_header(out, 0x82, 2 + 2 + filter.size() + 1);
  put_u16(out, packet_id);
  put_string(out, filter);
  out += static_cast<char>(qos);
}

/// PUBLISH; `packet_id` is written only for QoS 1 and 2.
inline void put_publish(std::string& out, std::string_view topic, uint8_t qos,
                        uint16_t packet_id, std::string_view payload) {
  size_t remaining = 2 + topic.size() + (qos > 0 ? 2 : 0) + payload.size();
  put_fixed_header(out, static_cast<uint8_t>(0x30 | (qos << 1)), remaining);
  put_string(out, topic);
  if (qos > 0)
    put_u16(out, packet_id);
  out.append(payload);
}

inline void put_puback(std::string& out, uint16_t packet_id) {
  put_fixed_header(out, 0x40, 2);
  put_u16(out, packet_id);
}

inline void put_disconnect(std::string& out) {
  put_fixed_header(out, 0xe0, 0);
}

/// One packet read from the front of a buffer. `body` is everything after the fixed header.
struct packet {
  uint8_t first = 0; // type in the high 4 bits, flags in the low 4
  std::string_view body;
  size_t size = 0; // fixed header + body: how much of the buffer it took

  packet_type type() const { return static_cast<packet_type>(first >> 4); }
};

enum class parse_status { complete, incomplete, malformed };

/// Reads the packet at the front of `buf`. `incomplete`: more bytes are needed; `malformed`:
/// the remaining length has a fifth byte, which 3.1.1 forbids.
inline parse_status parse_packet(std::string_view buf, packet* out) {
  if (buf.size() < 2)
    return parse_status::incomplete;
  size_t remaining = 0;
  size_t at = 1;
  for (int shift = 0;; shift += 7) {
    if (at >= buf.size())
      return parse_status::incomplete;
    if (shift > 21)
      return parse_status::malformed;
    auto b = static_cast<uint8_t>(buf[at++]);
    remaining |= size_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0)
      break;
  }
  if (buf.size() - at < remaining)
    return parse_status::incomplete;
  out->first = static_cast<uint8_t>(buf[0]);
  out->body = buf.substr(at, remaining);
  out->size = at + remaining;
  return parse_status::complete;
}

inline uint16_t get_u16(std::string_view s, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[at]) << 8)
                               | static_cast<uint8_t>(s[at + 1]));
}

/// The fields of a PUBLISH packet; nullopt if its body is too short for what it declares.
struct publish_view {
  uint8_t qos = 0;
  std::string_view topic;
  uint16_t packet_id = 0;
  std::string_view payload;
};

inline std::optional<publish_view> read_publish(const packet& p) {
  publish_view v;
  v.qos = (p.first >> 1) & 3;
  if (p.body.size() < 2)
    return std::nullopt;
  size_t len = get_u16(p.body, 0);
  size_t at = 2 + len + (v.qos > 0 ? 2 : 0);
  if (p.body.size() < at || v.qos == 3)
    return std::nullopt;
  v.topic = p.body.substr(2, len);
  if (v.qos > 0)
    v.packet_id = get_u16(p.body, 2 + len);
  v.payload = p.body.substr(at);
  return v;
}

} // namespace missive::mqtt

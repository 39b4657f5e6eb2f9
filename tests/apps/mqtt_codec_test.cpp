#include "mqtt_codec.hpp"

#include <gtest/gtest.h>

namespace missive::mqtt {
namespace {

std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v)
    s += static_cast<char>(b);
  return s;
}

TEST(mqtt_codec, remaining_length_takes_one_to_four_bytes_at_the_spec_boundaries) {
  // OASIS MQTT 3.1.1, table 2.4: 127 | 128 | 16,383 | 16,384 | 2,097,151 | 2,097,152.
  struct { size_t length; std::string encoded; } cases[] = {
    {0, bytes({0x00})},
    {127, bytes({0x7f})},
    {128, bytes({0x80, 0x01})},
    {16383, bytes({0xff, 0x7f})},
    {16384, bytes({0x80, 0x80, 0x01})},
    {2097151, bytes({0xff, 0xff, 0x7f})},
    {2097152, bytes({0x80, 0x80, 0x80, 0x01})},
    {268435455, bytes({0xff, 0xff, 0xff, 0x7f})},
  };
  for (auto& c : cases) {
    std::string out;
    put_fixed_header(out, 0x30, c.length);
    EXPECT_EQ(out, "\x30" + c.encoded) << c.length;
    // Parsing the header with its body present gives the body back, whole (the largest is
    // checked as incomplete: 256 MB is more than a test should allocate).
    packet p;
    if (c.length > 2097152) {
      EXPECT_EQ(parse_packet(out + "b", &p), parse_status::incomplete);
      continue;
    }
    std::string packet_bytes = out + std::string(c.length, 'b');
    ASSERT_EQ(parse_packet(packet_bytes, &p), parse_status::complete) << c.length;
    EXPECT_EQ(p.body.size(), c.length);
    EXPECT_EQ(p.size, packet_bytes.size());
    EXPECT_EQ(p.type(), packet_type::publish);
  }
}

TEST(mqtt_codec, every_prefix_of_a_packet_is_incomplete_and_the_next_packet_is_left_alone) {
  std::string out;
  put_publish(out, "t/1", 1, 513, std::string(200, 'p')); // a two-byte remaining length
  put_puback(out, 7);
  size_t first = 1 + 2 + (2 + 3) + 2 + 200; // type, length, topic, packet id, payload
  for (size_t n = 0; n < first; ++n) {
    packet p;
    EXPECT_EQ(parse_packet(std::string_view(out).substr(0, n), &p), parse_status::incomplete)
      << n;
  }
  packet p;
  ASSERT_EQ(parse_packet(out, &p), parse_status::complete);
  EXPECT_EQ(p.size, first);
  packet next;
  ASSERT_EQ(parse_packet(std::string_view(out).substr(p.size), &next), parse_status::complete);
  EXPECT_EQ(next.type(), packet_type::puback);
  EXPECT_EQ(get_u16(next.body, 0), 7);
}

TEST(mqtt_codec, a_fifth_length_byte_is_malformed) {
  packet p;
  EXPECT_EQ(parse_packet(bytes({0x30, 0xff, 0xff, 0xff, 0xff, 0x01}), &p),
            parse_status::malformed);
}

TEST(mqtt_codec, publish_round_trips_at_qos_0_and_1) {
  for (uint8_t qos : {0, 1}) {
    std::string out;
    std::string payload = bytes({0, 1, 2, 0xff}) + "body";
    put_publish(out, "load/42", qos, 0xbeef, payload);
    packet p;
    ASSERT_EQ(parse_packet(out, &p), parse_status::complete);
    EXPECT_EQ(p.first, 0x30 | (qos << 1));
    auto v = read_publish(p);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->qos, qos);
    EXPECT_EQ(v->topic, "load/42");
    EXPECT_EQ(v->packet_id, qos ? 0xbeef : 0);
    EXPECT_EQ(v->payload, payload);
  }
}

TEST(mqtt_codec, a_publish_shorter_than_its_topic_or_packet_id_is_refused) {
  packet p;
  p.first = 0x32; // QoS 1
  std::string body = bytes({0x00, 0x05}) + "abc"; // says 5 bytes of topic, has 3
  p.body = body;
  EXPECT_FALSE(read_publish(p).has_value());
  std::string no_id = bytes({0x00, 0x01}) + "a" + bytes({0x01}); // QoS 1 needs 2 id bytes
  p.body = no_id;
  EXPECT_FALSE(read_publish(p).has_value());
  p.first = 0x36; // QoS 3 does not exist
  std::string fine = bytes({0x00, 0x01}) + "a" + bytes({0x00, 0x01});
  p.body = fine;
  EXPECT_FALSE(read_publish(p).has_value());
}

TEST(mqtt_codec, connect_and_subscribe_are_laid_out_as_the_spec_says) {
  std::string out;
  put_connect(out, "c1", false, 60);
  // Fixed header, "MQTT", level 4, flags (clean session off), keep-alive 60, client id.
  EXPECT_EQ(out, bytes({0x10, 14, 0, 4}) + "MQTT" + bytes({4, 0x00, 0, 60, 0, 2}) + "c1");
  out.clear();
  put_connect(out, "c1", true);
  EXPECT_EQ(static_cast<uint8_t>(out[9]), 0x02);
  out.clear();
  put_subscribe(out, 10, "a/b", 1);
  EXPECT_EQ(out, bytes({0x82, 8, 0, 10, 0, 3}) + "a/b" + bytes({1}));
  out.clear();
  put_disconnect(out);
  EXPECT_EQ(out, bytes({0xe0, 0}));
}

} // namespace
} // namespace missive::mqtt

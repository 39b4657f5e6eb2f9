#include "missive/storage/codec.hpp"

#include <gtest/gtest.h>

namespace missive::storage {
namespace {

TEST(codec, entry_round_trips_with_binary_body) {
  entry e{42, "alice", "bob", 0xdeadbeefcafef00dULL, 1700000000123, std::string("a\0b\xff", 4)};
  entry back;
  ASSERT_TRUE(codec::decode(codec::encode(e), &back));
  EXPECT_EQ(back, e);
}

TEST(codec, records_round_trip) {
  mailbox_meta m{0x12345678, 99}, m2;
  ASSERT_TRUE(codec::decode(codec::encode(m), &m2));
  EXPECT_EQ(m2, m);
  dedup_record d{7, -5}, d2;
  ASSERT_TRUE(codec::decode(codec::encode(d), &d2));
  EXPECT_EQ(d2, d);
  device_record r{3, 4}, r2;
  ASSERT_TRUE(codec::decode(codec::encode(r), &r2));
  EXPECT_EQ(r2, r);
  resume_record t{std::string(32, '\xa5'), 1700000000123}, t2;
  ASSERT_TRUE(codec::decode(codec::encode(t), &t2));
  EXPECT_EQ(t2, t);
  EXPECT_FALSE(codec::decode(codec::encode(t).substr(0, 10), &t2)); // cut short
}

TEST(codec, system_entries_keep_their_kind_and_messages_keep_format_1) {
  entry sys{3, "alice", "#team", 9, 1700000000000, "bob", entry_kind::member_added};
  entry back;
  ASSERT_TRUE(codec::decode(codec::encode(sys), &back));
  EXPECT_EQ(back, sys);
  entry msg{1, "a", "b", 1, 1, "hi"};
  EXPECT_EQ(codec::encode(msg)[0], 1); // unchanged format for plain messages
  auto bad = codec::encode(sys);
  bad.back() = 9; // no such kind
  EXPECT_FALSE(codec::decode(bad, &back));
  group_record g{"alice", 1700000000000, 7}, g2;
  ASSERT_TRUE(codec::decode(codec::encode(g), &g2));
  EXPECT_EQ(g2, g);
  push_record p{"com.example.ios", "tok"}, p2;
  ASSERT_TRUE(codec::decode(codec::encode(p), &p2));
  EXPECT_EQ(p2, p);
}

TEST(codec, malformed_values_are_rejected) {
  entry e{1, "a", "b", 1, 1, "hello"};
  auto bytes = codec::encode(e);
  entry out;
  EXPECT_FALSE(codec::decode(bytes.substr(0, bytes.size() - 1), &out)); // truncated
  EXPECT_FALSE(codec::decode(bytes + "x", &out));                       // trailing junk
  auto wrong_version = bytes;
  wrong_version[0] = 9;
  EXPECT_FALSE(codec::decode(wrong_version, &out));
  mailbox_meta m;
  EXPECT_FALSE(codec::decode("", &m));
}

} // namespace
} // namespace missive::storage

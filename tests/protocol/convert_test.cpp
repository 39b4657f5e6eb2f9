// Encoding of Missive's types on the wire (protocol/src/convert.hpp) through a real
// Cap'n Proto message, as it is framed on a connection.

#include "convert.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

namespace missive::protocol {
namespace {

TEST(convert, an_entry_survives_the_wire) {
  storage::entry e{4000000000u, "alice", "bob", 0xfedcba9876543210ULL, 1700000000123,
                   std::string("bin\0ary\xff", 8)};
  capnp::MallocMessageBuilder builder;
  write_entry(builder.initRoot<wire::Entry>(), e);
  auto words = capnp::messageToFlatArray(builder);
  capnp::FlatArrayMessageReader reader(words);
  EXPECT_EQ(read_entry(reader.getRoot<wire::Entry>()), e);
}

TEST(convert, an_entry_costs_little_more_than_its_body) {
  storage::entry e{1, "alice", "bob", 1, 1, std::string(64, 'x')};
  capnp::MallocMessageBuilder builder;
  write_entry(builder.initRoot<wire::Entry>(), e);
  // 3 data words + 3 pointers + texts and body padded to words.
  EXPECT_LE(capnp::computeSerializedSizeInWords(builder) * sizeof(capnp::word), 160u);
}

TEST(convert, error_codes_keep_their_numbers) {
  // The server writes missive::errc numerically; clients read these enumerants.
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::BAD_CREDENTIALS), 3);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::STALE_EPOCH), 6);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::SESSION_REPLACED), 10);
}

} // namespace
} // namespace missive::protocol

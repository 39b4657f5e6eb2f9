#include "framing.hpp"

#include <kj/debug.h>

#include <algorithm>
#include <cstring>

#include "batched_stream.hpp"

namespace missive::protocol {

namespace {

/// Cap'n Proto's own limit on the segments of one message (`capnp::readMessage`).
constexpr uint32_t max_segments = 512;

// The segment table is little-endian on the wire.
uint32_t load_le32(const kj::byte* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

void store_le32(kj::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = kj::byte(v >> (8 * i));
}

} // namespace

next_message take_message(batched_stream& stream, uint64_t max_words) {
  next_message out;
  auto in = stream.buffered();
  if (in.size() < sizeof(capnp::word)) {
    out.wait_for = sizeof(capnp::word);
    return out;
  }
  uint32_t count = load_le32(in.begin()) + 1;
  if (count == 0 || count >= max_segments)
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "Message has too many segments."));
  size_t header = (count / 2 + 1) * sizeof(capnp::word);
  if (in.size() < header) {
    out.wait_for = header;
    return out;
  }
  uint64_t words = 0;
  for (uint32_t i = 0; i < count; ++i)
    words += load_le32(in.begin() + 4 + 4 * i);
  if (words > max_words)
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "Message is too large. To increase the limit "
                                                 "on the receiving end, see capnp::ReaderOptions."));
  size_t total = header + words * sizeof(capnp::word);
  if (in.size() < total && total <= batched_stream::chunk) {
    out.wait_for = total;
    return out;
  }
  out.words = kj::heapArray<capnp::word>(total / sizeof(capnp::word));
  size_t have = std::min(in.size(), total);
  std::memcpy(out.words.asBytes().begin(), in.begin(), have);
  stream.consume(have);
  out.rest = total - have;
  return out;
}

bool write_now(batched_stream& stream, capnp::MessageBuilder& message) {
  auto segments = message.getSegmentsForOutput();
  constexpr size_t most = 15; // segments written at once; a message with more waits its turn
  if (segments.size() > most)
    return false;
  kj::byte table[(most / 2 + 1) * sizeof(capnp::word)] = {};
  store_le32(table, uint32_t(segments.size() - 1));
  for (size_t i = 0; i < segments.size(); ++i)
    store_le32(table + 4 * (i + 1), uint32_t(segments[i].size()));
  kj::ArrayPtr<const kj::byte> pieces[most + 1];
  pieces[0] = kj::arrayPtr(table, (segments.size() / 2 + 1) * sizeof(capnp::word));
  for (size_t i = 0; i < segments.size(); ++i)
    pieces[i + 1] = segments[i].asBytes();
  return stream.try_write_now(kj::arrayPtr(pieces, segments.size() + 1));
}

} // namespace missive::protocol

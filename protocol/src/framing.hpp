#pragma once

#include <capnp/common.h>
#include <capnp/message.h>
#include <kj/array.h>

#include <cstddef>
#include <cstdint>

namespace missive::protocol {

class batched_stream;

/// What a batched_stream's buffer holds of the next Cap'n Proto message (the framing
/// `capnp::writeMessage` writes: the segment count less one, each segment's size in words,
/// padded to a whole word, then the segments). A reader takes whole messages out of the buffer
/// itself, so that a message read together with the ones before it costs no promise
/// (`capnp::tryReadMessage` chains 3–5 per message).
struct next_message {
  /// The message (its segment table, then its segments), if it is taken; with `rest` > 0 only
  /// its first part is filled in, and the last `rest` bytes are still to be read into it (a
  /// message bigger than the stream's buffer).
  kj::Array<capnp::word> words;
  size_t rest = 0;
  /// With no message: wait until the stream buffers this many bytes, then ask again.
  size_t wait_for = 0;
};

/// Takes the next message out of `stream`'s buffer if it is there (or starts one bigger than
/// the buffer). Cap'n Proto's limits: fewer than 512 segments, at most `max_words` words; a
/// message over them is a kj::Exception (FAILED) and the stream is left as it was.
next_message take_message(batched_stream& stream, uint64_t max_words);

/// Queues `message`, framed, in `stream`'s next write at once (no copy into a flat array, no
/// promise), unless something stands in the way (batched_stream::try_write_now) or it has more
/// than 15 segments: false, and the caller writes it the usual way, in order after the rest.
bool write_now(batched_stream& stream, capnp::MessageBuilder& message);

} // namespace missive::protocol

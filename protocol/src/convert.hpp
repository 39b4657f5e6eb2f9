#pragma once

// Conversions between Missive's plain types and the generated wire types. Used by the gateway
// and the client; nothing outside protocol/src sees a Cap'n Proto type.

#include <string>

#include <capnp/blob.h>
#include <kj/exception.h>

#include "missive.capnp.h"
#include "missive/protocol/client.hpp"
#include "missive/storage/records.hpp"

namespace missive::protocol {

inline std::string to_string(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

inline std::string to_string(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

inline capnp::Data::Reader as_data(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

inline void write_entry(wire::Entry::Builder out, const storage::entry& e) {
  out.setSeq(e.seq);
  out.setFrom(e.from);
  out.setTo(e.to);
  out.setClientMsgId(e.client_msg_id);
  out.setServerTime(e.server_time_ms);
  out.setBody(as_data(e.body));
  out.setKind(static_cast<wire::EntryKind>(e.kind));
}

inline storage::entry read_entry(wire::Entry::Reader in) {
  auto kind = static_cast<uint16_t>(in.getKind());
  return storage::entry{in.getSeq(),
                        to_string(in.getFrom()),
                        to_string(in.getTo()),
                        in.getClientMsgId(),
                        in.getServerTime(),
                        to_string(in.getBody()),
                        kind <= static_cast<uint16_t>(storage::entry_kind::member_left)
                          ? static_cast<storage::entry_kind>(kind)
                          : storage::entry_kind::message};
}

/// A typed error from the wire. Codes this client does not know become `unavailable`.
inline error read_error(wire::Error::Reader in) {
  auto code = static_cast<uint16_t>(in.getCode());
  return error{code <= static_cast<uint16_t>(error_code::group_full) ? static_cast<error_code>(code)
                                                               : error_code::unavailable,
               to_string(in.getMessage()), in.getEpoch(), in.getMaxSeq(), in.getRetryAfterMs()};
}

/// A failed call (the connection, not the server's answer).
inline error transport_error(const kj::Exception& e) {
  auto code = e.getType() == kj::Exception::Type::OVERLOADED ? error_code::timeout
                                                               : error_code::disconnected;
  return error{code, e.getDescription().cStr()};
}

} // namespace missive::protocol

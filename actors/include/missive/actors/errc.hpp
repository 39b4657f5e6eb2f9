#pragma once

#include <cstdint>
#include <string>

#include <caf/error.hpp>

namespace missive {

/// Every failure a client can act on. Actors answer with `caf::make_error(errc::…, text)`;
/// the RPC layer maps each code to a typed error on the wire (protocol/missive.capnp).
/// Value 0 is reserved: CAF treats an error with code 0 as "no error".
enum class errc : uint8_t {
  invalid_argument = 1,  // malformed request: empty name, zero client id, bad limit…
  unknown_user = 2,      // the named user has no account
  bad_credentials = 3,   // login with a wrong password or for an unknown account
  user_exists = 4,       // registration of a name that is taken
  too_large = 5,         // body above the configured limit
  stale_epoch = 6,       // the client's epoch is not the mailbox's: resync from zero
  cursor_ahead = 7,      // afterSeq/ack beyond the mailbox's max seq
  storage_failure = 8,   // the write was not made durable; nothing was acknowledged
  unavailable = 9,       // the server is shutting down or an internal hop failed; retry
  session_replaced = 10, // another login of the same device took over this session
  seq_exhausted = 11,    // the mailbox's 32-bit seq space is used up (needs a new epoch)
  blocked = 12,          // the recipient blocks the sender; nothing was stored
  rate_limited = 13,     // the sender sends too fast; context: milliseconds until a retry passes
  spam = 14,             // the spam filter rejected the message; nothing was stored
  unknown_group = 15,    // no group of that name
  group_exists = 16,     // a group of that name exists already
  not_member = 17,       // the user is not a member of the group (send, list, leave, remove)
  not_allowed = 18,      // the user's role does not allow it (or: the owner cannot leave)
  group_full = 19,       // the group has max-group-size members
};

std::string to_string(errc x);

} // namespace missive

CAF_ERROR_CODE_ENUM(missive::errc, "missive")

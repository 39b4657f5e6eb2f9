#pragma once

// The typed interfaces of Missive's actors. They live in one header because they name each
// other (a user actor hands out its handle, a directory hands out user actors).

#include <cstdint>
#include <string>
#include <vector>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "missive/actors/vocabulary.hpp"

namespace missive {

/// The only code that calls LevelDB. Spawned detached. Writes are group-committed: every
/// write that arrives while a batch is being synced goes into the next batch, and each
/// writer is answered only once its batch is durable.
using persistence_actor = caf::typed_actor<
  // Activation read of a user's mailbox; unknown_user if there is no account.
  caf::replies_to<load_atom, std::string>::with<mailbox_state>,
  // Durable appends (entry + dedup record each), all in one atomic batch — unless the send
  // was stored before: the sender's own copy (mailbox == origin) carries the send's dedup key,
  // and if that key exists nothing is written and the answer is the first result
  // (found = true). Answered once durable.
  caf::replies_to<append_atom, std::vector<mailbox_append>>::with<dedup_hit>,
  // Entries of `user` with seq in (after, upto], at most `limit`, and the retention floor.
  caf::replies_to<read_atom, std::string, uint32_t, uint32_t, uint32_t>::with<entry_page>,
  // Password hash of a user; unknown_user if none.
  caf::replies_to<account_atom, lookup_atom, std::string>::with<std::string>,
  // Creates account + empty mailbox with the given epoch; user_exists if taken.
  caf::replies_to<account_atom, register_atom, std::string, std::string, uint32_t>::with<ok_atom>,
  // A device's stored cursor (zeroes if none).
  caf::replies_to<cursor_atom, lookup_atom, std::string, std::string>::with<storage::device_record>,
  // Stores a device's cursor.
  caf::replies_to<cursor_atom, device_cursor>::with<ok_atom>,
  // (user, device): the device's resume token record (an empty hash if it has none).
  caf::replies_to<resume_atom, lookup_atom, std::string, std::string>::with<storage::resume_record>,
  // (user, device, record): the device's resume token from now on. Answered once durable.
  caf::replies_to<resume_atom, std::string, std::string, storage::resume_record>::with<ok_atom>,
  // The same, only if the device's token is still the record's (stored, and no newer one waits
  // to be): a renewal of its date never brings back a token a password login replaced.
  caf::replies_to<resume_atom, renew_atom, std::string, std::string,
                  storage::resume_record>::with<ok_atom>,
  // (user, keep): moves the mailbox to a fresh random epoch keeping its newest `keep` entries
  // renumbered from 1; answers with the new epoch and last seq.
  caf::replies_to<renumber_atom, std::string, uint32_t>::with<mailbox_state>,
  // (user, other, on): `user` blocks (on) or unblocks `other`; unknown_user if blocking a
  // user with no account. Answered once durable.
  caf::replies_to<block_atom, std::string, std::string, bool>::with<ok_atom>,
  // (origin, client msg id): what the send got when it was stored (found = false: never).
  caf::replies_to<lookup_atom, std::string, uint64_t>::with<dedup_hit>,
  // (user, device, platform, token): where the device's third-party pushes go; an empty token
  // removes the registration. Answered once durable.
  caf::replies_to<push_atom, std::string, std::string, std::string, std::string>::with<ok_atom>,
  // A group: its record and members; unknown_group if none.
  caf::replies_to<load_atom, group_atom, std::string>::with<group_info>,
  // (group, owner, now): creates the group with its owner as the only member; group_exists if
  // taken, unknown_user if the owner has no account.
  caf::replies_to<group_atom, register_atom, std::string, std::string, int64_t>::with<ok_atom>,
  // A membership change; adding a user with no account is unknown_user.
  caf::replies_to<group_atom, member_change>::with<ok_atom>,
  // (user): the groups the user belongs to.
  caf::replies_to<group_atom, lookup_atom, std::string>::with<std::vector<std::string>>,
  // Internal: the next step of the retention sweep.
  caf::reacts_to<expire_atom>,
  // Internal: commit the pending batch.
  caf::reacts_to<flush_atom>,
  // Commit what is pending, close the database and quit.
  caf::reacts_to<stop_atom>>;

/// One per user: owns the mailbox's seq counter, its recent entries, its online sessions
/// and its dedup window. The only writer of its mailbox.
using user_actor = caf::typed_actor<
  // From one of this user's devices: send a message. Idempotent on client_msg_id.
  caf::replies_to<send_atom, outgoing>::with<send_result>,
  // The same from a device's session on its gateway thread (not an actor): answered through
  // the reply_to.
  caf::reacts_to<send_atom, outgoing, reply_to<send_result>>,
  // From a sender's user actor: store the message here and the sender's copy with it.
  // found = true: this send was stored before; nothing new was written.
  caf::replies_to<deliver_atom, delivery>::with<dedup_hit>,
  // (epoch, after_seq, limit) -> entries after the cursor.
  caf::replies_to<sync_atom, uint32_t, uint32_t, uint32_t>::with<sync_result>,
  // (device, epoch, seq): remember the device's cursor.
  caf::replies_to<ack_atom, std::string, uint32_t, uint32_t>::with<ok_atom>,
  // (other, on): block or unblock `other`; answered once durable.
  caf::replies_to<block_atom, std::string, bool>::with<ok_atom>,
  // The users this user blocks, in name order.
  caf::replies_to<block_atom, lookup_atom>::with<std::vector<std::string>>,
  // (device, platform, token): register the device for third-party pushes (empty token:
  // unregister). Answered once durable.
  caf::replies_to<push_atom, std::string, std::string, std::string>::with<ok_atom>,
  // (device, token): the push gateway rejected the token; forget it unless it changed since.
  caf::reacts_to<rejected_atom, std::string, std::string>,
  // (device, where its notices go): a device's session begins; an older session of the same
  // device is closed (session_replaced).
  caf::replies_to<attach_atom, std::string, push_sink_ptr>::with<session_info>,
  // (device, its sink): that session is gone.
  caf::reacts_to<detach_atom, std::string, push_sink_ptr>,
  // Internal: idle check.
  caf::reacts_to<tick_atom>>;

/// One per active group: owns its member list, applies membership changes one at a time, and
/// fans messages and system entries out to the members' user actors (write diffusion: every
/// member's mailbox gets its own copy with its own seq).
using group_actor = caf::typed_actor<
  // From the sender's user actor: store `e` (the sender's copy, seq set) in every other
  // member's mailbox. not_member if the sender is not in the group. Answered once every copy
  // is durable; members who block the sender are skipped.
  caf::replies_to<send_atom, entry>::with<ok_atom>,
  // A membership operation (not create: the directory creates groups).
  caf::replies_to<group_atom, group_op>::with<ok_atom>,
  // (requester): the members; not_member unless the requester is one.
  caf::replies_to<group_atom, lookup_atom, std::string>::with<std::vector<group_member>>,
  // Internal: idle check.
  caf::reacts_to<tick_atom>>;

/// One per node: finds or activates user actors. Activation reads the mailbox meta first,
/// so an unknown user is an error here, never an actor.
using directory_actor = caf::typed_actor<
  caf::replies_to<lookup_atom, std::string>::with<user_actor>,
  // Finds or activates a group actor; unknown_group if there is no such group.
  caf::replies_to<lookup_atom, group_atom, std::string>::with<group_actor>,
  // Any membership operation: creates groups itself, forwards the rest to the group's actor.
  caf::replies_to<group_atom, group_op>::with<ok_atom>,
  caf::reacts_to<stop_atom>>;

/// PushSvr's third-party half. Online devices get their notices from their user actor directly;
/// for a registered device with no live session the user actor hands the dispatcher an
/// offline_push, and the dispatcher decides when it goes out (disconnect delay, at most one per
/// interval, retries with backoff) and sends it through the configured push_provider.
using dispatcher_actor = caf::typed_actor<
  // New entries for a device without a session (the newest unread count and preview win).
  caf::reacts_to<push_atom, offline_push, user_actor>,
  // (user, device): the device has a session now; nothing is pending for it any more.
  caf::reacts_to<attach_atom, std::string, std::string>,
  // (user, device): the device's session just ended; the disconnect delay starts now.
  caf::reacts_to<detach_atom, std::string, std::string>,
  // Internal: (user, device, generation) a push may be due.
  caf::reacts_to<flush_atom, std::string, std::string, uint64_t>,
  // Internal: (user, device, token, outcome) the provider's answer.
  caf::reacts_to<done_atom, std::string, std::string, std::string, push_outcome>,
  caf::reacts_to<stop_atom>>;

/// Password hashing and verification (CPU-heavy, so spawned detached). Each request carries
/// the hangup flag of the client it is for (may be null): the hash is skipped (unavailable)
/// once that client has gone, so that clients who gave up waiting do not hold up the ones
/// still waiting.
using accounts_actor = caf::typed_actor<
  // (user, password, the client's flag): a new account.
  caf::replies_to<register_atom, std::string, std::string, hangup_flag_ptr>::with<ok_atom>,
  // (user, password, the flag of the session asking): a password check.
  caf::replies_to<verify_atom, std::string, std::string, hangup_flag_ptr>::with<ok_atom>>;

/// A device is logged in: where its mailbox stands, and its user actor (to which its session
/// sends messages directly).
struct login_ok : session_info {
  user_actor owner;
  /// What the device presents to log in again without its password (empty: none issued).
  std::string resume_token;
};

/// One per call of a logged-in device other than `send` (which goes to the user actor): a
/// short-lived helper that makes the call on the device's behalf, answers through the
/// reply_to and quits. The gateway talks to it only by messages carrying a reply_to; no actor
/// lives per device.
using device_call_actor = caf::typed_actor<
  caf::reacts_to<sync_atom, uint32_t, uint32_t, uint32_t, reply_to<sync_result>>,
  caf::reacts_to<ack_atom, uint32_t, uint32_t, done_reply>,
  caf::reacts_to<block_atom, std::string, bool, done_reply>,
  caf::reacts_to<block_atom, lookup_atom, reply_to<std::vector<std::string>>>,
  // (platform, token): register this device for third-party pushes (empty token: unregister).
  caf::reacts_to<push_atom, std::string, std::string, done_reply>,
  // Group operations; the call fills in the acting user.
  caf::reacts_to<group_atom, group_op, done_reply>,
  caf::reacts_to<group_atom, lookup_atom, std::string, reply_to<std::vector<group_member>>>,
  caf::reacts_to<group_atom, lookup_atom, reply_to<std::vector<std::string>>>>;

} // namespace missive

// Process-local (see reply_to): never serialised.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<missive::login_ok>)

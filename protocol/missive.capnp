# Missive's client protocol: Cap'n Proto RPC over one long-lived TCP connection per device.
#
# A device bootstraps a `Gateway`, logs in, and holds the returned `Session` for as long as
# the connection lives. The server pushes through the `PushReceiver` the device handed over at
# login. Every call that can fail returns an `error` field: unset on success, otherwise a typed
# `Error` the client acts on. Exceptions are reserved for broken connections and server bugs.
#
# Sequence model (WeChat 2014): each user's mailbox numbers its entries with a 32-bit `seq`
# that only grows. The server knows the mailbox's `maxSeq`; each device keeps the highest seq it
# has (its cursor) and asks for `(cursor, maxSeq]`. Seqs are not contiguous: a client must never
# infer loss from a gap. `epoch` names the mailbox's sequence space; when it changes, cursors
# from the old epoch mean nothing and the device resyncs from zero.

@0xd9c7a8e34d7b1c55;

$import "/capnp/c++.capnp".namespace("missive::wire");

enum ErrorCode {
  none @0;              # never sent; the zero value of the enum
  invalidArgument @1;   # malformed request: bad name, clientMsgId 0, empty device id…
  unknownUser @2;       # the recipient (or the mailbox) does not exist
  badCredentials @3;    # login failed: wrong password or no such account
  userExists @4;        # createAccount with a name that is taken
  tooLarge @5;          # body over the server's limit (see `limit` in the message)
  staleEpoch @6;        # the epoch given is not the mailbox's: drop the cursor, sync from 0
  cursorAhead @7;       # afterSeq / ack beyond maxSeq: the cursor is not from this mailbox
  storageFailure @8;    # the server could not make the write durable; nothing was stored
  unavailable @9;       # the server is stopping or overloaded; retry later
  sessionReplaced @10;  # the same device logged in elsewhere; this session is closed
  seqExhausted @11;     # the mailbox ran out of 32-bit seqs; wait for the new epoch
  blocked @12;          # the recipient blocks the sender; nothing was stored
  rateLimited @13;      # the sender sends too fast; retry after `retryAfterMs`
  spam @14;             # the server's spam filter rejected the message; nothing was stored
  unknownGroup @15;     # no group of that name
  groupExists @16;      # createGroup with a name that is taken
  notMember @17;        # the user (or you) is not a member of the group
  notAllowed @18;       # your role in the group does not allow it; the owner cannot leave
  groupFull @19;        # the group has the server's max-group-size members
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;     # human-readable detail, for logs and people, not for parsing
  epoch @2 :UInt32;     # with staleEpoch: the mailbox's current epoch
  maxSeq @3 :UInt32;    # with cursorAhead: the mailbox's current maxSeq
  retryAfterMs @4 :UInt32; # with rateLimited: milliseconds until the send can pass
}

# What an entry is. Group system entries record membership changes in every member's mailbox:
# `from` is who did it, `to` the group, `body` (UTF-8) the member it is about.
enum EntryKind {
  message @0;
  groupCreated @1;   # body: the group's name
  memberAdded @2;
  memberRemoved @3;
  memberLeft @4;
}

# One mailbox entry. The same message stored in several mailboxes (sender, recipient, every
# member of a group) has the same from/to/clientMsgId/serverTime/body and a different seq.
# For a group message `to` is the group (`#name`).
struct Entry {
  seq @0 :UInt32;         # position in the mailbox it was read from
  from @1 :Text;          # sender's user name
  to @2 :Text;            # recipient's user name
  clientMsgId @3 :UInt64; # the sender device's id for the send (idempotency key)
  serverTime @4 :Int64;   # milliseconds since the Unix epoch, stamped once by the server
  body @5 :Data;          # opaque to the server
  kind @6 :EntryKind;     # message, or a group system entry
}

enum GroupRole {
  member @0;
  admin @1;   # adds and removes members
  owner @2;   # the creator: also appoints admins; cannot leave or be removed
}

struct Member {
  user @0 :Text;
  role @1 :GroupRole;
}

interface Gateway {
  # Creates an account with an empty mailbox. user: 1-64 chars of [A-Za-z0-9._-];
  # password: 6-1024 bytes. Errors: invalidArgument, userExists.
  createAccount @0 (user :Text, password :Text) -> (error :Error);

  # Authenticates one device of a user. deviceId names the device (same rules as user names);
  # a second login of the same device replaces the first session. `receiver` is where the server
  # pushes. On success returns the session and where the mailbox stands:
  #   epoch, maxSeq: the mailbox's epoch and max seq now;
  #   cursor: the last seq this device acknowledged in this epoch (0 if none).
  #   heartbeatMs: the server calls PushReceiver.heartbeat when the connection has been quiet
  #     this long; a device that hears nothing from the server for about twice as long should
  #     consider the connection dead and reconnect.
  #   resumeToken: what this device presents next time instead of the password (see below);
  #     empty if the server issues none (`resume-token-days = 0`, or it could not store one).
  # Credentials: the password, or `resumeToken` from an earlier login of the same user and
  # device (the password is then ignored). A password login issues the device a new token that
  # replaces its earlier one; a token login answers with the same token. A token is valid for
  # `resume-token-days` from its issue, and a login with it past half that time renews it for
  # as long again (the token stays the same); one that is expired, replaced, another device's or
  # unknown gets badCredentials: log in with the password again. A token costs the server
  # microseconds to check, a password an argon2id hash (about 130 ms of CPU at `interactive`):
  # reconnecting devices should use their token.
  # Errors: badCredentials, invalidArgument.
  login @1 (user :Text, password :Text, deviceId :Text, receiver :PushReceiver,
            resumeToken :Data)
        -> (error :Error, session :Session, epoch :UInt32, maxSeq :UInt32, cursor :UInt32,
            heartbeatMs :UInt32, resumeToken :Data);
}

interface Session {
  # Sends `body` to user `to`. clientMsgId (non-zero) is chosen by the device and makes the
  # call idempotent: repeating it, even after a timeout, a reconnect or a server restart,
  # returns the first result and stores nothing new. Answered only once the message is durable
  # in both mailboxes. seq: the sender's own copy in the sender's mailbox.
  # Before anything is stored the server's send policy runs (see the README): a refused send
  # stores nothing anywhere.
  # Errors: invalidArgument, unknownUser, tooLarge (body or whole request), blocked (by the
  # recipient), rateLimited (retry after `retryAfterMs`), spam, storageFailure, unavailable.
  #
  # `notice`, when set, is what this device would otherwise have been pushed next — at least
  # the send's own copy in the sender's mailbox: apply it exactly like a PushReceiver.notify.
  # The copy of a send rides on its answer so that sending costs the device no notify of its
  # own (the device's other sessions get the copy by notify as usual).
  send @0 (clientMsgId :UInt64, to :Text, body :Data)
       -> (error :Error, seq :UInt32, serverTime :Int64, notice :Notice);

  # Entries with seq > afterSeq, in seq order, at most `limit` (0: server default; capped by
  # the server). epoch 0 means "any" (a device that has no cursor yet). Repeat with the last
  # returned seq until it reaches maxSeq. `expired`: retention deleted entries after afterSeq
  # before this device read them; `entries` start with the oldest one still kept (never a
  # silent gap). Errors: staleEpoch (with the current epoch), cursorAhead (with maxSeq).
  sync @1 (epoch :UInt32, afterSeq :UInt32, limit :UInt32)
       -> (error :Error, entries :List(Entry), maxSeq :UInt32, epoch :UInt32, expired :Bool);

  # Records that this device holds everything up to `seq` (its cursor, returned at the next
  # login). Errors: staleEpoch, cursorAhead. For what arrives by notify, the notify's answer
  # can carry the cursor instead (PushReceiver.notify).
  ack @2 (epoch :UInt32, seq :UInt32) -> (error :Error);

  # This user refuses messages from `user` from now on: their sends fail with `blocked` and
  # store nothing, in either mailbox. Blocking is one-way (this user can still write to them)
  # and idempotent. Errors: invalidArgument (yourself, a malformed name, the list is full),
  # unknownUser.
  block @3 (user :Text) -> (error :Error);

  # Accepts messages from `user` again. Idempotent. Errors: invalidArgument.
  unblock @4 (user :Text) -> (error :Error);

  # The users this user blocks, in name order.
  listBlocked @5 () -> (error :Error, users :List(Text));

  # Registers this device for third-party pushes: when it has no live connection and new
  # entries arrive, the server's push gateway (see the README) wakes it through `platform` (the
  # gateway's app id, e.g. "com.example.chat.ios") with `token` (the APNs/FCM token the app got).
  # An empty token unregisters. The registration is kept until replaced, unregistered, or the
  # gateway reports the token dead. Errors: invalidArgument (platform not 1-64 chars of
  # [A-Za-z0-9._-], token over 4096 bytes or not printable ASCII).
  setPushToken @6 (platform :Text, token :Text) -> (error :Error);

  # Groups. A group is named `#` + 1-64 characters of [A-Za-z0-9._-] and addressed by that name
  # in `send` (to = "#team"): the message is stored in every member's mailbox with that
  # member's own seq, and the sender is answered once every copy is durable (members who block
  # the sender are skipped). Membership changes add system entries (see EntryKind) to the
  # members' mailboxes, the affected member's included.

  # Creates the group with this user as owner and only member.
  # Errors: invalidArgument (name), groupExists.
  createGroup @7 (group :Text) -> (error :Error);

  # By the owner or an admin. Adding a member is idempotent.
  # Errors: unknownGroup, notMember (you), notAllowed, unknownUser, groupFull.
  addMember @8 (group :Text, user :Text) -> (error :Error);

  # By the owner (anyone but the owner) or an admin (plain members).
  # Errors: unknownGroup, notMember, notAllowed (the owner, an admin by an admin), invalidArgument
  # (yourself: use leaveGroup).
  removeMember @9 (group :Text, user :Text) -> (error :Error);

  # Errors: unknownGroup, notMember, notAllowed (the owner cannot leave).
  leaveGroup @10 (group :Text) -> (error :Error);

  # By the owner: makes a member an admin (admin = true) or a plain member again.
  # Errors: unknownGroup, notMember, notAllowed.
  setAdmin @11 (group :Text, user :Text, admin :Bool) -> (error :Error);

  # The members, owner first, then admins, then members, by name. Only for members.
  # Errors: unknownGroup, notMember.
  listMembers @12 (group :Text) -> (error :Error, members :List(Member));

  # The groups this user belongs to, by name.
  listGroups @13 () -> (error :Error, groups :List(Text));
}

# Implemented by the device. The server calls notify when the mailbox grows, at most one call
# in flight per device; notices that arrive meanwhile are merged into the next call. A notify
# or heartbeat that is not answered in time (the server's push-timeout) marks the connection
# dead: the server closes it and the device counts as offline.
# The fields of PushReceiver.notify, where a notice rides on another answer (Session.send).
struct Notice {
  epoch @0 :UInt32;
  afterSeq @1 :UInt32;
  maxSeq @2 :UInt32;
  complete @3 :Bool;
  entries @4 :List(Entry);
}

interface PushReceiver {
  # The mailbox now reaches maxSeq. `entries` holds every entry in (afterSeq, maxSeq] when
  # `complete` is true (small messages ride inline). A device whose cursor is >= afterSeq applies
  # the entries above its cursor and moves its cursor to maxSeq; any other device (or when
  # complete is false) syncs from its cursor.
  # `cursor` in the answer: the highest seq the device now holds in `epoch` (0: not saying).
  # The server records it like Session.ack, so a device that answers with its cursor needs no
  # separate ack call for what it was pushed (an ack is a whole round trip per push).
  notify @0 (epoch :UInt32, afterSeq :UInt32, maxSeq :UInt32, complete :Bool,
             entries :List(Entry)) -> (cursor :UInt32);

  # Liveness check on a quiet connection; answer at once.
  heartbeat @1 () -> ();
}

#pragma once

// The message vocabulary of Missive's actors: every atom and every message type, in one place.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include "missive/actors/errc.hpp"
#include "missive/storage/records.hpp"

namespace missive::storage {
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entry& x) {
  return f(caf::meta::type_name("entry"), x.seq, x.from, x.to, x.client_msg_id, x.server_time_ms,
           x.body);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, device_record& x) {
  return f(caf::meta::type_name("device_record"), x.epoch, x.cursor);
}
} // namespace missive::storage

namespace missive {

using entry = storage::entry;

// -- atoms (at most 10 characters) ------------------------------------------------------------

using account_atom = caf::atom_constant<caf::atom("account")>;
using ack_atom = caf::atom_constant<caf::atom("ack")>;
using append_atom = caf::atom_constant<caf::atom("append")>;
using arm_atom = caf::atom_constant<caf::atom("arm")>;
using attach_atom = caf::atom_constant<caf::atom("attach")>;
using cursor_atom = caf::atom_constant<caf::atom("cursor")>;
using dedup_atom = caf::atom_constant<caf::atom("dedup")>;
using deliver_atom = caf::atom_constant<caf::atom("deliver")>;
using detach_atom = caf::atom_constant<caf::atom("detach")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;
using ok_atom = caf::atom_constant<caf::atom("ok")>;
using notify_atom = caf::atom_constant<caf::atom("notify")>;
using push_atom = caf::atom_constant<caf::atom("push")>;
using read_atom = caf::atom_constant<caf::atom("read")>;
using register_atom = caf::atom_constant<caf::atom("register")>;
using replaced_atom = caf::atom_constant<caf::atom("replaced")>;
using send_atom = caf::atom_constant<caf::atom("send")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using sync_atom = caf::atom_constant<caf::atom("sync")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using verify_atom = caf::atom_constant<caf::atom("verify")>;

// -- message types ----------------------------------------------------------------------------

/// What a user actor is activated with: read from storage in one request.
struct mailbox_state {
  uint32_t epoch = 0;
  uint32_t last_seq = 0; // highest seq ever assigned and stored
};

/// A send as the sender's device made it.
struct outgoing {
  uint64_t client_msg_id = 0;
  std::string to;
  std::string body;
};

/// The sender's answer: its own copy's seq and the time the server stamped on the message.
struct send_result {
  uint32_t seq = 0;
  int64_t server_time_ms = 0;

  friend bool operator==(const send_result&, const send_result&) = default;
};

/// Sender's actor -> recipient's actor: store this message in your mailbox, and store the
/// sender's outgoing copy (`sender_copy`, seq already assigned by the sender) in the same
/// atomic batch. Answered with the recipient's seq once both are durable.
struct delivery {
  entry sender_copy;
};

/// One mailbox write for the persistence actor: entry + dedup record of `(mailbox, origin)`.
struct mailbox_append {
  std::string mailbox;
  std::string origin;
  entry e;
};

/// A device's cursor as the server keeps it.
struct device_cursor {
  std::string user;
  std::string device;
  uint32_t epoch = 0;
  uint32_t cursor = 0;
};

/// Answer to a sync: entries after the cursor in seq order, at most `limit`.
struct sync_result {
  uint32_t epoch = 0;
  uint32_t max_seq = 0;
  std::vector<entry> entries;
};

/// What a device learns when its session attaches to its user actor.
struct session_info {
  uint32_t epoch = 0;
  uint32_t max_seq = 0;
  uint32_t cursor = 0; // last seq the device acknowledged in this epoch, 0 if none
};

/// "User X has new entries": every entry with seq in (after_seq, max_seq], in order. When
/// `entries` would be too big to carry, `complete` is false and the device must sync.
struct notice {
  std::string user;
  uint32_t epoch = 0;
  uint32_t after_seq = 0;
  uint32_t max_seq = 0;
  bool complete = true;
  std::vector<entry> entries;
};

/// Dedup look-up answer; `found` false if the client msg id was never stored.
struct dedup_hit {
  bool found = false;
  send_result result;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mailbox_state& x) {
  return f(caf::meta::type_name("mailbox_state"), x.epoch, x.last_seq);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outgoing& x) {
  return f(caf::meta::type_name("outgoing"), x.client_msg_id, x.to, x.body);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, send_result& x) {
  return f(caf::meta::type_name("send_result"), x.seq, x.server_time_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery& x) {
  return f(caf::meta::type_name("delivery"), x.sender_copy);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mailbox_append& x) {
  return f(caf::meta::type_name("mailbox_append"), x.mailbox, x.origin, x.e);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, device_cursor& x) {
  return f(caf::meta::type_name("device_cursor"), x.user, x.device, x.epoch, x.cursor);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sync_result& x) {
  return f(caf::meta::type_name("sync_result"), x.epoch, x.max_seq, x.entries);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_info& x) {
  return f(caf::meta::type_name("session_info"), x.epoch, x.max_seq, x.cursor);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, notice& x) {
  return f(caf::meta::type_name("notice"), x.user, x.epoch, x.after_seq, x.max_seq, x.complete,
           x.entries);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dedup_hit& x) {
  return f(caf::meta::type_name("dedup_hit"), x.found, x.result);
}

// -- callbacks into the gateway ---------------------------------------------------------------

/// A one-shot completion the gateway hands to its connection actor. It may be invoked from
/// any CAF thread; the gateway's implementation fulfils a KJ cross-thread fulfiller, so it
/// never blocks. Process-local by nature: it never crosses a node boundary.
template <class T>
struct reply_to {
  std::shared_ptr<std::function<void(caf::expected<T>)>> fn;
  void operator()(caf::expected<T> x) const {
    if (fn && *fn)
      (*fn)(std::move(x));
  }
};

/// Process-local completion without a value.
using done_reply = reply_to<caf::unit_t>;

/// What the gateway's push loop receives: a notice to deliver, or the end of the session.
struct push_event {
  bool closed = false;       // the session is over (replaced by another login or shut down)
  caf::error reason;         // why, when closed
  notice note;               // what to deliver, when not closed
};

} // namespace missive


// Process-local callbacks into the gateway's KJ thread (see reply_to): never serialised.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<missive::send_result>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<missive::sync_result>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<missive::session_info>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<missive::push_event>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::done_reply)

#pragma once

// The message vocabulary of Missive's actors: every atom and every message type, in one place.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include "missive/actors/errc.hpp"
#include "missive/actors/messages.hpp"
#include "missive/actors/push.hpp"

namespace missive::storage {
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entry& x) {
  return f(caf::meta::type_name("entry"), x.seq, x.from, x.to, x.client_msg_id, x.server_time_ms,
           x.body, x.kind);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_record& x) {
  return f(caf::meta::type_name("group_record"), x.owner, x.created_ms, x.changes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, device_record& x) {
  return f(caf::meta::type_name("device_record"), x.epoch, x.cursor);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, resume_record& x) {
  return f(caf::meta::type_name("resume_record"), x.token_hash, x.issued_ms);
}
} // namespace missive::storage

namespace missive {

// -- atoms (at most 10 characters) ------------------------------------------------------------

using account_atom = caf::atom_constant<caf::atom("account")>;
using ack_atom = caf::atom_constant<caf::atom("ack")>;
using append_atom = caf::atom_constant<caf::atom("append")>;
using attach_atom = caf::atom_constant<caf::atom("attach")>;
using block_atom = caf::atom_constant<caf::atom("block")>;
using cursor_atom = caf::atom_constant<caf::atom("cursor")>;
using deliver_atom = caf::atom_constant<caf::atom("deliver")>;
using detach_atom = caf::atom_constant<caf::atom("detach")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using group_atom = caf::atom_constant<caf::atom("group")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;
using ok_atom = caf::atom_constant<caf::atom("ok")>;
using push_atom = caf::atom_constant<caf::atom("push")>;
using read_atom = caf::atom_constant<caf::atom("read")>;
using register_atom = caf::atom_constant<caf::atom("register")>;
using rejected_atom = caf::atom_constant<caf::atom("rejected")>;
using renew_atom = caf::atom_constant<caf::atom("renew")>;
using renumber_atom = caf::atom_constant<caf::atom("renumber")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using send_atom = caf::atom_constant<caf::atom("send")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using sync_atom = caf::atom_constant<caf::atom("sync")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using verify_atom = caf::atom_constant<caf::atom("verify")>;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, push_registration& x) {
  return f(caf::meta::type_name("push_registration"), x.device, x.platform, x.token);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, offline_push& x) {
  return f(caf::meta::type_name("offline_push"), x.user, x.device, x.platform, x.token, x.unread,
           x.from, x.body);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, push_outcome& x) {
  return f(caf::meta::type_name("push_outcome"), x.what, x.detail);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mailbox_state& x) {
  return f(caf::meta::type_name("mailbox_state"), x.epoch, x.last_seq, x.expired_upto,
           x.blocked, x.pushes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entry_page& x) {
  return f(caf::meta::type_name("entry_page"), x.entries, x.expired_upto);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outgoing& x) {
  return f(caf::meta::type_name("outgoing"), x.client_msg_id, x.to, x.body,
           x.request_bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, send_result& x) {
  return f(caf::meta::type_name("send_result"), x.seq, x.server_time_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery& x) {
  return f(caf::meta::type_name("delivery"), x.sender_copy, x.group, x.origin);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mailbox_append& x) {
  return f(caf::meta::type_name("mailbox_append"), x.mailbox, x.origin, x.e, x.key);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_member& x) {
  return f(caf::meta::type_name("group_member"), x.user, x.role);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_info& x) {
  return f(caf::meta::type_name("group_info"), x.name, x.record, x.members);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_op& x) {
  return f(caf::meta::type_name("group_op"), x.what, x.group, x.actor, x.user);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_change& x) {
  return f(caf::meta::type_name("member_change"), x.group, x.record, x.user, x.remove, x.role);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, device_cursor& x) {
  return f(caf::meta::type_name("device_cursor"), x.user, x.device, x.epoch, x.cursor);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sync_result& x) {
  return f(caf::meta::type_name("sync_result"), x.epoch, x.max_seq, x.entries, x.expired);
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

/// A one-shot completion the gateway hands to an actor with its call. It may be invoked from
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

/// Set once the client that a request is made for has gone (it hung up, or dropped the call),
/// so that costly work for it can be skipped. Any thread may set and read it. Process-local.
class hangup_flag {
public:
  void end() { ended_.store(true, std::memory_order_release); }
  bool ended() const { return ended_.load(std::memory_order_acquire); }

private:
  std::atomic<bool> ended_{false};
};

using hangup_flag_ptr = std::shared_ptr<const hangup_flag>;

/// Where a device's notices go: its session, on the gateway thread that holds its connection.
/// Both calls may come from any thread and never block; the gateway merges notices while a
/// notify is in flight (push_queue). Process-local by nature: it never crosses a node boundary.
/// Its hangup flag is ended when the device's session ends on the gateway's side (it hung up):
/// the user actor forgets a sink marked so the next time it looks (the session also sends
/// `detach` when it can).
class push_sink : public hangup_flag {
public:
  virtual ~push_sink() = default;
  /// The mailbox grew.
  virtual void push(notice n) = 0;
  /// The session is over (replaced by another login, or the user's actor is gone): further
  /// calls on it fail with `why`.
  virtual void close(caf::error why) = 0;
};

using push_sink_ptr = std::shared_ptr<push_sink>;

} // namespace missive


// Process-local callbacks into the gateway's KJ thread (see reply_to): never serialised.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<missive::send_result>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<missive::sync_result>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::push_sink_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::hangup_flag_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::done_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<std::vector<std::string>>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(missive::reply_to<std::vector<missive::group_member>>)

#include "user.hpp"

#include "active_users.hpp"
#include "entry_cache.hpp"
#include "fifo.hpp"
#include "id_window.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <type_traits>
#include <unordered_map>

#include <caf/all.hpp>

#include "missive/actors/policy.hpp"

namespace missive {

namespace {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// A device registered for third-party pushes.
struct push_target {
  std::string platform;
  std::string token;
  /// Entries from others since the device last acknowledged everything (in memory only: it
  /// starts from 0 when the actor is activated).
  uint32_t unread = 0;
};

/// Whoever waits for a send's result: a requesting actor, or a device's session on its gateway
/// thread (which sends straight to the user actor).
struct send_waiter {
  std::optional<caf::typed_response_promise<send_result>> promise;
  reply_to<send_result> reply;

  void deliver(const caf::expected<send_result>& result) {
    if (promise) {
      if (result)
        promise->deliver(*result);
      else
        promise->deliver(result.error());
    } else {
      reply(result);
    }
  }
};

/// A reserved seq: not yet durable (`done` false), durable (`stored`), or abandoned.
struct seq_slot {
  bool done = false;
  bool stored = false;
  entry e;
};

/// What waits for one look-up of a recipient's actor, each in its order: our copies that found
/// its old actor gone (seq reserved, with the attempts left), then the sends that came meanwhile
/// — so that a device's pipelined sends to one recipient keep their order.
struct waiting_for_actor {
  std::vector<std::pair<entry, int>> copies;
  std::vector<outgoing> sends;
};

struct user_state {
  user_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  static inline const char* name = "missive.user";
  std::string user;
  std::shared_ptr<const settings> cfg;
  persistence_actor persistence;
  directory_actor directory;
  dispatcher_actor dispatcher;

  uint32_t epoch = 0;
  uint64_t next_seq = 1;  // next seq to reserve; 64-bit so exhaustion is visible
  uint32_t published = 0; // Seq_svr: every stored entry up to it is readable

  /// Reserved seqs in order, from `inflight_first` on (seqs are reserved one after the other,
  /// so the reserved ones are a run). The front advances `published` as soon as it is done, so
  /// a later seq that became durable first waits for the earlier ones.
  fifo<seq_slot> inflight;
  uint32_t inflight_first = 0;

  /// Retention deleted the mailbox's entries up to here (as far as this actor knows).
  uint32_t expired_upto = 0;

  /// Recent entries: at most `cache-entries` of them and `cache-max-bytes` in all.
  entry_cache cache;

  /// Online devices: where their notices go, by device. A sink that ended (its device hung up
  /// before its detach arrived, or while logging in) is forgotten at the next look (`prune`).
  std::unordered_map<std::string, push_sink_ptr> sessions;

  /// Devices registered for third-party pushes, by device id.
  std::map<std::string, push_target> push_targets;

  /// The node's active user actors (kept by the directory), so that a send to an active user
  /// needs no directory round trip. A stale handle (the recipient's actor stopped) is found
  /// out by the failed request and looked up through the directory.
  std::shared_ptr<const active_users> active;
  /// Groups this user sent to, for the same reason (bounded).
  std::unordered_map<std::string, group_actor> groups;
  /// Recipients (users or groups) whose actor is being looked up, with what waits for it; only
  /// while one is (an idle user's actor carries a null pointer).
  std::unique_ptr<std::unordered_map<std::string, waiting_for_actor>> lookups;

  /// Results of the last `dedup-window` sends, by client msg id.
  id_window<send_result> recent;
  /// Sends in progress, with everybody waiting for their result.
  std::unordered_map<uint64_t, std::vector<send_waiter>> sending;

  /// Set while the mailbox moves to a new epoch (its seq space is used up): new seqs wait in
  /// `waiting_for_seq` until the switch is done.
  bool switching = false;
  bool renumbering = false;
  std::vector<std::function<void(caf::expected<uint32_t>)>> waiting_for_seq;

  /// What the send policy keeps for this user: its rate-limit bucket and its blocklist.
  policy::user_state policy;

  uint64_t activity = 0;
  uint64_t activity_at_tick = 0;

  /// However the actor ends (idle, crash, shutdown), its devices' sessions end with it: their
  /// calls fail with `unavailable` and the devices log in again.
  ~user_state() {
    for (auto& [device, sink] : sessions)
      sink->close(caf::make_error(errc::unavailable, "the user's actor stopped; log in again"));
  }
};

using self_ptr = user_actor::stateful_pointer<user_state>;

void session_ended(self_ptr self, const std::string& device);

/// Forgets the sessions whose devices hung up without a detach reaching this actor.
void prune(self_ptr self) {
  auto& sessions = self->state.sessions;
  for (auto it = sessions.begin(); it != sessions.end();) {
    if (!it->second->ended()) {
      ++it;
      continue;
    }
    auto device = it->first;
    it = sessions.erase(it);
    session_ended(self, device);
  }
}

/// Tells the user's online devices that the mailbox grew, straight to their sessions on the
/// gateway threads (no actor hop).
void announce(self_ptr self, notice n) {
  prune(self);
  auto& sessions = self->state.sessions;
  size_t left = sessions.size();
  for (auto& [device, sink] : sessions)
    sink->push(--left == 0 ? std::move(n) : n);
}

/// `count` new entries from others arrived (the newest is `newest`): every registered device
/// counts them as unread, and those without a session get a third-party push.
void push_offline(self_ptr self, uint32_t count, const entry& newest) {
  prune(self);
  auto& st = self->state;
  for (auto& [device, t] : st.push_targets) {
    t.unread += count;
    if (st.sessions.count(device) == 0)
      self->send(st.dispatcher, push_atom::value,
                 offline_push{st.user, device, t.platform, t.token, t.unread, newest.from,
                              newest.body},
                 caf::actor_cast<user_actor>(self));
  }
}

/// A device's session ended. The dispatcher starts its disconnect delay; what the device has
/// not acknowledged (e.g. a notify it never confirmed, or one that went to a connection that
/// was closing) is pushed once the delay is over, with the newest entry from others that the
/// cache still holds for its preview.
void session_ended(self_ptr self, const std::string& device) {
  auto& st = self->state;
  auto it = st.push_targets.find(device);
  if (it == st.push_targets.end())
    return;
  self->send(st.dispatcher, detach_atom::value, st.user, device);
  auto& t = it->second;
  if (t.unread == 0)
    return;
  offline_push p{st.user, device, t.platform, t.token, t.unread, {}, {}};
  const entry* newest = nullptr;
  for (auto& e : st.cache)
    if (e.from != st.user)
      newest = &e;
  if (newest) {
    p.from = newest->from;
    p.body = newest->body;
  }
  self->send(st.dispatcher, push_atom::value, std::move(p), caf::actor_cast<user_actor>(self));
}

using seq_continuation = std::function<void(caf::expected<uint32_t>)>;

template <class F>
void with_seq(self_ptr self, F&& k);

/// Moves the mailbox to a new epoch once every reserved seq is settled. The newest half of
/// the seq space is carried over, renumbered from 1; devices learn the new epoch from a notice
/// (and from `stale_epoch` on their next sync) and read the mailbox again from zero.
void maybe_switch_epoch(self_ptr self) {
  auto& st = self->state;
  if (!st.switching || st.renumbering || !st.inflight.empty())
    return;
  st.renumbering = true;
  self->request(st.persistence, caf::infinite, renumber_atom::value, st.user, st.cfg->max_seq / 2)
    .then(
      [=](mailbox_state& ms) {
        auto& st = self->state;
        st.epoch = ms.epoch;
        st.published = ms.last_seq;
        st.next_seq = uint64_t{ms.last_seq} + 1;
        st.cache.clear(ms.last_seq);
        st.expired_upto = 0;
        st.recent.clear(); // their seqs were of the old epoch; storage has the new ones
        st.switching = st.renumbering = false;
        announce(self, notice{st.user, st.epoch, 0, st.published, false, {}});
        auto waiting = std::move(st.waiting_for_seq);
        st.waiting_for_seq.clear();
        for (auto& k : waiting)
          with_seq(self, std::move(k));
      },
      [=](caf::error& err) {
        auto& st = self->state;
        st.switching = st.renumbering = false;
        auto waiting = std::move(st.waiting_for_seq);
        st.waiting_for_seq.clear();
        for (auto& k : waiting)
          k(err);
      });
}

/// Reserves the next seq for `k`, first moving to a new epoch if the seq space is used up.
/// Usually a seq is free: then `k` runs at once, in place (no copy of what it holds).
template <class F>
void with_seq(self_ptr self, F&& k) {
  auto& st = self->state;
  if (!st.switching && st.next_seq <= st.cfg->max_seq) {
    auto seq = static_cast<uint32_t>(st.next_seq++);
    if (st.inflight.empty())
      st.inflight_first = seq;
    st.inflight.push_back(seq_slot{});
    k(seq);
    return;
  }
  st.waiting_for_seq.emplace_back(std::forward<F>(k));
  st.switching = true;
  maybe_switch_epoch(self);
}

/// Marks `seq` durable (`stored` given, and moved from) or abandoned (nullptr) and publishes
/// what it can.
void complete(self_ptr self, uint32_t seq, entry* stored) {
  auto& st = self->state;
  if (seq < st.inflight_first || seq - st.inflight_first >= st.inflight.size())
    return;
  auto& mine = st.inflight[seq - st.inflight_first];
  mine.done = true;
  if (stored) {
    mine.stored = true;
    mine.e = std::move(*stored);
  }
  // The cache follows the retention rules too, so that it never serves what storage dropped:
  // at most `cache_cap` entries (the oldest makes room for the newest), none too old. And at
  // most `cache-max-bytes` of them: large bodies leave few.
  auto cache_cap = st.cfg->retention_max_entries > 0
                     ? std::min<size_t>(st.cfg->cache_entries, st.cfg->retention_max_entries)
                     : st.cfg->cache_entries;
  notice n;
  n.user = st.user;
  n.epoch = st.epoch;
  n.after_seq = st.published;
  while (!st.inflight.empty() && st.inflight.front().done) {
    auto& slot = st.inflight.front();
    if (slot.stored) {
      st.published = st.inflight_first;
      st.cache.push(slot.e, cache_cap, st.cfg->cache_max_bytes);
      n.entries.push_back(std::move(slot.e));
    }
    st.inflight.pop_front();
    ++st.inflight_first;
  }
  auto too_old = [&](const entry& e) {
    return st.cfg->retention_max_age.count() > 0
           && e.server_time_ms < now_ms() - st.cfg->retention_max_age.count();
  };
  while (!st.cache.empty() && too_old(st.cache.front()))
    st.cache.drop_oldest();
  if (!n.entries.empty()) {
    n.max_seq = st.published;
    // Third-party pushes count what others sent (a user's own outgoing copies are not unread).
    uint32_t from_others = 0;
    const entry* newest = nullptr;
    if (!st.push_targets.empty())
      for (auto& e : n.entries)
        if (e.from != st.user) {
          ++from_others;
          newest = &e;
        }
    if (newest)
      push_offline(self, from_others, *newest);
    trim_notice(n, *st.cfg);
    announce(self, std::move(n));
  }
  // The last reservation of an epoch just settled: the switch can go ahead.
  if (st.switching)
    maybe_switch_epoch(self);
}

void finish(self_ptr self, uint64_t client_msg_id, caf::expected<send_result> result);

/// The policy chain refused a send before it was handed on. Rate limits are final for this
/// attempt; any other refusal is final only if the send was never stored (a retry of a send
/// stored before the rules changed keeps its first result).
void reject(self_ptr self, uint64_t client_msg_id, caf::error err) {
  if (err == errc::rate_limited)
    return finish(self, client_msg_id, std::move(err));
  auto& st = self->state;
  self->request(st.persistence, caf::infinite, lookup_atom::value, st.user, client_msg_id)
    .then(
      [=](dedup_hit& hit) {
        if (hit.found)
          finish(self, client_msg_id, hit.result);
        else
          finish(self, client_msg_id, err);
      },
      [=](caf::error& lookup_err) { finish(self, client_msg_id, std::move(lookup_err)); });
}

void finish(self_ptr self, uint64_t client_msg_id, caf::expected<send_result> result) {
  auto& st = self->state;
  auto it = st.sending.find(client_msg_id);
  if (it == st.sending.end())
    return;
  auto waiting = std::move(it->second);
  st.sending.erase(it);
  if (result)
    st.recent.add(client_msg_id, *result);
  for (auto& w : waiting)
    w.deliver(result);
}

/// Our copy of a send while its append is under way: the answer's two handlers share it, and
/// the one that runs moves it on (no copy of the body per handler).
using held_entry = std::shared_ptr<entry>;

/// The append of our copy `e` came back: stored now (`e` moves into the cache), or stored by
/// an earlier attempt of the same send (then `e`'s seq is left unused and the first result is
/// the answer).
void settle(self_ptr self, entry& e, const dedup_hit& hit) {
  auto seq = e.seq;
  auto client_msg_id = e.client_msg_id;
  if (hit.found) {
    complete(self, seq, nullptr);
    finish(self, client_msg_id, hit.result);
  } else {
    send_result result{seq, e.server_time_ms};
    complete(self, seq, &e);
    finish(self, client_msg_id, result);
  }
}

/// Our copy `e` will not be stored: its seq is left unused and the send fails with `err`.
void abandon(self_ptr self, const entry& e, caf::error err) {
  complete(self, e.seq, nullptr);
  finish(self, e.client_msg_id, std::move(err));
}

/// Appends our own copy `e` alone, carrying the send's dedup key, and settles the send.
void append_own_copy(self_ptr self, entry e) {
  held_entry held = std::make_shared<entry>(std::move(e));
  std::vector<mailbox_append> batch{mailbox_append{held->from, held->from, *held, true}};
  self->request(self->state.persistence, caf::infinite, append_atom::value, std::move(batch))
    .then([=](dedup_hit& hit) { settle(self, *held, hit); },
          [=](caf::error& err) { abandon(self, *held, std::move(err)); });
}

/// Note to self: a single entry in our own mailbox.
void send_to_self(self_ptr self, outgoing m) {
  with_seq(self, [self, m = std::move(m)](caf::expected<uint32_t> seq) mutable {
    if (!seq)
      return finish(self, m.client_msg_id, seq.error());
    auto& st = self->state;
    append_own_copy(self, entry{*seq, st.user, st.user, m.client_msg_id, now_ms(),
                                std::move(m.body)});
  });
}

void hand_over_again(self_ptr self, entry e, int attempts_left);

/// Hands our copy `e` (seq reserved) to the recipient, which stores both copies atomically.
/// A recipient actor that stopped in between is looked up again, with the same seq.
void hand_over(self_ptr self, const user_actor& recipient, entry e, int attempts_left) {
  held_entry held = std::make_shared<entry>(std::move(e));
  self->request(recipient, caf::infinite, deliver_atom::value, delivery{*held, false, {}})
    .then([=](dedup_hit& hit) { settle(self, *held, hit); },
          [=](caf::error& err) {
            if (err == caf::sec::request_receiver_down && attempts_left > 0)
              return hand_over_again(self, std::move(*held), attempts_left - 1);
            abandon(self, *held, std::move(err));
          });
}

/// A message to a group: reserve our seq, let the group store every member's copy, then ours
/// (which carries the send's dedup key: a retry finds the first result there; the members'
/// copies were deduplicated each on its own key). A group actor that stopped in between is
/// looked up again, with the same seq.
void hand_to_group(self_ptr self, const group_actor& group, entry e, int attempts_left) {
  held_entry held = std::make_shared<entry>(std::move(e));
  self->request(group, caf::infinite, send_atom::value, *held)
    .then([=](ok_atom) { append_own_copy(self, std::move(*held)); },
          [=](caf::error& err) {
            if (err == caf::sec::request_receiver_down && attempts_left > 0)
              return hand_over_again(self, std::move(*held), attempts_left - 1);
            abandon(self, *held, std::move(err));
          });
}

void hand_to(self_ptr self, const user_actor& r, entry e, int attempts_left) {
  hand_over(self, r, std::move(e), attempts_left);
}
void hand_to(self_ptr self, const group_actor& g, entry e, int attempts_left) {
  hand_to_group(self, g, std::move(e), attempts_left);
}

/// Reserves our seq for `m`, then hands the entry to its recipient's actor (a user's or a
/// group's, known by now).
template <class Recipient>
void send_via(self_ptr self, const Recipient& recipient, outgoing m) {
  with_seq(self, [self, recipient, m = std::move(m)](caf::expected<uint32_t> seq) mutable {
    if (!seq)
      return finish(self, m.client_msg_id, seq.error());
    hand_to(self, recipient,
            entry{*seq, self->state.user, std::move(m.to), m.client_msg_id, now_ms(),
                  std::move(m.body)},
            3);
  });
}

/// Remembers a group's actor (bounded: forgets all at once when full).
void remember_group(user_state& st, const std::string& name, const group_actor& g) {
  if (st.groups.size() >= 1024)
    st.groups.clear();
  st.groups[name] = g;
}

/// True while a look-up of `name` is under way.
bool looking_up(const user_state& st, const std::string& name) {
  return st.lookups != nullptr && st.lookups->count(name) > 0;
}

/// What waits for `name`'s look-up (starting to wait).
waiting_for_actor& waiting_for(user_state& st, const std::string& name) {
  if (!st.lookups)
    st.lookups = std::make_unique<std::unordered_map<std::string, waiting_for_actor>>();
  return (*st.lookups)[name];
}

/// Takes what waited for `name`'s look-up.
waiting_for_actor take_waiting(user_state& st, const std::string& name) {
  waiting_for_actor out;
  if (st.lookups) {
    if (auto it = st.lookups->find(name); it != st.lookups->end()) {
      out = std::move(it->second);
      st.lookups->erase(it);
    }
    if (st.lookups->empty())
      st.lookups.reset();
  }
  return out;
}

/// `name`'s actor (a user's or a group's) is known: first the copies that found its old actor
/// gone, then the sends that waited for the look-up, each in its order.
template <class Recipient>
void resume_to(self_ptr self, const std::string& name, const Recipient& recipient) {
  auto& st = self->state;
  if constexpr (std::is_same_v<Recipient, group_actor>)
    remember_group(st, name, recipient);
  auto w = take_waiting(st, name);
  for (auto& [e, left] : w.copies)
    hand_to(self, recipient, std::move(e), left);
  for (auto& m : w.sends)
    send_via(self, recipient, std::move(m));
}

/// The look-up of `name` failed: everything waiting for it fails with `err`.
void fail_to(self_ptr self, const std::string& name, const caf::error& err) {
  auto w = take_waiting(self->state, name);
  for (auto& [e, left] : w.copies)
    abandon(self, e, err);
  for (auto& m : w.sends)
    finish(self, m.client_msg_id, err);
}

/// Asks the directory for the actor of `name` (a user or a #group); what waits for it goes on
/// when it answers.
void look_up(self_ptr self, const std::string& name) {
  auto& directory = self->state.directory;
  if (valid_group(name))
    self->request(directory, caf::infinite, lookup_atom::value, group_atom::value, name)
      .then([=](group_actor& g) { resume_to(self, name, g); },
            [=](caf::error& err) { fail_to(self, name, err); });
  else
    self->request(directory, caf::infinite, lookup_atom::value, name)
      .then([=](user_actor& a) { resume_to(self, name, a); },
            [=](caf::error& err) { fail_to(self, name, err); });
}

/// Our copy `e` found its recipient's actor gone: it waits, in order with the others that did,
/// for one look-up of the new actor (and sends to the recipient made meanwhile wait behind).
void hand_over_again(self_ptr self, entry e, int attempts_left) {
  auto& st = self->state;
  bool under_way = looking_up(st, e.to);
  st.groups.erase(e.to);
  auto& waiting = waiting_for(st, e.to);
  if (!under_way)
    look_up(self, e.to);
  waiting.copies.emplace_back(std::move(e), attempts_left);
}

void start_send(self_ptr self, outgoing m) {
  auto& st = self->state;
  if (m.to == st.user)
    return send_to_self(self, std::move(m));
  // Behind a look-up under way for the same recipient, even if the cache knows an actor again.
  bool under_way = looking_up(st, m.to);
  if (!under_way) {
    if (valid_group(m.to)) {
      if (auto it = st.groups.find(m.to); it != st.groups.end())
        return send_via(self, it->second, std::move(m));
    } else if (auto recipient = st.active->find(m.to)) {
      return send_via(self, *recipient, std::move(m));
    }
  }
  // Resolve the recipient first: a send to an unknown user or group costs no seq.
  auto& waiting = waiting_for(st, m.to);
  if (!under_way)
    look_up(self, m.to);
  waiting.sends.push_back(std::move(m));
}

caf::result<sync_result> sync(self_ptr self, uint32_t epoch, uint32_t after, uint32_t limit) {
  auto& st = self->state;
  if (epoch != 0 && epoch != st.epoch)
    return caf::make_error(errc::stale_epoch, "mailbox epoch is now " + std::to_string(st.epoch),
                           st.epoch);
  if (after > st.published)
    return caf::make_error(errc::cursor_ahead,
                           "afterSeq " + std::to_string(after) + " is beyond maxSeq "
                             + std::to_string(st.published),
                           st.published);
  if (limit == 0)
    limit = st.cfg->sync_page_default;
  limit = std::min(limit, st.cfg->sync_page_max);
  sync_result out{st.epoch, st.published, {}, after < st.expired_upto};
  if (after >= st.cache.after()) {
    for (auto& e : st.cache) {
      if (out.entries.size() >= limit)
        break;
      if (e.seq > after)
        out.entries.push_back(e);
    }
    return out;
  }
  auto rp = self->make_response_promise<sync_result>();
  self->request(st.persistence, caf::infinite, read_atom::value, st.user, after, st.published,
                limit)
    .then(
      [=](entry_page& page) mutable {
        auto& floor = self->state.expired_upto;
        floor = std::max(floor, page.expired_upto);
        rp.deliver(sync_result{out.epoch, out.max_seq, std::move(page.entries), after < floor});
      },
      [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

/// A device's send: checked, answered from the window, joined to the same send under way, or
/// put through the policy chain and started (`m` moves on). `w` gets the result, now or later.
void begin_send(self_ptr self, outgoing& m, send_waiter w) {
  auto& st = self->state;
  ++st.activity;
  if (m.client_msg_id == 0)
    return w.deliver(caf::make_error(errc::invalid_argument, "clientMsgId must not be 0"));
  if (!valid_name(m.to) && !valid_group(m.to))
    return w.deliver(
      caf::make_error(errc::invalid_argument, "recipient must be a user name or #group"));
  if (auto* hit = st.recent.find(m.client_msg_id))
    return w.deliver(*hit);
  auto& waiting = st.sending[m.client_msg_id];
  waiting.push_back(std::move(w));
  if (waiting.size() > 1)
    return; // the same send is already under way
  // The sender's side of the policy chain (size, rate limit, spam), before any seq.
  policy::send_view view{st.user, m.to, m.body, m.request_bytes};
  if (auto err = st.cfg->policy->on_send(view, st.policy, policy::clock::now()))
    return reject(self, m.client_msg_id, std::move(err));
  // Not in the window: the append itself finds a send stored by an earlier run of this actor
  // (its dedup record), so no separate look-up is needed.
  start_send(self, std::move(m));
}

/// Lets go of what only speeds up a busy user (every reserved seq settled): the ring of
/// reserved seqs, the cache of entries and the window of send results, each of which a busy
/// user fills again. The cache stays while a device registered for pushes has unread entries:
/// the push when its session ends shows the newest of them (`session_ended`). (`clear` on the
/// hash map of groups would keep its buckets.)
void release_quiet(user_state& st) {
  st.inflight.clear();
  bool preview_owed = std::any_of(st.push_targets.begin(), st.push_targets.end(),
                                  [](const auto& t) { return t.second.unread > 0; });
  if (!preview_owed)
    st.cache.clear(st.published);
  st.recent.clear();
  decltype(st.groups){}.swap(st.groups);
}

user_actor::behavior_type user(self_ptr self, std::string name, mailbox_state loaded,
                               std::shared_ptr<const settings> cfg, persistence_actor persistence,
                               directory_actor directory, dispatcher_actor dispatcher,
                               std::shared_ptr<const active_users> active) {
  auto& st = self->state;
  st.user = std::move(name);
  st.cfg = std::move(cfg);
  st.persistence = std::move(persistence);
  st.directory = std::move(directory);
  st.dispatcher = std::move(dispatcher);
  st.active = std::move(active);
  st.epoch = loaded.epoch;
  st.published = loaded.last_seq;
  st.next_seq = uint64_t{loaded.last_seq} + 1;
  st.cache.clear(loaded.last_seq);
  st.expired_upto = loaded.expired_upto;
  st.recent = id_window<send_result>(st.cfg->dedup_window);
  st.policy.blocked.insert(loaded.blocked.begin(), loaded.blocked.end());
  for (auto& r : loaded.pushes)
    st.push_targets[r.device] = push_target{r.platform, r.token, 0};
  self->delayed_send(self, st.cfg->user_idle_timeout, tick_atom::value);
  return {
    // The request is this actor's alone (CAF copies a shared one before handing it over), so
    // its body moves on into the entry.
    [=](send_atom, outgoing& m) -> caf::result<send_result> {
      auto rp = self->make_response_promise<send_result>();
      begin_send(self, m, send_waiter{rp, {}});
      return rp;
    },
    [=](send_atom, outgoing& m, reply_to<send_result>& reply) {
      begin_send(self, m, send_waiter{std::nullopt, std::move(reply)});
    },
    // As with sends, the delivery is this actor's alone: the sender's copy moves on into the
    // batch.
    [=](deliver_atom, delivery& d) -> caf::result<dedup_hit> {
      auto& st = self->state;
      ++st.activity;
      // The recipient's side of the policy chain (blocklist). A refusal stores nothing — unless
      // this is a retry of a send stored before the refusal began: that keeps its first result.
      // (Group system entries are no messages of their sender: no policy.) A group fan-out
      // treats the refusal as "skip this member".
      const auto& msg = d.sender_copy;
      policy::send_view view{msg.from, st.user, msg.body, 0};
      caf::error refused;
      if (msg.kind == storage::entry_kind::message)
        refused = st.cfg->policy->on_deliver(view, st.policy);
      if (refused && d.group)
        return refused;
      auto rp = self->make_response_promise<dedup_hit>();
      if (auto err = std::move(refused)) {
        self->request(st.persistence, caf::infinite, lookup_atom::value, msg.from,
                      msg.client_msg_id)
          .then(
            [=](dedup_hit& hit) mutable {
              if (hit.found)
                rp.deliver(hit);
              else
                rp.deliver(err);
            },
            [=](caf::error& lookup_err) mutable { rp.deliver(std::move(lookup_err)); });
        return rp;
      }
      with_seq(self, [self, rp, d = std::move(d)](caf::expected<uint32_t> seq) mutable {
        if (!seq) {
          rp.deliver(seq.error());
          return;
        }
        entry mine = d.sender_copy;
        mine.seq = *seq;
        std::vector<mailbox_append> batch;
        if (d.group) {
          batch.push_back(mailbox_append{self->state.user, std::move(d.origin), mine, true});
        } else {
          auto origin = d.sender_copy.from;
          batch.reserve(2);
          batch.push_back(mailbox_append{self->state.user, origin, mine, false});
          batch.push_back(mailbox_append{origin, origin, std::move(d.sender_copy), true});
        }
        auto at = mine.seq;
        self->request(self->state.persistence, caf::infinite, append_atom::value,
                      std::move(batch))
          .then(
            [self, rp, mine = std::move(mine)](dedup_hit& hit) mutable {
              complete(self, mine.seq, hit.found ? nullptr : &mine);
              rp.deliver(hit);
            },
            [self, rp, at](caf::error& err) mutable {
              complete(self, at, nullptr);
              rp.deliver(std::move(err));
            });
      });
      return rp;
    },
    [=](sync_atom, uint32_t epoch, uint32_t after, uint32_t limit) -> caf::result<sync_result> {
      ++self->state.activity;
      return sync(self, epoch, after, limit);
    },
    [=](ack_atom, const std::string& device, uint32_t epoch,
        uint32_t seq) -> caf::result<ok_atom> {
      auto& st = self->state;
      ++st.activity;
      if (epoch != st.epoch)
        return caf::make_error(errc::stale_epoch,
                               "mailbox epoch is now " + std::to_string(st.epoch), st.epoch);
      if (seq > st.published)
        return caf::make_error(errc::cursor_ahead,
                               "ack of " + std::to_string(seq) + " is beyond maxSeq "
                                 + std::to_string(st.published),
                               st.published);
      if (auto it = st.push_targets.find(device); it != st.push_targets.end() && seq >= st.published)
        it->second.unread = 0;
      return self->delegate(st.persistence, cursor_atom::value,
                            device_cursor{st.user, device, epoch, seq});
    },
    [=](block_atom, const std::string& other, bool on) -> caf::result<ok_atom> {
      auto& st = self->state;
      ++st.activity;
      if (!valid_name(other))
        return caf::make_error(errc::invalid_argument, "user name is malformed");
      if (other == st.user)
        return caf::make_error(errc::invalid_argument, "you cannot block yourself");
      // Written even when it changes nothing: answers then come back in request order, so the
      // set in memory ends as the last request left it on disk.
      auto& blocked = st.policy.blocked;
      if (on && blocked.count(other) == 0 && blocked.size() >= st.cfg->max_blocked)
        return caf::make_error(errc::invalid_argument,
                               "the blocklist is full (" + std::to_string(st.cfg->max_blocked)
                                 + " users); unblock someone first");
      auto rp = self->make_response_promise<ok_atom>();
      self->request(st.persistence, caf::infinite, block_atom::value, st.user, other, on)
        .then(
          [=](ok_atom) mutable {
            // Durable now; from here on deliveries see it.
            if (on)
              self->state.policy.blocked.insert(other);
            else
              self->state.policy.blocked.erase(other);
            rp.deliver(ok_atom::value);
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](block_atom, lookup_atom) -> std::vector<std::string> {
      auto& blocked = self->state.policy.blocked;
      std::vector<std::string> out(blocked.begin(), blocked.end());
      std::sort(out.begin(), out.end());
      return out;
    },
    [=](push_atom, const std::string& device, const std::string& platform,
        const std::string& token) -> caf::result<ok_atom> {
      auto& st = self->state;
      ++st.activity;
      if (!token.empty()) {
        if (!valid_name(platform))
          return caf::make_error(errc::invalid_argument,
                                 "platform (the push gateway's app id) must be 1-64 characters "
                                 "of A-Z a-z 0-9 . _ -");
        bool printable = std::all_of(token.begin(), token.end(),
                                     [](char c) { return c > ' ' && c < 127; });
        if (token.size() > 4096 || !printable)
          return caf::make_error(errc::invalid_argument,
                                 "push token must be 1-4096 printable ASCII characters");
      }
      auto rp = self->make_response_promise<ok_atom>();
      self->request(st.persistence, caf::infinite, push_atom::value, st.user, device, platform,
                    token)
        .then(
          [=](ok_atom) mutable {
            auto& targets = self->state.push_targets;
            if (token.empty()) {
              targets.erase(device);
            } else {
              auto& t = targets[device];
              t.platform = platform;
              t.token = token;
            }
            rp.deliver(ok_atom::value);
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](rejected_atom, const std::string& device, const std::string& token) {
      auto& st = self->state;
      auto it = st.push_targets.find(device);
      if (it == st.push_targets.end() || it->second.token != token)
        return; // replaced by a new token meanwhile: that one is not known to be dead
      st.push_targets.erase(it);
      // Forgotten for this run at once; if the delete does not reach the disk, the gateway
      // rejects the key again after a restart and it is deleted then.
      self->request(st.persistence, caf::infinite, push_atom::value, st.user, device,
                    std::string{}, std::string{})
        .then([](ok_atom) {}, [](caf::error&) {});
    },
    [=](attach_atom, const std::string& device,
        const push_sink_ptr& sink) -> caf::result<session_info> {
      auto& st = self->state;
      ++st.activity;
      prune(self);
      auto& slot = st.sessions[device];
      if (slot && slot != sink)
        slot->close(caf::make_error(errc::session_replaced,
                                    "device " + device + " logged in again"));
      slot = sink;
      if (st.push_targets.count(device) > 0)
        self->send(st.dispatcher, attach_atom::value, st.user, device);
      auto rp = self->make_response_promise<session_info>();
      self->request(st.persistence, caf::infinite, cursor_atom::value, lookup_atom::value,
                    st.user, device)
        .then(
          [=](storage::device_record& rec) mutable {
            auto& st = self->state;
            rp.deliver(session_info{st.epoch, st.published,
                                    rec.epoch == st.epoch ? rec.cursor : 0u});
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](detach_atom, const std::string& device, const push_sink_ptr& sink) {
      auto& sessions = self->state.sessions;
      if (auto it = sessions.find(device); it != sessions.end() && it->second == sink) {
        sessions.erase(it);
        session_ended(self, device);
      }
    },
    [=](tick_atom) {
      auto& st = self->state;
      prune(self);
      bool idle = st.activity == st.activity_at_tick && st.sessions.empty()
                  && st.inflight.empty() && st.sending.empty() && !st.switching;
      if (idle) {
        self->quit();
        return;
      }
      // Online, but nothing sent, received or synced for a whole period: keep no more than a
      // freshly activated actor would (sync and retries are answered from storage).
      if (st.activity == st.activity_at_tick && st.inflight.empty())
        release_quiet(st);
      st.activity_at_tick = st.activity;
      self->delayed_send(self, st.cfg->user_idle_timeout, tick_atom::value);
    },
  };
}

} // namespace

user_actor spawn_user(caf::local_actor* parent, std::string name, mailbox_state loaded,
                      std::shared_ptr<const settings> config, persistence_actor persistence,
                      directory_actor directory, dispatcher_actor dispatcher,
                      std::shared_ptr<const active_users> active) {
  return parent->spawn(user, std::move(name), loaded, std::move(config), std::move(persistence),
                       std::move(directory), std::move(dispatcher), std::move(active));
}

} // namespace missive

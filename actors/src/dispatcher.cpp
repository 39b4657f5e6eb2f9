// The push dispatcher: when a device with no live session gets new entries, one third-party
// push — not too early (a device that just disconnected may be back in a moment), not too often
// (one per interval, carrying the newest unread count), and again after a failure (backoff).

#include <algorithm>
#include <optional>
#include <unordered_map>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"

namespace missive {

namespace {

using time_point = caf::actor_clock::time_point;

/// Everything the dispatcher knows about one device.
struct target {
  offline_push latest;   // what the next push says
  user_actor owner;      // told when the gateway rejects the token
  bool dirty = false;    // `latest` has not gone out yet
  bool in_flight = false;
  bool timer = false;    // a flush is scheduled
  uint64_t gen = 0;      // only the newest scheduled flush counts
  uint32_t attempts = 0; // failed attempts of the current push
  std::optional<time_point> offline_at; // the session ended then (absent: long ago)
  std::optional<time_point> last_sent;  // the last delivered push
  std::optional<time_point> retry_at;   // after a failure: not before then
};

struct dispatcher_state {
  dispatcher_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  std::shared_ptr<const settings> cfg;
  std::unordered_map<std::string, target> targets; // by user '\0' device
  static inline const char* name = "missive.dispatcher";
};

using self_ptr = dispatcher_actor::stateful_pointer<dispatcher_state>;

std::string key_of(const std::string& user, const std::string& device) {
  return user + '\0' + device;
}

/// The earliest moment the target may be pushed to.
time_point due(const target& t, const push_options& o, time_point now) {
  auto at = now;
  if (t.offline_at)
    at = std::max(at, *t.offline_at + o.disconnect_delay);
  if (t.last_sent)
    at = std::max(at, *t.last_sent + o.min_interval);
  if (t.retry_at)
    at = std::max(at, *t.retry_at);
  return at;
}

void schedule(self_ptr self, const std::string& user, const std::string& device, target& t) {
  auto now = self->clock().now();
  auto at = due(t, self->state.cfg->push, now);
  t.timer = true;
  ++t.gen;
  if (at <= now)
    self->send(self, flush_atom::value, user, device, t.gen);
  else
    self->delayed_send(self, at - now, flush_atom::value, user, device, t.gen);
}

/// A target with nothing to send and no time rule left to enforce is forgotten.
bool finished(const target& t, const push_options& o, time_point now) {
  return !t.dirty && !t.in_flight && due(t, o, now) <= now;
}

void flush(self_ptr self, const std::string& user, const std::string& device) {
  auto& st = self->state;
  auto key = key_of(user, device);
  auto it = st.targets.find(key);
  if (it == st.targets.end())
    return;
  auto& t = it->second;
  auto now = self->clock().now();
  if (!t.dirty || t.in_flight) {
    if (finished(t, st.cfg->push, now))
      st.targets.erase(it);
    return;
  }
  if (auto at = due(t, st.cfg->push, now); at > now)
    return schedule(self, user, device, t); // a rule moved the time (e.g. a new disconnect)
  t.dirty = false;
  t.in_flight = true;
  ++t.attempts;
  auto token = t.latest.token;
  // The provider answers from its own thread: back into this actor by message.
  auto me = caf::actor_cast<dispatcher_actor>(self);
  st.cfg->third_party_push->send(t.latest, [me, user, device, token](push_outcome out) {
    caf::anon_send(me, done_atom::value, user, device, token, std::move(out));
  });
}

void outcome(self_ptr self, const std::string& user, const std::string& device,
             const std::string& token, const push_outcome& out) {
  auto& st = self->state;
  auto it = st.targets.find(key_of(user, device));
  if (it == st.targets.end())
    return; // the device came online meanwhile
  auto& t = it->second;
  auto& o = st.cfg->push;
  auto now = self->clock().now();
  t.in_flight = false;
  switch (out.what) {
    case push_outcome::kind::delivered:
      t.attempts = 0;
      t.retry_at.reset();
      t.last_sent = now;
      break;
    case push_outcome::kind::rejected:
      // The key is dead: nothing more goes to it, and the user actor forgets it.
      if (t.owner)
        self->send(t.owner, rejected_atom::value, device, token);
      if (t.latest.token == token) {
        st.targets.erase(it);
        return;
      }
      t.attempts = 0;
      break;
    case push_outcome::kind::retry:
      if (t.attempts < o.max_attempts) {
        auto backoff = o.retry_min;
        for (uint32_t i = 1; i < t.attempts && backoff < o.retry_max; ++i)
          backoff *= 2;
        t.retry_at = now + std::min(backoff, o.retry_max);
        t.dirty = true; // the same push again (with whatever arrived meanwhile)
      } else {
        t.attempts = 0; // give up on this one; the next entries start afresh
        t.retry_at.reset();
      }
      break;
    case push_outcome::kind::failed:
      t.attempts = 0;
      t.retry_at.reset();
      break;
  }
  // Something arrived while the push was out, or a retry is due, or the interval must pass
  // before the target may be forgotten.
  schedule(self, user, device, t);
}

dispatcher_actor::behavior_type dispatcher(self_ptr self, std::shared_ptr<const settings> cfg) {
  self->state.cfg = std::move(cfg);
  return {
    [=](push_atom, offline_push& p, const user_actor& owner) {
      auto& st = self->state;
      if (!st.cfg->third_party_push || p.token.empty())
        return;
      auto user = p.user, device = p.device;
      auto& t = st.targets[key_of(user, device)];
      if (t.latest.token != p.token)
        t.attempts = 0; // a new key: a fresh start
      t.latest = std::move(p);
      t.owner = owner;
      t.dirty = true;
      if (!t.in_flight && !t.timer)
        schedule(self, user, device, t);
    },
    [=](attach_atom, const std::string& user, const std::string& device) {
      // Online: the session gets the notices; nothing pending is worth a push any more.
      self->state.targets.erase(key_of(user, device));
    },
    [=](detach_atom, const std::string& user, const std::string& device) {
      auto& st = self->state;
      if (!st.cfg->third_party_push)
        return;
      auto& t = st.targets[key_of(user, device)];
      t.offline_at = self->clock().now();
      // Pending pushes wait for the delay; an idle target is forgotten after it.
      if (!t.in_flight)
        schedule(self, user, device, t);
    },
    [=](flush_atom, const std::string& user, const std::string& device, uint64_t gen) {
      auto& st = self->state;
      auto it = st.targets.find(key_of(user, device));
      if (it == st.targets.end() || it->second.gen != gen)
        return; // superseded
      it->second.timer = false;
      flush(self, user, device);
    },
    [=](done_atom, const std::string& user, const std::string& device, const std::string& token,
        const push_outcome& out) { outcome(self, user, device, token, out); },
    [=](stop_atom) { self->quit(); },
  };
}

} // namespace

dispatcher_actor spawn_dispatcher(caf::actor_system& sys, std::shared_ptr<const settings> config) {
  return sys.spawn(dispatcher, std::move(config));
}

} // namespace missive

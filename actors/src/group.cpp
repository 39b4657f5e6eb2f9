// A group actor: one per active group. Write diffusion as WeChat does it: a message to the
// group is stored in every member's mailbox, each with that member's own seq, by the member's
// own user actor (the only writer of that mailbox); the sender's actor stores its outgoing copy
// last, once every member's copy is durable.

#include "group.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <unordered_map>

#include <caf/all.hpp>

namespace missive {

namespace {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

struct group_state {
  group_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  static inline const char* name = "missive.group";
  std::string group;
  storage::group_record record;
  std::map<std::string, group_role> members;
  std::shared_ptr<const settings> cfg;
  persistence_actor persistence;
  directory_actor directory;
  /// Members' user actors, so that a fan-out needs no directory round trip per member.
  std::unordered_map<std::string, user_actor> peers;
  /// Membership operations run one at a time, in arrival order.
  bool busy = false;
  std::deque<std::pair<group_op, caf::typed_response_promise<ok_atom>>> queue;
  size_t fanouts = 0; // in flight
  /// Deliveries waiting for a slot: at most `max_outstanding` requests are open at once,
  /// because CAF 0.17 looks up each response among the open requests linearly.
  std::deque<std::function<void()>> backlog;
  size_t outstanding = 0;
  uint64_t activity = 0;
  uint64_t activity_at_tick = 0;
};

using self_ptr = group_actor::stateful_pointer<group_state>;

constexpr size_t max_outstanding = 128;

/// Counts the answers of one fan-out; the first real failure wins.
struct fan_out_progress {
  size_t left = 0;
  caf::error first_error;
  std::function<void(caf::error)> done;
};

void one_done(const std::shared_ptr<fan_out_progress>& p, caf::error err) {
  if (err && !p->first_error)
    p->first_error = std::move(err);
  if (--p->left == 0)
    p->done(std::move(p->first_error));
}

/// A request slot came free: start the next waiting delivery.
void slot_free(self_ptr self) {
  auto& st = self->state;
  --st.outstanding;
  if (!st.backlog.empty()) {
    auto next = std::move(st.backlog.front());
    st.backlog.pop_front();
    next();
  }
}

/// Hands `d` to `member`'s user actor (looked up if not known, again if it stopped meanwhile).
void deliver_to(self_ptr self, const std::string& member, const delivery& d,
                std::shared_ptr<fan_out_progress> p, int attempts_left) {
  auto& st = self->state;
  if (st.outstanding >= max_outstanding) {
    st.backlog.push_back([=] { deliver_to(self, member, d, p, attempts_left); });
    return;
  }
  ++st.outstanding;
  auto ask = [=](const user_actor& peer) {
    self->request(peer, caf::infinite, deliver_atom::value, d)
      .then(
        [=](dedup_hit&) {
          slot_free(self);
          one_done(p, {});
        },
        [=](caf::error& err) {
          slot_free(self);
          if (err == errc::blocked)
            return one_done(p, {}); // this member blocks the sender: skipped
          if (err == caf::sec::request_receiver_down && attempts_left > 0) {
            self->state.peers.erase(member);
            return deliver_to(self, member, d, p, attempts_left - 1);
          }
          one_done(p, std::move(err));
        });
  };
  if (auto it = st.peers.find(member); it != st.peers.end())
    return ask(it->second);
  self->request(st.directory, caf::infinite, lookup_atom::value, member)
    .then(
      [=](user_actor& peer) {
        self->state.peers[member] = peer;
        ask(peer);
      },
      [=](caf::error& err) {
        slot_free(self);
        one_done(p, std::move(err));
      });
}

/// Stores `e` in the mailbox of each of `targets` (deduplicated there on (member, origin,
/// e.client_msg_id)), then calls `done` with the first failure, if any.
void fan_out(self_ptr self, const entry& e, const std::string& origin,
             const std::vector<std::string>& targets, std::function<void(caf::error)> done) {
  if (targets.empty())
    return done({});
  auto p = std::make_shared<fan_out_progress>();
  p->left = targets.size();
  ++self->state.fanouts;
  p->done = [self, done = std::move(done)](caf::error err) {
    --self->state.fanouts;
    done(std::move(err));
  };
  delivery d{e, true, origin};
  for (auto& m : targets)
    deliver_to(self, m, d, p, 2);
}

std::vector<std::string> member_names(const group_state& st) {
  std::vector<std::string> out;
  out.reserve(st.members.size());
  for (auto& [user, role] : st.members)
    out.push_back(user);
  return out;
}

void next_op(self_ptr self);

/// Makes `change` durable, applies it, writes the system entry (kind, about `subject`) to the
/// members after the change and to `also` (a member who just left), then answers.
void commit(self_ptr self, caf::typed_response_promise<ok_atom> rp, const group_op& op,
            member_change change, storage::entry_kind kind, std::string subject,
            std::string also) {
  auto& st = self->state;
  self->request(st.persistence, caf::infinite, group_atom::value, change)
    .then(
      [=](ok_atom) mutable {
        auto& st = self->state;
        st.record = change.record;
        if (change.remove)
          st.members.erase(change.user);
        else
          st.members[change.user] = change.role;
        if (kind == storage::entry_kind::message) { // no system entry for role changes
          rp.deliver(ok_atom::value);
          return next_op(self);
        }
        auto targets = member_names(st);
        if (!also.empty())
          targets.push_back(also);
        entry e{0, op.actor, st.group, st.record.changes, now_ms(), subject, kind};
        // The change is durable: it is answered ok even if a member's system entry could not
        // be stored (the member list stays the truth).
        fan_out(self, e, st.group, targets, [=](caf::error) mutable {
          rp.deliver(ok_atom::value);
          next_op(self);
        });
      },
      [=](caf::error& err) mutable {
        rp.deliver(std::move(err));
        next_op(self);
      });
}

void apply_op(self_ptr self, const group_op& op, caf::typed_response_promise<ok_atom> rp) {
  auto& st = self->state;
  auto fail = [&](errc code, std::string text) {
    rp.deliver(caf::make_error(code, std::move(text)));
    next_op(self);
  };
  auto role_of = [&](const std::string& user) -> std::optional<group_role> {
    if (auto it = st.members.find(user); it != st.members.end())
      return it->second;
    return std::nullopt;
  };
  auto actor_role = role_of(op.actor);
  if (!actor_role)
    return fail(errc::not_member, op.actor + " is not a member of " + st.group);
  auto next = st.record;
  ++next.changes;
  using kind = group_op::kind;
  switch (op.what) {
    case kind::create: {
      // Just created by the directory: the owner's first system entry.
      if (*actor_role != group_role::owner)
        return fail(errc::group_exists, "group " + st.group + " already exists");
      entry e{0, op.actor, st.group, 0, now_ms(), st.group, storage::entry_kind::group_created};
      return fan_out(self, e, st.group, {op.actor}, [=](caf::error) mutable {
        rp.deliver(ok_atom::value);
        next_op(self);
      });
    }
    case kind::add: {
      if (*actor_role == group_role::member)
        return fail(errc::not_allowed, "only the owner and admins add members");
      if (!valid_name(op.user))
        return fail(errc::invalid_argument, "user name is malformed");
      if (role_of(op.user)) {
        rp.deliver(ok_atom::value); // a member already: nothing changes
        return next_op(self);
      }
      if (st.members.size() >= st.cfg->max_group_size)
        return fail(errc::group_full, st.group + " has the most members a group may have ("
                                        + std::to_string(st.cfg->max_group_size) + ")");
      return commit(self, rp, op, member_change{st.group, next, op.user, false, group_role::member},
                    storage::entry_kind::member_added, op.user, {});
    }
    case kind::remove: {
      if (op.user == op.actor)
        return fail(errc::invalid_argument, "to leave a group, use leave");
      if (*actor_role == group_role::member)
        return fail(errc::not_allowed, "only the owner and admins remove members");
      auto target = role_of(op.user);
      if (!target)
        return fail(errc::not_member, op.user + " is not a member of " + st.group);
      if (*target == group_role::owner)
        return fail(errc::not_allowed, "the owner cannot be removed");
      if (*target == group_role::admin && *actor_role != group_role::owner)
        return fail(errc::not_allowed, "only the owner removes admins");
      return commit(self, rp, op, member_change{st.group, next, op.user, true, group_role::member},
                    storage::entry_kind::member_removed, op.user, op.user);
    }
    case kind::leave: {
      if (*actor_role == group_role::owner)
        return fail(errc::not_allowed, "the owner cannot leave the group");
      return commit(self, rp, op, member_change{st.group, next, op.actor, true, group_role::member},
                    storage::entry_kind::member_left, op.actor, op.actor);
    }
    case kind::set_admin:
    case kind::unset_admin: {
      if (*actor_role != group_role::owner)
        return fail(errc::not_allowed, "only the owner appoints admins");
      auto target = role_of(op.user);
      if (!target)
        return fail(errc::not_member, op.user + " is not a member of " + st.group);
      if (*target == group_role::owner)
        return fail(errc::not_allowed, "the owner's role cannot change");
      auto role = op.what == kind::set_admin ? group_role::admin : group_role::member;
      return commit(self, rp, op, member_change{st.group, next, op.user, false, role},
                    storage::entry_kind::message, {}, {});
    }
  }
  fail(errc::invalid_argument, "unknown group operation");
}

void next_op(self_ptr self) {
  auto& st = self->state;
  if (st.queue.empty()) {
    st.busy = false;
    return;
  }
  st.busy = true;
  auto [op, rp] = std::move(st.queue.front());
  st.queue.pop_front();
  apply_op(self, op, rp);
}

/// Owner first, then admins, then members; by name within each.
bool listed_before(const group_member& a, const group_member& b) {
  if (a.role != b.role)
    return a.role > b.role;
  return a.user < b.user;
}

group_actor::behavior_type group(self_ptr self, group_info info,
                                 std::shared_ptr<const settings> cfg,
                                 persistence_actor persistence, directory_actor directory) {
  auto& st = self->state;
  st.group = info.name;
  st.record = info.record;
  for (auto& m : info.members)
    st.members[m.user] = m.role;
  st.cfg = std::move(cfg);
  st.persistence = std::move(persistence);
  st.directory = std::move(directory);
  self->delayed_send(self, st.cfg->user_idle_timeout, tick_atom::value);
  return {
    [=](send_atom, const entry& e) -> caf::result<ok_atom> {
      auto& st = self->state;
      ++st.activity;
      if (st.members.count(e.from) == 0)
        return caf::make_error(errc::not_member, e.from + " is not a member of " + st.group);
      std::vector<std::string> targets;
      targets.reserve(st.members.size());
      for (auto& [user, role] : st.members)
        if (user != e.from)
          targets.push_back(user);
      auto rp = self->make_response_promise<ok_atom>();
      fan_out(self, e, e.from, targets, [=](caf::error err) mutable {
        if (err)
          rp.deliver(std::move(err));
        else
          rp.deliver(ok_atom::value);
      });
      return rp;
    },
    [=](group_atom, const group_op& op) -> caf::result<ok_atom> {
      auto& st = self->state;
      ++st.activity;
      auto rp = self->make_response_promise<ok_atom>();
      st.queue.emplace_back(op, rp);
      if (!st.busy)
        next_op(self);
      return rp;
    },
    [=](group_atom, lookup_atom,
        const std::string& requester) -> caf::result<std::vector<group_member>> {
      auto& st = self->state;
      ++st.activity;
      if (st.members.count(requester) == 0)
        return caf::make_error(errc::not_member, requester + " is not a member of " + st.group);
      std::vector<group_member> out;
      for (auto& [user, role] : st.members)
        out.push_back(group_member{user, role});
      std::sort(out.begin(), out.end(), listed_before);
      return out;
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.activity == st.activity_at_tick && !st.busy && st.fanouts == 0) {
        self->quit();
        return;
      }
      st.activity_at_tick = st.activity;
      self->delayed_send(self, st.cfg->user_idle_timeout, tick_atom::value);
    },
  };
}

} // namespace

group_actor spawn_group(caf::local_actor* parent, group_info info,
                        std::shared_ptr<const settings> config, persistence_actor persistence,
                        directory_actor directory) {
  return parent->spawn(group, std::move(info), std::move(config), std::move(persistence),
                       std::move(directory));
}

} // namespace missive

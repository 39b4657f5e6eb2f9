#include <unordered_map>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"
#include "active_users.hpp"
#include "group.hpp"
#include "user.hpp"

namespace missive {

namespace {

struct directory_state {
  directory_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  std::shared_ptr<const settings> cfg;
  persistence_actor persistence;
  dispatcher_actor dispatcher;
  std::unordered_map<std::string, user_actor> users;
  /// The same, where user actors look a recipient up themselves.
  std::shared_ptr<active_users> active = std::make_shared<active_users>();
  /// Users being activated, with everybody waiting for them.
  std::unordered_map<std::string, std::vector<caf::typed_response_promise<user_actor>>> loading;
  std::unordered_map<std::string, group_actor> groups;
  /// The names of the actors above, by actor id: a down message names the actor, and a scan
  /// of every active user per stopped one would be quadratic when thousands go idle together.
  std::unordered_map<caf::actor_id, std::string> names;
  /// Groups being activated, with everybody waiting for them.
  std::unordered_map<std::string, std::vector<std::function<void(caf::expected<group_actor>)>>>
    loading_groups;
  static inline const char* name = "missive.directory";
};

using self_ptr = directory_actor::stateful_pointer<directory_state>;

/// Finds or activates the actor of `group` and hands it (or why not) to `k`.
void with_group(self_ptr self, const std::string& group,
                std::function<void(caf::expected<group_actor>)> k) {
  auto& st = self->state;
  if (auto it = st.groups.find(group); it != st.groups.end())
    return k(it->second);
  if (!valid_group(group))
    return k(caf::make_error(errc::unknown_group, "unknown group " + group));
  auto& waiting = st.loading_groups[group];
  waiting.push_back(std::move(k));
  if (waiting.size() > 1)
    return;
  auto answer = [=](caf::expected<group_actor> x) {
    auto waiting = std::move(self->state.loading_groups[group]);
    self->state.loading_groups.erase(group);
    for (auto& w : waiting)
      w(x);
  };
  self->request(st.persistence, caf::infinite, load_atom::value, group_atom::value, group)
    .then(
      [=](group_info& info) {
        auto& st = self->state;
        auto g = spawn_group(self, std::move(info), st.cfg, st.persistence,
                             caf::actor_cast<directory_actor>(self));
        self->monitor(g);
        st.groups.emplace(group, g);
        st.names.emplace(g.id(), group);
        answer(g);
      },
      [=](caf::error& err) { answer(std::move(err)); });
}

directory_actor::behavior_type directory(self_ptr self, std::shared_ptr<const settings> cfg,
                                         persistence_actor persistence,
                                         dispatcher_actor dispatcher) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.persistence = std::move(persistence);
  st.dispatcher = std::move(dispatcher);
  // A user actor that stopped (idle) is forgotten; the next lookup activates a new one, which
  // cannot happen before this: one actor per user at any time.
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto named = st.names.find(dm.source.id());
    if (named == st.names.end())
      return;
    auto name = std::move(named->second);
    st.names.erase(named);
    if (auto it = st.users.find(name); it != st.users.end() && it->second.address() == dm.source) {
      st.active->erase(name);
      st.users.erase(it);
    } else if (auto g = st.groups.find(name); g != st.groups.end()
                                              && g->second.address() == dm.source) {
      st.groups.erase(g);
    }
  });
  return {
    [=](lookup_atom, const std::string& user) -> caf::result<user_actor> {
      auto& st = self->state;
      if (auto it = st.users.find(user); it != st.users.end())
        return it->second;
      if (!valid_name(user))
        return caf::make_error(errc::unknown_user, "unknown user " + user);
      auto rp = self->make_response_promise<user_actor>();
      auto& waiting = st.loading[user];
      waiting.push_back(rp);
      if (waiting.size() > 1)
        return rp;
      self->request(st.persistence, caf::infinite, load_atom::value, user)
        .then(
          [=](mailbox_state& loaded) {
            auto& st = self->state;
            auto u = spawn_user(self, user, loaded, st.cfg, st.persistence,
                                caf::actor_cast<directory_actor>(self), st.dispatcher, st.active);
            self->monitor(u);
            st.users.emplace(user, u);
            st.names.emplace(u.id(), user);
            st.active->put(user, u);
            auto waiting = std::move(st.loading[user]);
            st.loading.erase(user);
            for (auto& p : waiting)
              p.deliver(u);
          },
          [=](caf::error& err) {
            auto& st = self->state;
            auto waiting = std::move(st.loading[user]);
            st.loading.erase(user);
            for (auto& p : waiting)
              p.deliver(err);
          });
      return rp;
    },
    [=](lookup_atom, group_atom, const std::string& group) -> caf::result<group_actor> {
      auto rp = self->make_response_promise<group_actor>();
      with_group(self, group, [=](caf::expected<group_actor> g) mutable {
        if (g)
          rp.deliver(*g);
        else
          rp.deliver(g.error());
      });
      return rp;
    },
    [=](group_atom, const group_op& op) -> caf::result<ok_atom> {
      auto rp = self->make_response_promise<ok_atom>();
      auto forward = [=](caf::expected<group_actor> g) mutable {
        if (!g) {
          rp.deliver(g.error());
          return;
        }
        self->request(*g, caf::infinite, group_atom::value, op)
          .then([=](ok_atom) mutable { rp.deliver(ok_atom::value); },
                [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      };
      if (op.what != group_op::kind::create) {
        with_group(self, op.group, forward);
        return rp;
      }
      if (!valid_group(op.group)) {
        rp.deliver(caf::make_error(errc::invalid_argument,
                                   "group names are # and 1-64 characters of A-Z a-z 0-9 . _ -"));
        return rp;
      }
      using namespace std::chrono;
      auto now = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
      self->request(self->state.persistence, caf::infinite, group_atom::value,
                    register_atom::value, op.group, op.actor, static_cast<int64_t>(now))
        .then([=](ok_atom) mutable { with_group(self, op.group, forward); },
              [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](stop_atom) {
      for (auto& [name, g] : self->state.groups)
        self->send_exit(g, caf::exit_reason::user_shutdown);
      for (auto& [name, u] : self->state.users)
        self->send_exit(u, caf::exit_reason::user_shutdown);
      self->quit();
    },
  };
}

} // namespace

directory_actor spawn_directory(caf::actor_system& sys, std::shared_ptr<const settings> config,
                                persistence_actor persistence, dispatcher_actor dispatcher) {
  return sys.spawn(directory, std::move(config), std::move(persistence), std::move(dispatcher));
}

} // namespace missive

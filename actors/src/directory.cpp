#include <unordered_map>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"
#include "user.hpp"

namespace missive {

namespace {

struct directory_state {
  directory_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  std::shared_ptr<const settings> cfg;
  persistence_actor persistence;
  dispatcher_actor dispatcher;
  std::unordered_map<std::string, user_actor> users;
  /// Users being activated, with everybody waiting for them.
  std::unordered_map<std::string, std::vector<caf::typed_response_promise<user_actor>>> loading;
  static inline const char* name = "missive.directory";
};

using self_ptr = directory_actor::stateful_pointer<directory_state>;

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
    auto& users = self->state.users;
    for (auto it = users.begin(); it != users.end(); ++it) {
      if (it->second.address() == dm.source) {
        users.erase(it);
        break;
      }
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
                                caf::actor_cast<directory_actor>(self), st.dispatcher);
            self->monitor(u);
            st.users.emplace(user, u);
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
    [=](stop_atom) {
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

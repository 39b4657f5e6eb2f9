#pragma once

#include "missive/actors/node.hpp"

namespace missive {

class active_users;

/// Spawned by the directory with the state it read from storage. `active` is where it finds
/// the actors of the users it sends to (the directory keeps it).
user_actor spawn_user(caf::local_actor* parent, std::string name, mailbox_state loaded,
                      std::shared_ptr<const settings> config, persistence_actor persistence,
                      directory_actor directory, dispatcher_actor dispatcher,
                      std::shared_ptr<const active_users> active);

} // namespace missive

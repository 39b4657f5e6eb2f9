#pragma once

#include "missive/actors/node.hpp"

namespace missive {

/// Spawned by the directory with the state it read from storage.
user_actor spawn_user(caf::local_actor* parent, std::string name, mailbox_state loaded,
                      std::shared_ptr<const settings> config, persistence_actor persistence,
                      directory_actor directory, dispatcher_actor dispatcher);

} // namespace missive

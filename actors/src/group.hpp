#pragma once

#include "missive/actors/node.hpp"

namespace missive {

/// Spawned by the directory with the state it read from storage.
group_actor spawn_group(caf::local_actor* parent, group_info info,
                        std::shared_ptr<const settings> config, persistence_actor persistence,
                        directory_actor directory);

} // namespace missive

#pragma once

#include <string>
#include <string_view>

#include "missive/actors/settings.hpp"
#include "missive/protocol/gateway.hpp"
#include "missive/storage/store.hpp"

namespace missive::app {

/// Everything missive-server can be configured with (config/missive.conf documents each key).
struct server_config {
  protocol::gateway_options gateway;
  storage::options storage{"./data", true};
  settings actors;
  size_t scheduler_threads = 2;
};

/// config/missive.conf as embedded at build time.
std::string_view default_config_text();

/// Applies `key = value` lines from `text` to `cfg`. Returns an empty string on success,
/// else "SOURCE:LINE: what is wrong"; `cfg` may then be partly updated.
std::string apply_config(server_config& cfg, std::string_view text, const std::string& source);

/// The defaults: the embedded file applied to a default-constructed config.
server_config default_config();

} // namespace missive::app

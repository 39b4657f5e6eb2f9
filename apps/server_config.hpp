#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "missive/actors/policy.hpp"
#include "missive/actors/settings.hpp"
#include "missive/protocol/gateway.hpp"
#include "missive/protocol/webhook.hpp"
#include "missive/storage/store.hpp"
#include "thread_policy.hpp"

namespace caf {
class actor_system_config;
}

namespace missive::app {

/// Everything missive-server can be configured with (config/missive.conf documents each key).
struct server_config {
  protocol::gateway_options gateway;
  storage::options storage{"./data", true};
  settings actors;
  size_t scheduler_threads = 2;
  /// How long an idle scheduler worker keeps looking for work, in naps of 50 µs, before it
  /// sleeps until work is handed to it. 0: it sleeps after a short spin.
  std::chrono::microseconds scheduler_idle_poll{0};
  /// How the kernel schedules the server's threads (`thread-policy`).
  thread_policy scheduling = thread_policy::batch;
  /// The send policy as configured (max_body_bytes comes from `actors`).
  policy::chain_options policy;
  /// Spam rules file; empty: none.
  std::string spam_rules_path;
  /// The spam rules in force, set by build_policy and swapped by reload_spam_rules.
  std::shared_ptr<policy::spam_rules_slot> spam;
  /// Third-party push: "none" or "webhook" (then `webhook.url` is required).
  std::string push_provider = "none";
  protocol::webhook_options webhook;
};

/// config/missive.conf as embedded at build time.
std::string_view default_config_text();

/// Applies `key = value` lines from `text` to `cfg`. Returns an empty string on success,
/// else "SOURCE:LINE: what is wrong"; `cfg` may then be partly updated.
std::string apply_config(server_config& cfg, std::string_view text, const std::string& source);

/// The defaults: the embedded file applied to a default-constructed config.
server_config default_config();

/// The actor system's scheduler as configured: worker threads and how idle workers wait.
void configure_scheduler(const server_config& cfg, caf::actor_system_config& sys_cfg);

/// Loads the spam rules and builds the policy chain into `cfg.actors.policy`. Returns an empty
/// string on success, else what is wrong.
std::string build_policy(server_config& cfg);

/// Starts the configured third-party push provider into `cfg.actors.third_party_push`.
/// Returns an empty string on success, else what is wrong.
std::string build_push(server_config& cfg);

/// Reads the spam rules file again. Good rules replace the old ones at once; a bad file
/// changes nothing. Returns a line for the operator either way.
std::string reload_spam_rules(const server_config& cfg);

} // namespace missive::app

#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "missive/actors/interfaces.hpp"
#include "missive/actors/settings.hpp"

namespace missive::storage {
class store;
}

namespace missive {

/// The long-lived actors of one node. Handles are thread-safe: the gateway's KJ thread uses
/// them with anon_send and by spawning short-lived helpers (login, device calls).
struct node {
  std::shared_ptr<const settings> config;
  persistence_actor persistence;
  accounts_actor accounts;
  directory_actor directory;
  dispatcher_actor dispatcher;
};

/// Registers Missive's error category with CAF. Call on the config before creating the system.
void add_missive_types(caf::actor_system_config& cfg);

/// Spawns the node's actors over an open store. `detached` runs persistence and accounts on
/// threads of their own (production); false keeps them on the scheduler, for deterministic tests.
node start_node(caf::actor_system& sys, settings config, std::shared_ptr<storage::store> db,
                bool detached = true);

/// Stops the node's actors; persistence commits what is pending before it quits.
void stop_node(const node& n);

/// Logs a device in, in a short-lived helper actor: checks its credentials, activates the user
/// actor and attaches `sink` (an older session of the same device is closed). `on_login` is
/// called exactly once: with the session's starting point and the user actor — to which the
/// session then sends its messages — or with bad_credentials / another error. A device whose
/// sink ended before the attach completed (it hung up) is detached again at once.
///
/// Credentials: with `resume_token` empty, the user's password; a login that way also issues
/// the device a new resume token (`login_ok::resume_token`, durable before the answer; it
/// replaces the device's earlier one), unless `settings::resume_token_ttl` is 0 or the token
/// cannot be stored (a full disk: the login goes on without one). With
/// `resume_token` set, that token instead of the password: it must be the device's current one
/// and younger than the TTL, and the answer carries it again; past half the TTL its date is
/// renewed (the token stays the same).
void login(caf::actor_system& sys, const node& n, std::string user, std::string password,
           std::string device, push_sink_ptr sink, reply_to<login_ok> on_login,
           std::string resume_token = {});

/// A logged-in device, as the calls made on its behalf need it.
struct device_context {
  node refs;
  std::string user;
  std::string device;
  user_actor owner;
};

/// A helper for one call of a logged-in device other than `send`: send it one message of
/// `device_call_actor`; it makes the call, answers through the message's reply_to and quits.
device_call_actor spawn_device_call(caf::actor_system& sys, device_context ctx);

// Factories, exposed for tests.
persistence_actor spawn_persistence(caf::actor_system& sys, std::shared_ptr<storage::store> db,
                                    bool detached, settings config = {});
accounts_actor spawn_accounts(caf::actor_system& sys, persistence_actor persistence,
                              hash_cost cost, bool detached);
/// An accounts actor that hands each request to one of `checkers` with nothing to do (they
/// run one at a time each), in arrival order, and ends them when it ends. Bad input is answered
/// at once; a request that finds `max_waiting` others waiting is refused (unavailable).
accounts_actor spawn_account_pool(caf::actor_system& sys, std::vector<accounts_actor> checkers,
                                  size_t max_waiting);
dispatcher_actor spawn_dispatcher(caf::actor_system& sys, std::shared_ptr<const settings> config);
directory_actor spawn_directory(caf::actor_system& sys, std::shared_ptr<const settings> config,
                                persistence_actor persistence, dispatcher_actor dispatcher);

/// Merges `next` into `pending` (the notice not yet pushed to a device), keeping `entries`
/// only while they are complete and within the inline limits.
void merge_notice(notice& pending, notice next, const settings& limits);

/// Drops the inline entries of `n` if they exceed the limits (the device then syncs).
void trim_notice(notice& n, const settings& limits);

} // namespace missive

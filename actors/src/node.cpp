#include "missive/actors/node.hpp"

#include "missive/actors/policy.hpp"

#include <algorithm>
#include <thread>

#include <sodium.h>

#include <caf/all.hpp>

namespace missive {

std::string to_string(errc x) {
  switch (x) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::unknown_user: return "unknown_user";
    case errc::bad_credentials: return "bad_credentials";
    case errc::user_exists: return "user_exists";
    case errc::too_large: return "too_large";
    case errc::stale_epoch: return "stale_epoch";
    case errc::cursor_ahead: return "cursor_ahead";
    case errc::storage_failure: return "storage_failure";
    case errc::unavailable: return "unavailable";
    case errc::session_replaced: return "session_replaced";
    case errc::seq_exhausted: return "seq_exhausted";
    case errc::blocked: return "blocked";
    case errc::rate_limited: return "rate_limited";
    case errc::spam: return "spam";
    case errc::unknown_group: return "unknown_group";
    case errc::group_exists: return "group_exists";
    case errc::not_member: return "not_member";
    case errc::not_allowed: return "not_allowed";
    case errc::group_full: return "group_full";
  }
  return "errc(" + std::to_string(static_cast<int>(x)) + ")";
}

bool valid_group(const std::string_view& name) {
  return name.size() > 1 && name[0] == '#' && valid_name(name.substr(1));
}

bool valid_name(const std::string_view& name) {
  if (name.empty() || name.size() > 64)
    return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

void add_missive_types(caf::actor_system_config& cfg) {
  cfg.add_error_category(caf::atom("missive"),
                         [](uint8_t code, caf::atom_value, const caf::message& context) {
                           auto out = to_string(static_cast<errc>(code));
                           if (context.match_element<std::string>(0))
                             out += ": " + context.get_as<std::string>(0);
                           return out;
                         });
}

namespace {

accounts_actor spawn_password_checkers(caf::actor_system& sys, const persistence_actor& db,
                                       const settings& config, bool detached) {
  auto count = config.password_threads;
  if (count == 0)
    count = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
  std::vector<accounts_actor> checkers;
  for (size_t i = 0; i < count; ++i)
    checkers.push_back(spawn_accounts(sys, db, config.password_hash, detached));
  return spawn_account_pool(sys, std::move(checkers), config.password_queue_max);
}

} // namespace

node start_node(caf::actor_system& sys, settings config, std::shared_ptr<storage::store> db,
                bool detached) {
  node n;
  if (sodium_init() < 0) // logins draw resume tokens from libsodium on any thread
    throw std::runtime_error("libsodium failed to initialise");
  if (!config.policy) {
    policy::chain_options opts;
    opts.steps = {"size", "blocklist"};
    opts.max_body_bytes = config.max_body_bytes;
    opts.max_request_bytes = config.max_body_bytes + 8192;
    std::string unused;
    config.policy = policy::build_chain(opts, &unused);
  }
  n.config = std::make_shared<const settings>(config);
  n.persistence = spawn_persistence(sys, std::move(db), detached, config);
  n.accounts = spawn_password_checkers(sys, n.persistence, config, detached);
  n.dispatcher = spawn_dispatcher(sys, n.config);
  n.directory = spawn_directory(sys, n.config, n.persistence, n.dispatcher);
  return n;
}

void stop_node(const node& n) {
  caf::anon_send(n.directory, stop_atom::value);
  caf::anon_send(n.dispatcher, stop_atom::value);
  caf::anon_send_exit(n.accounts, caf::exit_reason::user_shutdown);
  // An ordinary message, so every write queued before it is committed first.
  caf::anon_send(n.persistence, stop_atom::value);
}

void trim_notice(notice& n, const settings& limits) {
  size_t bytes = 0;
  for (auto& e : n.entries)
    bytes += e.body.size();
  if (!n.complete || n.entries.size() > limits.push_inline_max_entries
      || bytes > limits.push_inline_max_bytes) {
    n.complete = false;
    n.entries.clear();
  }
}

void merge_notice(notice& pending, notice next, const settings& limits) {
  if (next.epoch != pending.epoch) {
    pending = std::move(next);
  } else {
    // Entries stay inline only while they still cover (pending.after_seq, max_seq] whole.
    if (!next.complete || next.after_seq != pending.max_seq)
      pending.complete = false;
    if (pending.complete)
      for (auto& e : next.entries)
        pending.entries.push_back(std::move(e));
    pending.max_seq = std::max(pending.max_seq, next.max_seq);
  }
  trim_notice(pending, limits);
}

} // namespace missive

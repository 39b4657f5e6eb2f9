#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "missive/actors/push.hpp"

namespace missive::policy {
class chain;
}

namespace missive {

/// How costly password hashing is (libsodium's argon2id levels). `min` is for tests only.
enum class hash_cost { min, interactive, moderate };

/// Tunables of the actor layer, filled from config/missive.conf by the server.
struct settings {
  size_t max_body_bytes = 64 * 1024;
  uint32_t sync_page_default = 100;
  uint32_t sync_page_max = 1000;
  size_t push_inline_max_bytes = 4096;
  size_t push_inline_max_entries = 32;
  /// Send results a user actor answers retries from without storage. A retry is of a send
  /// whose answer was lost, so of one of the last few; an older one is found in storage. At
  /// 24 bytes per result plus its index, 4096 held 130 KB per user who kept sending.
  size_t dedup_window = 256;
  /// The persistence actor's index of stored dedup keys (actors/README, send path step 4): a
  /// mailbox with more keys is always looked up; a mailbox's keys are read about this many
  /// after each commit.
  size_t dedup_index_per_mailbox = 16384;
  size_t dedup_index_read_step = 256;
  size_t cache_entries = 256;
  /// Bytes of entries (bodies and names) a user actor's cache holds at most: 256 entries of
  /// 64 KiB bodies would be 16 MiB for one user.
  size_t cache_max_bytes = 128 * 1024;
  std::chrono::milliseconds user_idle_timeout{60000};
  /// Highest seq a mailbox hands out; the next append moves it to a new epoch. UINT32_MAX in
  /// production, small in tests.
  uint32_t max_seq = UINT32_MAX;
  /// Retention: keep at most this many entries per mailbox (0: no limit)…
  uint32_t retention_max_entries = 0;
  /// …and none older than this (0: no limit).
  std::chrono::milliseconds retention_max_age{0};
  /// How often the background sweep over all mailboxes starts.
  std::chrono::milliseconds retention_interval{60000};
  hash_cost password_hash = hash_cost::interactive;
  /// How many password hashes and checks run at once, each on a thread of its own (0: one per
  /// core, at most 4). Each takes the hash's memory while it runs (64 MiB at interactive).
  size_t password_threads = 0;
  /// Most password requests (sign-ups, password logins) waiting for a thread; more are refused
  /// at once (unavailable: the client tries again later) instead of waiting past its timeout.
  size_t password_queue_max = 1000;
  /// How long a resume token logs its device in without the password (0: no tokens are issued
  /// and every login needs the password).
  std::chrono::milliseconds resume_token_ttl{std::chrono::hours(24 * 30)};
  /// The send policy (actors/policy.hpp). Null: start_node builds `size blocklist` with
  /// max_body_bytes.
  std::shared_ptr<const policy::chain> policy;
  /// Most users one user can block.
  size_t max_blocked = 1000;
  /// Most members of a group.
  size_t max_group_size = 500;
  /// Third-party push: when (push_options) and through what (null: no third-party push).
  push_options push;
  std::shared_ptr<push_provider> third_party_push;
  /// A commit (one batch's write, synced under durability = sync) that takes at least this long
  /// is reported to `warn` (0: none is). Every send waits for its batch's commit, and a commit
  /// that stalls holds every send that arrives meanwhile: slow commits are where a durable
  /// server's latency tail comes from (on the development VM, the disk's stalls: BENCHMARKS.md,
  /// "Session 22").
  std::chrono::microseconds slow_commit{100000};
  /// At most one report per interval (by the actor clock); each counts the slow commits since
  /// the one before.
  std::chrono::milliseconds slow_commit_report_interval{10000};
  /// Where the actors tell the operator what needs a look (null: nowhere). Called on an actor's
  /// thread; it must not block.
  std::function<void(const std::string&)> warn;
};

/// Names of users and devices: 1–64 bytes of [A-Za-z0-9._-].
bool valid_name(const std::string_view& name);

/// Names of groups: `#` and a valid name. Used wherever a user name could be (a send's `to`).
bool valid_group(const std::string_view& name);

} // namespace missive

#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "missive/storage/records.hpp"
#include "missive/storage/status.hpp"

namespace missive::storage {

struct options {
  /// Directory of the LevelDB database; created if missing.
  std::string path;
  /// fsync every batch before `write` returns. false only for the explicit `async` mode.
  bool sync = true;
  /// LevelDB block cache, bytes.
  size_t cache_bytes = 32u << 20;
  /// LevelDB memtable size, bytes (memory used before a flush to a level-0 file).
  size_t write_buffer_bytes = 32u << 20;
  /// Share of the time LevelDB's background thread (memtable flushes, compactions) may work:
  /// it pauses between 128 KiB steps of table written through to the disk, so that a flush's
  /// burst does not delay the writes everybody waits for (`src/paced_env.hpp`); never while
  /// LevelDB is behind with that work. 100: no pauses.
  unsigned background_duty_percent = 50;
  /// While LevelDB keeps up with its background work, its background thread yields the core
  /// every 8 KiB of table written, so that a server thread waking on that core runs at once
  /// (`src/paced_env.hpp`). false: it takes its turns like any other thread.
  bool background_gives_way = true;
};

/// A set of writes applied atomically by `store::write`. Not thread-safe.
class write_batch {
public:
  write_batch();
  ~write_batch();
  write_batch(write_batch&&) noexcept;
  write_batch& operator=(write_batch&&) noexcept;

  void put_account(std::string_view user, std::string_view password_hash);
  void put_meta(std::string_view user, const mailbox_meta& meta);
  /// An append: the entry under `(mailbox, e.seq)` and the dedup record of
  /// `(mailbox, origin, e.client_msg_id)` that makes a retried append find it.
  void append(std::string_view mailbox, std::string_view origin, const entry& e);
  /// The same, with the dedup key already built: `keys::dedup(mailbox, origin,
  /// e.client_msg_id)`.
  void append(std::string_view mailbox, const entry& e, std::string_view dedup_key);
  /// An append no retry looks up: the entry only. For the recipient's copy of a 1:1 message,
  /// whose send is named by the sender's dedup record in the same batch.
  void append_entry(std::string_view mailbox, const entry& e);
  void put_device(std::string_view user, std::string_view device, const device_record& d);
  /// `user` refuses messages from `blocked` (put) or accepts them again (erase).
  void put_block(std::string_view user, std::string_view blocked);
  void erase_block(std::string_view user, std::string_view blocked);
  /// Where the device's third-party pushes go (put), or none any more (erase).
  void put_push(std::string_view user, std::string_view device, const push_record& r);
  void erase_push(std::string_view user, std::string_view device);
  /// The device's resume token from now on (put; it replaces the one before), or none (erase).
  void put_resume(std::string_view user, std::string_view device, const resume_record& r);
  void erase_resume(std::string_view user, std::string_view device);
  void put_group(std::string_view group, const group_record& g);
  /// Adds `user` to `group` with `role` (or changes the role), with the user's membership index.
  void put_member(std::string_view group, std::string_view user, group_role role);
  void erase_member(std::string_view group, std::string_view user);

  size_t count() const;
  bool empty() const { return count() == 0; }
  void clear();

private:
  friend class store;
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The node's LevelDB database. Thread-safe as LevelDB is, but Missive calls it only from
/// the persistence actor's thread.
class store {
public:
  /// Opens (creating if needed) the database at `opts.path`.
  static status open(const options& opts, std::unique_ptr<store>* out);
  ~store();

  /// not_found if the user has no account.
  status get_account(std::string_view user, std::string* password_hash);
  /// not_found if the user has no mailbox.
  status get_meta(std::string_view user, mailbox_meta* out);
  /// Highest seq stored in the mailbox, 0 if it has no entry. One seek, no scan.
  status last_seq(std::string_view user, uint32_t* out);
  /// Appends to `out` the entries with seq in (after, upto], in seq order, at most `limit`.
  status read_entries(std::string_view user, uint32_t after, uint32_t upto, uint32_t limit,
                      std::vector<entry>* out);
  /// not_found if `(mailbox, origin, client_msg_id)` was never appended.
  status get_dedup(std::string_view mailbox, std::string_view origin, uint64_t client_msg_id,
                   dedup_record* out);
  /// As get_dedup, for a key that is most likely absent: through an iterator's seek, which
  /// unlike a `Get` charges LevelDB's tables no "seek" (a `Get` that reads two tables charges
  /// the first, and a table is compacted after `size / 16 KiB` of them), so that a stream of
  /// misses does not set off compactions. Costs more CPU than a `Get`.
  status probe_dedup(std::string_view mailbox, std::string_view origin, uint64_t client_msg_id,
                     dedup_record* out);
  /// Appends to `out` the dedup keys (`keys::dedup`) of `mailbox` that follow `after` (a key
  /// this returned before; empty: from the first), in key order, at most `limit` of them. A
  /// bulk read: it leaves LevelDB's block cache as it was.
  status list_dedup_keys(std::string_view mailbox, std::string_view after, size_t limit,
                         std::vector<std::string>* out);
  /// not_found if the device never acknowledged anything.
  status get_device(std::string_view user, std::string_view device, device_record* out);
  /// not_found if the device holds no resume token.
  status get_resume(std::string_view user, std::string_view device, resume_record* out);

  /// Appends to `out` the users `user` blocks, in key order (shorter names first).
  status list_blocks(std::string_view user, std::vector<std::string>* out);

  /// Appends to `out` every device of `user` with a push record, in key order.
  status list_pushes(std::string_view user, std::vector<std::pair<std::string, push_record>>* out);

  /// not_found if there is no such group.
  status get_group(std::string_view group, group_record* out);
  /// Appends to `out` every member of `group` with its role, in key order (shorter names first).
  status list_members(std::string_view group,
                      std::vector<std::pair<std::string, group_role>>* out);
  /// Appends to `out` the groups `user` belongs to, in key order (shorter names first).
  status list_groups_of(std::string_view user, std::vector<std::string>* out);

  /// Applies the batch atomically; durable on return when `options.sync`.
  status write(write_batch& batch);

  /// Moves a mailbox to `new_epoch` in one atomic, synced batch: its newest `keep` entries
  /// are renumbered 1..k (their dedup records follow), older entries are deleted, and the
  /// meta record gets the new epoch. Sets `*last_seq` to k. Device cursors of the old epoch
  /// stop counting (their epoch no longer matches).
  status renumber(std::string_view user, uint32_t new_epoch, uint32_t keep, uint32_t* last_seq);

  /// Every user with an account, in key order.
  status list_users(std::vector<std::string>* out);

  /// At most `limit` users with an account whose names sort after `after` ("" = from the start).
  status list_users_after(std::string_view after, size_t limit, std::vector<std::string>* out);

  /// Retention: deletes the mailbox's oldest entries (with their dedup records) while more than
  /// `max_entries` remain (0: no count limit) or they were stamped before `cutoff_ms` (0: no
  /// age limit), at most `max_delete` of them, and raises the meta's `seq_floor` to the highest
  /// deleted seq so that it is never handed out again. Sets `*floor` to the resulting floor
  /// (everything at or below it may be gone) and `*deleted` to the count.
  status expire(std::string_view user, uint32_t max_entries, int64_t cutoff_ms, size_t max_delete,
                uint32_t* floor, size_t* deleted);

  bool sync_writes() const { return sync_; }

private:
  struct impl;
  explicit store(std::unique_ptr<impl> x, bool sync);
  std::unique_ptr<impl> impl_;
  bool sync_;
};

} // namespace missive::storage

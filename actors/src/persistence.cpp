#include <algorithm>
#include <chrono>
#include <deque>
#include <random>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"
#include "missive/actors/report_limiter.hpp"
#include "missive/storage/keys.hpp"
#include "missive/storage/store.hpp"

namespace missive {

namespace {

/// What the persistence actor knows of one mailbox's stored dedup records: 32-bit hashes of
/// their keys. While `loading` they are read a step per batch (the mailbox is probed
/// meanwhile); once `complete`, sorted and answering; `too_many` past the per-mailbox bound
/// (always probed).
struct known_keys {
  enum class phase : uint8_t { loading, complete, too_many };
  phase at = phase::loading;
  std::vector<uint32_t> hashes; // loading: as read and appended, unsorted; complete: sorted
  std::string read_after;       // loading: the last key read
  std::list<std::string>::iterator lru; // its place in persistence_state::known_lru
};

/// Bounds of persistence_state::known past the per-mailbox one (settings): the least recently
/// used mailboxes are forgotten (and read again when needed).
constexpr size_t max_known_hashes = size_t{1} << 22; // 16 MiB of hashes
constexpr size_t max_known_mailboxes = size_t{1} << 16;

struct persistence_state {
  persistence_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  std::shared_ptr<storage::store> db;
  storage::write_batch batch;
  /// Answers owed once the pending batch is committed (error set if it failed).
  std::vector<std::function<void(const caf::error&)>> waiting;
  /// Sends in the pending batch, by their dedup key (storage::keys::dedup): a retry that
  /// arrives before the commit.
  std::unordered_map<std::string, send_result> sends_in_batch;
  std::unordered_set<std::string> accounts_in_batch; // registrations not yet committed
  std::unordered_set<std::string> resumes_in_batch;  // user '\0' device: a new resume token
  std::unordered_set<std::string> groups_in_batch;   // group creations not yet committed
  /// Mailboxes whose dedup keys are known (known_keys), so that the dedup lookup of a new send
  /// — which misses — skips LevelDB: every `Get` that reads two tables charges a "seek" to the
  /// first, and LevelDB compacts a table after `size / 16 KiB` of them, so at thousands of
  /// sends per second each flushed table was compacted on at once, about 2.5 bytes of
  /// compaction written per byte flushed (BENCHMARKS.md, "Session 11"). A superset: a key
  /// deleted since costs only a lookup. Read the first time a mailbox is checked, a bounded
  /// step after each commit, so that a restart under load does not stall every write while
  /// thousands of mailboxes are read ("Session 12"); keys appended from that first check on
  /// are added as they go into the batch. Until the reading is done, or past the per-mailbox
  /// bound, a new send is probed (store::probe_dedup), not looked up with a `Get`: the misses
  /// would charge the same seeks ("Session 13"). Forgotten only between batches, so a mailbox
  /// read again never misses a key of the batch.
  std::unordered_map<std::string, known_keys> known;
  std::list<std::string> known_lru; // most recently used first
  std::deque<std::string> loading;  // mailboxes still being read, first come first
  size_t known_hashes = 0;
  bool flush_scheduled = false;
  // Slow commits (settings::slow_commit): the longest not reported yet and the requests it
  // held, and how often they are reported (made once the settings are known).
  std::chrono::microseconds slowest{0};
  size_t slowest_held = 0;
  std::optional<report_limiter> slow_reports;
  settings cfg;
  std::string sweep_after; // the retention sweep resumes after this user
  static inline const char* name = "missive.persistence";
};

using self_ptr = persistence_actor::stateful_pointer<persistence_state>;

caf::error storage_error(const storage::status& s) {
  return caf::make_error(errc::storage_failure, s.to_string());
}

/// The 32-bit hash `known` keeps of a dedup key (storage::keys::dedup).
uint32_t key_hash(const std::string& dedup_key) {
  auto h = std::hash<std::string>{}(dedup_key);
  return static_cast<uint32_t>(h ^ (h >> 32));
}

void give_up(persistence_state& st, known_keys& k) {
  st.known_hashes -= k.hashes.size();
  k.hashes = {};
  k.at = known_keys::phase::too_many;
}

/// What `known` tells of a dedup record: certainly not stored, stored if its hash did not
/// collide (most likely a retry), or nothing (the mailbox is being read, or has too many keys).
enum class presence { absent, likely, unknown };

/// What is known of the dedup record whose key hashes to `hash` (a key of `mailbox`); see
/// persistence_state::known. The first check of a mailbox starts reading its keys.
presence check_known(persistence_state& st, const std::string& mailbox, uint32_t hash) {
  auto it = st.known.find(mailbox);
  if (it == st.known.end()) {
    known_keys k;
    st.known_lru.push_front(mailbox);
    k.lru = st.known_lru.begin();
    st.known.emplace(mailbox, std::move(k));
    st.loading.push_back(mailbox);
    return presence::unknown;
  }
  st.known_lru.splice(st.known_lru.begin(), st.known_lru, it->second.lru);
  auto& k = it->second;
  if (k.at != known_keys::phase::complete)
    return presence::unknown;
  return std::binary_search(k.hashes.begin(), k.hashes.end(), hash) ? presence::likely
                                                                     : presence::absent;
}

/// Looks the dedup record of `(mailbox, origin, id)` up as `known` advises: not at all, by a
/// `Get` when it is likely stored, else by a probe that sets off no compaction (a stream of
/// new sends to mailboxes being read, or with too many keys, misses every time).
storage::status find_dedup(persistence_state& st, const std::string& mailbox,
                           const std::string& origin, uint64_t id, uint32_t hash,
                           storage::dedup_record* out) {
  switch (check_known(st, mailbox, hash)) {
    case presence::absent:
      return {storage::errc::not_found, "not stored"};
    case presence::likely:
      return st.db->get_dedup(mailbox, origin, id, out);
    case presence::unknown:
      break;
  }
  return st.db->probe_dedup(mailbox, origin, id, out);
}

/// A keyed append to `mailbox` whose key hashes to `v` went into the batch: known from now on.
void remember(persistence_state& st, const std::string& mailbox, uint32_t v) {
  auto it = st.known.find(mailbox);
  if (it == st.known.end() || it->second.at == known_keys::phase::too_many)
    return; // read (with this key) when next needed, or never
  auto& k = it->second;
  auto& h = k.hashes;
  if (k.at == known_keys::phase::loading) {
    h.push_back(v); // whether or not the reading has passed its place
  } else {
    auto pos = std::lower_bound(h.begin(), h.end(), v);
    if (pos != h.end() && *pos == v)
      return;
    h.insert(pos, v);
  }
  ++st.known_hashes;
  if (h.size() > st.cfg.dedup_index_per_mailbox)
    give_up(st, k);
}

void forget(persistence_state& st, std::unordered_map<std::string, known_keys>::iterator it) {
  st.known_hashes -= it->second.hashes.size();
  st.known_lru.erase(it->second.lru);
  st.known.erase(it); // a name left in `loading` is skipped
}

/// Between batches only: keeps `known` within its bounds.
void trim_known(persistence_state& st) {
  while (!st.known_lru.empty()
         && (st.known_hashes > max_known_hashes || st.known.size() > max_known_mailboxes))
    forget(st, st.known.find(st.known_lru.back()));
}

/// Between batches only (what the reading cannot see any more is appended from now on): reads
/// the next keys of the mailboxes being loaded, about `dedup_index_read_step` of them.
void read_known(persistence_state& st) {
  constexpr size_t seek_cost = 16; // a mailbox read counts as this many keys
  size_t budget = st.cfg.dedup_index_read_step;
  while (budget > 0 && !st.loading.empty()) {
    auto it = st.known.find(st.loading.front());
    if (it == st.known.end() || it->second.at != known_keys::phase::loading) {
      st.loading.pop_front(); // forgotten, or given up
      continue;
    }
    auto& k = it->second;
    auto want = std::min(budget, st.cfg.dedup_index_per_mailbox + 1 - std::min(
                                   k.hashes.size(), st.cfg.dedup_index_per_mailbox));
    std::vector<std::string> keys;
    if (!st.db->list_dedup_keys(it->first, k.read_after, want, &keys).ok())
      return; // probed meanwhile; tried again after the next batch
    budget -= std::min(budget, keys.size() + seek_cost);
    for (auto& x : keys)
      k.hashes.push_back(key_hash(x));
    st.known_hashes += keys.size();
    if (k.hashes.size() > st.cfg.dedup_index_per_mailbox) {
      give_up(st, k);
      st.loading.pop_front();
    } else if (keys.size() < want) { // read to the end
      std::sort(k.hashes.begin(), k.hashes.end());
      auto end = std::unique(k.hashes.begin(), k.hashes.end());
      st.known_hashes -= static_cast<size_t>(k.hashes.end() - end);
      k.hashes.erase(end, k.hashes.end());
      k.hashes.shrink_to_fit();
      k.read_after.clear();
      k.at = known_keys::phase::complete;
      st.loading.pop_front();
    } else {
      k.read_after = std::move(keys.back());
    }
  }
}

/// Queues the answer `value` for when the current batch is durable (an error if the commit
/// fails) and makes sure a flush follows.
template <class T>
caf::typed_response_promise<T> enqueue(self_ptr self, T value) {
  auto rp = self->make_response_promise<T>();
  self->state.waiting.push_back([rp, value](const caf::error& err) mutable {
    if (err)
      rp.deliver(err);
    else
      rp.deliver(value);
  });
  if (!self->state.flush_scheduled) {
    self->state.flush_scheduled = true;
    // Everything already in the mailbox is handled before this flush: group commit.
    self->send(self, flush_atom::value);
  }
  return rp;
}

/// Notes a commit that took `took` for a batch of `held` requests. A slow one is reported at once
/// unless a report went less than an interval ago; then the next report counts it.
void note_commit(self_ptr self, std::chrono::microseconds took, size_t held) {
  auto& st = self->state;
  if (st.cfg.slow_commit.count() == 0 || took < st.cfg.slow_commit || !st.cfg.warn)
    return;
  if (took >= st.slowest) {
    st.slowest = took;
    st.slowest_held = held;
  }
  auto n = st.slow_reports->note(self->clock().now());
  if (n == 0)
    return;
  auto ms = [](std::chrono::microseconds d) { return std::to_string(d.count() / 1000); };
  std::string text = "slow commits: " + std::to_string(n) + " took "
                     + ms(st.cfg.slow_commit) + " ms or more"
                     + (st.slow_reports->reports() > 1 ? " since the last report" : "")
                     + ", the longest "
                     + ms(st.slowest) + " ms (a batch of " + std::to_string(st.slowest_held)
                     + (st.slowest_held == 1 ? " request" : " requests")
                     + "; whatever arrived meanwhile waited behind it). Every send waits for "
                       "its batch's commit: the disk's durable writes are slow "
                       "(slow-commit-ms)";
  st.cfg.warn(text);
  st.slowest = {};
}

void flush(self_ptr self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.waiting.empty())
    return;
  auto started = std::chrono::steady_clock::now();
  auto s = st.db->write(st.batch);
  note_commit(self,
              std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::steady_clock::now() - started),
              st.waiting.size());
  st.batch.clear();
  st.accounts_in_batch.clear();
  st.resumes_in_batch.clear();
  st.groups_in_batch.clear();
  st.sends_in_batch.clear();
  trim_known(st);
  auto waiting = std::move(st.waiting);
  st.waiting.clear();
  auto err = s.ok() ? caf::error{} : storage_error(s);
  for (auto& answer : waiting)
    answer(err);
  read_known(st); // after the answers: it delays the next batch, not this one
}

/// Users per sweep step and entries per user and step: bounded, so that appends queued
/// meanwhile wait for one short step at most.
constexpr size_t sweep_users = 16;
constexpr size_t sweep_entries = 10000;

bool retention_on(const settings& cfg) {
  return cfg.retention_max_entries > 0 || cfg.retention_max_age.count() > 0;
}

/// One bounded step of the retention sweep over every mailbox.
void sweep(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> users;
  if (auto s = st.db->list_users_after(st.sweep_after, sweep_users, &users); !s.ok())
    users.clear();
  int64_t cutoff = 0;
  if (st.cfg.retention_max_age.count() > 0) {
    using namespace std::chrono;
    cutoff = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count()
             - st.cfg.retention_max_age.count();
  }
  for (auto& user : users) {
    uint32_t floor = 0;
    size_t deleted = 0;
    // A failure here is retried at the next sweep; it never affects sends.
    (void) st.db->expire(user, st.cfg.retention_max_entries, cutoff, sweep_entries, &floor,
                         &deleted);
  }
  if (users.size() < sweep_users) {
    st.sweep_after.clear();
    self->delayed_send(self, st.cfg.retention_interval, expire_atom::value);
  } else {
    st.sweep_after = users.back();
    self->send(self, expire_atom::value); // behind whatever arrived meanwhile
  }
}

persistence_actor::behavior_type persistence(self_ptr self, std::shared_ptr<storage::store> db,
                                             settings cfg) {
  self->state.db = std::move(db);
  self->state.cfg = cfg;
  self->state.slow_reports.emplace(cfg.slow_commit_report_interval);
  if (retention_on(cfg))
    self->delayed_send(self, cfg.retention_interval, expire_atom::value);
  return {
    [=](load_atom, const std::string& user) -> caf::result<mailbox_state> {
      auto& db = *self->state.db;
      std::string hash;
      if (auto s = db.get_account(user, &hash); !s.ok())
        return s.is_not_found() ? caf::make_error(errc::unknown_user, "unknown user " + user)
                                : storage_error(s);
      storage::mailbox_meta meta;
      if (auto s = db.get_meta(user, &meta); !s.ok())
        return storage_error(s);
      uint32_t last = 0;
      if (auto s = db.last_seq(user, &last); !s.ok())
        return storage_error(s);
      std::vector<std::string> blocked;
      if (auto s = db.list_blocks(user, &blocked); !s.ok())
        return storage_error(s);
      std::vector<std::pair<std::string, storage::push_record>> pushes;
      if (auto s = db.list_pushes(user, &pushes); !s.ok())
        return storage_error(s);
      mailbox_state out{meta.epoch, std::max(last, meta.seq_floor), meta.seq_floor,
                        std::move(blocked), {}};
      for (auto& [device, r] : pushes)
        out.pushes.push_back(push_registration{device, std::move(r.platform), std::move(r.token)});
      return out;
    },
    [=](append_atom, const std::vector<mailbox_append>& xs) -> caf::result<dedup_hit> {
      auto& st = self->state;
      // The key append names the send: stored before, nothing to do.
      std::vector<std::string> keys(xs.size()); // each key append's dedup key
      std::vector<uint32_t> hashes(xs.size());  // and its hash
      for (size_t i = 0; i < xs.size(); ++i) {
        auto& x = xs[i];
        if (!x.key)
          continue;
        keys[i] = storage::keys::dedup(x.mailbox, x.origin, x.e.client_msg_id);
        if (auto it = st.sends_in_batch.find(keys[i]); it != st.sends_in_batch.end())
          return enqueue(self, dedup_hit{true, it->second}); // true once that batch commits
        hashes[i] = key_hash(keys[i]);
        storage::dedup_record rec;
        auto s = find_dedup(st, x.mailbox, x.origin, x.e.client_msg_id, hashes[i], &rec);
        if (s.ok())
          return dedup_hit{true, send_result{rec.seq, rec.server_time_ms}};
        if (!s.is_not_found())
          return storage_error(s);
      }
      for (size_t i = 0; i < xs.size(); ++i) {
        auto& x = xs[i];
        if (!x.key) { // found through the key append's record, never its own
          st.batch.append_entry(x.mailbox, x.e);
          continue;
        }
        st.batch.append(x.mailbox, x.e, keys[i]);
        remember(st, x.mailbox, hashes[i]);
        st.sends_in_batch.emplace(std::move(keys[i]), send_result{x.e.seq, x.e.server_time_ms});
      }
      return enqueue(self, dedup_hit{});
    },
    [=](read_atom, const std::string& user, uint32_t after, uint32_t upto,
        uint32_t limit) -> caf::result<entry_page> {
      entry_page out;
      storage::mailbox_meta meta;
      if (auto s = self->state.db->get_meta(user, &meta); !s.ok())
        return storage_error(s);
      out.expired_upto = meta.seq_floor;
      if (auto s = self->state.db->read_entries(user, after, upto, limit, &out.entries); !s.ok())
        return storage_error(s);
      return out;
    },
    [=](account_atom, lookup_atom, const std::string& user) -> caf::result<std::string> {
      std::string hash;
      auto s = self->state.db->get_account(user, &hash);
      if (s.is_not_found())
        return caf::make_error(errc::unknown_user, "unknown user " + user);
      if (!s.ok())
        return storage_error(s);
      return hash;
    },
    [=](account_atom, register_atom, const std::string& user, const std::string& hash,
        uint32_t epoch) -> caf::result<ok_atom> {
      auto& st = self->state;
      std::string existing;
      auto s = st.db->get_account(user, &existing);
      if (s.ok() || st.accounts_in_batch.count(user) > 0)
        return caf::make_error(errc::user_exists, "user " + user + " already exists");
      if (!s.is_not_found())
        return storage_error(s);
      st.accounts_in_batch.insert(user);
      st.batch.put_account(user, hash);
      st.batch.put_meta(user, storage::mailbox_meta{epoch, 0});
      return enqueue(self, ok_atom::value);
    },
    [=](cursor_atom, lookup_atom, const std::string& user,
        const std::string& device) -> caf::result<storage::device_record> {
      storage::device_record rec;
      auto s = self->state.db->get_device(user, device, &rec);
      if (s.is_not_found())
        return storage::device_record{};
      if (!s.ok())
        return storage_error(s);
      return rec;
    },
    [=](cursor_atom, const device_cursor& c) -> caf::result<ok_atom> {
      self->state.batch.put_device(c.user, c.device, storage::device_record{c.epoch, c.cursor});
      return enqueue(self, ok_atom::value);
    },
    [=](resume_atom, lookup_atom, const std::string& user,
        const std::string& device) -> caf::result<storage::resume_record> {
      storage::resume_record rec;
      auto s = self->state.db->get_resume(user, device, &rec);
      if (s.is_not_found())
        return storage::resume_record{};
      if (!s.ok())
        return storage_error(s);
      return rec;
    },
    [=](resume_atom, const std::string& user, const std::string& device,
        const storage::resume_record& rec) -> caf::result<ok_atom> {
      self->state.resumes_in_batch.insert(user + '\0' + device);
      self->state.batch.put_resume(user, device, rec);
      return enqueue(self, ok_atom::value);
    },
    [=](resume_atom, renew_atom, const std::string& user, const std::string& device,
        const storage::resume_record& rec) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (st.resumes_in_batch.count(user + '\0' + device) > 0)
        return ok_atom::value; // a new token replaces this one
      storage::resume_record stored;
      auto s = st.db->get_resume(user, device, &stored);
      if (s.is_not_found() || (s.ok() && stored.token_hash != rec.token_hash))
        return ok_atom::value; // replaced meanwhile
      if (!s.ok())
        return storage_error(s);
      st.batch.put_resume(user, device, rec);
      return enqueue(self, ok_atom::value);
    },
    [=](renumber_atom, const std::string& user, uint32_t keep) -> caf::result<mailbox_state> {
      flush(self); // what was queued before the switch lands in the old epoch
      thread_local std::mt19937 gen{std::random_device{}()};
      uint32_t epoch = 0;
      while (epoch == 0)
        epoch = gen();
      uint32_t last = 0;
      // The renumbered entries get dedup records of their own: read the keys again when needed.
      if (auto it = self->state.known.find(user); it != self->state.known.end())
        forget(self->state, it);
      if (auto s = self->state.db->renumber(user, epoch, keep, &last); !s.ok())
        return storage_error(s);
      return mailbox_state{epoch, last, 0, {}, {}};
    },
    [=](block_atom, const std::string& user, const std::string& other,
        bool on) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (on) {
        std::string hash;
        auto s = st.db->get_account(other, &hash);
        if (s.is_not_found() && st.accounts_in_batch.count(other) == 0)
          return caf::make_error(errc::unknown_user, "unknown user " + other);
        if (!s.ok() && !s.is_not_found())
          return storage_error(s);
        st.batch.put_block(user, other);
      } else {
        st.batch.erase_block(user, other);
      }
      return enqueue(self, ok_atom::value);
    },
    [=](push_atom, const std::string& user, const std::string& device, const std::string& platform,
        const std::string& token) -> caf::result<ok_atom> {
      if (token.empty())
        self->state.batch.erase_push(user, device);
      else
        self->state.batch.put_push(user, device, storage::push_record{platform, token});
      return enqueue(self, ok_atom::value);
    },
    [=](load_atom, group_atom, const std::string& group) -> caf::result<group_info> {
      auto& db = *self->state.db;
      group_info out;
      out.name = group;
      if (auto s = db.get_group(group, &out.record); !s.ok())
        return s.is_not_found() ? caf::make_error(errc::unknown_group, "unknown group " + group)
                                : storage_error(s);
      std::vector<std::pair<std::string, group_role>> members;
      if (auto s = db.list_members(group, &members); !s.ok())
        return storage_error(s);
      for (auto& [user, role] : members)
        out.members.push_back(group_member{std::move(user), role});
      return out;
    },
    [=](group_atom, register_atom, const std::string& group, const std::string& owner,
        int64_t now) -> caf::result<ok_atom> {
      auto& st = self->state;
      storage::group_record existing;
      auto s = st.db->get_group(group, &existing);
      if (s.ok() || st.groups_in_batch.count(group) > 0)
        return caf::make_error(errc::group_exists, "group " + group + " already exists");
      if (!s.is_not_found())
        return storage_error(s);
      st.groups_in_batch.insert(group);
      st.batch.put_group(group, storage::group_record{owner, now, 0});
      st.batch.put_member(group, owner, group_role::owner);
      return enqueue(self, ok_atom::value);
    },
    [=](group_atom, const member_change& c) -> caf::result<ok_atom> {
      auto& st = self->state;
      if (!c.remove) {
        std::string hash;
        auto s = st.db->get_account(c.user, &hash);
        if (s.is_not_found() && st.accounts_in_batch.count(c.user) == 0)
          return caf::make_error(errc::unknown_user, "unknown user " + c.user);
        if (!s.ok() && !s.is_not_found())
          return storage_error(s);
      }
      st.batch.put_group(c.group, c.record);
      if (c.remove)
        st.batch.erase_member(c.group, c.user);
      else
        st.batch.put_member(c.group, c.user, c.role);
      return enqueue(self, ok_atom::value);
    },
    [=](group_atom, lookup_atom, const std::string& user) -> caf::result<std::vector<std::string>> {
      std::vector<std::string> out;
      if (auto s = self->state.db->list_groups_of(user, &out); !s.ok())
        return storage_error(s);
      std::sort(out.begin(), out.end());
      return out;
    },
    [=](lookup_atom, const std::string& origin, uint64_t client_msg_id) -> caf::result<dedup_hit> {
      auto& st = self->state;
      auto key = storage::keys::dedup(origin, origin, client_msg_id);
      if (auto it = st.sends_in_batch.find(key); it != st.sends_in_batch.end())
        return enqueue(self, dedup_hit{true, it->second});
      storage::dedup_record rec;
      auto s = find_dedup(st, origin, origin, client_msg_id, key_hash(key), &rec);
      if (s.ok())
        return dedup_hit{true, send_result{rec.seq, rec.server_time_ms}};
      if (!s.is_not_found())
        return storage_error(s);
      return dedup_hit{};
    },
    [=](expire_atom) {
      if (self->state.db)
        sweep(self);
    },
    [=](flush_atom) { flush(self); },
    [=](stop_atom) {
      flush(self);
      self->state.db.reset();
      self->quit();
    },
  };
}

} // namespace

persistence_actor spawn_persistence(caf::actor_system& sys, std::shared_ptr<storage::store> db,
                                    bool detached, settings config) {
  if (detached)
    return sys.spawn<caf::detached>(persistence, std::move(db), std::move(config));
  return sys.spawn(persistence, std::move(db), std::move(config));
}

} // namespace missive

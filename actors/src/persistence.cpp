#include <random>
#include <unordered_set>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"
#include "missive/storage/store.hpp"

namespace missive {

namespace {

struct persistence_state {
  persistence_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  std::shared_ptr<storage::store> db;
  storage::write_batch batch;
  std::vector<caf::typed_response_promise<ok_atom>> waiting;
  std::unordered_set<std::string> accounts_in_batch; // registrations not yet committed
  bool flush_scheduled = false;
  settings cfg;
  std::string sweep_after; // the retention sweep resumes after this user
  static inline const char* name = "missive.persistence";
};

using self_ptr = persistence_actor::stateful_pointer<persistence_state>;

caf::error storage_error(const storage::status& s) {
  return caf::make_error(errc::storage_failure, s.to_string());
}

/// Queues a reply for when the current batch is durable and makes sure a flush follows.
caf::typed_response_promise<ok_atom> enqueue(self_ptr self) {
  auto rp = self->make_response_promise<ok_atom>();
  self->state.waiting.push_back(rp);
  if (!self->state.flush_scheduled) {
    self->state.flush_scheduled = true;
    // Everything already in the mailbox is handled before this flush: group commit.
    self->send(self, flush_atom::value);
  }
  return rp;
}

void flush(self_ptr self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.waiting.empty())
    return;
  auto s = st.db->write(st.batch);
  st.batch.clear();
  st.accounts_in_batch.clear();
  auto waiting = std::move(st.waiting);
  st.waiting.clear();
  for (auto& rp : waiting) {
    if (s.ok())
      rp.deliver(ok_atom::value);
    else
      rp.deliver(storage_error(s));
  }
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
      return mailbox_state{meta.epoch, std::max(last, meta.seq_floor), meta.seq_floor};
    },
    [=](append_atom, const std::vector<mailbox_append>& xs) -> caf::result<ok_atom> {
      for (auto& x : xs)
        self->state.batch.append(x.mailbox, x.origin, x.e);
      return enqueue(self);
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
    [=](dedup_atom, const std::string& mailbox, const std::string& origin,
        uint64_t client_msg_id) -> caf::result<dedup_hit> {
      storage::dedup_record rec;
      auto s = self->state.db->get_dedup(mailbox, origin, client_msg_id, &rec);
      if (s.is_not_found())
        return dedup_hit{};
      if (!s.ok())
        return storage_error(s);
      return dedup_hit{true, send_result{rec.seq, rec.server_time_ms}};
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
      return enqueue(self);
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
      return enqueue(self);
    },
    [=](renumber_atom, const std::string& user, uint32_t keep) -> caf::result<mailbox_state> {
      flush(self); // what was queued before the switch lands in the old epoch
      thread_local std::mt19937 gen{std::random_device{}()};
      uint32_t epoch = 0;
      while (epoch == 0)
        epoch = gen();
      uint32_t last = 0;
      if (auto s = self->state.db->renumber(user, epoch, keep, &last); !s.ok())
        return storage_error(s);
      return mailbox_state{epoch, last};
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

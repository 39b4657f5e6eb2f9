#include "missive/storage/store.hpp"

#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/filter_policy.h>
#include <leveldb/write_batch.h>

#include <algorithm>
#include <cstdint>

#include "bytes.hpp"
#include "paced_env.hpp"
#include "missive/storage/codec.hpp"
#include "missive/storage/keys.hpp"

namespace missive::storage {

std::string status::to_string() const {
  static constexpr const char* names[] = {"ok",         "not found",  "already exists",
                                          "invalid argument", "corruption", "I/O error"};
  std::string out = names[static_cast<int>(code_)];
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

namespace {

status from_leveldb(const leveldb::Status& s) {
  if (s.ok())
    return {};
  if (s.IsNotFound())
    return {errc::not_found, s.ToString()};
  if (s.IsCorruption())
    return {errc::corruption, s.ToString()};
  if (s.IsInvalidArgument())
    return {errc::invalid_argument, s.ToString()};
  return {errc::io_error, s.ToString()};
}

template <class T>
status decode_record(std::string_view value, T* out) {
  if (!codec::decode(value, out))
    return {errc::corruption, "undecodable value"};
  return {};
}

template <class T>
status get_record(leveldb::DB* db, const std::string& key, T* out) {
  std::string value;
  auto s = db->Get(leveldb::ReadOptions{}, key, &value);
  if (!s.ok())
    return from_leveldb(s);
  return decode_record(value, out);
}

} // namespace

// -- write_batch ------------------------------------------------------------------------------

struct write_batch::impl {
  leveldb::WriteBatch batch;
  size_t count = 0;
};

write_batch::write_batch() : impl_(std::make_unique<impl>()) {}
write_batch::~write_batch() = default;
write_batch::write_batch(write_batch&&) noexcept = default;
write_batch& write_batch::operator=(write_batch&&) noexcept = default;

void write_batch::put_account(std::string_view user, std::string_view password_hash) {
  impl_->batch.Put(keys::account(user), leveldb::Slice(password_hash.data(), password_hash.size()));
  ++impl_->count;
}

void write_batch::put_meta(std::string_view user, const mailbox_meta& meta) {
  impl_->batch.Put(keys::meta(user), codec::encode(meta));
  ++impl_->count;
}

void write_batch::append(std::string_view mailbox, std::string_view origin, const entry& e) {
  append(mailbox, e, keys::dedup(mailbox, origin, e.client_msg_id));
}

void write_batch::append(std::string_view mailbox, const entry& e, std::string_view dedup_key) {
  impl_->batch.Put(keys::entry(mailbox, e.seq), codec::encode(e));
  impl_->batch.Put(leveldb::Slice(dedup_key.data(), dedup_key.size()),
                   codec::encode(dedup_record{e.seq, e.server_time_ms}));
  ++impl_->count;
}

void write_batch::append_entry(std::string_view mailbox, const entry& e) {
  impl_->batch.Put(keys::entry(mailbox, e.seq), codec::encode(e));
  ++impl_->count;
}

void write_batch::put_device(std::string_view user, std::string_view device,
                             const device_record& d) {
  impl_->batch.Put(keys::device(user, device), codec::encode(d));
  ++impl_->count;
}

void write_batch::put_block(std::string_view user, std::string_view blocked) {
  impl_->batch.Put(keys::block(user, blocked), leveldb::Slice());
  ++impl_->count;
}

void write_batch::erase_block(std::string_view user, std::string_view blocked) {
  impl_->batch.Delete(keys::block(user, blocked));
  ++impl_->count;
}

void write_batch::put_push(std::string_view user, std::string_view device, const push_record& r) {
  impl_->batch.Put(keys::push(user, device), codec::encode(r));
  ++impl_->count;
}

void write_batch::erase_push(std::string_view user, std::string_view device) {
  impl_->batch.Delete(keys::push(user, device));
  ++impl_->count;
}

void write_batch::put_resume(std::string_view user, std::string_view device,
                             const resume_record& r) {
  impl_->batch.Put(keys::resume(user, device), codec::encode(r));
  ++impl_->count;
}

void write_batch::erase_resume(std::string_view user, std::string_view device) {
  impl_->batch.Delete(keys::resume(user, device));
  ++impl_->count;
}

void write_batch::put_group(std::string_view group, const group_record& g) {
  impl_->batch.Put(keys::group(group), codec::encode(g));
  ++impl_->count;
}

void write_batch::put_member(std::string_view group, std::string_view user, group_role role) {
  impl_->batch.Put(keys::member(group, user), std::string(1, static_cast<char>(role)));
  impl_->batch.Put(keys::membership(user, group), leveldb::Slice());
  ++impl_->count;
}

void write_batch::erase_member(std::string_view group, std::string_view user) {
  impl_->batch.Delete(keys::member(group, user));
  impl_->batch.Delete(keys::membership(user, group));
  ++impl_->count;
}

size_t write_batch::count() const {
  return impl_->count;
}

void write_batch::clear() {
  impl_->batch.Clear();
  impl_->count = 0;
}

// -- store ------------------------------------------------------------------------------------

struct store::impl {
  std::unique_ptr<paced_env> env;
  std::unique_ptr<const leveldb::FilterPolicy> filter;
  std::unique_ptr<leveldb::Cache> cache;
  std::unique_ptr<leveldb::DB> db;
};

store::store(std::unique_ptr<impl> x, bool sync) : impl_(std::move(x)), sync_(sync) {}

store::~store() {
  // The DB must close before the environment, cache and filter policy it uses.
  impl_->env->watch(nullptr, nullptr, 0);
  impl_->db.reset();
}

status store::open(const options& opts, std::unique_ptr<store>* out) {
  auto x = std::make_unique<impl>();
  // Paced once open (see paced_env); write-ahead logs written in place when every write syncs.
  x->env = std::make_unique<paced_env>(100, opts.sync);
  x->filter.reset(leveldb::NewBloomFilterPolicy(10));
  x->cache.reset(leveldb::NewLRUCache(opts.cache_bytes));
  leveldb::Options lo;
  lo.create_if_missing = true;
  lo.env = x->env.get();
  lo.filter_policy = x->filter.get();
  lo.block_cache = x->cache.get();
  // Message bodies are small and often already compressed or encrypted; snappy cost CPU on
  // every compaction for little space (profiled: ~6% of the server's CPU under load).
  lo.compression = leveldb::kNoCompression;
  // A larger memtable means fewer, larger level-0 files and less compaction work per append.
  lo.write_buffer_size = opts.write_buffer_bytes;
  leveldb::DB* db = nullptr;
  auto s = leveldb::DB::Open(lo, opts.path, &db);
  if (!s.ok())
    return from_leveldb(s);
  x->db.reset(db);
  x->env->set_duty_percent(opts.background_duty_percent);
  x->env->give_way(opts.background_gives_way);
  x->env->watch(x->db.get(), x->cache.get(), opts.write_buffer_bytes);
  out->reset(new store(std::move(x), opts.sync));
  return {};
}

status store::get_account(std::string_view user, std::string* password_hash) {
  return from_leveldb(impl_->db->Get(leveldb::ReadOptions{}, keys::account(user), password_hash));
}

status store::get_meta(std::string_view user, mailbox_meta* out) {
  return get_record(impl_->db.get(), keys::meta(user), out);
}

status store::last_seq(std::string_view user, uint32_t* out) {
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions{}));
  // The first key past the user's whole entry range, then one step back.
  it->Seek(keys::entry(user, UINT32_MAX));
  uint32_t seq = 0;
  if (it->Valid() && keys::parse_entry(it->key().ToString(), user, &seq)) {
    *out = seq;
    return {};
  }
  if (it->Valid())
    it->Prev();
  else
    it->SeekToLast();
  *out = 0;
  if (it->Valid() && keys::parse_entry(it->key().ToString(), user, &seq))
    *out = seq;
  return from_leveldb(it->status());
}

status store::read_entries(std::string_view user, uint32_t after, uint32_t upto, uint32_t limit,
                           std::vector<entry>* out) {
  if (after >= upto || limit == 0)
    return {};
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions{}));
  uint32_t seq = 0;
  for (it->Seek(keys::entry(user, after + 1)); it->Valid() && limit > 0; it->Next()) {
    if (!keys::parse_entry(it->key().ToString(), user, &seq) || seq > upto)
      break;
    entry e;
    if (!codec::decode(std::string_view(it->value().data(), it->value().size()), &e))
      return {errc::corruption, "undecodable entry"};
    out->push_back(std::move(e));
    --limit;
  }
  return from_leveldb(it->status());
}

status store::get_dedup(std::string_view mailbox, std::string_view origin,
                        uint64_t client_msg_id, dedup_record* out) {
  return get_record(impl_->db.get(), keys::dedup(mailbox, origin, client_msg_id), out);
}

status store::probe_dedup(std::string_view mailbox, std::string_view origin,
                          uint64_t client_msg_id, dedup_record* out) {
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions{}));
  auto key = keys::dedup(mailbox, origin, client_msg_id);
  it->Seek(key);
  if (!it->Valid())
    return it->status().ok() ? status{errc::not_found, "no dedup record"}
                             : from_leveldb(it->status());
  if (it->key() != leveldb::Slice(key))
    return {errc::not_found, "no dedup record"};
  return decode_record(std::string_view(it->value().data(), it->value().size()), out);
}

status store::get_device(std::string_view user, std::string_view device, device_record* out) {
  return get_record(impl_->db.get(), keys::device(user, device), out);
}

status store::get_resume(std::string_view user, std::string_view device, resume_record* out) {
  return get_record(impl_->db.get(), keys::resume(user, device), out);
}

status store::renumber(std::string_view user, uint32_t new_epoch, uint32_t keep,
                       uint32_t* last_seq) {
  std::vector<entry> all;
  if (auto s = read_entries(user, 0, UINT32_MAX, UINT32_MAX, &all); !s.ok())
    return s;
  leveldb::WriteBatch batch;
  for (auto& e : all)
    batch.Delete(keys::entry(user, e.seq));
  size_t first = all.size() > keep ? all.size() - keep : 0;
  uint32_t seq = 0;
  for (size_t i = first; i < all.size(); ++i) {
    auto e = all[i];
    e.seq = ++seq;
    batch.Put(keys::entry(user, e.seq), codec::encode(e));
    batch.Put(keys::dedup(user, e.from, e.client_msg_id),
              codec::encode(dedup_record{e.seq, e.server_time_ms}));
  }
  batch.Put(keys::meta(user), codec::encode(mailbox_meta{new_epoch, 0}));
  leveldb::WriteOptions wo;
  wo.sync = true; // an epoch switch is rare and must never be half-remembered
  if (auto s = from_leveldb(impl_->db->Write(wo, &batch)); !s.ok())
    return s;
  *last_seq = seq;
  return {};
}

status store::list_users(std::vector<std::string>* out) {
  return list_users_after("", SIZE_MAX, out);
}

status store::list_blocks(std::string_view user, std::vector<std::string>* out) {
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions{}));
  auto prefix = keys::blocks_of(user);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view rest(it->key().data() + prefix.size(), it->key().size() - prefix.size());
    std::string name;
    if (!bytes::get_str<uint8_t>(rest, &name) || !rest.empty())
      return {errc::corruption, "malformed block key"};
    out->push_back(std::move(name));
  }
  return from_leveldb(it->status());
}

status store::list_dedup_keys(std::string_view mailbox, std::string_view after, size_t limit,
                              std::vector<std::string>* out) {
  leveldb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(ro));
  auto prefix = keys::dedups_of(mailbox);
  if (after.empty()) {
    it->Seek(prefix);
  } else {
    it->Seek(leveldb::Slice(after.data(), after.size()));
    if (it->Valid() && it->key() == leveldb::Slice(after.data(), after.size()))
      it->Next();
  }
  for (size_t n = 0; n < limit && it->Valid() && it->key().starts_with(prefix); ++n, it->Next())
    out->push_back(it->key().ToString());
  return from_leveldb(it->status());
}

status store::list_pushes(std::string_view user,
                          std::vector<std::pair<std::string, push_record>>* out) {
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions{}));
  auto prefix = keys::pushes_of(user);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view rest(it->key().data() + prefix.size(), it->key().size() - prefix.size());
    std::string device;
    push_record r;
    if (!bytes::get_str<uint8_t>(rest, &device) || !rest.empty()
        || !codec::decode(std::string_view(it->value().data(), it->value().size()), &r))
      return {errc::corruption, "malformed push record"};
    out->emplace_back(std::move(device), std::move(r));
  }
  return from_leveldb(it->status());
}

status store::get_group(std::string_view group, group_record* out) {
  return get_record(impl_->db.get(), keys::group(group), out);
}

namespace {

/// Visits every key under `prefix` whose remainder is one length-prefixed name.
template <class F>
status scan_names(leveldb::DB* db, const std::string& prefix, F&& f) {
  std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions{}));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view rest(it->key().data() + prefix.size(), it->key().size() - prefix.size());
    std::string name;
    if (!bytes::get_str<uint8_t>(rest, &name) || !rest.empty())
      return {errc::corruption, "malformed key"};
    if (!f(std::move(name), std::string_view(it->value().data(), it->value().size())))
      return {errc::corruption, "malformed value"};
  }
  return from_leveldb(it->status());
}

} // namespace

status store::list_members(std::string_view group,
                           std::vector<std::pair<std::string, group_role>>* out) {
  return scan_names(impl_->db.get(), keys::members_of(group),
                    [&](std::string name, std::string_view value) {
                      if (value.size() != 1 || static_cast<uint8_t>(value[0]) > 2)
                        return false;
                      out->emplace_back(std::move(name), static_cast<group_role>(value[0]));
                      return true;
                    });
}

status store::list_groups_of(std::string_view user, std::vector<std::string>* out) {
  return scan_names(impl_->db.get(), keys::memberships_of(user),
                    [&](std::string name, std::string_view) {
                      out->push_back(std::move(name));
                      return true;
                    });
}

status store::list_users_after(std::string_view after, size_t limit,
                               std::vector<std::string>* out) {
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions{}));
  std::string prefix(1, static_cast<char>(keys::space::account));
  if (after.empty())
    it->Seek(prefix);
  else {
    it->Seek(keys::account(after));
    if (it->Valid() && it->key() == keys::account(after))
      it->Next();
  }
  for (; it->Valid() && it->key().starts_with(prefix) && limit > 0; it->Next(), --limit) {
    auto k = it->key();
    if (k.size() < 2 || k.size() != 2u + static_cast<uint8_t>(k[1]))
      return {errc::corruption, "malformed account key"};
    out->emplace_back(k.data() + 2, k.size() - 2);
  }
  return from_leveldb(it->status());
}

status store::expire(std::string_view user, uint32_t max_entries, int64_t cutoff_ms,
                     size_t max_delete, uint32_t* floor, size_t* deleted) {
  *deleted = 0;
  mailbox_meta meta;
  if (auto s = get_meta(user, &meta); !s.ok())
    return s;
  *floor = meta.seq_floor;
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions{}));
  // Count limit: the seq of the max_entries-th newest entry; everything below it goes.
  uint32_t keep_from = 0;
  uint32_t seq = 0;
  if (max_entries > 0) {
    it->Seek(keys::entry(user, UINT32_MAX));
    if (!(it->Valid() && keys::parse_entry(it->key().ToString(), user, &seq))) {
      if (it->Valid())
        it->Prev();
      else
        it->SeekToLast();
    }
    for (uint32_t n = 0; it->Valid() && keys::parse_entry(it->key().ToString(), user, &seq);
         it->Prev()) {
      keep_from = seq;
      if (++n == max_entries)
        break;
    }
  }
  leveldb::WriteBatch batch;
  uint32_t last_deleted = 0;
  for (it->Seek(keys::entry(user, 0)); it->Valid() && *deleted < max_delete; it->Next()) {
    if (!keys::parse_entry(it->key().ToString(), user, &seq))
      break;
    entry e;
    if (!codec::decode(std::string_view(it->value().data(), it->value().size()), &e))
      return {errc::corruption, "undecodable entry"};
    bool too_many = max_entries > 0 && seq < keep_from;
    bool too_old = cutoff_ms > 0 && e.server_time_ms < cutoff_ms;
    if (!too_many && !too_old)
      break; // entries are in seq order and (nearly) in time order: the rest stays
    batch.Delete(it->key());
    batch.Delete(keys::dedup(user, e.from, e.client_msg_id));
    last_deleted = seq;
    ++*deleted;
  }
  if (auto s = from_leveldb(it->status()); !s.ok())
    return s;
  if (*deleted == 0)
    return {};
  meta.seq_floor = std::max(meta.seq_floor, last_deleted);
  batch.Put(keys::meta(user), codec::encode(meta));
  leveldb::WriteOptions wo;
  wo.sync = sync_;
  if (auto s = from_leveldb(impl_->db->Write(wo, &batch)); !s.ok())
    return s;
  *floor = meta.seq_floor;
  return {};
}

status store::write(write_batch& batch) {
  leveldb::WriteOptions wo;
  wo.sync = sync_;
  return from_leveldb(impl_->db->Write(wo, &batch.impl_->batch));
}

} // namespace missive::storage

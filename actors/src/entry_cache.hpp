#pragma once

#include <cstddef>
#include <cstdint>

#include "fifo.hpp"
#include "missive/storage/records.hpp"

namespace missive {

/// A user actor's recent entries, which answer syncs without a storage read: every published
/// entry with seq > after(), oldest first. It is bounded in entries and in bytes, so that large
/// bodies cannot fill memory (256 entries of 64 KiB bodies would be 16 MiB for one user); the
/// newest entry always stays, whatever its size.
class entry_cache {
public:
  using entry = storage::entry;

  /// What an entry takes here, near enough: the entry and its strings' bytes.
  static size_t cost(const entry& e) {
    return sizeof(entry) + e.from.size() + e.to.size() + e.body.size();
  }

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  /// The seq after which every published entry is here.
  uint32_t after() const { return after_; }
  /// What the entries take (cost) in all.
  size_t bytes() const { return bytes_; }
  const entry& front() const { return entries_.front(); }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }

  /// Adds the newest entry, then lets the oldest go while more than `max_entries` are here or
  /// they take more than `max_bytes` (never the newest).
  void push(entry e, size_t max_entries, size_t max_bytes) {
    if (!entries_.empty() && entries_.size() >= max_entries)
      drop_oldest();
    bytes_ += cost(e);
    entries_.push_back(std::move(e));
    while (entries_.size() > 1 && bytes_ > max_bytes)
      drop_oldest();
  }

  /// Lets the oldest entry go: from now on a sync after it reads storage.
  void drop_oldest() {
    after_ = entries_.front().seq;
    bytes_ -= cost(entries_.front());
    entries_.pop_front();
  }

  /// Empties the cache: from now on it holds what is published after `after`.
  void clear(uint32_t after) {
    entries_.clear();
    after_ = after;
    bytes_ = 0;
  }

private:
  fifo<entry> entries_;
  uint32_t after_ = 0;
  size_t bytes_ = 0;
};

} // namespace missive

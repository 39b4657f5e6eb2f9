#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace missive {

/// The values of the last `limit` ids added, by id: a ring of (id, value) in the order they
/// came and an open-addressing index of ring places (linear probing, at most half full, and
/// deletion by shifting back, so no tombstones). A user actor keeps the results of its recent
/// sends in one, by client msg id: compared with a hash map and a queue of ids, no allocation
/// per send once it has grown, and 8 + sizeof(V) + 8 bytes per id instead of about 48 + 8.
/// Both arrays double as the window fills, so a user who sends little holds little.
template <class V>
class id_window {
public:
  /// At most 2^31 ids (the index holds 32-bit places).
  explicit id_window(size_t limit = 0) : limit_(std::min(limit, size_t{1} << 31)) {}

  size_t size() const { return size_; }

  /// The value of `id`, or nullptr if it is not in the window.
  const V* find(uint64_t id) const {
    auto s = slot_of(id);
    return s == npos ? nullptr : &ring_[index_[s] - 1].value;
  }

  /// Adds `id` as the newest, first letting the oldest go if the window is full (an id already
  /// in the window gets the new value in its old place).
  void add(uint64_t id, const V& value) {
    if (limit_ == 0)
      return;
    if (auto s = slot_of(id); s != npos) {
      ring_[index_[s] - 1].value = value;
      return;
    }
    while (size_ >= limit_)
      pop_oldest();
    if (size_ == ring_.size())
      grow();
    size_t place = (head_ + size_) & (ring_.size() - 1);
    ring_[place] = item{id, value};
    ++size_;
    insert(id, place);
  }

  /// Forgets everything and lets the memory go.
  void clear() {
    std::vector<item>{}.swap(ring_);
    std::vector<uint32_t>{}.swap(index_);
    head_ = size_ = 0;
  }

private:
  struct item {
    uint64_t id = 0;
    V value{};
  };

  /// A 64-bit mix (splitmix64's finalizer): client ids often differ only in their low bits.
  size_t home(uint64_t id) const {
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ULL;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebULL;
    id ^= id >> 31;
    return static_cast<size_t>(id) & (index_.size() - 1);
  }
  size_t next(size_t s) const { return (s + 1) & (index_.size() - 1); }

  static constexpr size_t npos = ~size_t{0};

  /// The index slot naming `id`'s place, or npos.
  size_t slot_of(uint64_t id) const {
    if (size_ == 0)
      return npos;
    // Bounded, though a probe always meets an empty slot in an index at most half full.
    for (size_t n = 0, s = home(id); n < index_.size(); ++n, s = next(s)) {
      auto at = index_[s];
      if (at == 0)
        return npos;
      if (ring_[at - 1].id == id)
        return s;
    }
    return npos;
  }

  /// Index slots hold ring places + 1 (0: empty).
  void insert(uint64_t id, size_t place) {
    for (size_t n = 0, s = home(id); n < index_.size(); ++n, s = next(s))
      if (index_[s] == 0) {
        index_[s] = static_cast<uint32_t>(place + 1);
        return;
      }
  }

  void pop_oldest() {
    size_t s = slot_of(ring_[head_].id);
    if (s != npos)
      unindex(s);
    ring_[head_] = item{};
    head_ = (head_ + 1) & (ring_.size() - 1);
    if (--size_ == 0)
      head_ = 0;
  }

  void unindex(size_t s) {
    // Backward-shift deletion: pull later slots of the probe run into the hole when their
    // home does not lie cyclically within (hole, slot].
    size_t hole = s;
    for (size_t n = 1, t = next(hole); n < index_.size() && index_[t] != 0;
         ++n, t = next(t)) {
      size_t h = home(ring_[index_[t] - 1].id);
      bool stays = hole <= t ? (hole < h && h <= t) : (hole < h || h <= t);
      if (!stays) {
        index_[hole] = index_[t];
        hole = t;
      }
    }
    index_[hole] = 0;
  }

  /// Doubles the ring (oldest first again) and rebuilds the index at twice its size.
  void grow() {
    std::vector<item> bigger(ring_.empty() ? 4 : ring_.size() * 2);
    for (size_t i = 0; i < size_; ++i)
      bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_ = std::move(bigger);
    head_ = 0;
    index_.assign(ring_.size() * 2, 0);
    for (size_t i = 0; i < size_; ++i)
      insert(ring_[i].id, i);
  }

  size_t limit_;
  std::vector<item> ring_;      // size a power of two
  std::vector<uint32_t> index_; // twice the ring's size
  size_t head_ = 0;
  size_t size_ = 0;
};

} // namespace missive

#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace missive {

/// A first-in-first-out queue on one vector. Unlike libstdc++'s std::deque it allocates nothing
/// while empty (a deque allocates about 600 bytes up front), which matters for per-user state
/// kept by the ten thousand: every user actor holds two of these.
template <class T>
class fifo {
public:
  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  const T& front() const { return items_[head_]; }
  void push_back(T x) { items_.push_back(std::move(x)); }

  /// Amortised O(1): the consumed prefix is dropped once it is half the storage.
  void pop_front() {
    items_[head_++] = T{};
    if (head_ == items_.size()) {
      clear();
    } else if (head_ >= 16 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  void clear() {
    items_.clear();
    items_.shrink_to_fit();
    head_ = 0;
  }

  auto begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() const { return items_.end(); }

private:
  std::vector<T> items_;
  size_t head_ = 0;
};

} // namespace missive

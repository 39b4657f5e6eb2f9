#pragma once

#include <cstddef>
#include <iterator>
#include <utility>
#include <vector>

namespace missive {

/// A first-in-first-out queue on a ring of slots that doubles when full. Unlike libstdc++'s
/// std::deque it allocates nothing while empty (a deque allocates about 600 bytes up front),
/// which matters for per-user state kept by the ten thousand: every user actor holds three of
/// these. Once a queue has reached its working size, a push and a pop move one element each:
/// no allocation, no shifting (a user actor's cache of entries pops one for every push).
template <class T>
class fifo {
public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T& front() { return slots_[head_]; }
  const T& front() const { return slots_[head_]; }
  /// The element `i` places behind the front.
  T& operator[](size_t i) { return slots_[wrap(head_ + i)]; }

  void push_back(T x) {
    if (size_ == slots_.size())
      grow();
    slots_[wrap(head_ + size_)] = std::move(x);
    ++size_;
  }

  /// The element's slot is reset at once, so that what it held is freed now, not when the
  /// slot is next used.
  void pop_front() {
    slots_[head_] = T{};
    head_ = wrap(head_ + 1);
    if (--size_ == 0)
      head_ = 0;
  }

  void clear() {
    slots_.clear();
    slots_.shrink_to_fit();
    head_ = size_ = 0;
  }

  template <class Queue, class Value>
  class basic_iterator {
  public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = Value*;
    using reference = Value&;

    basic_iterator(Queue* q, size_t i) : q_(q), i_(i) {}
    reference operator*() const { return q_->slots_[q_->wrap(q_->head_ + i_)]; }
    pointer operator->() const { return &**this; }
    basic_iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const basic_iterator& other) const { return i_ == other.i_; }
    bool operator!=(const basic_iterator& other) const { return i_ != other.i_; }

  private:
    Queue* q_;
    size_t i_;
  };
  using iterator = basic_iterator<fifo, T>;
  using const_iterator = basic_iterator<const fifo, const T>;

  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size_}; }
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size_}; }

private:
  /// The ring's size is a power of two, so that an index wraps with a mask.
  size_t wrap(size_t i) const { return i & (slots_.size() - 1); }

  /// Doubles the ring, oldest first.
  void grow() {
    std::vector<T> bigger(slots_.empty() ? 4 : slots_.size() * 2);
    for (size_t i = 0; i < size_; ++i)
      bigger[i] = std::move(slots_[wrap(head_ + i)]);
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;
  size_t head_ = 0;
  size_t size_ = 0;
};

} // namespace missive

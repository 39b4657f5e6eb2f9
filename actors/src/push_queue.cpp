#include "missive/actors/push_queue.hpp"

#include <algorithm>

#include "missive/actors/node.hpp"

namespace missive {

void push_queue::add(notice n) {
  if (pending_)
    merge_notice(*pending_, std::move(n), limits_);
  else
    pending_ = std::move(n);
}

void push_queue::sending(uint64_t client_msg_id) {
  sending_.push_back(client_msg_id);
}

std::optional<notice> push_queue::answered(uint64_t client_msg_id, bool ok) {
  if (auto it = std::find(sending_.begin(), sending_.end(), client_msg_id); it != sending_.end())
    sending_.erase(it);
  std::optional<notice> out;
  if (ok)
    out.swap(pending_);
  return out;
}

std::optional<notice> push_queue::next() {
  std::optional<notice> out;
  if (in_flight_ || !pending_ || rides_on_answer(*pending_))
    return out;
  out.swap(pending_);
  in_flight_ = true;
  return out;
}

/// True if everything in `n` is this device's own copies of sends not answered yet: the user
/// actor announces a copy before it answers the send, so the answer comes next.
bool push_queue::rides_on_answer(const notice& n) const {
  if (!n.complete || n.entries.empty() || sending_.empty())
    return false;
  return std::all_of(n.entries.begin(), n.entries.end(), [&](const entry& e) {
    return e.from == user_
           && std::find(sending_.begin(), sending_.end(), e.client_msg_id) != sending_.end();
  });
}

} // namespace missive

#pragma once

#include <array>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "missive/actors/interfaces.hpp"

namespace missive {

/// The node's active user actors by name: written by the directory alone (when it spawns one,
/// and on its down message), read by every user actor to find a recipient's actor without a
/// round trip through the directory. Only a shortcut: a name that is not here goes to the
/// directory, which activates the actor. A handle read here may be of an actor that has just
/// stopped (the directory has not had its down message yet); the request to it fails with
/// `request_receiver_down` and the sender asks the directory, as with any stale handle.
///
/// Sharded by name, so that the scheduler's workers rarely meet on one lock.
class active_users {
public:
  std::optional<user_actor> find(const std::string& name) const {
    auto& s = shard(name);
    std::lock_guard<std::mutex> lock(s.mutex);
    if (auto it = s.users.find(name); it != s.users.end())
      return it->second;
    return std::nullopt;
  }

  void put(const std::string& name, const user_actor& actor) {
    auto& s = shard(name);
    std::lock_guard<std::mutex> lock(s.mutex);
    s.users[name] = actor;
  }

  void erase(const std::string& name) {
    auto& s = shard(name);
    std::lock_guard<std::mutex> lock(s.mutex);
    s.users.erase(name);
  }

private:
  struct alignas(64) part {
    mutable std::mutex mutex;
    std::unordered_map<std::string, user_actor> users;
  };

  const part& shard(const std::string& name) const {
    return parts_[std::hash<std::string>{}(name) % parts_.size()];
  }
  part& shard(const std::string& name) {
    return parts_[std::hash<std::string>{}(name) % parts_.size()];
  }

  std::array<part, 16> parts_;
};

} // namespace missive

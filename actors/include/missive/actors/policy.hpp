#pragma once

// SendSvr's business rules: the policy chain every send passes before anything is stored.
//
// A chain is a list of rules, configured in missive.conf (`policy = size rate-limit spam
// blocklist`). Each rule looks at a send from one or both sides:
//   - on_send runs in the sender's user actor, before a seq is reserved (size, rate limit,
//     spam: what depends on the sender and the message);
//   - on_deliver runs in the recipient's user actor, before its copy is appended (blocklist:
//     what depends on the recipient).
// The first rule that objects decides: the send fails with its typed error and nothing is
// stored anywhere. A new rule (friend-only mode, link scanning) is one more class here and one
// more name in the config; the user actors call the chain and never know the rules.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <caf/error.hpp>

namespace missive::policy {

using clock = std::chrono::steady_clock;

/// A send as the rules see it.
struct send_view {
  std::string_view from;
  std::string_view to;
  std::string_view body;
  size_t request_bytes = 0; // the whole request as it came off the wire (0: unknown)
};

/// What a user actor keeps for the rules, per user.
struct user_state {
  /// Token bucket of the rate limit (tokens < 0: not used yet, i.e. full).
  double tokens = -1;
  clock::time_point refilled{};
  /// Users this user refuses messages from.
  std::unordered_set<std::string> blocked;
};

class rule {
public:
  virtual ~rule() = default;
  /// The name used in the config's `policy` list.
  virtual std::string_view name() const = 0;
  /// In the sender's actor; an error rejects the send. May update the sender's state.
  virtual caf::error on_send(const send_view&, user_state& sender, clock::time_point now) const;
  /// In the recipient's actor; an error rejects the delivery.
  virtual caf::error on_deliver(const send_view&, const user_state& recipient) const;
};

/// The configured rules, in order. Immutable once built; shared by every user actor.
class chain {
public:
  void add(std::shared_ptr<const rule> r) { rules_.push_back(std::move(r)); }
  caf::error on_send(const send_view& s, user_state& sender, clock::time_point now) const;
  caf::error on_deliver(const send_view& s, const user_state& recipient) const;
  const std::vector<std::shared_ptr<const rule>>& rules() const { return rules_; }

private:
  std::vector<std::shared_ptr<const rule>> rules_;
};

// -- the rules --------------------------------------------------------------------------------

/// too_large when the body or the whole request is over its limit.
std::shared_ptr<const rule> size_limit(size_t max_body_bytes, size_t max_request_bytes);

/// Per-sender token bucket: `burst` sends at once, refilled at `per_second`. rate_limited
/// errors carry the milliseconds until the next send can pass.
std::shared_ptr<const rule> rate_limit(uint32_t burst, double per_second);

/// blocked when the recipient blocks the sender.
std::shared_ptr<const rule> blocklist();

/// One rule of a spam rules file.
struct spam_rule {
  enum class verdict { allow, reject };
  enum class kind { keyword, regex };
  verdict action = verdict::reject;
  kind match = kind::keyword;
  std::string pattern;
  size_t line = 0; // in the file, for messages
};

/// A parsed spam rules file, ready to match (compiled regular expressions inside).
class spam_rules {
public:
  /// Parses `text` (the file's content; `source` names it in errors). On error returns null
  /// and sets `*error` to "SOURCE:LINE: what is wrong".
  static std::shared_ptr<const spam_rules> parse(std::string_view text, const std::string& source,
                                                 std::string* error);
  ~spam_rules();
  spam_rules(const spam_rules&) = delete;
  spam_rules& operator=(const spam_rules&) = delete;

  /// The first rule that matches `body`, or null.
  const spam_rule* match(std::string_view body) const;
  size_t size() const { return rules_.size(); }

private:
  spam_rules() = default;
  struct compiled;
  std::vector<spam_rule> rules_;
  std::vector<std::unique_ptr<compiled>> regexes_; // one per rule (null for keywords)
};

/// The spam rules in force, swapped as a whole by a reload while sends keep reading them.
class spam_rules_slot {
public:
  spam_rules_slot() = default;
  explicit spam_rules_slot(std::shared_ptr<const spam_rules> r) : rules_(std::move(r)) {}
  std::shared_ptr<const spam_rules> get() const { return rules_.load(); }
  void set(std::shared_ptr<const spam_rules> r) { rules_.store(std::move(r)); }

private:
  std::atomic<std::shared_ptr<const spam_rules>> rules_;
};

/// spam (with the rule's line) when the first matching rule says reject; an `allow` rule that
/// matches first lets the message through.
std::shared_ptr<const rule> spam_filter(std::shared_ptr<const spam_rules_slot> rules);

/// Reads and parses a spam rules file. On error returns null and sets `*error`.
std::shared_ptr<const spam_rules> load_spam_rules(const std::string& path, std::string* error);

/// What a chain is built from (missive.conf's policy options).
struct chain_options {
  /// Rule names in order: size, rate-limit, spam, blocklist.
  std::vector<std::string> steps{"size", "rate-limit", "spam", "blocklist"};
  size_t max_body_bytes = 64 * 1024;
  size_t max_request_bytes = 72 * 1024;
  uint32_t rate_limit_burst = 200;
  double rate_limit_per_second = 100; // 0: the rate-limit step lets everything through
  std::shared_ptr<const spam_rules_slot> spam; // null: the spam step lets everything through
};

/// Builds the chain `opts.steps` names. On an unknown or repeated name returns null and sets
/// `*error`.
std::shared_ptr<const chain> build_chain(const chain_options& opts, std::string* error);

} // namespace missive::policy

#include "server_config.hpp"

#include <charconv>
#include <functional>
#include <map>
#include <stdexcept>

#include <caf/actor_system_config.hpp>
#include <caf/timespan.hpp>

namespace missive::app {

namespace {

constexpr std::string_view embedded =
#include "missive_conf.inc"
  ;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

template <class T>
bool parse_number(std::string_view v, T* out) {
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  return ec == std::errc{} && p == v.data() + v.size();
}

using setter = std::function<std::string(server_config&, std::string_view)>;

template <class T>
setter positive(T* (*field)(server_config&)) {
  return [field](server_config& c, std::string_view v) -> std::string {
    T x{};
    if (!parse_number(v, &x) || x == 0)
      return "expects a positive integer";
    *field(c) = x;
    return {};
  };
}

/// An integer from `lo` to `hi`; `what` completes "expects …" when it is not.
template <class T>
setter within(int64_t lo, int64_t hi, std::string what, T* (*field)(server_config&)) {
  return [=](server_config& c, std::string_view v) -> std::string {
    int64_t n = 0;
    if (!parse_number(v, &n) || n < lo || n > hi)
      return "expects " + what;
    *field(c) = static_cast<T>(n);
    return {};
  };
}

/// A size given in MiB, stored in bytes; `max` MiB at most (0: no limit).
setter mebibytes(size_t* (*field)(server_config&), size_t max = 0) {
  return [field, max](server_config& c, std::string_view v) -> std::string {
    size_t mb = 0;
    if (!parse_number(v, &mb) || mb == 0 || (max > 0 && mb > max))
      return max > 0 ? "expects an integer from 1 to " + std::to_string(max)
                     : "expects a positive integer";
    *field(c) = mb << 20;
    return {};
  };
}

setter millis_or_zero(std::chrono::milliseconds* (*field)(server_config&)) {
  return [field](server_config& c, std::string_view v) -> std::string {
    int64_t ms = 0;
    if (!parse_number(v, &ms) || ms < 0)
      return "expects a number of milliseconds (0 or more)";
    *field(c) = std::chrono::milliseconds(ms);
    return {};
  };
}

setter millis(std::chrono::milliseconds* (*field)(server_config&)) {
  return [field](server_config& c, std::string_view v) -> std::string {
    int64_t ms = 0;
    if (!parse_number(v, &ms) || ms <= 0)
      return "expects a positive number of milliseconds";
    *field(c) = std::chrono::milliseconds(ms);
    return {};
  };
}

/// One of two words: `yes` sets the flag, `no` clears it.
setter either(const char* yes, const char* no, bool* (*field)(server_config&)) {
  return [=](server_config& c, std::string_view v) -> std::string {
    if (v != yes && v != no)
      return std::string("expects ") + yes + " or " + no;
    *field(c) = v == yes;
    return {};
  };
}

const std::map<std::string, setter, std::less<>>& setters() {
  static const std::map<std::string, setter, std::less<>> table = {
    {"listen",
     [](server_config& c, std::string_view v) -> std::string {
       if (v.find(':') == std::string_view::npos)
         return "expects HOST:PORT";
       c.gateway.listen = std::string(v);
       return {};
     }},
    {"max-message-bytes",
     positive<uint64_t>([](server_config& c) { return &c.gateway.max_message_bytes; })},
    {"heartbeat-interval-ms", millis([](server_config& c) { return &c.gateway.heartbeat_interval; })},
    {"push-timeout-ms", millis([](server_config& c) { return &c.gateway.push_timeout; })},
    {"gateway-threads", positive<size_t>([](server_config& c) { return &c.gateway.threads; })},
    {"direct-calls", either("on", "off", [](server_config& c) { return &c.gateway.direct_calls; })},
    {"data-dir",
     [](server_config& c, std::string_view v) -> std::string {
       if (v.empty())
         return "expects a directory";
       c.storage.path = std::string(v);
       return {};
     }},
    {"durability", either("sync", "async", [](server_config& c) { return &c.storage.sync; })},
    {"slow-commit-ms",
     [](server_config& c, std::string_view v) -> std::string {
       int64_t ms = 0;
       if (!parse_number(v, &ms) || ms < 0 || ms > 3600000)
         return "expects milliseconds from 0 (no reports) to 3600000";
       c.actors.slow_commit = std::chrono::milliseconds(ms);
       return {};
     }},
    {"cache-mb", mebibytes([](server_config& c) { return &c.storage.cache_bytes; })},
    {"memtable-mb",
     mebibytes([](server_config& c) { return &c.storage.write_buffer_bytes; }, 1024)},
    {"background-duty-percent",
     [](server_config& c, std::string_view v) -> std::string {
       unsigned x = 0;
       if (!parse_number(v, &x) || x < 1 || x > 100)
         return "expects a percentage from 1 to 100";
       c.storage.background_duty_percent = x;
       return {};
     }},
    {"background-priority",
     either("low", "normal", [](server_config& c) { return &c.storage.background_gives_way; })},
    {"max-body-bytes",
     positive<size_t>([](server_config& c) { return &c.actors.max_body_bytes; })},
    {"sync-page-default",
     positive<uint32_t>([](server_config& c) { return &c.actors.sync_page_default; })},
    {"sync-page-max",
     positive<uint32_t>([](server_config& c) { return &c.actors.sync_page_max; })},
    {"push-inline-max-bytes",
     positive<size_t>([](server_config& c) { return &c.actors.push_inline_max_bytes; })},
    {"push-inline-max-entries",
     positive<size_t>([](server_config& c) { return &c.actors.push_inline_max_entries; })},
    {"user-idle-timeout-ms", millis([](server_config& c) { return &c.actors.user_idle_timeout; })},
    {"retention-max-entries",
     [](server_config& c, std::string_view v) -> std::string {
       if (!parse_number(v, &c.actors.retention_max_entries))
         return "expects a number of entries (0: no limit)";
       return {};
     }},
    {"retention-max-age-s",
     [](server_config& c, std::string_view v) -> std::string {
       int64_t secs = 0;
       if (!parse_number(v, &secs) || secs < 0)
         return "expects a number of seconds (0: no limit)";
       c.actors.retention_max_age = std::chrono::seconds(secs);
       return {};
     }},
    {"resume-token-days",
     [](server_config& c, std::string_view v) -> std::string {
       int64_t days = 0;
       if (!parse_number(v, &days) || days < 0 || days > 3650)
         return "expects a number of days, 0-3650 (0: no resume tokens)";
       c.actors.resume_token_ttl = std::chrono::hours(24 * days);
       return {};
     }},
    {"retention-interval-ms", millis([](server_config& c) { return &c.actors.retention_interval; })},
    {"max-seq", positive<uint32_t>([](server_config& c) { return &c.actors.max_seq; })},
    {"dedup-window", positive<size_t>([](server_config& c) { return &c.actors.dedup_window; })},
    {"cache-entries",
     positive<size_t>([](server_config& c) { return &c.actors.cache_entries; })},
    {"cache-max-bytes",
     positive<size_t>([](server_config& c) { return &c.actors.cache_max_bytes; })},
    {"policy",
     [](server_config& c, std::string_view v) -> std::string {
       std::vector<std::string> steps;
       while (!v.empty()) {
         auto end = v.find_first_of(" \t");
         auto word = v.substr(0, end);
         v.remove_prefix(end == std::string_view::npos ? v.size() : end);
         v = trim(v);
         steps.emplace_back(word);
       }
       policy::chain_options probe;
       probe.steps = steps;
       std::string err;
       if (!policy::build_chain(probe, &err))
         return err;
       c.policy.steps = std::move(steps);
       return {};
     }},
    {"max-request-bytes",
     positive<size_t>([](server_config& c) { return &c.policy.max_request_bytes; })},
    {"rate-limit-burst",
     positive<uint32_t>([](server_config& c) { return &c.policy.rate_limit_burst; })},
    {"rate-limit-per-second",
     [](server_config& c, std::string_view v) -> std::string {
       double x = 0;
       auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
       if (ec != std::errc{} || p != v.data() + v.size() || x < 0)
         return "expects a non-negative number (0: no rate limit)";
       c.policy.rate_limit_per_second = x;
       return {};
     }},
    {"spam-rules",
     [](server_config& c, std::string_view v) -> std::string {
       c.spam_rules_path = std::string(v);
       return {};
     }},
    {"max-blocked", positive<size_t>([](server_config& c) { return &c.actors.max_blocked; })},
    {"max-group-size",
     positive<size_t>([](server_config& c) { return &c.actors.max_group_size; })},
    {"push-provider",
     [](server_config& c, std::string_view v) -> std::string {
       if (v != "none" && v != "webhook")
         return "expects none or webhook";
       c.push_provider = std::string(v);
       return {};
     }},
    {"push-gateway-url",
     [](server_config& c, std::string_view v) -> std::string {
       c.webhook.url = std::string(v);
       return {};
     }},
    {"push-gateway-timeout-ms", millis([](server_config& c) { return &c.webhook.timeout; })},
    {"push-gateway-connections",
     within<uint32_t>(1, 10000, "a number of requests, 1-10000",
                      [](server_config& c) { return &c.webhook.max_in_flight; })},
    {"push-previews",
     [](server_config& c, std::string_view v) -> std::string {
       if (v == "true")
         c.webhook.previews = true;
       else if (v == "false")
         c.webhook.previews = false;
       else
         return "expects true or false";
       return {};
     }},
    {"push-disconnect-delay-ms",
     millis_or_zero([](server_config& c) { return &c.actors.push.disconnect_delay; })},
    {"push-min-interval-ms",
     millis_or_zero([](server_config& c) { return &c.actors.push.min_interval; })},
    {"push-retry-min-ms", millis([](server_config& c) { return &c.actors.push.retry_min; })},
    {"push-retry-max-ms", millis([](server_config& c) { return &c.actors.push.retry_max; })},
    {"push-max-attempts",
     positive<uint32_t>([](server_config& c) { return &c.actors.push.max_attempts; })},
    {"scheduler-threads",
     positive<size_t>([](server_config& c) { return &c.scheduler_threads; })},
    {"scheduler-idle-poll-us",
     [](server_config& c, std::string_view v) -> std::string {
       int64_t us = 0;
       if (!parse_number(v, &us) || us < 0 || us > 1000000)
         return "expects microseconds from 0 to 1000000";
       c.scheduler_idle_poll = std::chrono::microseconds(us);
       return {};
     }},
    {"thread-policy",
     [](server_config& c, std::string_view v) -> std::string {
       return parse_thread_policy(v, &c.scheduling) ? "" : "expects batch or normal";
     }},
    {"password-threads",
     within<size_t>(0, 64, "a number of threads, 0-64 (0: one per core, at most 4)",
                    [](server_config& c) { return &c.actors.password_threads; })},
    {"password-queue-max",
     positive<size_t>([](server_config& c) { return &c.actors.password_queue_max; })},
    {"password-hash",
     [](server_config& c, std::string_view v) -> std::string {
       if (v == "interactive")
         c.actors.password_hash = hash_cost::interactive;
       else if (v == "moderate")
         c.actors.password_hash = hash_cost::moderate;
       else if (v == "min")
         c.actors.password_hash = hash_cost::min;
       else
         return "expects interactive, moderate or min";
       return {};
     }},
  };
  return table;
}

} // namespace

std::string_view default_config_text() {
  return embedded;
}

std::string apply_config(server_config& cfg, std::string_view text, const std::string& source) {
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto eol = text.find('\n');
    auto line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    line = trim(line);
    if (line.empty())
      continue;
    auto where = source + ":" + std::to_string(line_no) + ": ";
    auto eq = line.find('=');
    if (eq == std::string_view::npos)
      return where + "expected `key = value`";
    auto key = trim(line.substr(0, eq));
    auto value = trim(line.substr(eq + 1));
    auto it = setters().find(key);
    if (it == setters().end())
      return where + "unknown option `" + std::string(key) + "`";
    if (auto err = it->second(cfg, value); !err.empty())
      return where + std::string(key) + " " + err + ", got `" + std::string(value) + "`";
  }
  if (cfg.actors.sync_page_default > cfg.actors.sync_page_max)
    return source + ": sync-page-default must not exceed sync-page-max";
  if (cfg.push_provider == "webhook" && cfg.webhook.url.empty())
    return source + ": push-provider = webhook needs push-gateway-url";
  if (cfg.actors.push.retry_min > cfg.actors.push.retry_max)
    return source + ": push-retry-min-ms must not exceed push-retry-max-ms";
  if (cfg.policy.max_request_bytes <= cfg.actors.max_body_bytes)
    return source + ": max-request-bytes must exceed max-body-bytes (a request carries more "
                    "than its body)";
  return {};
}

std::string build_policy(server_config& cfg) {
  cfg.spam = std::make_shared<policy::spam_rules_slot>();
  if (!cfg.spam_rules_path.empty()) {
    std::string err;
    auto rules = policy::load_spam_rules(cfg.spam_rules_path, &err);
    if (!rules)
      return err;
    cfg.spam->set(std::move(rules));
  }
  auto opts = cfg.policy;
  opts.max_body_bytes = cfg.actors.max_body_bytes;
  opts.spam = cfg.spam;
  std::string err;
  cfg.actors.policy = policy::build_chain(opts, &err);
  return cfg.actors.policy ? std::string{} : err;
}

std::string build_push(server_config& cfg) {
  if (cfg.push_provider != "webhook")
    return {};
  std::string err;
  cfg.actors.third_party_push = protocol::make_webhook(cfg.webhook, &err);
  return cfg.actors.third_party_push ? std::string{} : err;
}

std::string reload_spam_rules(const server_config& cfg) {
  if (cfg.spam_rules_path.empty() || !cfg.spam)
    return "no spam-rules file is configured; nothing to reload";
  std::string err;
  auto rules = policy::load_spam_rules(cfg.spam_rules_path, &err);
  if (!rules) {
    auto old = cfg.spam->get();
    return "spam rules NOT reloaded: " + err + "; the " + std::to_string(old ? old->size() : 0)
           + " rules loaded before stay in force";
  }
  auto n = rules->size();
  cfg.spam->set(std::move(rules));
  return "spam rules reloaded: " + std::to_string(n) + " rules from " + cfg.spam_rules_path;
}

void configure_scheduler(const server_config& cfg, caf::actor_system_config& sys_cfg) {
  sys_cfg.set("scheduler.max-threads", cfg.scheduler_threads);
  // CAF's work-stealing worker with nothing to do spins briefly ("aggressive" polls), then
  // naps `moderate-sleep-duration` at a time for `moderate-poll-attempts` naps, then sleeps on
  // a condition variable that handing it work signals. CAF's default, 500 naps of 50 µs, keeps
  // both workers waking every ≈ 100 µs for 25 ms after any work: at 10 messages a second that
  // was 15 ms of CPU per message (BENCHMARKS.md, "Session 7").
  constexpr auto nap = std::chrono::microseconds(50);
  sys_cfg.set("work-stealing.moderate-sleep-duration", caf::timespan(nap));
  sys_cfg.set("work-stealing.moderate-poll-attempts",
              static_cast<size_t>((cfg.scheduler_idle_poll + nap - std::chrono::microseconds(1))
                                  / nap));
}

server_config default_config() {
  server_config cfg;
  auto err = apply_config(cfg, embedded, "embedded missive.conf");
  if (!err.empty())
    throw std::logic_error(err); // the embedded file is ours: a bug, caught by the tests
  return cfg;
}

} // namespace missive::app

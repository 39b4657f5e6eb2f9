#include "server_config.hpp"

#include <gtest/gtest.h>

#include <caf/actor_system_config.hpp>
#include <caf/settings.hpp>

namespace missive::app {
namespace {

TEST(server_config, the_embedded_file_gives_the_documented_defaults) {
  auto cfg = default_config();
  EXPECT_EQ(cfg.gateway.listen, "127.0.0.1:7070");
  EXPECT_EQ(cfg.storage.path, "./data");
  EXPECT_TRUE(cfg.storage.sync);
  EXPECT_EQ(cfg.actors.max_body_bytes, 65536u);
  EXPECT_EQ(cfg.actors.password_hash, hash_cost::interactive);
  EXPECT_EQ(cfg.actors.resume_token_ttl, std::chrono::hours(24 * 30));
  EXPECT_EQ(cfg.actors.password_threads, 0u);
  EXPECT_EQ(cfg.actors.password_queue_max, 1000u);
  EXPECT_EQ(cfg.actors.dedup_window, 256u);
  EXPECT_EQ(cfg.actors.cache_max_bytes, 131072u);
  EXPECT_EQ(cfg.actors.slow_commit, std::chrono::milliseconds(100));
  EXPECT_EQ(cfg.webhook.max_in_flight, 256u);
  EXPECT_EQ(cfg.storage.write_buffer_bytes, size_t{32} << 20);
  EXPECT_EQ(cfg.storage.background_duty_percent, 50u);
  EXPECT_TRUE(cfg.storage.background_gives_way);
  EXPECT_EQ(cfg.scheduler_idle_poll, std::chrono::microseconds(0));
  EXPECT_EQ(cfg.scheduling, thread_policy::batch);
  EXPECT_NE(default_config_text().find("durability = sync"), std::string_view::npos);
}

TEST(server_config, a_file_overrides_only_what_it_names) {
  auto cfg = default_config();
  auto err = apply_config(cfg,
                          "# comment\n"
                          "durability = async   # trailing comment\n"
                          "\n"
                          "  max-body-bytes=16\n"
                          "user-idle-timeout-ms = 250\n"
                          "memtable-mb = 4\n"
                          "background-duty-percent = 100\n"
                          "background-priority = normal\n"
                          "resume-token-days = 0\n"
                          "password-threads = 3\n"
                          "slow-commit-ms = 0\n"
                          "push-gateway-connections = 8\n",
                          "test.conf");
  ASSERT_EQ(err, "");
  EXPECT_FALSE(cfg.storage.sync);
  EXPECT_EQ(cfg.actors.max_body_bytes, 16u);
  EXPECT_EQ(cfg.actors.user_idle_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(cfg.storage.write_buffer_bytes, size_t{4} << 20);
  EXPECT_EQ(cfg.storage.background_duty_percent, 100u);
  EXPECT_FALSE(cfg.storage.background_gives_way);
  EXPECT_EQ(cfg.actors.resume_token_ttl, std::chrono::milliseconds(0));
  EXPECT_EQ(cfg.actors.password_threads, 3u);
  EXPECT_EQ(cfg.actors.slow_commit.count(), 0);
  EXPECT_EQ(cfg.webhook.max_in_flight, 8u);
  EXPECT_EQ(cfg.gateway.listen, "127.0.0.1:7070");
}

TEST(server_config, mistakes_name_the_file_line_and_problem) {
  // Each on a fresh copy of the defaults: a line and the error it must get.
  const std::pair<const char*, const char*> mistakes[] = {
    {"colour = blue",
     "a.conf:1: unknown option `colour`"},
    {"\nmax-body-bytes = -3",
     "a.conf:2: max-body-bytes expects a positive integer, got `-3`"},
    {"listen 127.0.0.1:1",
     "a.conf:1: expected `key = value`"},
    {"listen = nowhere",
     "a.conf:1: listen expects HOST:PORT, got `nowhere`"},
    {"memtable-mb = 0",
     "a.conf:1: memtable-mb expects an integer from 1 to 1024, got `0`"},
    {"background-duty-percent = 0",
     "a.conf:1: background-duty-percent expects a percentage from 1 to 100, got `0`"},
    {"background-duty-percent = 101",
     "a.conf:1: background-duty-percent expects a percentage from 1 to 100, got `101`"},
    {"durability = maybe",
     "a.conf:1: durability expects sync or async, got `maybe`"},
    {"background-priority = idle",
     "a.conf:1: background-priority expects low or normal, got `idle`"},
    {"scheduler-idle-poll-us = -1",
     "a.conf:1: scheduler-idle-poll-us expects microseconds from 0 to 1000000, got `-1`"},
    {"scheduler-idle-poll-us = 1000001",
     "a.conf:1: scheduler-idle-poll-us expects microseconds from 0 to 1000000, got `1000001`"},
    {"thread-policy = fast",
     "a.conf:1: thread-policy expects batch or normal, got `fast`"},
    {"resume-token-days = 3651",
     "a.conf:1: resume-token-days expects a number of days, 0-3650 (0: no resume tokens), "
     "got `3651`"},
    {"password-threads = 65",
     "a.conf:1: password-threads expects a number of threads, 0-64 (0: one per core, at most "
     "4), got `65`"},
    {"password-queue-max = 0",
     "a.conf:1: password-queue-max expects a positive integer, got `0`"},
    {"slow-commit-ms = -1",
     "a.conf:1: slow-commit-ms expects milliseconds from 0 (no reports) to 3600000, got `-1`"},
    {"push-gateway-connections = 0",
     "a.conf:1: push-gateway-connections expects a number of requests, 1-10000, got `0`"},
    {"sync-page-default = 5000",
     "a.conf: sync-page-default must not exceed sync-page-max"},
  };
  for (auto& [line, error] : mistakes) {
    auto cfg = default_config();
    EXPECT_EQ(apply_config(cfg, line, "a.conf"), error) << line;
  }
}

/// What CAF's work-stealing workers are told: the idle poll in naps of 50 µs, rounded up.
size_t naps_for(const std::string& line) {
  auto cfg = default_config();
  EXPECT_EQ(apply_config(cfg, line, "test.conf"), "");
  caf::actor_system_config sys_cfg;
  configure_scheduler(cfg, sys_cfg);
  EXPECT_EQ(caf::get_or(sys_cfg, "scheduler.max-threads", size_t{0}), cfg.scheduler_threads);
  EXPECT_EQ(caf::get_or(sys_cfg, "work-stealing.moderate-sleep-duration", caf::timespan{0}),
            caf::timespan(std::chrono::microseconds(50)));
  return caf::get_or(sys_cfg, "work-stealing.moderate-poll-attempts", size_t{12345});
}

TEST(server_config, the_idle_poll_becomes_caf_naps_of_50_microseconds) {
  EXPECT_EQ(naps_for(""), 0u); // the default: no naps, sleep after the spin
  EXPECT_EQ(naps_for("scheduler-idle-poll-us = 25000"), 500u); // CAF's own default
  EXPECT_EQ(naps_for("scheduler-idle-poll-us = 1"), 1u);
  EXPECT_EQ(naps_for("scheduler-idle-poll-us = 120"), 3u);
  EXPECT_EQ(naps_for("scheduler-threads = 1\nscheduler-idle-poll-us = 100"), 2u);
}

TEST(server_config, the_policy_chain_is_configured_by_name_and_checked) {
  auto cfg = default_config();
  EXPECT_EQ(cfg.policy.steps,
            (std::vector<std::string>{"size", "rate-limit", "spam", "blocklist"}));
  ASSERT_EQ(apply_config(cfg, "policy = blocklist  size\nrate-limit-per-second = 2.5", "p.conf"),
            "");
  EXPECT_EQ(cfg.policy.steps, (std::vector<std::string>{"blocklist", "size"}));
  EXPECT_EQ(cfg.policy.rate_limit_per_second, 2.5);
  EXPECT_EQ(apply_config(cfg, "policy = size friends-only", "p.conf"),
            "p.conf:1: policy unknown policy step `friends-only` (known: size, rate-limit, spam, "
            "blocklist), got `size friends-only`");
  EXPECT_EQ(apply_config(cfg, "rate-limit-per-second = -1", "p.conf"),
            "p.conf:1: rate-limit-per-second expects a non-negative number (0: no rate limit), "
            "got `-1`");
  EXPECT_EQ(apply_config(cfg, "max-request-bytes = 100", "p.conf"),
            "p.conf: max-request-bytes must exceed max-body-bytes (a request carries more than "
            "its body)");
}

TEST(server_config, build_policy_loads_the_spam_rules_or_says_why_not) {
  auto cfg = default_config();
  ASSERT_EQ(build_policy(cfg), "");
  ASSERT_TRUE(cfg.actors.policy);
  EXPECT_EQ(cfg.actors.policy->rules().size(), 4u);
  EXPECT_EQ(reload_spam_rules(cfg), "no spam-rules file is configured; nothing to reload");
  cfg.spam_rules_path = "/nonexistent/spam.rules";
  EXPECT_EQ(build_policy(cfg), "cannot read the spam rules file /nonexistent/spam.rules");
}

} // namespace
} // namespace missive::app

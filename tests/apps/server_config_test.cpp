#include "server_config.hpp"

#include <gtest/gtest.h>

namespace missive::app {
namespace {

TEST(server_config, the_embedded_file_gives_the_documented_defaults) {
  auto cfg = default_config();
  EXPECT_EQ(cfg.gateway.listen, "127.0.0.1:7070");
  EXPECT_EQ(cfg.storage.path, "./data");
  EXPECT_TRUE(cfg.storage.sync);
  EXPECT_EQ(cfg.actors.max_body_bytes, 65536u);
  EXPECT_EQ(cfg.actors.password_hash, hash_cost::interactive);
  EXPECT_NE(default_config_text().find("durability = sync"), std::string_view::npos);
}

TEST(server_config, a_file_overrides_only_what_it_names) {
  auto cfg = default_config();
  auto err = apply_config(cfg,
                          "# comment\n"
                          "durability = async   # trailing comment\n"
                          "\n"
                          "  max-body-bytes=16\n"
                          "user-idle-timeout-ms = 250\n",
                          "test.conf");
  ASSERT_EQ(err, "");
  EXPECT_FALSE(cfg.storage.sync);
  EXPECT_EQ(cfg.actors.max_body_bytes, 16u);
  EXPECT_EQ(cfg.actors.user_idle_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(cfg.gateway.listen, "127.0.0.1:7070");
}

TEST(server_config, mistakes_name_the_file_line_and_problem) {
  auto cfg = default_config();
  EXPECT_EQ(apply_config(cfg, "colour = blue", "a.conf"), "a.conf:1: unknown option `colour`");
  EXPECT_EQ(apply_config(cfg, "\nmax-body-bytes = -3", "a.conf"),
            "a.conf:2: max-body-bytes expects a positive integer, got `-3`");
  EXPECT_EQ(apply_config(cfg, "listen 127.0.0.1:1", "a.conf"), "a.conf:1: expected `key = value`");
  EXPECT_EQ(apply_config(cfg, "listen = nowhere", "a.conf"),
            "a.conf:1: listen expects HOST:PORT, got `nowhere`");
  EXPECT_EQ(apply_config(cfg, "sync-page-default = 5000", "a.conf"),
            "a.conf: sync-page-default must not exceed sync-page-max");
}

} // namespace
} // namespace missive::app

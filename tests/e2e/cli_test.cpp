// missive-cli as a person uses it: two terminals, one watching, one sending.

#include <gtest/gtest.h>

#include "support/server.hpp"
#include "support/temp_dir.hpp"

namespace missive::test {
namespace {

using namespace std::chrono_literals;

class cli_test : public ::testing::Test {
protected:
  void SetUp() override {
    srv = std::make_unique<server>(dir.path, "password-hash = min");
    ASSERT_TRUE(srv->start());
    home = dir.path / "home";
    std::filesystem::create_directories(home);
  }

  std::vector<std::string> cli(const std::string& user, std::vector<std::string> rest,
                               const std::string& device = "cli") {
    std::vector<std::string> argv{MISSIVE_CLI_BIN, "--server", srv->address(), "--user", user,
                                  "--password", user + "-pw", "--device", device};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return argv;
  }

  command_result run(const std::string& user, std::vector<std::string> rest,
                     const std::string& device = "cli") {
    return run_command(cli(user, std::move(rest), device), dir.path, {"HOME=" + home.string()});
  }

  temp_dir dir;
  std::filesystem::path home;
  std::unique_ptr<server> srv;
};

TEST_F(cli_test, two_people_chat) {
  ASSERT_EQ(run("alice", {"register"}).code, 0);
  auto bob = run("bob", {"register"});
  ASSERT_EQ(bob.code, 0) << bob.err;
  EXPECT_EQ(bob.out, "registered bob\n");

  // Terminal 1: bob watches for two entries.
  process watch(cli("bob", {"watch", "--count", "2", "--timeout", "30"}, "laptop"), dir.path,
                "watch", {"HOME=" + home.string()});
  // Terminal 2: alice sends.
  auto s1 = run("alice", {"send", "bob", "hi bob"});
  ASSERT_EQ(s1.code, 0) << s1.err;
  EXPECT_EQ(s1.out, "1\n");
  auto s2 = run("alice", {"send", "bob", "line one\nline\ttwo"});
  ASSERT_EQ(s2.code, 0) << s2.err;
  EXPECT_EQ(s2.out, "2\n");
  ASSERT_EQ(watch.wait(30s), 0) << watch.err();
  EXPECT_EQ(watch.out(), "1\talice\tbob\thi bob\n2\talice\tbob\tline one\\nline\\ttwo\n");

  // Bob's phone was never online: sync prints everything once, then nothing.
  auto sync1 = run("bob", {"sync"}, "phone");
  ASSERT_EQ(sync1.code, 0) << sync1.err;
  EXPECT_EQ(sync1.out, watch.out());
  auto sync2 = run("bob", {"sync"}, "phone");
  ASSERT_EQ(sync2.code, 0) << sync2.err;
  EXPECT_EQ(sync2.out, "");
  EXPECT_TRUE(std::filesystem::exists(home / ".missive" / "bob.phone.state"));

  // Alice's other device shows what she sent.
  auto mine = run("alice", {"sync"}, "tablet");
  EXPECT_EQ(mine.out, "1\talice\tbob\thi bob\n2\talice\tbob\tline one\\nline\\ttwo\n");
}

TEST_F(cli_test, a_retried_client_id_prints_the_same_seq) {
  ASSERT_EQ(run("alice", {"register"}).code, 0);
  ASSERT_EQ(run("bob", {"register"}).code, 0);
  auto a = run("alice", {"send", "bob", "once", "--client-id", "77"});
  auto b = run("alice", {"send", "bob", "once", "--client-id", "77"});
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(run("bob", {"sync"}).out, "1\talice\tbob\tonce\n");
}

TEST_F(cli_test, block_unblock_and_blocks) {
  for (auto* u : {"alice", "bob", "mallory"})
    ASSERT_EQ(run(u, {"register"}).code, 0);
  // A watch of bob's default device keeps running while bob manages his blocklist.
  process watch(cli("bob", {"watch", "--count", "1", "--timeout", "30"}), dir.path, "watch-block",
                {"HOME=" + home.string()});
  auto blocked = run("bob", {"block", "mallory"});
  ASSERT_EQ(blocked.code, 0) << blocked.err;
  EXPECT_EQ(blocked.out, "blocked mallory\n");
  ASSERT_EQ(run("bob", {"block", "alice"}).code, 0);
  EXPECT_EQ(run("bob", {"blocks"}).out, "alice\nmallory\n");
  auto refused = run("mallory", {"send", "bob", "hi"});
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("blocked: bob does not accept messages from mallory"),
            std::string::npos)
    << refused.err;
  EXPECT_EQ(refused.out, "");
  ASSERT_EQ(run("bob", {"unblock", "alice"}).out, "unblocked alice\n");
  EXPECT_EQ(run("bob", {"blocks"}).out, "mallory\n");
  ASSERT_EQ(run("alice", {"send", "bob", "hello"}).code, 0);
  ASSERT_EQ(watch.wait(30s), 0) << watch.err();
  EXPECT_EQ(watch.out(), "1\talice\tbob\thello\n");
  auto self = run("bob", {"block", "bob"});
  EXPECT_EQ(self.code, 1);
  EXPECT_NE(self.err.find("invalid_argument: you cannot block yourself"), std::string::npos)
    << self.err;
  EXPECT_EQ(run("bob", {"block"}).code, 2);
}

TEST_F(cli_test, a_group_chat) {
  for (auto* u : {"alice", "bob", "carol"})
    ASSERT_EQ(run(u, {"register"}).code, 0);
  ASSERT_EQ(run("alice", {"group-create", "#team"}).code, 0);
  ASSERT_EQ(run("alice", {"group-add", "#team", "bob"}).code, 0);
  ASSERT_EQ(run("alice", {"group-add", "#team", "carol"}).code, 0);
  ASSERT_EQ(run("alice", {"group-admin", "#team", "bob", "on"}).code, 0);
  EXPECT_EQ(run("carol", {"group-members", "#team"}).out,
            "alice\towner\nbob\tadmin\ncarol\tmember\n");
  EXPECT_EQ(run("carol", {"groups"}).out, "#team\n");
  auto sent = run("carol", {"send", "#team", "hi all"});
  ASSERT_EQ(sent.code, 0) << sent.err;
  EXPECT_EQ(sent.out, "2\n"); // carol's mailbox: [added carol], this
  ASSERT_EQ(run("carol", {"group-leave", "#team"}).code, 0);
  EXPECT_EQ(run("bob", {"sync"}).out, "1\talice\t#team\t[added bob]\n"
                                      "2\talice\t#team\t[added carol]\n"
                                      "3\tcarol\t#team\thi all\n"
                                      "4\tcarol\t#team\t[left]\n");
  auto refused = run("carol", {"send", "#team", "one more"});
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("not_member: carol is not a member of #team"), std::string::npos)
    << refused.err;
  auto owner = run("bob", {"group-remove", "#team", "alice"});
  EXPECT_EQ(owner.code, 1);
  EXPECT_NE(owner.err.find("not_allowed: the owner cannot be removed"), std::string::npos)
    << owner.err;
  EXPECT_EQ(run("bob", {"group-admin", "#team", "alice", "maybe"}).code, 2);
}

TEST_F(cli_test, errors_go_to_stderr_with_a_non_zero_exit) {
  ASSERT_EQ(run("alice", {"register"}).code, 0);
  auto again = run("alice", {"register"});
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.err.find("user_exists"), std::string::npos) << again.err;
  auto nobody = run("alice", {"send", "nobody", "hi"});
  EXPECT_NE(nobody.code, 0);
  EXPECT_NE(nobody.err.find("unknown_user"), std::string::npos) << nobody.err;
  EXPECT_EQ(nobody.out, "");
  // A device whose state file holds no resume token (alice's `cli` device has one now).
  auto wrong = run_command({MISSIVE_CLI_BIN, "--server", srv->address(), "--user", "alice",
                            "--password", "wrong-pw", "--device", "fresh", "sync"},
                           dir.path, {"HOME=" + home.string()});
  EXPECT_NE(wrong.code, 0);
  EXPECT_NE(wrong.err.find("bad_credentials"), std::string::npos) << wrong.err;
  auto usage = run("alice", {"frobnicate"});
  EXPECT_EQ(usage.code, 2);
  auto down = run_command({MISSIVE_CLI_BIN, "--server", "127.0.0.1:1", "--user", "a",
                           "--password", "b", "--timeout", "0.5", "sync"},
                          dir.path, {"HOME=" + home.string()});
  EXPECT_NE(down.code, 0);
  EXPECT_NE(down.err.find("cannot reach 127.0.0.1:1"), std::string::npos) << down.err;
}

} // namespace
} // namespace missive::test

namespace missive::test {
namespace {

TEST_F(cli_test, watch_reconnects_when_the_server_restarts) {
  ASSERT_EQ(run("alice", {"register"}).code, 0);
  ASSERT_EQ(run("bob", {"register"}).code, 0);
  ASSERT_EQ(run("alice", {"send", "bob", "before"}).code, 0);
  process watch(cli("bob", {"watch", "--count", "2", "--timeout", "30"}), dir.path, "watch-restart",
                {"HOME=" + home.string()});
  // Once bob's device is online (it printed what it caught up on), the server dies under it.
  ASSERT_TRUE(watch.wait_for_output("before", 20s));
  srv->kill();
  ASSERT_TRUE(srv->start());
  ASSERT_EQ(run("alice", {"send", "bob", "after"}).code, 0);
  EXPECT_EQ(watch.wait(30s), 0) << watch.err();
  EXPECT_EQ(watch.out(), "1\talice\tbob\tbefore\n2\talice\tbob\tafter\n");
}

TEST_F(cli_test, a_send_that_cannot_be_delivered_now_is_queued_for_the_next_command) {
  ASSERT_EQ(run("alice", {"register"}).code, 0);
  ASSERT_EQ(run("bob", {"register"}).code, 0);
  auto address = srv->address();
  srv->kill();
  auto queued = run("alice", {"send", "bob", "while down", "--timeout", "0.5"});
  EXPECT_EQ(queued.code, 4) << queued.err;
  EXPECT_NE(queued.err.find("stays queued"), std::string::npos) << queued.err;
  ASSERT_TRUE(srv->start());
  ASSERT_EQ(srv->address(), address);
  // Alice's next command delivers it first.
  auto later = run("alice", {"sync"});
  EXPECT_EQ(later.code, 0) << later.err;
  EXPECT_NE(later.err.find("acknowledged as seq 1"), std::string::npos) << later.err;
  EXPECT_EQ(run("bob", {"sync"}).out, "1\talice\tbob\twhile down\n");
}

} // namespace
} // namespace missive::test

namespace missive::test {
namespace {

class cli_retention_test : public cli_test {
protected:
  void SetUp() override {
    srv = std::make_unique<server>(
      dir.path, "password-hash = min\nretention-max-entries = 2\nretention-interval-ms = 50");
    ASSERT_TRUE(srv->start());
    home = dir.path / "home";
    std::filesystem::create_directories(home);
  }
};

TEST_F(cli_retention_test, a_device_behind_retention_gets_the_kept_entries_and_a_note) {
  ASSERT_EQ(run("alice", {"register"}).code, 0);
  ASSERT_EQ(run("bob", {"register"}).code, 0);
  for (int i = 1; i <= 5; ++i)
    ASSERT_EQ(run("alice", {"send", "bob", "m" + std::to_string(i)}).code, 0);
  // The sweep runs every 50 ms; wait (bounded) until it has cut bob's mailbox to 2 entries.
  command_result r{};
  for (int i = 0; i < 100; ++i) {
    r = run("bob", {"sync", "--state", (dir.path / ("probe" + std::to_string(i))).string()});
    if (r.out == "4\talice\tbob\tm4\n5\talice\tbob\tm5\n")
      break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(r.out, "4\talice\tbob\tm4\n5\talice\tbob\tm5\n");
  EXPECT_NE(r.err.find("expired"), std::string::npos) << r.err;
}

} // namespace
} // namespace missive::test

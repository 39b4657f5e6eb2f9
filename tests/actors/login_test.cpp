#include "fixture.hpp"

namespace missive::test {
namespace {

class login_test : public actor_fixture {};

TEST_F(login_test, connection_logs_in) {
  start();
  auto r = ask<ok_atom>(n.accounts, register_atom::value, std::string{"alice"},
                        std::string{"secret1"});
  ASSERT_TRUE(r.value) << caf::to_string(r.error);
  auto got = std::make_shared<std::optional<caf::expected<session_info>>>();
  reply_to<session_info> cb{std::make_shared<std::function<void(caf::expected<session_info>)>>(
    [got](caf::expected<session_info> x) { *got = std::move(x); })};
  auto conn = spawn_connection(sys, n, "alice", "secret1", "phone", cb);
  run();
  ASSERT_TRUE(got->has_value());
  ASSERT_TRUE(**got) << caf::to_string((*got)->error());
}

} // namespace
} // namespace missive::test

#include <caf/all.hpp>

#include "missive/actors/node.hpp"

namespace missive {

namespace {

struct connection_state {
  connection_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  node refs;
  std::string user;
  std::string device;
  user_actor owner;   // set once logged in
  push_sink_ptr sink; // the device's session on its gateway thread
  caf::error closed;  // set when this session is over
  static inline const char* name = "missive.connection";
};

using self_ptr = connection_actor::stateful_pointer<connection_state>;

void close(self_ptr self, caf::error reason) {
  auto& st = self->state;
  st.closed = reason;
  st.sink->close(std::move(reason));
}

/// Forwards `xs` to the user actor and the answer to `reply`.
template <class T, class... Ts>
void forward(self_ptr self, reply_to<T> reply, Ts&&... xs) {
  auto& st = self->state;
  if (st.closed)
    return reply(st.closed);
  self->request(st.owner, caf::infinite, std::forward<Ts>(xs)...)
    .then([=](T& x) { reply(std::move(x)); }, [=](caf::error& err) { reply(std::move(err)); });
}

connection_actor::behavior_type connection(self_ptr self, node refs, std::string user,
                                           std::string password, std::string device,
                                           push_sink_ptr sink, reply_to<login_ok> on_login) {
  auto& st = self->state;
  st.refs = std::move(refs);
  st.user = user;
  st.device = device;
  st.sink = std::move(sink);
  auto fail = [=](caf::error err) {
    on_login(std::move(err));
    self->quit();
  };
  self->request(st.refs.accounts, caf::infinite, verify_atom::value, user, std::move(password))
    .then(
      [=](ok_atom) {
        self->request(self->state.refs.directory, caf::infinite, lookup_atom::value, user)
          .then(
            [=](user_actor& owner) {
              self->request(owner, caf::infinite, attach_atom::value, device,
                            caf::actor_cast<caf::actor>(self), self->state.sink)
                .then(
                  [=](session_info& info) {
                    self->state.owner = owner;
                    self->monitor(owner);
                    on_login(login_ok{info, owner});
                  },
                  fail);
            },
            fail);
      },
      fail);
  self->set_down_handler([=](caf::down_msg&) {
    close(self, caf::make_error(errc::unavailable, "the user's actor stopped; log in again"));
  });
  return {
    [=](replaced_atom) {
      close(self, caf::make_error(errc::session_replaced,
                                  "device " + self->state.device + " logged in again"));
    },
    [=](sync_atom, uint32_t epoch, uint32_t after, uint32_t limit, reply_to<sync_result> reply) {
      forward(self, std::move(reply), sync_atom::value, epoch, after, limit);
    },
    [=](ack_atom, uint32_t epoch, uint32_t seq, done_reply reply) {
      auto& st = self->state;
      if (st.closed)
        return reply(st.closed);
      self->request(st.owner, caf::infinite, ack_atom::value, st.device, epoch, seq)
        .then([=](ok_atom) { reply(caf::unit); },
              [=](caf::error& err) { reply(std::move(err)); });
    },
    [=](block_atom, std::string& other, bool on, done_reply reply) {
      auto& st = self->state;
      if (st.closed)
        return reply(st.closed);
      self->request(st.owner, caf::infinite, block_atom::value, std::move(other), on)
        .then([=](ok_atom) { reply(caf::unit); },
              [=](caf::error& err) { reply(std::move(err)); });
    },
    [=](block_atom, lookup_atom, reply_to<std::vector<std::string>> reply) {
      forward(self, std::move(reply), block_atom::value, lookup_atom::value);
    },
    [=](push_atom, std::string& platform, std::string& token, done_reply reply) {
      auto& st = self->state;
      if (st.closed)
        return reply(st.closed);
      self->request(st.owner, caf::infinite, push_atom::value, st.device, std::move(platform),
                    std::move(token))
        .then([=](ok_atom) { reply(caf::unit); },
              [=](caf::error& err) { reply(std::move(err)); });
    },
    [=](group_atom, group_op& op, done_reply reply) {
      auto& st = self->state;
      if (st.closed)
        return reply(st.closed);
      op.actor = st.user;
      self->request(st.refs.directory, caf::infinite, group_atom::value, std::move(op))
        .then([=](ok_atom) { reply(caf::unit); },
              [=](caf::error& err) { reply(std::move(err)); });
    },
    [=](group_atom, lookup_atom, const std::string& group,
        reply_to<std::vector<group_member>> reply) {
      auto& st = self->state;
      if (st.closed)
        return reply(st.closed);
      self->request(st.refs.directory, caf::infinite, lookup_atom::value, group_atom::value, group)
        .then(
          [=](group_actor& g) {
            self->request(g, caf::infinite, group_atom::value, lookup_atom::value, self->state.user)
              .then([=](std::vector<group_member>& xs) { reply(std::move(xs)); },
                    [=](caf::error& err) { reply(std::move(err)); });
          },
          [=](caf::error& err) { reply(std::move(err)); });
    },
    [=](group_atom, lookup_atom, reply_to<std::vector<std::string>> reply) {
      auto& st = self->state;
      if (st.closed)
        return reply(st.closed);
      self->request(st.refs.persistence, caf::infinite, group_atom::value, lookup_atom::value,
                    st.user)
        .then([=](std::vector<std::string>& xs) { reply(std::move(xs)); },
              [=](caf::error& err) { reply(std::move(err)); });
    },
    [=](detach_atom) {
      auto& st = self->state;
      if (st.owner)
        self->send(st.owner, detach_atom::value, st.device, caf::actor_cast<caf::actor>(self));
      self->quit();
    },
  };
}

} // namespace

connection_actor spawn_connection(caf::actor_system& sys, const node& n, std::string user,
                                  std::string password, std::string device, push_sink_ptr sink,
                                  reply_to<login_ok> on_login) {
  return sys.spawn(connection, n, std::move(user), std::move(password), std::move(device),
                   std::move(sink), std::move(on_login));
}

} // namespace missive

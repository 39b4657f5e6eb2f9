#include <sodium.h>

#include <chrono>

#include <caf/all.hpp>

#include "missive/actors/node.hpp"

// What a device's session asks of the actors besides `send`, each in a short-lived helper
// actor: nothing stays alive per device but its user actor's entry for the session.

namespace missive {

namespace {

using call_ptr = device_call_actor::pointer;

/// Asks `dest` and hands the answer, or the error, to `reply`.
template <class T, class Self, class Dest, class... Ts>
void relay(Self* self, const Dest& dest, reply_to<T> reply, Ts&&... xs) {
  self->request(dest, caf::infinite, std::forward<Ts>(xs)...)
    .then([=](T& x) { reply(std::move(x)); }, [=](caf::error& err) { reply(std::move(err)); });
}

/// The same for calls whose answer is only "done".
template <class Self, class Dest, class... Ts>
void relay_done(Self* self, const Dest& dest, done_reply reply, Ts&&... xs) {
  self->request(dest, caf::infinite, std::forward<Ts>(xs)...)
    .then([=](ok_atom) { reply(caf::unit); }, [=](caf::error& err) { reply(std::move(err)); });
}

/// Takes one call. Each handler first drops the behavior: the actor then lives only while its
/// request is open, and quits once it has answered.
device_call_actor::behavior_type device_call(call_ptr self, device_context ctx) {
  auto c = std::make_shared<const device_context>(std::move(ctx));
  return {
    [=](sync_atom, uint32_t epoch, uint32_t after, uint32_t limit, reply_to<sync_result> reply) {
      self->unbecome();
      relay(self, c->owner, std::move(reply), sync_atom::value, epoch, after, limit);
    },
    [=](ack_atom, uint32_t epoch, uint32_t seq, done_reply reply) {
      self->unbecome();
      relay_done(self, c->owner, std::move(reply), ack_atom::value, c->device, epoch, seq);
    },
    [=](block_atom, std::string& other, bool on, done_reply reply) {
      self->unbecome();
      relay_done(self, c->owner, std::move(reply), block_atom::value, std::move(other), on);
    },
    [=](block_atom, lookup_atom, reply_to<std::vector<std::string>> reply) {
      self->unbecome();
      relay(self, c->owner, std::move(reply), block_atom::value, lookup_atom::value);
    },
    [=](push_atom, std::string& platform, std::string& token, done_reply reply) {
      self->unbecome();
      relay_done(self, c->owner, std::move(reply), push_atom::value, c->device,
                 std::move(platform), std::move(token));
    },
    [=](group_atom, group_op& op, done_reply reply) {
      self->unbecome();
      op.actor = c->user;
      relay_done(self, c->refs.directory, std::move(reply), group_atom::value, std::move(op));
    },
    [=](group_atom, lookup_atom, const std::string& group,
        reply_to<std::vector<group_member>> reply) {
      self->unbecome();
      self->request(c->refs.directory, caf::infinite, lookup_atom::value, group_atom::value, group)
        .then([=](group_actor& g) { relay(self, g, reply, group_atom::value, lookup_atom::value,
                                          c->user); },
              [=](caf::error& err) { reply(std::move(err)); });
    },
    [=](group_atom, lookup_atom, reply_to<std::vector<std::string>> reply) {
      self->unbecome();
      relay(self, c->refs.persistence, std::move(reply), group_atom::value, lookup_atom::value,
            c->user);
    },
  };
}

constexpr size_t resume_token_bytes = 32;

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// What is stored of a resume token: its BLAKE2b-256 hash. The token is 32 random bytes, so a
/// fast hash is enough (no password-grade hashing: nothing to guess).
std::string token_hash(std::string_view token) {
  unsigned char h[crypto_generichash_BYTES];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  return std::string(reinterpret_cast<const char*>(h), sizeof h);
}

bool token_matches(const storage::resume_record& rec, std::string_view token,
                   std::chrono::milliseconds ttl) {
  if (token.size() != resume_token_bytes || rec.token_hash.size() != crypto_generichash_BYTES)
    return false;
  auto h = token_hash(token);
  return sodium_memcmp(h.data(), rec.token_hash.data(), h.size()) == 0
         && now_ms() - rec.issued_ms < ttl.count();
}

} // namespace

void login(caf::actor_system& sys, const node& n, std::string user, std::string password,
           std::string device, push_sink_ptr sink, reply_to<login_ok> on_login,
           std::string resume_token) {
  sys.spawn([=](caf::event_based_actor* self) {
    auto fail = [=](caf::error& err) { on_login(std::move(err)); };
    // The device proved who it is: activate its user actor and attach the session.
    auto attach = [=](std::string token) {
      self->request(n.directory, caf::infinite, lookup_atom::value, user)
        .then(
          [=](user_actor& owner) {
            self->request(owner, caf::infinite, attach_atom::value, device, sink)
              .then(
                [=](session_info& info) {
                  if (sink->ended()) // hung up meanwhile: nobody will detach it otherwise
                    self->send(owner, detach_atom::value, device, sink);
                  on_login(login_ok{info, owner, token});
                },
                fail);
          },
          fail);
    };
    auto ttl = n.config->resume_token_ttl;
    if (!resume_token.empty()) {
      auto refused = [=] {
        on_login(caf::make_error(errc::bad_credentials,
                                 "resume token not valid (expired, replaced or another "
                                 "device's): log in with the password"));
      };
      if (ttl.count() <= 0 || !valid_name(user) || resume_token.size() != resume_token_bytes)
        return refused();
      self->request(n.persistence, caf::infinite, resume_atom::value, lookup_atom::value, user,
                    device)
        .then(
          [=](storage::resume_record& rec) {
            if (!token_matches(rec, resume_token, ttl))
              return refused();
            if (now_ms() - rec.issued_ms < ttl.count() / 2)
              return attach(resume_token);
            // Past half its life: renewed, so that a device in use never meets the password
            // again, and tokens issued together do not all expire together. The token stays
            // the same (an answer lost on the way costs nothing); if the renewal cannot be
            // stored the login goes on with the old date.
            rec.issued_ms = now_ms();
            self->request(n.persistence, caf::infinite, resume_atom::value, renew_atom::value,
                          user, device, rec)
              .then([=](ok_atom) { attach(resume_token); },
                    [=](caf::error&) { attach(resume_token); });
          },
          fail);
      return;
    }
    self->request(n.accounts, caf::infinite, verify_atom::value, user, password,
                  hangup_flag_ptr{sink})
      .then(
        [=](ok_atom) {
          if (ttl.count() <= 0)
            return attach({});
          // A new token for this device; it replaces the one an earlier login got. If it
          // cannot be stored (a full disk), the login goes on without one: reads still work.
          std::string token(resume_token_bytes, '\0');
          randombytes_buf(token.data(), token.size());
          self->request(n.persistence, caf::infinite, resume_atom::value, user, device,
                        storage::resume_record{token_hash(token), now_ms()})
            .then([=](ok_atom) { attach(token); }, [=](caf::error&) { attach({}); });
        },
        fail);
  });
}

device_call_actor spawn_device_call(caf::actor_system& sys, device_context ctx) {
  return sys.spawn(device_call, std::move(ctx));
}

} // namespace missive

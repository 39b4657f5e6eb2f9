#include <sodium.h>

#include <functional>

#include <caf/all.hpp>

#include "fifo.hpp"
#include "missive/actors/node.hpp"

namespace missive {

namespace {

constexpr size_t min_password_bytes = 6;
constexpr size_t max_password_bytes = 1024;

/// Why a sign-up is refused before any hashing, or none.
caf::error refused_sign_up(const std::string& user, const std::string& password) {
  if (!valid_name(user))
    return caf::make_error(errc::invalid_argument,
                           "user names are 1-64 characters of A-Z a-z 0-9 . _ -");
  if (password.size() < min_password_bytes || password.size() > max_password_bytes)
    return caf::make_error(errc::invalid_argument, "passwords are 6-1024 bytes");
  return {};
}

/// Why a password check fails before any hashing, or none.
caf::error refused_check(const std::string& user, const std::string& password) {
  if (!valid_name(user) || password.size() > max_password_bytes)
    return caf::make_error(errc::bad_credentials, "wrong user or password");
  return {};
}

struct accounts_state {
  accounts_state() = default; // not an aggregate: CAF would try to build it from the actor pointer
  persistence_actor persistence;
  unsigned long long ops = 0;
  size_t mem = 0;
  static inline const char* name = "missive.accounts";
};

using self_ptr = accounts_actor::stateful_pointer<accounts_state>;

accounts_actor::behavior_type accounts(self_ptr self, persistence_actor persistence,
                                       hash_cost cost) {
  if (sodium_init() < 0)
    throw std::runtime_error("libsodium failed to initialise");
  auto& st = self->state;
  st.persistence = std::move(persistence);
  switch (cost) {
    case hash_cost::min:
      st.ops = crypto_pwhash_OPSLIMIT_MIN;
      st.mem = crypto_pwhash_MEMLIMIT_MIN;
      break;
    case hash_cost::interactive:
      st.ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
      st.mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
      break;
    case hash_cost::moderate:
      st.ops = crypto_pwhash_OPSLIMIT_MODERATE;
      st.mem = crypto_pwhash_MEMLIMIT_MODERATE;
      break;
  }
  return {
    // Blocks this actor's own thread while hashing; that is why it runs detached.
    [=](register_atom, const std::string& user, const std::string& password,
        const hangup_flag_ptr& caller) -> caf::result<ok_atom> {
      if (auto err = refused_sign_up(user, password))
        return err;
      // As for checks below: a sign-up storm whose clients time out and retry.
      if (caller && caller->ended())
        return caf::make_error(errc::unavailable,
                               "the client hung up before its account was created");
      char hash[crypto_pwhash_STRBYTES];
      if (crypto_pwhash_str(hash, password.data(), password.size(), self->state.ops,
                            self->state.mem)
          != 0)
        return caf::make_error(errc::unavailable, "out of memory while hashing");
      // A random epoch: a mailbox re-created after its data was lost never reuses one.
      uint32_t epoch = 0;
      while (epoch == 0)
        epoch = randombytes_random();
      return self->delegate(self->state.persistence, account_atom::value, register_atom::value,
                            user, std::string{hash}, epoch);
    },
    [=](verify_atom, const std::string& user, const std::string& password,
        const hangup_flag_ptr& caller) -> caf::result<ok_atom> {
      if (auto err = refused_check(user, password))
        return err;
      auto rp = self->make_response_promise<ok_atom>();
      self->request(self->state.persistence, caf::infinite, account_atom::value,
                    lookup_atom::value, user)
        .then(
          [=](const std::string& hash) mutable {
            // Checks queue here one after another. A device that gave up waiting (its
            // connection closed: a client's call timeout in a reconnect storm) would still
            // cost a whole hash, and its retry another one behind it.
            if (caller && caller->ended())
              rp.deliver(caf::make_error(errc::unavailable,
                                         "the device hung up before its password was checked"));
            else if (crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size())
                     == 0)
              rp.deliver(ok_atom::value);
            else
              rp.deliver(caf::make_error(errc::bad_credentials, "wrong user or password"));
          },
          [=](caf::error& err) mutable {
            if (err == errc::unknown_user)
              rp.deliver(caf::make_error(errc::bad_credentials, "wrong user or password"));
            else
              rp.deliver(std::move(err));
          });
      return rp;
    },
  };
}

// -- the pool: password work spread over several checkers --

/// A request waiting for a checker.
struct pool_job {
  hangup_flag_ptr caller; // may be null
  caf::typed_response_promise<ok_atom> rp;
  /// Hands the request to a checker and relays its answer to rp.
  std::function<void(const accounts_actor&, caf::typed_response_promise<ok_atom>)> run;
  bool gone() const { return caller && caller->ended(); }
};

struct pool_state {
  pool_state() = default; // as accounts_state's
  std::vector<accounts_actor> idle;
  size_t max_waiting = 0;
  /// Requests in arrival order, each waiting for a checker with nothing to do.
  fifo<pool_job> waiting;
  /// Requests refused since the queue was last searched for clients that hung up.
  size_t refused_since_sweep = 0;
  static inline const char* name = "missive.accounts-pool";
};

using pool_ptr = accounts_actor::stateful_pointer<pool_state>;

caf::error hung_up() {
  return caf::make_error(errc::unavailable, "the client hung up before its turn came");
}

void dispatch(pool_ptr self) {
  auto& st = self->state;
  while (!st.idle.empty() && !st.waiting.empty()) {
    auto job = std::move(st.waiting.front());
    st.waiting.pop_front();
    if (job.gone()) { // no checker needed to tell nobody
      job.rp.deliver(hung_up());
      continue;
    }
    auto checker = std::move(st.idle.back());
    st.idle.pop_back();
    job.run(checker, std::move(job.rp));
  }
}

/// Answers the waiting requests whose clients have gone, and keeps the others in order.
void drop_gone(pool_state& st) {
  fifo<pool_job> kept;
  for (; !st.waiting.empty(); st.waiting.pop_front()) {
    auto& job = st.waiting.front();
    if (job.gone())
      job.rp.deliver(hung_up());
    else
      kept.push_back(std::move(job));
  }
  st.waiting = std::move(kept);
}

/// Queues one request; an idle checker gets it, and is idle again once it has answered. A
/// request that finds the queue full of clients still waiting is refused. The search for
/// clients that hung up (their places are free) runs once per 1/16 of the queue's length in
/// refusals: a storm of logins (thousands of devices retrying) is refused at a small cost
/// each, instead of a walk through the whole queue each, which kept the pool busy refusing
/// while its checkers' answers waited.
template <class... Ts>
caf::result<ok_atom> enqueue(pool_ptr self, const hangup_flag_ptr& caller, Ts... xs) {
  auto& st = self->state;
  if (st.idle.empty() && st.waiting.size() >= st.max_waiting) {
    if (st.refused_since_sweep >= st.waiting.size() / 16) {
      st.refused_since_sweep = 0;
      drop_gone(st);
    }
    if (st.waiting.size() >= st.max_waiting) {
      ++st.refused_since_sweep;
      return caf::make_error(errc::unavailable,
                             "too many password checks waiting: try again in a while");
    }
  }
  auto rp = self->make_response_promise<ok_atom>();
  auto run = [self, xs...](const accounts_actor& checker,
                           caf::typed_response_promise<ok_atom> rp) {
    auto done = [self, checker] {
      self->state.idle.push_back(checker);
      dispatch(self);
    };
    self->request(checker, caf::infinite, xs...)
      .then(
        [rp, done](ok_atom) mutable {
          rp.deliver(ok_atom::value);
          done();
        },
        [rp, done](caf::error& err) mutable {
          rp.deliver(std::move(err));
          done();
        });
  };
  st.waiting.push_back(pool_job{caller, rp, std::move(run)});
  dispatch(self);
  return rp;
}

accounts_actor::behavior_type pool(pool_ptr self, std::vector<accounts_actor> checkers,
                                   size_t max_waiting) {
  for (auto& c : checkers)
    self->link_to(c); // they end with the pool
  self->state.idle = std::move(checkers);
  self->state.max_waiting = max_waiting;
  // Bad input is answered at once, not after the hashes queued ahead of it.
  return {
    [=](register_atom a, const std::string& user, const std::string& password,
        const hangup_flag_ptr& caller) -> caf::result<ok_atom> {
      if (auto err = refused_sign_up(user, password))
        return err;
      return enqueue(self, caller, a, user, password, caller);
    },
    [=](verify_atom a, const std::string& user, const std::string& password,
        const hangup_flag_ptr& caller) -> caf::result<ok_atom> {
      if (auto err = refused_check(user, password))
        return err;
      return enqueue(self, caller, a, user, password, caller);
    },
  };
}

} // namespace

accounts_actor spawn_account_pool(caf::actor_system& sys, std::vector<accounts_actor> checkers,
                                  size_t max_waiting) {
  return sys.spawn(pool, std::move(checkers), max_waiting);
}

accounts_actor spawn_accounts(caf::actor_system& sys, persistence_actor persistence,
                              hash_cost cost, bool detached) {
  if (detached)
    return sys.spawn<caf::detached>(accounts, std::move(persistence), cost);
  return sys.spawn(accounts, std::move(persistence), cost);
}

} // namespace missive

// missive-load: load-tests a running missive-server with simulated users.
//
// Each simulated user is a CAF actor deciding when to send; each of its devices is a real
// Cap'n Proto connection hosted by one of several KJ event-loop threads (device_pool). In the
// open loop a user hands its schedule to a timer on its device's thread, which sends at the
// planned times without a hop through the actor per message. Every
// delivery is checked on the receiving device: its latency (from the *scheduled* send time,
// so a slow server cannot hide behind coordinated omission) and exactly-once.
//
//   missive-load --server HOST:PORT
//                [--scenario closed|open|ramp|idle|reconnect|backlog|push|groups]
//                [--resume yes|no] [--push-listen HOST:PORT] [--push-answer-ms D]
//                [--push-fail-percent P] [--users N]
//                [--devices M] [--messages K] [--window W] [--rate R] [--duration S] [--body B]
//                [--group-size G] [--peers K] [--threads T] [--sources A,B,...] [--ack yes|no]
//                [--history sync|skip] [--thread-policy batch|normal] [--json FILE] [--csv FILE]
//
// See the README's "Load testing" section for the scenarios and every flag.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <caf/all.hpp>

#include "load_push.hpp"
#include "load_stats.hpp"
#include "missive/actors/node.hpp"
#include "missive/protocol/client.hpp"
#include "missive/protocol/device_pool.hpp"
#include "thread_policy.hpp"

namespace {

using namespace missive;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

using start_atom = caf::atom_constant<caf::atom("start")>;
using halt_atom = caf::atom_constant<caf::atom("halt")>;
using forget_atom = caf::atom_constant<caf::atom("forget")>;

/// One of a simulated user's devices: which pool hosts it, under which id.
struct device_ref {
  protocol::device_pool* pool;
  protocol::device_pool::device_id id;
};

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(device_ref) // a process-local pointer

namespace {

struct options {
  std::string server = "127.0.0.1:7070";
  std::string scenario = "closed";
  int users = 100;
  int devices = 1;
  int messages = 100; // per user (closed loop)
  int window = 10;    // unacknowledged sends per user (closed loop)
  double rate = 1000; // messages per second, all users together (open loop; ramp: first step)
  double duration = 10; // open loop: seconds; ramp: seconds per step
  double rate_step = 0, rate_max = 0; // ramp: added per step (0: --rate), last (0: 10 x --rate)
  double target_p99_ms = 5, target_p999_ms = 20; // ramp: a step within both is carried
  size_t body = 64;
  int threads = 2;
  std::vector<std::string> sources;
  std::string prefix = "load";
  std::string password = "load-password";
  std::string json, csv;
  double drain = 10;
  double linger = 0; // seconds the devices stay online, quiet, after the run
  int server_pid = 0; // to report the server's memory (same machine only)
  double login_timeout = 60;
  int group_size = 10; // groups scenario: members per group
  int peers = 0;       // closed and open loops: 0 sends to anyone, K to one of K contacts
  bool ack = false;    // devices acknowledge their cursor like real clients
  bool skip_history = false; // devices start at the mailbox's max seq instead of syncing it
  bool resume = true;        // reconnect scenario: log in again with the resume token
  std::string push_listen = "127.0.0.1:7081"; // push scenario: the stand-in push gateway
  double push_answer_ms = 0;                   // push scenario: its answer delay
  int push_fail_percent = 0; // push scenario: keys whose first push it answers 503
  app::thread_policy scheduling = app::thread_policy::batch; // as the server's default
};

/// Counters shared by every thread of the tool.
struct totals {
  std::atomic<uint64_t> sent{0}, acked{0}, errors{0}, duplicated{0};
  // Deliveries to the recipient's devices, and of the outgoing copy to the sender's devices.
  std::atomic<uint64_t> expected{0}, delivered{0}, expected_copies{0}, copies{0};
  std::atomic<uint64_t> logged_in{0}, login_failed{0}, closed{0};
  std::atomic<uint64_t> cursor_acks{0}; // with --ack: cursors the server confirmed
  /// Messages a device received that this run did not send (an earlier run's on a reused
  /// prefix): counted apart, never as delivered, so that they cannot hide a lost one.
  std::atomic<uint64_t> older_messages{0};
  std::atomic<int64_t> last_delivery_ns{0}; // when the latest delivery arrived
  uint64_t run_id = 1 + std::random_device{}() % 0xfffe;
  std::vector<std::string> user_names; // by index; fixed before any device starts
  bool open_loop = false; // sends follow the schedule, not the answers (no window)
  std::atomic<bool> measuring{false}; // entries caught up at login are not this run's
  // Backlog scenario: messages acknowledged per recipient user, and how long each device
  // took from its login to holding them all.
  std::unique_ptr<std::atomic<uint64_t>[]> expected_for;
  // Push scenario: when the first message to each receiver was acknowledged (ns, 0: none).
  std::unique_ptr<std::atomic<int64_t>[]> first_ack_to;
  load::histogram catchup;
  std::atomic<uint64_t> caught_up{0}, backlog_entries{0};
  // Reconnect scenario: while set, each device's login (its second) is timed from when it was
  // asked for.
  std::atomic<bool> reconnecting{false};
  load::histogram relogin;
  std::mutex error_mutex;
  std::map<std::string, uint64_t> errors_by_type; // guarded by error_mutex
  load::histogram latency;                          // scheduled send -> recipient holds it
  // Open loop only, to tell the tool's lateness from the server's: scheduled send -> the tool
  // hands it to its connection, and scheduled send -> the sender's device has the answer.
  load::histogram send_lag, ack_latency;
  // Ramp scenario: the rate of each step, its length and when the first began (ns from
  // `origin`); per step the sends planned in it and the latency of its messages at the
  // recipient's devices, by their planned send time.
  std::vector<double> step_rates;
  int64_t step_ns = 0, ramp_start_ns = 0;
  struct step_stats {
    std::atomic<uint64_t> sent{0};
    load::histogram latency;
  };
  std::unique_ptr<step_stats[]> steps;
  clock_type::time_point origin = clock_type::now();

  /// The ramp step a send planned at `sched_ns` belongs to; nullptr outside a ramp.
  step_stats* step_of(int64_t sched_ns) {
    if (!steps || sched_ns < ramp_start_ns)
      return nullptr;
    auto k = static_cast<size_t>((sched_ns - ramp_start_ns) / step_ns);
    return k < step_rates.size() ? &steps[k] : nullptr;
  }

  void error(const std::string& type) {
    ++errors;
    std::lock_guard<std::mutex> guard(error_mutex);
    ++errors_by_type[type];
  }
  int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - origin).count();
  }
  /// Records in `h` how long after the planned `sched_ns` something happened at `at_ns`.
  static void record_late(load::histogram& h, int64_t sched_ns, int64_t at_ns) {
    h.record(static_cast<uint64_t>(std::max<int64_t>(0, at_ns - sched_ns) / 1000));
  }
};

std::string user_name(const options& o, int i) {
  return o.prefix + std::to_string(i);
}

/// How a simulated device logs in: device `d` of user `u`. A login the server refuses as
/// `unavailable` (more password checks waiting than it queues, as when thousands log in at
/// once) is asked again after a pause that doubles at each refusal, as a client would.
protocol::pooled_device_spec device_spec(const options& o, int u, int d, bool ack,
                                         bool skip_history) {
  protocol::pooled_device_spec spec{o.server, user_name(o, u), o.password,
                                    "d" + std::to_string(d), ack, skip_history};
  spec.retry_unavailable = 200ms;
  return spec;
}

/// Backlog and push scenarios: the first half of the users send to the second half, whose
/// devices are offline meanwhile.
bool to_offline_half(const options& o) {
  return o.scenario == "backlog" || o.scenario == "push";
}

/// Groups scenario: users k*G … k*G+G-1 form group k, owned by the first of them.
std::string group_name(const options& o, int k) {
  return "#" + o.prefix + "g" + std::to_string(k);
}

int members_of_group(const options& o, int k) {
  return std::min(o.group_size, o.users - k * o.group_size);
}

/// Counts an answered send of user `sender`: acknowledged, and who must now see it — every
/// device of the recipient (of every other member of the group) and of the sender (outgoing
/// copy) — or its error.
void record_ack(totals& t, const options& o, int sender, uint8_t code) {
  if (code != 0)
    return t.error(std::string("send:")
                   + protocol::to_string(static_cast<protocol::error_code>(code)));
  ++t.acked;
  if (o.scenario == "groups") {
    t.expected += uint64_t(members_of_group(o, sender / o.group_size) - 1) * o.devices;
    t.expected_copies += o.devices;
  } else if (o.users > 1) {
    t.expected += o.devices;
    t.expected_copies += o.devices;
  } else {
    t.expected_copies += o.devices; // a note to self
  }
}

/// What a simulated user sends with: its devices (all on one pool), its counter, its random
/// recipients and its sends not yet answered. The user actor hands it to a tick on its pool's
/// thread at the start, and from then on only that thread touches it: ticks send in the open
/// loop; in the other scenarios the first tick fills the window and each answer, arriving on
/// the same thread, sends the next — no hop through the actor system per message.
struct sender {
  const options* o;
  totals* t;
  int index;
  std::vector<std::pair<protocol::device_pool*, protocol::device_pool::device_id>> devices;
  uint32_t next = 0;        // sends issued
  uint32_t outstanding = 0; // not yet answered (counted outside the open loop)
  int64_t phase_ns = 0, interval_ns = 0; // open loop: send n (from 1) is planned at
                                         // phase_ns + (n - 1) * interval_ns
  std::optional<load::ramp_plan> plan;   // ramp: the planned time of each send
  std::unordered_map<uint64_t, int> pending_to; // backlog: recipient of each unanswered send
  std::mt19937 rng;
  std::atomic<bool> halted{false}; // set by the user actor

  sender(const options* o, totals* t, int index)
    : o(o), t(t), index(index), rng(static_cast<unsigned>(index * 7919 + 17)) {}

  /// When send `n` (from 1) is planned, in ns from the tool's origin (open loop and ramp).
  int64_t planned_ns(uint32_t n) const {
    return plan ? t->ramp_start_ns + plan->planned_ns(n) : phase_ns + int64_t(n - 1) * interval_ns;
  }

  /// Sends one message planned for `sched_ns` (which its body carries).
  void send_one(int64_t sched_ns) {
    int to = index;
    int receivers_from = o->users / 2;
    if (o->scenario == "push") // every receiver gets its share: each is one push to check
      to = receivers_from + int((uint64_t(index) + uint64_t(next) * uint64_t(receivers_from))
                                % uint64_t(o->users - receivers_from));
    else if (to_offline_half(*o))
      to = receivers_from
           + std::uniform_int_distribution<int>(0, o->users - receivers_from - 1)(rng);
    else if (o->scenario == "idle" || o->scenario == "reconnect")
      to = (index + 1) % o->users; // everybody receives exactly one message
    else if (o->peers > 0 && o->users > 1) // one of the next `peers` users: its contacts
      to = (index + 1
            + std::uniform_int_distribution<int>(0, std::min(o->peers, o->users - 1) - 1)(rng))
           % o->users;
    else if (o->users > 1)
      while (to == index)
        to = std::uniform_int_distribution<int>(0, o->users - 1)(rng);
    auto body = std::to_string(sched_ns) + "|";
    if (body.size() < o->body)
      body.append(o->body - body.size(), 'x');
    auto to_name = o->scenario == "groups" ? group_name(*o, index / o->group_size)
                                           : user_name(*o, to);
    auto& [pool, dev] = devices[next % devices.size()];
    // Unique across runs too (the server would answer a reused id with the old result):
    // 16 bits of run, 24 of user, 24 of counter.
    uint64_t id = (t->run_id << 48) | (uint64_t{static_cast<uint32_t>(index)} << 24)
                  | (++next & 0xffffff);
    ++t->sent;
    if (t->open_loop) {
      totals::record_late(t->send_lag, sched_ns, t->now_ns());
      if (auto* step = t->step_of(sched_ns))
        ++step->sent;
    } else {
      ++outstanding;
      if (to_offline_half(*o))
        pending_to[id] = to;
    }
    pool->send(dev, id, std::move(to_name), std::move(body));
  }

  /// Closed loop: sends until `--window` are unanswered or `--messages` are sent.
  void fill_window() {
    while (!halted && outstanding < uint32_t(o->window) && next < uint32_t(o->messages))
      send_one(t->now_ns());
  }

  /// A send was answered (`code` 0: acknowledged).
  void on_ack(uint64_t id, uint8_t code) {
    if (t->open_loop) {
      auto n = load::send_number(next, static_cast<uint32_t>(id & 0xffffff));
      totals::record_late(t->ack_latency, planned_ns(n), t->now_ns());
    } else {
      --outstanding;
      if (auto it = pending_to.find(id); it != pending_to.end()) {
        if (code == 0) {
          ++t->expected_for[it->second];
          int64_t none = 0;
          t->first_ack_to[it->second].compare_exchange_strong(none, t->now_ns());
        }
        pending_to.erase(it);
      }
    }
    record_ack(*t, *o, index, code);
    if (!t->open_loop)
      fill_window();
  }
};

/// One device's view: checks every entry it receives, on its pool thread.
class device_probe final : public protocol::device_handler {
public:
  device_probe(totals& t, std::string owner, std::shared_ptr<sender> out, int user_index = -1)
    : t_(t),
      owner_(std::move(owner)),
      out_(std::move(out)),
      backlog_user_(user_index),
      started_ns_(t.now_ns()) {}

  void on_resume_token(std::string token) override { token_ = std::move(token); }

  /// The resume token of the device's last login (read once its login was counted).
  const std::string& token() const { return token_; }

  void on_login(const protocol::error& err, const protocol::session_info&) override {
    if (err) {
      ++t_.login_failed;
      t_.error(std::string("login:") + protocol::to_string(err.code));
    } else {
      if (t_.reconnecting)
        t_.relogin.record(static_cast<uint64_t>((t_.now_ns() - started_ns_) / 1000));
      ++t_.logged_in;
      if (backlog_user_ >= 0)
        check_caught_up();
    }
  }

  void on_ack(uint64_t id, const protocol::error& err, const protocol::send_result&) override {
    out_->on_ack(id, static_cast<uint8_t>(err.code)); // on the sender's pool thread
  }

  void on_entries(std::vector<protocol::entry>&& entries) override {
    auto now = t_.now_ns();
    if (!t_.measuring)
      return;
    if (backlog_user_ >= 0) { // a device coming online to its backlog: count, no latency
      for (auto& e : entries) {
        if (!this_run(e)) {
          ++t_.older_messages;
          continue;
        }
        if (!seen_ids_.insert(e.client_msg_id)) {
          ++t_.duplicated;
          continue;
        }
        ++t_.delivered;
        ++t_.backlog_entries;
        ++got_;
      }
      check_caught_up();
      return;
    }
    for (auto& e : entries) {
      if (e.kind != protocol::entry_kind::message)
        continue; // group system entries are not load
      if (!this_run(e)) {
        ++t_.older_messages;
        continue;
      }
      if (!seen_ids_.insert(e.client_msg_id)) {
        ++t_.duplicated;
        continue;
      }
      ++(e.from == owner_ ? t_.copies : t_.delivered);
      auto prev = t_.last_delivery_ns.load(std::memory_order_relaxed);
      while (now > prev && !t_.last_delivery_ns.compare_exchange_weak(prev, now)) {
      }
      if (e.from != owner_) { // the recipient's devices: end-to-end delivery latency
        auto sched = std::strtoll(e.body.c_str(), nullptr, 10);
        totals::record_late(t_.latency, sched, now);
        if (auto* step = t_.step_of(sched))
          totals::record_late(step->latency, sched, now);
      }
    }
  }

  void on_cursor_acked(uint32_t) override { ++t_.cursor_acks; }

  void on_closed(const protocol::error& err) override {
    ++t_.closed;
    t_.error(std::string("closed:") + protocol::to_string(err.code));
  }

private:
  void check_caught_up() {
    if (!done_ && got_ >= t_.expected_for[backlog_user_]) {
      done_ = true;
      t_.catchup.record(static_cast<uint64_t>((t_.now_ns() - started_ns_) / 1000));
      ++t_.caught_up;
    }
  }

  /// Whether this run sent the message: the tool's ids carry the run and the sender's index,
  /// so that for these the id alone identifies the message on a device (a set of integers:
  /// this runs for every delivery). An earlier run on the same prefix has another run id (one
  /// chance in 65,534 that it has the same).
  bool this_run(const protocol::entry& e) const {
    auto sender = static_cast<int>((e.client_msg_id >> 24) & 0xffffff);
    return (e.client_msg_id >> 48) == t_.run_id && sender < int(t_.user_names.size())
           && e.from == t_.user_names[sender];
  }

  totals& t_;
  std::string owner_;
  std::shared_ptr<sender> out_; // the user's sender, answered on this thread
  int backlog_user_;   // >= 0: a backlog receiver (this user's index)
  int64_t started_ns_; // when the device was asked to log in
  uint64_t got_ = 0;
  bool done_ = false;
  std::string token_;                          // pool thread, then read after the login
  load::id_set seen_ids_; // pool thread only
};

/// Push scenario: a receiver's device before the sends. It logs in with its push token, starts
/// at its mailbox's max seq and acknowledges it (so that no earlier unread entry counts in its
/// pushes), and is then closed: from then on it is a registered device without a session.
class push_registrant final : public protocol::device_handler {
public:
  explicit push_registrant(totals& t) : t_(t) {}

  /// Logged in, token taken and the mailbox acknowledged (or the login failed).
  std::atomic<bool> settled{false};

  void on_login(const protocol::error& err, const protocol::session_info& info) override {
    if (err)
      t_.error(std::string("login:") + protocol::to_string(err.code));
    target_ = info.max_seq;
    if (err || target_ == 0)
      settled = true;
  }
  void on_cursor_acked(uint32_t seq) override {
    if (seq >= target_)
      settled = true;
  }
  void on_ack(uint64_t, const protocol::error&, const protocol::send_result&) override {}
  void on_entries(std::vector<protocol::entry>&&) override {}
  void on_closed(const protocol::error&) override {}

private:
  totals& t_;
  uint32_t target_ = 0; // pool thread
};

/// Push scenario: the push key of a receiver's device (this run's, so that a push meant for
/// an earlier run's registration is not counted).
std::string push_key(const totals& t, const std::string& user, int device) {
  return "r" + std::to_string(t.run_id) + "." + user + ".d" + std::to_string(device);
}

struct sim_state {
  std::shared_ptr<sender> out;
};

/// A simulated user: decides when and how its sender sends, and stops it.
caf::behavior sim_user(caf::stateful_actor<sim_state>* self, const options* o, totals* t,
                       std::shared_ptr<sender> out) {
  self->state.out = std::move(out);
  return {
    [=](const device_ref& d) { self->state.out->devices.emplace_back(d.pool, d.id); },
    [=](forget_atom) { self->state.out->devices.clear(); }, // reconnecting, before the start
    [=](start_atom) {
      auto out = self->state.out;
      auto& pool = *out->devices.front().first;
      auto at = [t](int64_t ns) { return t->origin + std::chrono::nanoseconds(ns); };
      if (o->scenario == "ramp") {
        // Every user's schedule starts with the first step; the answers are timed by number.
        out->plan.emplace(t->step_rates, o->users, t->step_ns,
                          std::uniform_real_distribution<double>(0, 1)(out->rng));
        if (out->plan->sends() == 0)
          return;
        pool.schedule(at(out->planned_ns(1)), [out, at]() -> std::optional<clock_type::time_point> {
          if (out->halted)
            return std::nullopt;
          out->send_one(out->planned_ns(out->next + 1));
          if (out->next >= out->plan->sends())
            return std::nullopt;
          return at(out->planned_ns(out->next + 1));
        });
        return;
      }
      if (o->scenario != "open") {
        // Closed loop: the first tick fills the window, each answer sends the next.
        pool.schedule(clock_type::now(), [out]() -> std::optional<clock_type::time_point> {
          out->fill_window();
          return std::nullopt;
        });
        return;
      }
      // Open loop: every send has a planned time, its users' first ones spread evenly over
      // one interval from now; latency counts from it, late or not. A timer on the pool
      // thread of the user's devices sends them: no hand-off between threads per send.
      out->interval_ns = static_cast<int64_t>(1e9 * o->users / o->rate);
      out->phase_ns =
        t->now_ns() + std::uniform_int_distribution<int64_t>(0, out->interval_ns)(out->rng);
      pool.schedule(at(out->phase_ns), [out, at]() -> std::optional<clock_type::time_point> {
        if (out->halted)
          return std::nullopt;
        out->send_one(out->phase_ns + int64_t(out->next) * out->interval_ns);
        return at(out->phase_ns + int64_t(out->next) * out->interval_ns);
      });
    },
    [=](halt_atom) { self->state.out->halted = true; },
  };
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

const char* const usage_line =
  "usage: missive-load --server HOST:PORT"
  " [--scenario closed|open|ramp|idle|reconnect|backlog|push|groups] [--resume yes|no]"
  " [--push-listen HOST:PORT] [--push-answer-ms D] [--push-fail-percent P]"
  " [--group-size G] [--users N] [--peers K] [--devices M] [--messages K] [--window W]"
  " [--rate R] [--duration S] [--rate-step R] [--rate-max M] [--target-ms P99,P999]"
  " [--body B] [--threads T] [--sources A,B] [--prefix P]"
  " [--password P] [--drain S] [--linger S] [--server-pid PID] [--ack yes|no]"
  " [--history sync|skip] [--thread-policy batch|normal] [--json FILE] [--csv FILE]\n";

/// What `--help` prints: every flag with its default (the README's table, in short).
const char* const help_text = R"(
Drives a running missive-server with simulated users and checks that every message reaches
every device exactly once. Exit status: 0 when every message reached every device once; 1
when anything was lost, duplicated or failed (a login included); 2 for a bad command line.

  --server HOST:PORT      the server (default 127.0.0.1:7070)
  --scenario S            closed (default): each user keeps --window sends in flight until it
                          sent --messages; open: --rate messages/s in all, each at its planned
                          time, for --duration s; idle: every device logs in, then each user
                          gets one message; reconnect: as idle, but every device first drops
                          its connection and logs in again, all at once (timed); backlog:
                          half the users send to the other half while those are offline,
                          then the catch-up is timed; push: as backlog, but the offline
                          devices registered a push token, and the pushes the server sends
                          to a stand-in push gateway are checked and timed; groups: users
                          form groups of
                          --group-size and send to their group; ramp: an open loop whose
                          rate climbs by --rate-step every --duration s up to --rate-max, and
                          ends after the first step over the latency targets
  --users N, --devices M  simulated users (PREFIX0...) and devices each (100, 1)
  --messages K            closed loop and groups: messages per user (100)
  --window W              closed loop and groups: unacknowledged sends per user (10)
  --rate R, --duration S  open loop: messages/s in total (1000), seconds (10); ramp: the
                          first step's rate, seconds per step
  --rate-step R, --rate-max M  ramp: added at each step (--rate), the highest step (10 x --rate)
  --target-ms P99,P999    ramp: the p99 and p99.9 a step must stay within, in ms (5,20)
  --peers K               closed and open loops: 0 (default) sends to anyone at random, K to
                          one of the K users after the sender
  --group-size G          groups: members per group (10)
  --body B                body bytes (64)
  --resume yes|no         reconnect: log in again with the resume token (yes) or the
                          password (no)
  --push-listen HOST:PORT push: where the stand-in push gateway listens (127.0.0.1:7081);
                          the server's push-gateway-url must point there
  --push-answer-ms D      push: the stand-in answers each push after D ms (0), as a relay
                          to APNs/FCM would
  --push-fail-percent P   push: the stand-in answers the first push of P % of the devices
                          with 503 (0); the server must retry them
  --ack yes|no            devices acknowledge their cursor as a real client does (no)
  --history sync|skip     skip: devices start at their mailbox's max seq instead of syncing
                          what is stored (sync)
  --threads T             KJ threads hosting the connections (2)
  --thread-policy P       batch (default) or normal: how Linux schedules the tool's threads
  --sources A,B           local addresses to bind connections to in turn (127.0.0.2,...)
  --server-pid PID        the server's pid on this machine: reports its memory per device
  --prefix P, --password P  user names and their password (load, load-password)
  --drain S               seconds to wait for deliveries after the last send (10)
  --linger S              seconds the devices then stay online without sending (0); with
                          --server-pid, the server's memory is reported before and after
  --json FILE             every figure as JSON
  --csv FILE              a per-second time series (benchmarks/plot-load.sh turns it into a PNG)
)";

int usage(const std::string& msg) {
  std::cerr << "missive-load: " << msg << "\n" << usage_line << "(--help describes each flag)\n";
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::cout << usage_line << help_text;
      return 0;
    }
    if (i + 1 >= argc)
      return usage("missing value for " + k);
    std::string v = argv[++i];
    try {
      if (k == "--server") o.server = v;
      else if (k == "--scenario") o.scenario = v;
      else if (k == "--users") o.users = std::stoi(v);
      else if (k == "--devices") o.devices = std::stoi(v);
      else if (k == "--messages") o.messages = std::stoi(v);
      else if (k == "--window") o.window = std::stoi(v);
      else if (k == "--rate") o.rate = std::stod(v);
      else if (k == "--duration") o.duration = std::stod(v);
      else if (k == "--rate-step") o.rate_step = std::stod(v);
      else if (k == "--rate-max") o.rate_max = std::stod(v);
      else if (k == "--target-ms") {
        auto comma = v.find(',');
        if (comma == std::string::npos)
          return usage("--target-ms takes P99,P999 (milliseconds)");
        o.target_p99_ms = std::stod(v.substr(0, comma));
        o.target_p999_ms = std::stod(v.substr(comma + 1));
      }
      else if (k == "--body") o.body = std::stoul(v);
      else if (k == "--threads") o.threads = std::stoi(v);
      else if (k == "--prefix") o.prefix = v;
      else if (k == "--password") o.password = v;
      else if (k == "--drain") o.drain = std::stod(v);
      else if (k == "--linger") o.linger = std::stod(v);
      else if (k == "--json") o.json = v;
      else if (k == "--csv") o.csv = v;
      else if (k == "--server-pid") o.server_pid = std::stoi(v);
      else if (k == "--group-size") o.group_size = std::stoi(v);
      else if (k == "--push-listen") o.push_listen = v;
      else if (k == "--push-answer-ms") o.push_answer_ms = std::stod(v);
      else if (k == "--push-fail-percent") o.push_fail_percent = std::stoi(v);
      else if (k == "--peers") o.peers = std::stoi(v);
      else if (k == "--ack") {
        if (v != "yes" && v != "no")
          return usage("--ack takes yes or no");
        o.ack = v == "yes";
      }
      else if (k == "--resume") {
        if (v != "yes" && v != "no")
          return usage("--resume takes yes or no");
        o.resume = v == "yes";
      }
      else if (k == "--history") {
        if (v != "sync" && v != "skip")
          return usage("--history takes sync or skip");
        o.skip_history = v == "skip";
      }
      else if (k == "--thread-policy") {
        if (!app::parse_thread_policy(v, &o.scheduling))
          return usage("--thread-policy takes batch or normal");
      }
      else if (k == "--sources") {
        std::stringstream ss(v);
        for (std::string a; std::getline(ss, a, ',');)
          o.sources.push_back(a);
      } else
        return usage("unknown option " + k);
    } catch (...) {
      return usage("bad value for " + k);
    }
  }
  if (o.scenario != "closed" && o.scenario != "open" && o.scenario != "ramp"
      && o.scenario != "idle" && o.scenario != "reconnect" && o.scenario != "backlog"
      && o.scenario != "push" && o.scenario != "groups")
    return usage("--scenario is closed, open, ramp, idle, reconnect, backlog, push or groups");
  if (o.group_size < 2)
    return usage("--group-size must be at least 2");
  if (o.peers < 0)
    return usage("--peers must be 0 (anyone) or a number of contacts");
  if (to_offline_half(o) && o.users < 2)
    return usage("the " + o.scenario + " scenario needs at least 2 users");
  if (!(o.push_answer_ms >= 0 && o.push_answer_ms <= 60000))
    return usage("--push-answer-ms is 0 to 60000");
  if (o.push_fail_percent < 0 || o.push_fail_percent > 100)
    return usage("--push-fail-percent is 0 to 100");
  if (o.scenario == "backlog" && o.skip_history)
    return usage("the backlog scenario measures the catch-up: --history skip does not apply");
  if (o.scenario == "idle" || o.scenario == "reconnect") {
    o.messages = 1; // idle connections, then one message to each user
    o.window = 1;
  }
  if (o.users < 1 || o.devices < 1 || o.threads < 1 || o.window < 1 || o.rate <= 0)
    return usage("users, devices, threads, window and rate must be positive");
  if (!(o.linger >= 0 && o.linger <= 86400))
    return usage("--linger is 0 to 86400 seconds");
  std::vector<double> step_rates;
  if (o.scenario == "ramp") {
    if (o.rate_step == 0)
      o.rate_step = o.rate;
    if (o.rate_max == 0)
      o.rate_max = 10 * o.rate;
    if (!(o.rate_step > 0) || !(o.rate_max >= o.rate))
      return usage("--rate-step must be positive and --rate-max at least --rate");
    if (!(o.duration >= 1 && o.duration <= 3600))
      return usage("a ramp's steps (--duration) are 1 to 3600 seconds");
    if (!(o.target_p99_ms > 0 && o.target_p999_ms >= o.target_p99_ms))
      return usage("--target-ms: the p99 target must be positive and the p99.9 one no lower");
    if (o.users < 2)
      return usage("the ramp scenario needs at least 2 users");
    for (double r = o.rate; r <= o.rate_max * (1 + 1e-9); r += o.rate_step) {
      if (step_rates.size() == 100)
        return usage("a ramp has at most 100 steps: raise --rate-step or lower --rate-max");
      step_rates.push_back(r);
    }
  }
  if (auto err = app::apply_thread_policy(o.scheduling); !err.empty())
    std::cerr << "missive-load: " << err << " (continuing under the default)\n";
  bool tty = isatty(1);

  totals t;
  t.expected_for = std::make_unique<std::atomic<uint64_t>[]>(static_cast<size_t>(o.users));
  t.first_ack_to = std::make_unique<std::atomic<int64_t>[]>(static_cast<size_t>(o.users));
  for (int u = 0; u < o.users; ++u)
    t.user_names.push_back(user_name(o, u));
  t.open_loop = o.scenario == "open" || o.scenario == "ramp";
  t.step_rates = step_rates;
  t.step_ns = static_cast<int64_t>(o.duration * 1e9);
  if (!step_rates.empty())
    t.steps = std::make_unique<totals::step_stats[]>(step_rates.size());
  bool backlog = o.scenario == "backlog", push = o.scenario == "push";
  int senders = to_offline_half(o) ? o.users / 2 : o.users; // the rest: offline receivers
  std::vector<std::unique_ptr<protocol::device_pool>> pools;
  for (int i = 0; i < o.threads; ++i)
    pools.push_back(std::make_unique<protocol::device_pool>(o.sources));

  // Accounts (an existing one is fine: runs can reuse their users). At most 256 sign-ups in
  // flight: thousands at once would overflow the server's listen backlog (each is a
  // connection of its own) and its queue of password checks. One the server refuses as
  // `unavailable` is asked again after a pause, as a client would. The answers only note
  // what happened; this thread starts every sign-up.
  {
    std::mutex m;
    std::condition_variable cv;
    std::deque<int> todo;
    for (int u = 0; u < o.users; ++u)
      todo.push_back(u);
    std::vector<std::pair<clock_type::time_point, int>> again; // refused as unavailable
    int in_flight = 0, created = 0, failed = 0;
    auto deadline = clock_type::now() + std::chrono::duration<double>(o.login_timeout);
    std::unique_lock<std::mutex> lock(m);
    while (created < o.users && failed == 0 && clock_type::now() < deadline) {
      auto now = clock_type::now();
      for (size_t i = 0; i < again.size();)
        if (again[i].first <= now) {
          todo.push_back(again[i].second);
          again[i] = again.back();
          again.pop_back();
        } else {
          ++i;
        }
      while (in_flight < 256 && !todo.empty()) {
        int u = todo.front();
        todo.pop_front();
        ++in_flight;
        pools[u % pools.size()]->create_account(
          o.server, user_name(o, u), o.password, [&, u](const protocol::error& err) {
            std::lock_guard<std::mutex> guard(m);
            --in_flight;
            if (err.code == protocol::error_code::unavailable)
              again.emplace_back(clock_type::now() + 200ms + (u % 100) * 2ms, u);
            else if (err && err.code != protocol::error_code::user_exists && failed++ == 0)
              std::cerr << "missive-load: register: " << err.to_string() << "\n";
            else
              ++created;
            cv.notify_all();
          });
      }
      cv.wait_for(lock, 20ms);
    }
    bool ok = created == o.users, timed_out = failed == 0;
    int left = o.users - created;
    lock.unlock();
    if (!ok) {
      if (timed_out)
        std::cerr << "missive-load: " << left << " accounts not created in time\n";
      pools.clear(); // no answer may come in after this block
      return 1;
    }
  }

  // Groups scenario: each group's first user creates it and adds the others (a group left by
  // an earlier run with the same prefix is reused; adding a member twice changes nothing).
  if (o.scenario == "groups") {
    for (int k = 0; k * o.group_size < o.users; ++k) {
      protocol::client c(std::chrono::milliseconds(static_cast<int64_t>(o.login_timeout * 1000)));
      auto owner = user_name(o, k * o.group_size);
      auto err = c.connect(o.server);
      if (!err)
        err = c.login(owner, o.password, "setup", nullptr);
      if (!err) {
        err = c.create_group(group_name(o, k));
        if (err.code == protocol::error_code::group_exists)
          err = {};
      }
      for (int m = 1; !err && m < members_of_group(o, k); ++m)
        err = c.add_member(group_name(o, k), user_name(o, k * o.group_size + m));
      if (err) {
        std::cerr << "missive-load: setting up " << group_name(o, k) << ": " << err.to_string()
                  << "\n";
        return 1;
      }
    }
  }

  // Push scenario: the stand-in push gateway, then each receiver's device registers its push
  // token once and goes offline.
  std::unique_ptr<load::push_gateway> gateway;
  if (push) {
    gateway = std::make_unique<load::push_gateway>(
      o.push_listen, std::chrono::microseconds(static_cast<int64_t>(o.push_answer_ms * 1000)),
      [&t] { return t.now_ns(); }, static_cast<uint32_t>(o.push_fail_percent));
    if (!gateway->error().empty()) {
      std::cerr << "missive-load: " << gateway->error() << "\n";
      return 1;
    }
    // In waves of at most 500 devices, within the server's queue of password checks.
    struct registration {
      protocol::device_pool* pool;
      protocol::device_pool::device_id id;
      std::shared_ptr<push_registrant> r;
    };
    std::vector<registration> registered;
    auto deadline = clock_type::now() + std::chrono::duration<double>(o.login_timeout);
    bool all_settled = true;
    for (int u = senders; u < o.users && all_settled; ++u) {
      for (int d = 0; d < o.devices; ++d) {
        auto& pool = *pools[u % pools.size()];
        auto r = std::make_shared<push_registrant>(t);
        auto spec = device_spec(o, u, d, true, true);
        spec.push_platform = "missive-load";
        spec.push_token = push_key(t, user_name(o, u), d);
        registered.push_back({&pool, pool.add_device(std::move(spec), r), r});
      }
      if (registered.size() + o.devices <= 500 && u + 1 < o.users)
        continue; // room for the next user's devices in this wave
      auto wave_settled = [&] {
        for (auto& g : registered)
          if (!g.r->settled)
            return false;
        return true;
      };
      while (!wave_settled() && clock_type::now() < deadline)
        std::this_thread::sleep_for(5ms);
      all_settled = wave_settled() && t.errors == 0;
      for (auto& g : registered)
        g.pool->close(g.id);
      registered.clear();
    }
    if (!all_settled) {
      std::cerr << "missive-load: the receivers' devices could not register for pushes\n";
      return 1;
    }
  }

  auto rss_before = load::rss_kib(o.server_pid);
  caf::actor_system_config cfg;
  add_missive_types(cfg);
  cfg.set("scheduler.max-threads", 1);
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  std::vector<caf::actor> users;
  std::vector<std::shared_ptr<sender>> senders_of; // by user
  // Before returning: the actor system waits for every simulated user when it goes.
  auto stop_all = [&]() {
    for (auto& a : users)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    pools.clear();
  };
  auto login_deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                               std::chrono::duration<double>(o.login_timeout));
  // With --server-pid, the second half of the users logs in only after the server's memory was
  // sampled with the first half online: the difference is the marginal memory per device, free
  // of what the server held before (its memtable, allocator caches), which varies run to run.
  int first_half = o.server_pid > 0 ? senders / 2 : senders;
  struct placed_device {
    int user, index;
    protocol::device_pool* pool;
    protocol::device_pool::device_id id;
    std::shared_ptr<device_probe> probe;
  };
  std::vector<placed_device> placed;
  uint64_t rss_half = 0;
  auto wait_logins = [&](uint64_t n) {
    while (t.logged_in + t.login_failed < n && clock_type::now() < login_deadline)
      std::this_thread::sleep_for(10ms);
  };
  for (int u = 0; u < o.users; ++u) {
    if (u == first_half && first_half < senders && first_half > 0) {
      wait_logins(uint64_t(first_half) * o.devices);
      std::this_thread::sleep_for(1s);
      rss_half = load::rss_kib(o.server_pid);
    }
    senders_of.push_back(std::make_shared<sender>(&o, &t, u));
    auto a = sys.spawn(sim_user, &o, &t, senders_of.back());
    users.push_back(a);
    if (u >= senders)
      continue; // a backlog receiver: offline until the sends are done
    for (int d = 0; d < o.devices; ++d) {
      auto& pool = *pools[u % pools.size()]; // a user's devices share its sender's thread
      auto probe = std::make_shared<device_probe>(t, user_name(o, u), senders_of[u]);
      auto id = pool.add_device(device_spec(o, u, d, o.ack, o.skip_history), probe);
      caf::anon_send(a, device_ref{&pool, id});
      placed.push_back({u, d, &pool, id, probe});
    }
  }
  uint64_t all_devices = uint64_t(senders) * o.devices;
  wait_logins(all_devices);
  if (t.logged_in < all_devices) {
    std::cerr << "missive-load: only " << t.logged_in << " of " << all_devices
              << " devices logged in\n";
    stop_all();
    return 1;
  }
  double reconnect_s = 0;
  if (o.scenario == "reconnect") {
    // Every device drops its connection and all log in again at once, as after a server
    // restart or a network change: with their resume tokens, or with the password.
    t.reconnecting = true;
    for (auto& p : placed)
      p.pool->close(p.id); // on the pool's thread, before the same pool's new connections
    for (int u = 0; u < senders; ++u)
      caf::anon_send(users[u], forget_atom::value);
    auto phase = clock_type::now();
    for (auto& p : placed) {
      auto spec = device_spec(o, p.user, p.index, o.ack, o.skip_history);
      if (o.resume) { // the token only: a refused one fails the login
        spec.password.clear();
        spec.resume_token = p.probe->token();
      }
      p.probe = std::make_shared<device_probe>(t, user_name(o, p.user), senders_of[p.user]);
      p.id = p.pool->add_device(std::move(spec), p.probe);
      caf::anon_send(users[p.user], device_ref{p.pool, p.id});
    }
    login_deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                           std::chrono::duration<double>(o.login_timeout));
    wait_logins(2 * all_devices);
    reconnect_s = seconds_since(phase);
    t.reconnecting = false;
    auto h = t.relogin.take();
    std::cout << "reconnect: " << t.logged_in - all_devices << " of " << all_devices
              << " devices logged in again " << (o.resume ? "with their resume tokens" : "with "
              "the password") << " in " << reconnect_s << " s; per device, ms: p50 "
              << h.percentile(0.5) / 1000.0 << ", p99 " << h.percentile(0.99) / 1000.0
              << ", max " << h.max / 1000.0 << std::endl;
    if (t.logged_in < 2 * all_devices) {
      std::cerr << "missive-load: only " << t.logged_in - all_devices << " of " << all_devices
                << " devices logged in again\n";
      stop_all();
      return 1;
    }
  }
  // Deliveries of earlier runs' messages (catch-up syncs at login) are not this run's.
  std::this_thread::sleep_for(rss_half > 0 ? 1000ms : 200ms);
  auto rss_online = load::rss_kib(o.server_pid);
  uint64_t second_half_devices = (uint64_t(senders) - first_half) * o.devices;
  uint64_t marginal = rss_half > 0 && rss_online > rss_half && second_half_devices > 0
                        ? (rss_online - rss_half) * 1024 / second_half_devices
                        : 0;
  if (o.server_pid > 0)
    std::cout << "server RSS " << rss_before << " KiB before, " << rss_half << " KiB with "
              << uint64_t(first_half) * o.devices << " devices online, " << rss_online
              << " KiB with " << all_devices << " (" << marginal
              << " bytes per additional device)" << std::endl;
  // The ramp's first step begins once every simulated user has had time to start (one actor
  // thread hands out the starts: a few microseconds each).
  t.ramp_start_ns = t.now_ns() + 50'000'000 + int64_t(o.users) * 5'000;
  t.measuring = true;

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    csv << "second,sent_per_s,acked_per_s,delivered_per_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,"
           "server_rss_kib,server_cpu_percent,tool_cpu_percent\n";
  }
  // CPU used over each second, in % of one core: the server's (with --server-pid, else the
  // column is empty) and the tool's own.
  uint64_t last_server_cpu = load::cpu_ms(o.server_pid), last_tool_cpu = load::cpu_ms(0);
  auto last_second = clock_type::now();
  auto t0 = clock_type::now();
  for (int u = 0; u < senders; ++u)
    caf::anon_send(users[u], start_atom::value);

  uint64_t total_sends = uint64_t(senders) * o.messages;
  auto baseline = t.latency.take();
  auto last = baseline;
  uint64_t last_sent = 0, last_acked = 0, last_delivered = 0;
  bool halted = false;
  clock_type::time_point drain_start{};
  int64_t halted_ns = 0; // when the sends were stopped
  // Ramp: steps judged while it runs. A step is judged once its last planned send is older
  // than the p99.9 target and a second: a delivery still missing then is later than both
  // targets, and counts so (judge_step). The ramp ends after the first step over them.
  auto p99_target_us = static_cast<uint64_t>(o.target_p99_ms * 1000);
  auto p999_target_us = static_cast<uint64_t>(o.target_p999_ms * 1000);
  auto grace_ns = 1'000'000'000 + static_cast<int64_t>(o.target_p999_ms * 1e6);
  size_t judged = 0;
  bool over = false;
  auto judge = [&](size_t k) {
    return load::judge_step(t.steps[k].latency.take(), t.steps[k].sent * uint64_t(o.devices),
                            p99_target_us, p999_target_us);
  };
  auto ms_of = [](uint64_t us) {
    if (us == load::histogram::snapshot::unknown)
      return std::string("(not delivered)");
    std::ostringstream out;
    out << us / 1000.0;
    return out.str();
  };
  for (int second = 1;; ++second) {
    std::this_thread::sleep_until(t0 + std::chrono::seconds(second));
    auto snap = t.latency.take();
    auto interval = snap.since(last);
    last = snap;
    uint64_t sent = t.sent, acked = t.acked, delivered = t.delivered;
    auto ms = [](uint64_t us) { return us / 1000.0; };
    if (csv.is_open()) {
      csv << second << ',' << sent - last_sent << ',' << acked - last_acked << ','
          << delivered - last_delivered << ',' << ms(interval.percentile(0.5)) << ','
          << ms(interval.percentile(0.9)) << ',' << ms(interval.percentile(0.99)) << ','
          << ms(interval.percentile(0.999)) << ',' << ms(interval.max) << ',';
      auto now = clock_type::now();
      double wall_ms = std::chrono::duration<double, std::milli>(now - last_second).count();
      auto percent = [&](uint64_t used_ms) {
        return wall_ms > 0 ? used_ms * 100.0 / wall_ms : 0.0;
      };
      uint64_t server_cpu = load::cpu_ms(o.server_pid), tool_cpu = load::cpu_ms(0);
      if (o.server_pid > 0)
        csv << load::rss_kib(o.server_pid) << ',' << percent(server_cpu - last_server_cpu);
      else
        csv << ',';
      csv << ',' << percent(tool_cpu - last_tool_cpu) << '\n';
      last_server_cpu = server_cpu;
      last_tool_cpu = tool_cpu;
      last_second = now;
    }
    char line[256];
    std::snprintf(line, sizeof(line),
                  "[%3ds] sent %llu (%llu/s)  acked %llu  delivered %llu (%llu/s)  p99 %.2f ms"
                  "  errors %llu",
                  second, (unsigned long long) sent, (unsigned long long) (sent - last_sent),
                  (unsigned long long) acked, (unsigned long long) delivered,
                  (unsigned long long) (delivered - last_delivered),
                  ms(interval.percentile(0.99)), (unsigned long long) t.errors.load());
    if (tty)
      std::cout << '\r' << line << "\x1b[K" << std::flush;
    else
      std::cout << line << std::endl;
    last_sent = sent;
    last_acked = acked;
    last_delivered = delivered;
    while (!halted && judged < step_rates.size()
           && t.now_ns() >= t.ramp_start_ns + int64_t(judged + 1) * t.step_ns + grace_ns) {
      auto v = judge(judged);
      std::cout << (tty ? "\r" : "") << "step " << judged + 1 << " of " << step_rates.size()
                << ": " << step_rates[judged] << " msg/s: p99 " << ms_of(v.p99_us)
                << " ms, p99.9 " << ms_of(v.p999_us) << " ms: "
                << (v.met ? "within the targets" : "over the targets; the ramp ends")
                << (tty ? "\x1b[K" : "") << std::endl;
      ++judged;
      if (!v.met) {
        over = true;
        break;
      }
    }
    bool sending_done =
      o.scenario == "ramp"
        ? over || t.now_ns() >= t.ramp_start_ns + int64_t(step_rates.size()) * t.step_ns
      : o.scenario != "open" ? acked + t.errors >= total_sends
                             : seconds_since(t0) >= o.duration;
    if (sending_done && !halted) {
      halted = true;
      halted_ns = t.now_ns();
      for (auto& a : users)
        caf::anon_send(a, halt_atom::value);
      drain_start = clock_type::now();
      continue; // the halt takes effect before the next look
    }
    // (Backlog: the recipients are offline; their part is measured after this loop.)
    if (halted && t.sent == t.acked + t.errors
        && (to_offline_half(o) || t.delivered >= t.expected)
        && t.copies >= t.expected_copies)
      break;
    if (halted && seconds_since(drain_start) > o.drain)
      break;
    if (t.closed > 0 && t.closed >= all_devices)
      break;
  }
  if (tty)
    std::cout << '\n';
  // Push scenario: every receiver's device must get a push whose unread count is what was
  // sent to its user (the last push, after the server's coalescing), within --drain.
  uint64_t pushed = 0, push_missing = 0, push_wrong = 0, push_devices = 0;
  load::histogram push_first;
  std::ostringstream push_json;
  if (push) {
    for (int u = senders; u < o.users; ++u)
      push_devices += t.expected_for[u] > 0 ? o.devices : 0;
    // Missing: a device whose user was sent something and that got no push. Wrong: a device
    // whose newest push counts other than what was sent (a device whose user was sent
    // nothing must get none).
    auto tally = [&] {
      auto got = gateway->devices();
      pushed = push_missing = push_wrong = 0;
      for (int u = senders; u < o.users; ++u)
        for (int d = 0; d < o.devices; ++d) {
          auto it = got.find(push_key(t, user_name(o, u), d));
          if (it == got.end()) {
            push_missing += t.expected_for[u] > 0;
            continue;
          }
          ++pushed;
          push_wrong += it->second.last_unread != t.expected_for[u];
        }
    };
    auto phase = clock_type::now();
    for (tally(); (push_missing > 0 || push_wrong > 0) && seconds_since(phase) < o.drain;
         tally())
      std::this_thread::sleep_for(50ms);
    // From when the server acknowledged the first message for the user to the first push.
    auto got = gateway->devices();
    int64_t first_push = INT64_MAX, last_push = 0;
    for (int u = senders; u < o.users; ++u)
      for (int d = 0; d < o.devices; ++d)
        if (auto it = got.find(push_key(t, user_name(o, u), d));
            it != got.end() && t.first_ack_to[u] > 0) {
          totals::record_late(push_first, t.first_ack_to[u], it->second.first_ns);
          first_push = std::min(first_push, it->second.first_ns);
          last_push = std::max(last_push, it->second.last_ns);
        }
    auto h = push_first.take();
    double span = last_push > first_push ? (last_push - first_push) / 1e9 : 0;
    std::cout << "push: " << pushed << " of " << push_devices << " offline devices pushed, "
              << pushed - push_wrong << " with the unread count of what was sent to them; "
              << gateway->pushes() << " pushes in " << span << " s"
              << (span > 0 ? " (" + std::to_string(uint64_t(gateway->pushes() / span)) + "/s)"
                           : std::string{})
              << "; first message acknowledged to first push, ms: p50 "
              << h.percentile(0.5) / 1000.0 << ", p99 " << h.percentile(0.99) / 1000.0
              << ", max " << h.max / 1000.0 << "; the gateway held at most "
              << gateway->peak_connections() << " connections and "
              << gateway->peak_requests() << " requests at once (" << gateway->connections()
              << " connections in all)"
              << (o.push_fail_percent > 0
                    ? "; " + std::to_string(gateway->refused()) + " first pushes answered 503"
                    : std::string{})
              << std::endl;
    push_json << "{\"devices\": " << push_devices << ", \"pushed\": " << pushed
              << ", \"missing\": " << push_missing << ", \"wrong_count\": " << push_wrong
              << ", \"pushes\": " << gateway->pushes() << ", \"span_s\": " << span
              << ", \"first_push_ms\": {\"p50\": " << h.percentile(0.5) / 1000.0
              << ", \"p99\": " << h.percentile(0.99) / 1000.0 << ", \"max\": " << h.max / 1000.0
              << "}, \"answer_ms\": " << o.push_answer_ms
              << ", \"peak_connections\": " << gateway->peak_connections()
              << ", \"peak_requests\": " << gateway->peak_requests()
              << ", \"connections\": " << gateway->connections()
              << ", \"fail_percent\": " << o.push_fail_percent
              << ", \"refused\": " << gateway->refused() << "}";
    if (push_missing > 0)
      t.error("push:missing");
    if (push_wrong > 0)
      t.error("push:wrong_count");
    if (gateway->malformed() > 0)
      t.error("push:malformed");
    if (gateway->accept_failures() > 0)
      t.error("push:accept_failed");
  }
  if (backlog || push) {
    // The receivers come online all at once and catch up on what was sent to them.
    auto receivers = uint64_t(o.users - senders) * o.devices;
    auto phase2 = clock_type::now();
    for (int u = senders; u < o.users; ++u)
      for (int d = 0; d < o.devices; ++d) {
        auto& pool = *pools[u % pools.size()];
        auto probe = std::make_shared<device_probe>(t, user_name(o, u), senders_of[u], u);
        // Never skips: the catch-up is what it measures. After a push the device acknowledges
        // what it caught up on, as the app the push woke would: otherwise each would be
        // pushed again once the run ends and it leaves, to a gateway that is gone.
        pool.add_device(device_spec(o, u, d, o.ack || push, false), probe);
      }
    auto limit = std::chrono::duration<double>(o.login_timeout + o.drain);
    while (t.caught_up < receivers && clock_type::now() - phase2 < limit)
      std::this_thread::sleep_for(10ms);
    auto c = t.catchup.take();
    auto secs = seconds_since(phase2);
    std::cout << "backlog: " << receivers << " devices caught up on " << t.backlog_entries
              << " entries (" << (receivers ? t.backlog_entries / receivers : 0)
              << " per device) in " << secs << " s; per device, login to caught up, ms: p50 "
              << c.percentile(0.5) / 1000.0 << ", p99 " << c.percentile(0.99) / 1000.0
              << ", max " << c.max / 1000.0 << std::endl;
    if (t.caught_up < receivers)
      t.error("backlog:not_caught_up");
  }
  // The devices stay online without sending: what the server keeps for users who chatted and
  // went quiet (their actors live on while a device is online).
  auto rss_end = load::rss_kib(o.server_pid);
  uint64_t rss_quiet = 0;
  if (o.linger > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(o.linger));
    rss_quiet = load::rss_kib(o.server_pid);
    if (o.server_pid > 0)
      std::cout << "server RSS " << rss_end << " KiB at the end of the run, " << rss_quiet
                << " KiB after " << o.linger << " s with every device online and quiet"
                << std::endl;
  }
  // From the start to the last delivery: the time the server took for all of it.
  double elapsed = std::max(
    1e-3, (t.last_delivery_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  t0 - t.origin).count()) / 1e9);
  auto snap = t.latency.take().since(baseline);
  uint64_t lost = (t.expected > t.delivered ? t.expected - t.delivered : 0)
                  + (t.expected_copies > t.copies ? t.expected_copies - t.copies : 0);
  double throughput = elapsed > 0 ? t.delivered / elapsed : 0;
  auto ms = [](uint64_t us) { return us / 1000.0; };

  std::ostringstream errors_json, errors_text;
  {
    std::lock_guard<std::mutex> guard(t.error_mutex);
    bool first = true;
    for (auto& [type, n] : t.errors_by_type) {
      errors_json << (first ? "" : ", ") << '"' << type << "\": " << n;
      errors_text << "  " << type << ": " << n << "\n";
      first = false;
    }
  }
  std::cout << "scenario " << o.scenario << ": " << o.users << " users x " << o.devices
            << " devices, body " << o.body << " B, " << o.threads << " client threads"
            << (o.scenario == "groups" ? ", groups of " + std::to_string(o.group_size) : "")
            << "\n"
            << "sent " << t.sent << ", acked " << t.acked << ", delivered " << t.delivered
            << " (expected " << t.expected << "; sender copies " << t.copies << " of "
            << t.expected_copies << "), lost " << lost << ", duplicated "
            << t.duplicated << ", errors " << t.errors
            << (t.older_messages
                  ? ", older messages " + std::to_string(t.older_messages) + " (not this run's)"
                  : std::string{})
            << "\n"
            << "throughput " << static_cast<uint64_t>(t.acked / std::max(elapsed, 1e-9))
            << " acked msg/s, " << static_cast<uint64_t>(throughput)
            << " delivered msg/s over " << elapsed << " s\n";
  if (to_offline_half(o)) // nothing was delivered live: the catch-up above is the measure
    std::cout << "latency: not measured (the receivers were offline; see the catch-up)\n";
  else
    std::cout << "latency ms: p50 " << ms(snap.percentile(0.5)) << ", p90 "
              << ms(snap.percentile(0.9)) << ", p99 " << ms(snap.percentile(0.99))
              << ", p99.9 " << ms(snap.percentile(0.999)) << ", max " << ms(snap.max) << "\n";
  auto lag = t.send_lag.take(), ack = t.ack_latency.take();
  auto brief = [&](const load::histogram::snapshot& h) {
    std::ostringstream out;
    out << "p50 " << ms(h.percentile(0.5)) << ", p99 " << ms(h.percentile(0.99)) << ", p99.9 "
        << ms(h.percentile(0.999)) << ", max " << ms(h.max);
    return out.str();
  };
  if (t.open_loop)
    std::cout << "from the scheduled time, ms: sent by the tool " << brief(lag)
              << "; answered " << brief(ack) << "\n";
  std::cout << errors_text.str();
  // Ramp: each step with its final figures (every delivery made by now). The capacity is the
  // rate of the last step carried in a row from the first; a step cut short by the end of the
  // ramp tells nothing.
  double capacity = 0;
  bool capacity_at_least = false;
  std::ostringstream steps_json;
  if (!step_rates.empty()) {
    std::cout << "ramp steps of " << o.duration << " s, latency from the planned send to the "
              << "recipient's devices (ms):\n";
    bool carried_so_far = true;
    for (size_t k = 0; k < step_rates.size(); ++k) {
      bool whole = halted && halted_ns >= t.ramp_start_ns + int64_t(k + 1) * t.step_ns;
      uint64_t sent_k = t.steps[k].sent;
      if (sent_k == 0 && !whole)
        break; // not begun
      auto v = judge(k);
      bool carried = whole && v.met;
      std::cout << "  " << step_rates[k] << " msg/s: sent " << sent_k << ", delivered "
                << v.delivered << " of " << v.expected << "; p50 " << ms_of(v.p50_us)
                << ", p99 " << ms_of(v.p99_us) << ", p99.9 " << ms_of(v.p999_us) << ", max "
                << ms_of(v.max_us) << ": "
                << (!whole ? "cut short" : v.met ? "carried" : "over the targets") << "\n";
      if (carried && carried_so_far)
        capacity = step_rates[k];
      else
        carried_so_far = false;
      auto num = [&](uint64_t us) {
        return us == load::histogram::snapshot::unknown ? std::string("null") : ms_of(us);
      };
      steps_json << (k ? ", " : "") << "{\"rate\": " << step_rates[k]
                 << ", \"whole\": " << (whole ? "true" : "false") << ", \"sent\": " << sent_k
                 << ", \"expected\": " << v.expected << ", \"delivered\": " << v.delivered
                 << ", \"p50\": " << num(v.p50_us) << ", \"p99\": " << num(v.p99_us)
                 << ", \"p999\": " << num(v.p999_us) << ", \"max\": " << num(v.max_us)
                 << ", \"carried\": " << (carried ? "true" : "false") << "}";
    }
    capacity_at_least = carried_so_far && capacity == step_rates.back();
    std::cout << "capacity: " << (capacity_at_least ? "at least " : "") << capacity
              << " msg/s with p99 <= " << o.target_p99_ms << " ms and p99.9 <= "
              << o.target_p999_ms << " ms" << (capacity_at_least ? " (the ramp's top)" : "")
              << "\n";
  }
  if (!o.json.empty()) {
    std::ofstream j(o.json);
    j << "{\n  \"scenario\": \"" << o.scenario << "\",\n  \"host_cpu\": \"" << load::host_cpu()
      << "\",\n  \"host_cores\": " << std::thread::hardware_concurrency()
      << ",\n  \"users\": " << o.users
      << ",\n  \"devices\": " << o.devices << ",\n  \"messages_per_user\": " << o.messages
      << ",\n  \"window\": " << o.window << ",\n  \"rate\": " << o.rate
      << ",\n  \"duration_s\": " << o.duration << ",\n  \"body_bytes\": " << o.body
      << ",\n  \"client_threads\": " << o.threads
      << ",\n  \"thread_policy\": \"" << app::name_of(o.scheduling) << "\""
      << ",\n  \"group_size\": " << (o.scenario == "groups" ? o.group_size : 0)
      << ",\n  \"peers\": " << o.peers
      << ",\n  \"ack\": " << (o.ack ? "true" : "false")
      << ",\n  \"history\": \"" << (o.skip_history ? "skip" : "sync") << "\""
      << ",\n  \"resume\": " << (o.resume ? "true" : "false")
      << ",\n  \"reconnect_s\": " << reconnect_s
      << ",\n  \"reconnect_ms\": {\"p50\": " << ms(t.relogin.take().percentile(0.5))
      << ", \"p99\": " << ms(t.relogin.take().percentile(0.99))
      << ", \"max\": " << ms(t.relogin.take().max) << "}"
      << ",\n  \"cursor_acks\": " << t.cursor_acks
      << ",\n  \"sent\": " << t.sent
      << ",\n  \"acked\": " << t.acked << ",\n  \"delivered\": " << t.delivered
      << ",\n  \"expected\": " << t.expected << ",\n  \"sender_copies\": " << t.copies
      << ",\n  \"expected_sender_copies\": " << t.expected_copies << ",\n  \"lost\": " << lost
      << ",\n  \"duplicated\": " << t.duplicated
      << ",\n  \"older_messages\": " << t.older_messages << ",\n  \"errors\": " << t.errors
      << ",\n  \"errors_by_type\": {" << errors_json.str() << "}"
      << ",\n  \"server_rss_kib_before\": " << rss_before
      << ",\n  \"server_rss_kib_half_online\": " << rss_half
      << ",\n  \"server_rss_kib_online\": " << rss_online
      << ",\n  \"server_bytes_per_device\": " << marginal
      << ",\n  \"linger_s\": " << o.linger
      << ",\n  \"server_rss_kib_end\": " << rss_end
      << ",\n  \"server_rss_kib_quiet\": " << rss_quiet
      << ",\n  \"backlog_entries\": " << t.backlog_entries
      << ",\n  \"catchup_ms\": {\"p50\": " << ms(t.catchup.take().percentile(0.5))
      << ", \"p99\": " << ms(t.catchup.take().percentile(0.99))
      << ", \"max\": " << ms(t.catchup.take().max) << "}"
      << ",\n  \"elapsed_s\": " << elapsed
      << ",\n  \"throughput_msgs_per_s\": " << throughput
      << ",\n  \"acked_msgs_per_s\": " << t.acked / std::max(elapsed, 1e-9);
    auto percentiles = [&](const char* name, const load::histogram::snapshot& h) {
      j << ",\n  \"" << name << "\": {\"p50\": " << ms(h.percentile(0.5))
        << ", \"p90\": " << ms(h.percentile(0.9)) << ", \"p99\": " << ms(h.percentile(0.99))
        << ", \"p999\": " << ms(h.percentile(0.999)) << ", \"max\": " << ms(h.max) << "}";
    };
    percentiles("latency_ms", snap);
    if (t.open_loop) {
      percentiles("send_lag_ms", lag);
      percentiles("ack_latency_ms", ack);
    }
    if (push)
      j << ",\n  \"push\": " << push_json.str();
    if (!step_rates.empty())
      j << ",\n  \"ramp\": {\"step_s\": " << o.duration << ", \"rate_step\": " << o.rate_step
        << ", \"rate_max\": " << o.rate_max << ", \"target_p99_ms\": " << o.target_p99_ms
        << ", \"target_p999_ms\": " << o.target_p999_ms
        << ", \"capacity_msgs_per_s\": " << capacity
        << ", \"capacity_is_lower_bound\": " << (capacity_at_least ? "true" : "false")
        << ", \"steps\": [" << steps_json.str() << "]}";
    j << "\n}\n";
  }
  stop_all();
  return lost == 0 && t.duplicated == 0 && t.errors == 0 ? 0 : 1;
}

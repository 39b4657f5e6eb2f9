// missive-mqtt-load: missive-load's closed and open loops against an MQTT 3.1.1 broker, so that
// Missive can be measured beside the broker its users would otherwise run (mosquitto), on the
// same machine, with the same shape of traffic and the same latency histogram
// (benchmarks/compare-mosquitto.sh runs both; BENCHMARKS.md, "Beside mosquitto").
//
//   missive-mqtt-load --server HOST:PORT [--scenario closed|open|idle|collect|groups]
//                     [--users N] [--messages K] [--window W] [--rate R] [--duration S]
//                     [--body B] [--threads T] [--drain S] [--prefix P] [--to P2]
//                     [--group-size G] [--server-pid PID] [--record FILE] [--json FILE]
//
// Each simulated user is one connection with a persistent session (clean session off), which
// subscribes to its own topic `P/<index>` at QoS 1 and publishes to a random other user's topic
// at QoS 1: MQTT's at-least-once, the counterpart of Missive's acknowledged send. A publish is
// "acked" when the broker's PUBACK arrives and "delivered" when the recipient's connection holds
// it. The payload carries the planned send time, the sender and its send number: latency runs
// from the planned time (the open loop's schedule, or the moment of sending in the closed loop),
// and each recipient keeps the ids it has seen, so a second copy counts as duplicated and a
// missing one as lost. The idle scenario connects every user (with --server-pid, in two halves,
// sampling the broker's memory after each, as missive-load does), then sends one message to each.
// The groups scenario is the closed loop to group topics: users k*G ... k*G+G-1 subscribe to P/g<k>
// as well, and each message is due to every member, the sender included (MQTT 3.1.1 has no "no
// local"). For the crash comparison, users may send to another run's users (--to P2: their
// deliveries are that run's), a collect run only connects its users and takes what the broker kept
// for them, and --record writes the ids acked ("a SENDER N") and delivered ("d SENDER N"). Users
// are spread over T threads, each with its own epoll set; a user sends and receives only on its
// thread. Exit status 0 only with nothing lost, duplicated or failed.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "load_stats.hpp"
#include "mqtt_codec.hpp"

namespace {

using namespace missive;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string server = "127.0.0.1:1883";
  std::string scenario = "closed";
  int users = 100;
  int messages = 100; // per user (closed loop)
  int window = 10;    // unacknowledged publishes per user (closed loop)
  double rate = 1000; // publishes per second, all users together (open loop)
  double duration = 10;
  size_t body = 64;
  int threads = 2;
  double drain = 10;
  double setup_timeout = 60;
  std::string prefix; // topics P/<index>, client ids P-<index>; default: unique per run
  std::string json;
  int server_pid = 0; // to report the broker's memory (same machine only)
  std::string to;     // the recipients' prefix, if not this run's (their deliveries go elsewhere)
  std::string record; // a file for the ids acked ("a SENDER N") and delivered ("d SENDER N")
  int group_size = 10; // groups scenario: users k*G ... k*G+G-1 share topic P/g<k>
};

/// Groups scenario: the members of user `u`'s group, the user included (MQTT delivers a
/// publish to its sender too when it subscribes to the topic: its own copy).
int members_of(const options& o, int u) {
  int first = u / o.group_size * o.group_size;
  return std::min(o.group_size, o.users - first);
}

// The payload's head: planned send time (ns since the run's origin), sender, send number.
constexpr size_t head_size = 16;

enum phase : int { setting_up, running, stopping };

/// Counters shared by every thread.
struct totals {
  std::atomic<uint64_t> sent{0}, acked{0}, delivered{0}, duplicated{0}, errors{0};
  std::atomic<uint64_t> expected{0}; // deliveries the publishes call for (groups: each member)
  std::atomic<int> ready{0};          // users connected and subscribed
  std::atomic<int> connect_below{0};  // users with a lower index are to connect
  std::atomic<int> phase{setting_up};
  std::atomic<int64_t> start_ns{0}, last_delivery_ns{0}, last_ack_ns{0};
  load::histogram latency; // planned send -> the recipient holds it
  clock_type::time_point origin = clock_type::now();
  std::mutex error_mutex;
  std::map<std::string, uint64_t> errors_by_type; // guarded by error_mutex

  int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - origin)
      .count();
  }
  void error(const std::string& type) {
    ++errors;
    std::lock_guard<std::mutex> guard(error_mutex);
    if (errors_by_type[type]++ == 0)
      std::cerr << "missive-mqtt-load: " << type << "\n";
  }
};

/// One simulated user: its connection and what it sent and saw. Owned by one worker thread.
struct user {
  int index = 0;
  size_t slot = 0; // in its worker's list; the epoll data of its socket
  int fd = -1;
  std::string in, out;
  size_t out_at = 0;      // bytes of `out` already written
  bool dirty = false;     // `out` has bytes and the user is on its worker's flush list
  bool want_out = false;  // EPOLLOUT is armed (the socket was full)
  uint16_t packet_id = 0; // the last one used
  int subscribed = 0;     // SUBACKs received (groups: its own topic and its group's)
  std::string group_topic; // groups: P/g<k>
  uint32_t next = 0;      // publishes issued
  int64_t phase_ns = 0; // open loop: publish n (from 1) is planned at
                        // start + phase_ns + (n - 1) * interval
  load::id_set seen;    // (sender << 32 | send number) of everything delivered
  std::unordered_map<uint16_t, uint32_t> unacked; // packet id -> send number
  std::vector<uint64_t> acked_ids, delivered_ids; // with --record: (sender << 32 | number)
  std::mt19937 rng;
};

class worker {
public:
  worker(const options& o, totals& t, const std::vector<std::string>& topics,
         const std::vector<std::string>& to_topics)
    : o_(o), t_(t), topics_(topics), to_topics_(to_topics), ep_(epoll_create1(EPOLL_CLOEXEC)),
      groups_(o.scenario == "groups"), open_loop_(o.scenario == "open"),
      idle_(o.scenario == "idle"), timed_(o.scenario != "collect") {}
  ~worker() {
    for (auto& u : users_)
      if (u->fd >= 0)
        close(u->fd);
    close(ep_);
  }

  void add(int index) {
    auto u = std::make_unique<user>();
    u->index = index;
    u->rng.seed(static_cast<unsigned>(index * 7919 + 17));
    if (groups_)
      u->group_topic = o_.prefix + "/g" + std::to_string(index / o_.group_size);
    users_.push_back(std::move(u));
  }

  void run(const sockaddr_in& addr);
  /// With --record, after run(): the ids this worker's users saw acked and delivered.
  void write_record(std::ostream& out) const {
    for (auto& u : users_) {
      for (auto id : u->acked_ids)
        out << "a " << (id >> 32) << ' ' << (id & 0xffffffff) << '\n';
      for (auto id : u->delivered_ids)
        out << "d " << (id >> 32) << ' ' << (id & 0xffffffff) << '\n';
    }
  }

private:
  void connect_due(const sockaddr_in& addr);
  void on_readable(user& u);
  void handle(user& u, const mqtt::packet& p);
  void publish(user& u, int64_t sched_ns);
  void fill_window(user& u);
  void watch(user& u, int op, uint32_t events);
  void mark_dirty(user& u);
  void flush(user& u);
  void fail(user& u, const std::string& why);
  uint16_t next_packet_id(user& u) {
    if (++u.packet_id == 0)
      u.packet_id = 1;
    return u.packet_id;
  }

  const options& o_;
  totals& t_;
  const std::vector<std::string>& topics_;    // this run's users' own
  const std::vector<std::string>& to_topics_; // the recipients' (--to, else topics_)
  int ep_;
  std::vector<std::unique_ptr<user>> users_;
  std::vector<user*> dirty_;
  size_t connected_ = 0; // users_[0, connected_) have connected (users_ is in index order)
  // The scenario, read once: the per-message paths test these, not its name.
  bool groups_, open_loop_, idle_;
  bool timed_; // not a collect run, whose messages were planned by another process
  int64_t interval_ns_ = 0;
};

void worker::connect_due(const sockaddr_in& addr) {
  for (; connected_ < users_.size() && users_[connected_]->index < t_.connect_below;
       ++connected_) {
    auto& u = *users_[connected_];
    u.slot = connected_;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      if (fd >= 0)
        close(fd);
      t_.error(std::string("connect: ") + std::strerror(errno));
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    u.fd = fd;
    watch(u, EPOLL_CTL_ADD, EPOLLIN);
    mqtt::put_connect(u.out, o_.prefix + "-" + std::to_string(u.index), false);
    flush(u); // the broker answers CONNACK, and handle() subscribes
  }
}

void worker::watch(user& u, int op, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = u.slot;
  epoll_ctl(ep_, op, u.fd, &ev);
}

void worker::fail(user& u, const std::string& why) {
  t_.error(why);
  if (u.fd >= 0) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, u.fd, nullptr);
    close(u.fd);
    u.fd = -1;
  }
}

void worker::mark_dirty(user& u) {
  if (!u.dirty) {
    u.dirty = true;
    dirty_.push_back(&u);
  }
}

void worker::flush(user& u) {
  while (u.fd >= 0 && u.out_at < u.out.size()) {
    auto n = send(u.fd, u.out.data() + u.out_at, u.out.size() - u.out_at, MSG_NOSIGNAL);
    if (n > 0) {
      u.out_at += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!u.want_out) {
        u.want_out = true;
        watch(u, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
      }
      return;
    } else {
      fail(u, std::string("write: ") + std::strerror(errno));
      return;
    }
  }
  u.out.clear();
  u.out_at = 0;
}

void worker::publish(user& u, int64_t sched_ns) {
  int to = u.index;
  if (idle_)
    to = (u.index + 1) % o_.users; // everybody receives exactly one message
  while (to == u.index && o_.users > 1)
    to = std::uniform_int_distribution<int>(0, o_.users - 1)(u.rng);
  uint32_t n = ++u.next;
  char head[head_size];
  std::memcpy(head, &sched_ns, 8);
  std::memcpy(head + 8, &u.index, 4);
  std::memcpy(head + 12, &n, 4);
  std::string payload(head, head_size);
  if (payload.size() < o_.body)
    payload.append(o_.body - payload.size(), 'x');
  auto id = next_packet_id(u);
  if (groups_) {
    mqtt::put_publish(u.out, u.group_topic, 1, id, payload);
    t_.expected += static_cast<uint64_t>(members_of(o_, u.index));
  } else {
    mqtt::put_publish(u.out, to_topics_[static_cast<size_t>(to)], 1, id, payload);
    ++t_.expected;
  }
  u.unacked[id] = n;
  mark_dirty(u);
  ++t_.sent;
}

void worker::fill_window(user& u) {
  while (u.fd >= 0 && u.unacked.size() < static_cast<size_t>(o_.window)
         && u.next < static_cast<uint32_t>(o_.messages))
    publish(u, t_.now_ns());
}

void worker::handle(user& u, const mqtt::packet& p) {
  switch (p.type()) {
  case mqtt::packet_type::connack:
    if (p.body.size() != 2 || p.body[1] != 0)
      return fail(u, "CONNACK refused the connection");
    mqtt::put_subscribe(u.out, next_packet_id(u), topics_[static_cast<size_t>(u.index)], 1);
    if (groups_)
      mqtt::put_subscribe(u.out, next_packet_id(u), u.group_topic, 1);
    return mark_dirty(u);
  case mqtt::packet_type::suback:
    if (p.body.size() != 3 || static_cast<uint8_t>(p.body[2]) > 1)
      return fail(u, "SUBACK refused the subscription");
    if (++u.subscribed == (groups_ ? 2 : 1))
      ++t_.ready;
    return;
  case mqtt::packet_type::puback: {
    auto it = p.body.size() == 2 ? u.unacked.find(mqtt::get_u16(p.body, 0)) : u.unacked.end();
    if (it == u.unacked.end())
      return fail(u, "PUBACK for nothing published");
    if (!o_.record.empty())
      u.acked_ids.push_back((uint64_t{static_cast<uint32_t>(u.index)} << 32) | it->second);
    u.unacked.erase(it);
    ++t_.acked;
    t_.last_ack_ns = t_.now_ns();
    if (!open_loop_)
      fill_window(u);
    return;
  }
  case mqtt::packet_type::publish: {
    auto v = mqtt::read_publish(p);
    if (!v || v->payload.size() < head_size
        || (v->topic != topics_[static_cast<size_t>(u.index)]
            && !(groups_ && v->topic == u.group_topic)))
      return fail(u, "PUBLISH not sent by this tool to this user");
    int64_t sched_ns;
    uint32_t sender, n;
    std::memcpy(&sched_ns, v->payload.data(), 8);
    std::memcpy(&sender, v->payload.data() + 8, 4);
    std::memcpy(&n, v->payload.data() + 12, 4);
    auto now = t_.now_ns();
    if (timed_)
      t_.latency.record(static_cast<uint64_t>(std::max<int64_t>(0, now - sched_ns) / 1000));
    if (u.seen.insert((uint64_t{sender} << 32) | n)) {
      ++t_.delivered;
      if (!o_.record.empty())
        u.delivered_ids.push_back((uint64_t{sender} << 32) | n);
    } else {
      ++t_.duplicated;
    }
    t_.last_delivery_ns = now;
    if (v->qos > 0) {
      mqtt::put_puback(u.out, v->packet_id);
      mark_dirty(u);
    }
    return;
  }
  default:
    return fail(u, "unexpected packet type " + std::to_string(p.first >> 4));
  }
}

void worker::on_readable(user& u) {
  char buf[65536];
  auto n = recv(u.fd, buf, sizeof buf, 0);
  if (n == 0)
    return fail(u, "the broker closed a connection");
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      fail(u, std::string("read: ") + std::strerror(errno));
    return;
  }
  u.in.append(buf, static_cast<size_t>(n));
  std::string_view rest(u.in);
  mqtt::packet p;
  for (;;) {
    auto st = mqtt::parse_packet(rest, &p);
    if (st == mqtt::parse_status::incomplete)
      break;
    if (st == mqtt::parse_status::malformed)
      return fail(u, "malformed packet from the broker");
    handle(u, p);
    if (u.fd < 0)
      return;
    rest.remove_prefix(p.size);
  }
  u.in.erase(0, u.in.size() - rest.size());
}

void worker::run(const sockaddr_in& addr) {
  interval_ns_ = static_cast<int64_t>(1e9 * o_.users / o_.rate);
  // Open loop: the next planned publish of each user, earliest first.
  using due = std::pair<int64_t, user*>;
  std::priority_queue<due, std::vector<due>, std::greater<>> schedule;
  bool started = false;
  int64_t stop_sending_ns = 0;
  std::vector<epoll_event> events(256);
  while (t_.phase != stopping) {
    connect_due(addr);
    int timeout_ns = 10'000'000;
    if (started && !schedule.empty()) {
      auto wait = schedule.top().first - t_.now_ns();
      timeout_ns = static_cast<int>(std::clamp<int64_t>(wait, 0, timeout_ns));
    }
    timespec ts{0, timeout_ns};
    int n = epoll_pwait2(ep_, events.data(), static_cast<int>(events.size()), &ts, nullptr);
    for (int i = 0; i < n; ++i) {
      auto& u = *users_[events[static_cast<size_t>(i)].data.u64];
      if (u.fd < 0)
        continue;
      if (events[static_cast<size_t>(i)].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(u);
      if (u.fd >= 0 && (events[static_cast<size_t>(i)].events & EPOLLOUT)) {
        u.want_out = false;
        watch(u, EPOLL_CTL_MOD, EPOLLIN);
        mark_dirty(u);
      }
    }
    if (!started && t_.phase == running) {
      started = true;
      int64_t start = t_.start_ns;
      stop_sending_ns = start + static_cast<int64_t>(o_.duration * 1e9);
      for (auto& u : users_) {
        if (!open_loop_) {
          fill_window(*u);
        } else {
          u->phase_ns = interval_ns_ * u->index / o_.users;
          schedule.push({start + u->phase_ns, u.get()});
        }
      }
    }
    if (started && !schedule.empty()) {
      auto now = t_.now_ns();
      while (!schedule.empty() && schedule.top().first <= now) {
        auto [when, u] = schedule.top();
        schedule.pop();
        if (when >= stop_sending_ns)
          continue; // the duration is over for this user
        if (u->fd >= 0)
          publish(*u, when);
        schedule.push({when + interval_ns_, u});
      }
    }
    for (auto* u : dirty_) {
      u->dirty = false;
      if (!u->want_out)
        flush(*u);
    }
    dirty_.clear();
  }
  for (auto& u : users_)
    if (u->fd >= 0) {
      std::string bye;
      mqtt::put_disconnect(bye);
      (void) send(u->fd, bye.data(), bye.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

double ms(uint64_t us) {
  return static_cast<double>(us) / 1000.0;
}

const char* const usage_line =
  "usage: missive-mqtt-load --server HOST:PORT [--scenario closed|open|idle|collect|groups]"
  " [--users N] [--messages K] [--window W] [--rate R] [--duration S] [--body B] [--threads T]"
  " [--drain S] [--prefix P] [--to P2] [--group-size G] [--server-pid PID] [--record FILE]"
  " [--json FILE]\n";

int usage(const std::string& msg) {
  std::cerr << "missive-mqtt-load: " << msg << "\n" << usage_line;
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::cout << usage_line << "Each flag: README.md, \"Beside mosquitto\".\n";
      return 0;
    }
    if (i + 1 >= argc)
      return usage("missing value for " + k);
    std::string v = argv[++i];
    try {
      if (k == "--server") o.server = v;
      else if (k == "--scenario") o.scenario = v;
      else if (k == "--users") o.users = std::stoi(v);
      else if (k == "--messages") o.messages = std::stoi(v);
      else if (k == "--window") o.window = std::stoi(v);
      else if (k == "--rate") o.rate = std::stod(v);
      else if (k == "--duration") o.duration = std::stod(v);
      else if (k == "--body") o.body = std::stoul(v);
      else if (k == "--threads") o.threads = std::stoi(v);
      else if (k == "--drain") o.drain = std::stod(v);
      else if (k == "--prefix") o.prefix = v;
      else if (k == "--json") o.json = v;
      else if (k == "--server-pid") o.server_pid = std::stoi(v);
      else if (k == "--to") o.to = v;
      else if (k == "--record") o.record = v;
      else if (k == "--group-size") o.group_size = std::stoi(v);
      else
        return usage("unknown option " + k);
    } catch (...) {
      return usage("bad value for " + k);
    }
  }
  if (o.scenario != "closed" && o.scenario != "open" && o.scenario != "idle"
      && o.scenario != "collect" && o.scenario != "groups")
    return usage("--scenario is closed, open, idle, collect or groups");
  if (o.group_size < 2)
    return usage("--group-size must be at least 2");
  if (o.scenario == "idle") {
    o.messages = 1; // idle connections, then one message to each user
    o.window = 1;
  }
  // One user needs a recipient other than itself: another run's (--to), or none (collect).
  bool alone_ok = o.scenario == "collect" || (!o.to.empty() && o.to != o.prefix);
  if (o.users < (alone_ok ? 1 : 2) || o.threads < 1 || o.window < 1 || o.messages < 1
      || o.rate <= 0 || o.duration <= 0)
    return usage("users must be at least 2 (1 with --to or collect); threads, window, "
                 "messages, rate and duration positive");
  if (o.window > 60000)
    return usage("--window must be at most 60000 (MQTT packet ids are 16 bits)");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  auto colon = o.server.rfind(':');
  if (colon == std::string::npos
      || inet_pton(AF_INET, o.server.substr(0, colon).c_str(), &addr.sin_addr) != 1)
    return usage("--server takes IPV4:PORT");
  try {
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(o.server.substr(colon + 1))));
  } catch (...) {
    return usage("--server takes IPV4:PORT");
  }
  if (o.prefix.empty())
    o.prefix = "mqtt-load-" + std::to_string(getpid());
  if (o.to.empty())
    o.to = o.prefix;
  // Deliveries to another run's users (--to) are counted by that run, not here.
  bool here = o.to == o.prefix;
  std::signal(SIGPIPE, SIG_IGN);

  totals t;
  std::vector<std::string> topics, to_topics;
  for (int u = 0; u < o.users; ++u) {
    topics.push_back(o.prefix + "/" + std::to_string(u));
    to_topics.push_back(o.to + "/" + std::to_string(u));
  }
  std::vector<std::unique_ptr<worker>> workers;
  for (int i = 0; i < o.threads; ++i)
    workers.push_back(std::make_unique<worker>(o, t, topics, to_topics));
  for (int u = 0; u < o.users; ++u)
    workers[static_cast<size_t>(u % o.threads)]->add(u);
  std::vector<std::thread> threads;
  for (auto& w : workers)
    threads.emplace_back([&w, &addr] { w->run(addr); });
  auto finish = [&](int status) {
    t.phase = stopping;
    for (auto& th : threads)
      th.join();
    return status;
  };

  auto seconds = [&](int64_t since_ns) { return static_cast<double>(t.now_ns() - since_ns) / 1e9; };
  using namespace std::chrono_literals;
  auto setup_begin = t.now_ns();
  auto connect_users = [&](int n) { // users [0, n) connected and subscribed, or false
    t.connect_below = n;
    while (t.ready < n && t.errors == 0 && seconds(setup_begin) < o.setup_timeout)
      std::this_thread::sleep_for(5ms);
    if (t.ready >= n)
      return true;
    std::cerr << "missive-mqtt-load: only " << t.ready << " of " << o.users
              << " users connected and subscribed\n";
    return false;
  };
  // With --server-pid, the second half connects only after the broker's memory was sampled
  // with the first half online: the difference is the memory per additional connection.
  auto rss_before = load::rss_kib(o.server_pid);
  uint64_t rss_half = 0;
  int first_half = o.server_pid > 0 ? o.users / 2 : o.users;
  if (!connect_users(first_half))
    return finish(1);
  if (first_half < o.users) {
    std::this_thread::sleep_for(1s);
    rss_half = load::rss_kib(o.server_pid);
    if (!connect_users(o.users))
      return finish(1);
    std::this_thread::sleep_for(1s);
  }
  auto rss_online = load::rss_kib(o.server_pid);
  auto second_half = static_cast<uint64_t>(o.users - first_half);
  uint64_t marginal = rss_half > 0 && rss_online > rss_half && second_half > 0
                        ? (rss_online - rss_half) * 1024 / second_half
                        : 0;
  if (o.server_pid > 0)
    std::cout << "broker RSS " << rss_before << " KiB before, " << rss_half << " KiB with "
              << first_half << " connections, " << rss_online << " KiB with " << o.users
              << " (" << marginal << " bytes per additional connection)" << std::endl;

  // A collect run's deliveries begin with the connections: its clock starts with them.
  t.start_ns = o.scenario == "collect" ? setup_begin : t.now_ns();
  t.last_delivery_ns = std::max(t.last_delivery_ns.load(), t.start_ns.load());
  t.last_ack_ns = t.start_ns.load();
  if (o.scenario != "collect")
    t.phase = running; // collect: the users only receive what the broker kept for them
  uint64_t total = static_cast<uint64_t>(o.users) * static_cast<uint64_t>(o.messages);
  bool tty = isatty(1);
  int64_t drain_from = 0;
  // Whether the run is over: sending done and everything in (or --drain seconds passed); a
  // closed loop that stops moving (the broker dropped or withheld messages) ends too, and a
  // collect run ends once nothing has come for a second.
  auto over = [&]() {
    auto last_progress = std::max(t.last_delivery_ns.load(), t.last_ack_ns.load());
    if (o.scenario == "collect")
      return seconds(last_progress) > 1.0 || seconds(t.start_ns) > o.drain;
    bool sending_done = o.scenario != "open" ? t.acked >= total : seconds(t.start_ns) >= o.duration;
    if (sending_done && drain_from == 0)
      drain_from = t.now_ns();
    if (drain_from != 0 && t.acked >= t.sent && (!here || t.delivered >= t.expected))
      return true;
    if (drain_from != 0 && seconds(drain_from) > o.drain)
      return true;
    return o.scenario != "open" && seconds(last_progress) > o.drain;
  };
  uint64_t last_delivered = 0;
  for (int second = 1;; ++second) {
    bool done = false;
    for (int k = 0; k < 100 && !done; ++k) { // looks every 10 ms, reports once a second
      std::this_thread::sleep_for(10ms);
      done = over();
    }
    uint64_t delivered = t.delivered;
    char line[200];
    std::snprintf(line, sizeof line, "[%3ds] sent %llu  acked %llu  delivered %llu (%llu/s)",
                  second, static_cast<unsigned long long>(t.sent.load()),
                  static_cast<unsigned long long>(t.acked.load()),
                  static_cast<unsigned long long>(delivered),
                  static_cast<unsigned long long>(delivered - last_delivered));
    last_delivered = delivered;
    if (tty)
      std::cout << '\r' << line << "\x1b[K" << std::flush;
    if (done)
      break;
  }
  if (tty)
    std::cout << '\n';
  int status = finish(0);
  if (!o.record.empty()) {
    std::ofstream rec(o.record);
    for (auto& w : workers)
      w->write_record(rec);
  }

  double elapsed = std::max(1e-9, static_cast<double>(t.last_delivery_ns - t.start_ns) / 1e9);
  uint64_t sent = t.sent, delivered = t.delivered;
  // Elsewhere (--to) and collect runs cannot tell what is lost: the crash comparison in
  // compare-mosquitto.sh matches their records.
  uint64_t expected = t.expected;
  uint64_t lost = here && expected > delivered ? expected - delivered : 0;
  double throughput = static_cast<double>(delivered) / elapsed;
  auto snap = t.latency.take();
  std::cout << "scenario " << o.scenario << " (MQTT, QoS 1, persistent sessions): " << o.users
            << " users, body " << o.body << " B, " << o.threads << " client threads\n"
            << "sent " << sent << ", acked " << t.acked << ", delivered " << delivered
            << ", lost " << lost << ", duplicated " << t.duplicated << ", errors " << t.errors
            << "\n"
            << "throughput " << static_cast<uint64_t>(throughput) << " delivered msg/s over "
            << elapsed << " s\n"
            << "latency ms: p50 " << ms(snap.percentile(0.5)) << ", p90 "
            << ms(snap.percentile(0.9)) << ", p99 " << ms(snap.percentile(0.99)) << ", p99.9 "
            << ms(snap.percentile(0.999)) << ", max " << ms(snap.max) << "\n";
  if (!o.json.empty()) {
    std::ofstream j(o.json);
    std::string errors;
    for (auto& [type, n] : t.errors_by_type)
      errors += (errors.empty() ? "\"" : ", \"") + type + "\": " + std::to_string(n);
    j << "{\n  \"protocol\": \"mqtt\",\n  \"scenario\": \"" << o.scenario
      << "\",\n  \"host_cpu\": \"" << load::host_cpu()
      << "\",\n  \"host_cores\": " << std::thread::hardware_concurrency()
      << ",\n  \"users\": " << o.users << ",\n  \"messages_per_user\": " << o.messages
      << ",\n  \"window\": " << o.window << ",\n  \"rate\": " << o.rate
      << ",\n  \"duration_s\": " << o.duration << ",\n  \"body_bytes\": " << o.body
      << ",\n  \"client_threads\": " << o.threads << ",\n  \"sent\": " << sent
      << ",\n  \"acked\": " << t.acked << ",\n  \"delivered\": " << delivered
      << ",\n  \"lost\": " << lost << ",\n  \"duplicated\": " << t.duplicated
      << ",\n  \"errors\": " << t.errors << ",\n  \"errors_by_type\": {" << errors << "}"
      << ",\n  \"server_rss_kib_before\": " << rss_before
      << ",\n  \"server_rss_kib_half_online\": " << rss_half
      << ",\n  \"server_rss_kib_online\": " << rss_online
      << ",\n  \"server_bytes_per_device\": " << marginal
      << ",\n  \"group_size\": " << (o.scenario == "groups" ? o.group_size : 0)
      << ",\n  \"expected\": " << expected
      << ",\n  \"elapsed_s\": " << elapsed << ",\n  \"throughput_msgs_per_s\": " << throughput
      << ",\n  \"acked_msgs_per_s\": " << static_cast<double>(t.acked) / elapsed
      << ",\n  \"latency_ms\": {\"p50\": " << ms(snap.percentile(0.5))
      << ", \"p90\": " << ms(snap.percentile(0.9)) << ", \"p99\": " << ms(snap.percentile(0.99))
      << ", \"p999\": " << ms(snap.percentile(0.999)) << ", \"max\": " << ms(snap.max)
      << "}\n}\n";
  }
  return lost == 0 && t.duplicated == 0 && t.errors == 0 ? status : 1;
}

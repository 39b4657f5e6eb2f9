#include "missive/protocol/device.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace missive::protocol {

namespace {

/// Errors after which the same request cannot succeed: the send is dropped and reported.
bool rejects_request(error_code c) {
  return c == error_code::invalid_argument || c == error_code::unknown_user
         || c == error_code::too_large || c == error_code::blocked || c == error_code::spam
         || c == error_code::unknown_group || c == error_code::not_member;
}

/// Errors that end the device: no retry can fix them.
bool is_fatal(error_code c) {
  return c == error_code::bad_credentials || c == error_code::session_replaced;
}

uint64_t random_id() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  uint64_t id = 0;
  while (id == 0)
    id = gen();
  return id;
}

std::string to_hex(const std::string& s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

bool from_hex(const std::string& s, std::string* out) {
  if (s.size() % 2 != 0)
    return false;
  out->clear();
  for (size_t i = 0; i < s.size(); i += 2) {
    unsigned v = 0;
    if (std::sscanf(s.c_str() + i, "%2x", &v) != 1)
      return false;
    out->push_back(static_cast<char>(v));
  }
  return true;
}

} // namespace

device::device(device_options opts) : opts_(std::move(opts)), backoff_(opts_.backoff_min) {
  load_state();
}

device::~device() = default;

bool device::online() const {
  return online_ && rpc_ && rpc_->connected();
}

uint64_t device::queue_send(const std::string& to, const std::string& body,
                            uint64_t client_msg_id) {
  if (client_msg_id == 0)
    client_msg_id = random_id();
  pending_.push_back(pending_send{client_msg_id, to, body});
  save_state();
  return client_msg_id;
}

device_events device::step(std::chrono::milliseconds wait) {
  device_events ev;
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + wait;
  // Offline: attempt whenever the backoff allows, and keep the thread's event loop turning
  // (other clients' pushes keep arriving) until then, but not past `wait`.
  while (!fatal_ && !ensure_online(ev)) {
    auto now = clock::now();
    if (fatal_ || now >= deadline)
      return ev;
    auto until = std::min(next_attempt_, deadline);
    if (!rpc_)
      rpc_ = std::make_unique<client>(opts_.call_timeout);
    rpc_->pump(std::chrono::ceil<std::chrono::milliseconds>(until - now));
  }
  if (fatal_)
    return ev;
  wait = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::max(deadline - clock::now(), clock::duration::zero()));
  if (!flush_sends(ev))
    return ev;
  // What we have already is worth more than what we might get by waiting.
  if (!ev.entries.empty() || !ev.acked.empty() || !ev.rejected.empty() || ev.reset)
    wait = std::chrono::milliseconds(0);
  if (!opts_.receive) {
    rpc_->pump(wait);
    return ev;
  }
  notice n;
  if (rpc_->wait_push(wait, &n)) {
    if (!apply(n, ev))
      return ev;
    // Drain what else has arrived without waiting again.
    while (rpc_->wait_push(std::chrono::milliseconds(0), &n))
      if (!apply(n, ev))
        return ev;
  } else if (!rpc_->connected()) {
    on_failure(error{error_code::disconnected, "connection lost"});
    return ev;
  }
  if (cursor_ > acked_cursor_) {
    if (auto err = rpc_->ack(epoch_, cursor_))
      on_failure(err);
    else
      acked_cursor_ = cursor_;
  }
  return ev;
}

bool device::ensure_online(device_events& ev) {
  if (online()) {
    // A connection that is open but silent (no answer, push or heartbeat for two heartbeat
    // intervals and a call timeout) is dead: reconnect.
    auto hb = rpc_->heartbeat_interval();
    if (hb.count() == 0
        || std::chrono::steady_clock::now() - rpc_->last_heard() < 2 * hb + opts_.call_timeout)
      return true;
    on_failure(error{error_code::timeout, "the server has been silent for too long"});
    return false;
  }
  if (std::chrono::steady_clock::now() < next_attempt_)
    return false;
  if (online_) // we were online and lost it
    on_failure(error{error_code::disconnected, "connection lost"});
  rpc_ = std::make_unique<client>(opts_.call_timeout);
  session_info info;
  error err = rpc_->connect(opts_.server);
  if (!err && !resume_token_.empty()) {
    // A reconnect (or a restart with a token in the state file): the token costs the server
    // microseconds, the password a slow hash.
    err = rpc_->login(opts_.user, {}, opts_.device, &info, resume_token_);
    if (err.code == error_code::bad_credentials) { // expired or replaced: the password, once
      resume_token_.clear();
      save_state();
      err = rpc_->login(opts_.user, opts_.password, opts_.device, &info);
    }
  } else if (!err) {
    err = rpc_->login(opts_.user, opts_.password, opts_.device, &info);
  }
  if (!err && rpc_->resume_token() != resume_token_) {
    resume_token_ = rpc_->resume_token();
    save_state();
  }
  if (err) {
    on_failure(err);
    return false;
  }
  online_ = true;
  backoff_ = opts_.backoff_min;
  if (epoch_ == 0) {
    epoch_ = info.epoch;
  } else if (info.epoch != epoch_) {
    reset_mailbox(info.epoch, ev);
  }
  acked_cursor_ = std::min(acked_cursor_, cursor_);
  // After every (re)connect: what we missed first, then what we still owe.
  return (!opts_.receive || catch_up(ev)) && flush_sends(ev);
}

bool device::flush_sends(device_events& ev) {
  while (!pending_.empty()) {
    if (std::chrono::steady_clock::now() < send_after_)
      return true; // rate limited: the sends wait, the connection stays
    auto& p = pending_.front();
    send_result r;
    auto err = rpc_->send(p.client_msg_id, p.to, p.body, &r);
    if (err.code == error_code::rate_limited) {
      last_error_ = err;
      send_after_ = std::chrono::steady_clock::now()
                    + std::chrono::milliseconds(std::max<uint32_t>(err.retry_after_ms, 1));
      return true;
    }
    if (err && !rejects_request(err.code)) {
      on_failure(err);
      return false;
    }
    if (err)
      ev.rejected.emplace_back(p, err);
    else
      ev.acked.emplace_back(p.client_msg_id, r);
    pending_.pop_front();
    save_state();
  }
  return true;
}

bool device::catch_up(device_events& ev) {
  for (int pages = 0; pages < 1000000; ++pages) {
    sync_result page;
    auto err = rpc_->sync(epoch_, cursor_, 0, &page);
    if (err.code == error_code::stale_epoch) {
      reset_mailbox(err.epoch, ev);
      continue;
    }
    if (err.code == error_code::cursor_ahead) {
      // Our cursor is beyond anything the mailbox has: its history was lost (a restore, or a
      // crash with async durability). Read it again from the start.
      reset_mailbox(epoch_, ev);
      continue;
    }
    if (err) {
      on_failure(err);
      return false;
    }
    ev.expired |= page.expired;
    take_entries(page.entries, ev);
    if (page.entries.empty() || cursor_ >= page.max_seq) {
      cursor_ = std::max(cursor_, page.max_seq);
      break;
    }
  }
  save_state();
  return true;
}

bool device::apply(const notice& n, device_events& ev) {
  if (n.epoch == epoch_ && n.complete && cursor_ >= n.after_seq) {
    std::vector<entry> fresh;
    for (auto& e : n.entries)
      if (e.seq > cursor_)
        fresh.push_back(e);
    take_entries(fresh, ev);
    cursor_ = std::max(cursor_, n.max_seq);
    save_state();
    return true;
  }
  if (n.epoch == epoch_ && n.max_seq <= cursor_)
    return true; // nothing we do not have
  return catch_up(ev);
}

void device::take_entries(std::vector<entry>& xs, device_events& ev) {
  for (auto& e : xs) {
    if (e.seq <= cursor_)
      continue;
    cursor_ = e.seq;
    ev.entries.push_back(std::move(e));
  }
}

void device::reset_mailbox(uint32_t epoch, device_events& ev) {
  epoch_ = epoch;
  cursor_ = 0;
  acked_cursor_ = 0;
  ev.reset = true;
  ev.entries.clear();
}

void device::on_failure(const error& err) {
  last_error_ = err;
  if (is_fatal(err.code)) {
    fatal_ = err;
    return;
  }
  // Transport trouble, or the server asked us to come back later: drop the connection and
  // retry after a backoff with jitter.
  if (rpc_)
    rpc_->disconnect();
  online_ = false;
  ++reconnects_;
  thread_local std::mt19937 gen{std::random_device{}()};
  auto jitter = std::uniform_int_distribution<int64_t>(0, backoff_.count() / 2)(gen);
  next_attempt_ = std::chrono::steady_clock::now() + backoff_ + std::chrono::milliseconds(jitter);
  backoff_ = std::min(backoff_ * 2, opts_.backoff_max);
}

void device::load_state() {
  if (opts_.state_file.empty())
    return;
  std::ifstream in(opts_.state_file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "epoch") {
      words >> epoch_;
    } else if (key == "cursor") {
      words >> cursor_;
      acked_cursor_ = cursor_;
    } else if (key == "resume") {
      std::string hex;
      if (!(words >> hex) || !from_hex(hex, &resume_token_))
        resume_token_.clear();
    } else if (key == "pending") {
      pending_send p;
      std::string to, body;
      if (words >> p.client_msg_id >> to >> body && from_hex(to, &p.to) && from_hex(body, &p.body))
        pending_.push_back(std::move(p));
    }
  }
}

void device::save_state() {
  if (opts_.state_file.empty())
    return;
  namespace fs = std::filesystem;
  std::error_code ec;
  auto dir = fs::path(opts_.state_file).parent_path();
  if (!dir.empty())
    fs::create_directories(dir, ec);
  std::ostringstream out;
  out << "epoch " << epoch_ << "\ncursor " << cursor_ << "\n";
  if (!resume_token_.empty())
    out << "resume " << to_hex(resume_token_) << "\n";
  for (auto& p : pending_)
    out << "pending " << p.client_msg_id << ' ' << to_hex(p.to) << ' ' << to_hex(p.body) << "\n";
  auto text = out.str();
  // Write, fsync, rename: after a crash the file holds the old state or the new, and a queued
  // send is on disk before queue_send returns.
  auto tmp = opts_.state_file + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    return;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())
            && ::fsync(fd) == 0;
  ::close(fd);
  if (ok)
    fs::rename(tmp, opts_.state_file, ec);
}

} // namespace missive::protocol

// missive-cli: a command-line Missive client for people.
//
//   missive-cli [--server HOST:PORT] --user U --password P [--device D] [--state FILE] COMMAND
//
// Commands: register | send TO TEXT [--client-id ID] | sync | watch [--count N] [--timeout S]
// Entries print as one line each: seq<TAB>from<TAB>to<TAB>text (tab, newline and backslash in
// the text are escaped as \t, \n and \\).

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "missive/protocol/client.hpp"

namespace {

using namespace missive::protocol;
namespace fs = std::filesystem;

constexpr const char* usage =
  "usage: missive-cli [--server HOST:PORT] --user U --password P [--device D] [--state FILE]\n"
  "                   COMMAND\n"
  "commands:\n"
  "  register                        create the account U with password P\n"
  "  send TO TEXT [--client-id ID]   send TEXT to user TO; prints the sender's seq\n"
  "  sync                            print new entries since this device's cursor\n"
  "  watch [--count N] [--timeout S] stay connected and print entries as they arrive\n"
  "options:\n"
  "  --server   default 127.0.0.1:7070\n"
  "  --password or the MISSIVE_PASSWORD environment variable\n"
  "  --device   default cli\n"
  "  --state    cursor file, default ~/.missive/<user>.<device>.state\n";

struct options {
  std::string server = "127.0.0.1:7070";
  std::string user;
  std::string password;
  std::string device = "cli";
  std::string state_file;
  std::vector<std::string> command;
  std::optional<uint64_t> client_id;
  std::optional<uint64_t> count;
  std::optional<double> timeout_s;
};

/// What this device has: the mailbox epoch and the highest seq it printed.
struct device_state {
  uint32_t epoch = 0;
  uint32_t cursor = 0;
  bool loaded = false;
};

int die(const std::string& what, int code = 1) {
  std::cerr << "missive-cli: " << what << "\n";
  return code;
}

int die(const std::string& what, const error& err) {
  return die(what + ": " + err.to_string());
}

std::optional<device_state> load_state(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return std::nullopt;
  device_state st;
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "epoch")
      st.epoch = static_cast<uint32_t>(value);
    else if (key == "cursor")
      st.cursor = static_cast<uint32_t>(value);
  }
  st.loaded = true;
  return st;
}

bool save_state(const std::string& path, const device_state& st) {
  std::error_code ec;
  auto dir = fs::path(path).parent_path();
  if (!dir.empty())
    fs::create_directories(dir, ec);
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "epoch " << st.epoch << "\ncursor " << st.cursor << "\n";
    if (!out.flush())
      return false;
  }
  fs::rename(tmp, path, ec); // atomic: a crash leaves the old or the new cursor, never half
  return !ec;
}

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\\': out += "\\\\"; break;
      default: out += c;
    }
  }
  return out;
}

void print(const entry& e) {
  std::cout << e.seq << '\t' << e.from << '\t' << e.to << '\t' << escape(e.body) << '\n';
}

/// A logged-in device with its cursor.
class device {
public:
  explicit device(const options& opts) : opts_(opts) {}

  error start() {
    if (auto err = client_.connect(opts_.server))
      return err;
    session_info info;
    if (auto err = client_.login(opts_.user, opts_.password, opts_.device, &info))
      return err;
    if (auto st = load_state(opts_.state_file)) {
      state_ = *st;
    } else {
      // No local state: continue from what this device last acknowledged on the server.
      state_.epoch = info.epoch;
      state_.cursor = info.cursor;
    }
    return {};
  }

  /// Pages from the cursor to maxSeq, printing each entry; resyncs from 0 on a new epoch.
  error catch_up(uint64_t* printed) {
    for (;;) {
      sync_result page;
      auto err = client_.sync(state_.epoch, state_.cursor, 0, &page);
      if (err.code == error_code::stale_epoch || err.code == error_code::cursor_ahead) {
        std::cerr << "missive-cli: the mailbox was reset (" << to_string(err.code)
                  << "); reading it again from the start\n";
        state_ = device_state{err.code == error_code::stale_epoch ? err.epoch : 0u, 0, true};
        continue;
      }
      if (err)
        return err;
      state_.epoch = page.epoch;
      for (auto& e : page.entries) {
        print(e);
        state_.cursor = e.seq;
        ++*printed;
      }
      if (page.entries.empty() || state_.cursor >= page.max_seq) {
        state_.cursor = std::max(state_.cursor, page.max_seq);
        break;
      }
    }
    std::cout.flush();
    return commit();
  }

  /// Applies a push: inline entries when they continue our cursor, else a sync.
  error apply(const notice& p, uint64_t* printed) {
    if (p.epoch == state_.epoch && p.complete && state_.cursor >= p.after_seq) {
      for (auto& e : p.entries) {
        if (e.seq > state_.cursor) {
          print(e);
          ++*printed;
        }
      }
      state_.cursor = std::max(state_.cursor, p.max_seq);
      std::cout.flush();
      return commit();
    }
    return catch_up(printed);
  }

  /// Saves the cursor locally and acknowledges it to the server.
  error commit() {
    if (!save_state(opts_.state_file, state_))
      return error{error_code::invalid_argument, "cannot write state file " + opts_.state_file};
    if (state_.cursor == 0)
      return {};
    return client_.ack(state_.epoch, state_.cursor);
  }

  client& rpc() { return client_; }

private:
  const options& opts_;
  client client_;
  device_state state_;
};

uint64_t random_client_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0)
    id = (uint64_t{rd()} << 32) | rd();
  return id;
}

bool parse_u64(const std::string& s, uint64_t* out) {
  try {
    size_t pos = 0;
    *out = std::stoull(s, &pos);
    return pos == s.size() && !s.empty() && s[0] != '-';
  } catch (...) {
    return false;
  }
}

std::string default_state_file(const options& o) {
  const char* home = std::getenv("HOME");
  fs::path base = home ? fs::path(home) / ".missive" : fs::path(".missive");
  return (base / (o.user + "." + o.device + ".state")).string();
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (const char* pw = std::getenv("MISSIVE_PASSWORD"))
    o.password = pw;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc)
        return std::nullopt;
      return std::string(argv[++i]);
    };
    auto need = [&](std::optional<std::string> v) {
      if (!v) {
        std::cerr << "missive-cli: " << arg << " needs a value\n" << usage;
        std::exit(2);
      }
      return *v;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      return 0;
    } else if (arg == "--server") {
      o.server = need(value());
    } else if (arg == "--user") {
      o.user = need(value());
    } else if (arg == "--password") {
      o.password = need(value());
    } else if (arg == "--device") {
      o.device = need(value());
    } else if (arg == "--state") {
      o.state_file = need(value());
    } else if (arg == "--client-id" || arg == "--count") {
      uint64_t n = 0;
      if (!parse_u64(need(value()), &n))
        return die(arg + " expects a non-negative integer", 2);
      (arg == "--count" ? o.count : o.client_id) = n;
    } else if (arg == "--timeout") {
      try {
        o.timeout_s = std::stod(need(value()));
      } catch (...) {
        return die("--timeout expects seconds", 2);
      }
    } else if (arg.size() > 1 && arg[0] == '-' && arg[1] == '-') {
      return die("unknown option " + arg + "\n" + usage, 2);
    } else {
      o.command.push_back(arg);
    }
  }
  if (o.command.empty())
    return die(std::string("no command given\n") + usage, 2);
  if (o.user.empty() || o.password.empty())
    return die(std::string("--user and --password are required\n") + usage, 2);
  if (o.state_file.empty())
    o.state_file = default_state_file(o);
  const auto& cmd = o.command[0];

  if (cmd == "register") {
    if (o.command.size() != 1)
      return die("usage: register", 2);
    client c;
    if (auto err = c.connect(o.server))
      return die("cannot reach " + o.server, err);
    if (auto err = c.create_account(o.user, o.password))
      return die("register", err);
    std::cout << "registered " << o.user << "\n";
    return 0;
  }

  if (cmd == "send") {
    if (o.command.size() != 3)
      return die("usage: send TO TEXT [--client-id ID]", 2);
    client c;
    if (auto err = c.connect(o.server))
      return die("cannot reach " + o.server, err);
    if (auto err = c.login(o.user, o.password, o.device, nullptr))
      return die("login", err);
    send_result r;
    auto id = o.client_id.value_or(random_client_id());
    if (auto err = c.send(id, o.command[1], o.command[2], &r))
      return die("send", err);
    std::cout << r.seq << "\n";
    return 0;
  }

  if (cmd == "sync" || cmd == "watch") {
    if (o.command.size() != 1)
      return die("usage: " + cmd, 2);
    device d(o);
    if (auto err = d.start())
      return die(cmd, err);
    uint64_t printed = 0;
    if (auto err = d.catch_up(&printed))
      return die(cmd, err);
    if (cmd == "sync")
      return 0;
    using clock = std::chrono::steady_clock;
    auto deadline = o.timeout_s ? clock::now()
                                    + std::chrono::duration_cast<clock::duration>(
                                      std::chrono::duration<double>(*o.timeout_s))
                                : clock::time_point::max();
    while (!o.count || printed < *o.count) {
      auto now = clock::now();
      if (now >= deadline) {
        if (o.count)
          return die("watch: timed out after " + std::to_string(printed) + " of "
                       + std::to_string(*o.count) + " entries",
                     3);
        return 0;
      }
      auto wait = std::min<clock::duration>(deadline - now, std::chrono::seconds(5));
      notice p;
      if (!d.rpc().wait_push(std::chrono::duration_cast<std::chrono::milliseconds>(wait), &p)) {
        if (!d.rpc().connected())
          return die("watch: the connection to " + o.server + " was lost after "
                     + std::to_string(printed) + " entries");
        continue;
      }
      if (auto err = d.apply(p, &printed))
        return die("watch", err);
    }
    return 0;
  }
  return die("unknown command " + cmd + "\n" + usage, 2);
}

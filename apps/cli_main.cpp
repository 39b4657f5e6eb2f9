// missive-cli: a command-line Missive client for people.
//
//   missive-cli [--server HOST:PORT] --user U --password P [--device D] [--state FILE] COMMAND
//
// Commands: register | send TO TEXT [--client-id ID] | sync | watch [--count N] [--timeout S]
//           | block USER | unblock USER | blocks | push-token PLATFORM TOKEN | push-token off
//           | group-create #G | group-add #G USER | group-remove #G USER | group-leave #G
//           | group-admin #G USER on|off | group-members #G | groups
// Entries print as one line each: seq<TAB>from<TAB>to<TAB>text (tab, newline and backslash in
// the text are escaped as \t, \n and \\).

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "missive/protocol/device.hpp"

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
  "  block USER                      refuse messages from USER (their sends fail: blocked)\n"
  "  unblock USER                    accept messages from USER again\n"
  "  blocks                          print the users U blocks, one per line\n"
  "  push-token PLATFORM TOKEN       wake device D through the push gateway when offline\n"
  "  push-token off                  stop third-party pushes to device D\n"
  "  group-create #G                 create group #G (you are its owner)\n"
  "  group-add #G USER               add USER to #G (owner and admins)\n"
  "  group-remove #G USER            remove USER from #G (owner and admins)\n"
  "  group-leave #G                  leave #G\n"
  "  group-admin #G USER on|off      make USER an admin of #G or not (owner)\n"
  "  group-members #G                print the members of #G: name<TAB>role\n"
  "  groups                          print the groups U belongs to\n"
  "  (send #G TEXT sends to every member of #G)\n"
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

int die(const std::string& what, int code = 1) {
  std::cerr << "missive-cli: " << what << "\n";
  return code;
}

int die(const std::string& what, const error& err) {
  return die(what + ": " + err.to_string());
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

/// The text column of an entry: the message, or a group system entry in brackets.
std::string entry_text(const entry& e) {
  switch (e.kind) {
    case entry_kind::message: return escape(e.body);
    case entry_kind::group_created: return "[created " + escape(e.body) + "]";
    case entry_kind::member_added: return "[added " + escape(e.body) + "]";
    case entry_kind::member_removed: return "[removed " + escape(e.body) + "]";
    case entry_kind::member_left: return "[left]";
  }
  return escape(e.body);
}

/// Prints what a device step brought: entries on stdout, everything else on stderr.
/// Returns the number of entries printed.
uint64_t report(const device_events& ev, uint64_t sent_id = 0) {
  if (ev.reset)
    std::cerr << "missive-cli: the mailbox was reset; reading it again from the start\n";
  if (ev.expired)
    std::cerr << "missive-cli: some entries expired (retention) before this device read them\n";
  for (auto& e : ev.entries)
    std::cout << e.seq << '\t' << e.from << '\t' << e.to << '\t' << entry_text(e) << '\n';
  for (auto& [id, r] : ev.acked)
    if (id != sent_id)
      std::cerr << "missive-cli: queued send " << id << " acknowledged as seq " << r.seq << "\n";
  for (auto& [p, err] : ev.rejected)
    if (p.client_msg_id != sent_id)
      std::cerr << "missive-cli: queued send " << p.client_msg_id << " to " << p.to
                << " refused: " << err.to_string() << "\n";
  std::cout.flush();
  return ev.entries.size();
}

device_options device_opts(const options& o) {
  device_options d;
  d.server = o.server;
  d.user = o.user;
  d.password = o.password;
  d.device = o.device;
  d.state_file = o.state_file;
  return d;
}

/// Logs in for a one-shot command as device D.ctl, so that a `watch` of device D keeps
/// running. Returns the exit code on failure.
std::optional<int> open_control_session(const options& o, client& c) {
  auto ctl = o.device.size() + 4 <= 64 ? o.device + ".ctl" : std::string("ctl");
  if (auto err = c.connect(o.server))
    return die("cannot reach " + o.server, err);
  if (auto err = c.login(o.user, o.password, ctl, nullptr))
    return die("login", err);
  return std::nullopt;
}

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

  if (cmd == "block" || cmd == "unblock" || cmd == "blocks") {
    if (o.command.size() != (cmd == "blocks" ? 1u : 2u))
      return die(cmd == "blocks" ? "usage: blocks" : "usage: " + cmd + " USER", 2);
    client c;
    if (auto failed = open_control_session(o, c))
      return *failed;
    if (cmd == "blocks") {
      std::vector<std::string> users;
      if (auto err = c.list_blocked(&users))
        return die(cmd, err);
      for (auto& u : users)
        std::cout << u << "\n";
      return 0;
    }
    auto& other = o.command[1];
    if (auto err = cmd == "block" ? c.block(other) : c.unblock(other))
      return die(cmd + " " + other, err);
    std::cout << cmd << "ed " << other << "\n";
    return 0;
  }

  if (cmd.rfind("group", 0) == 0) {
    auto usage_of = [&]() -> std::string {
      if (cmd == "group-create" || cmd == "group-leave" || cmd == "group-members")
        return cmd + " #GROUP";
      if (cmd == "group-add" || cmd == "group-remove")
        return cmd + " #GROUP USER";
      if (cmd == "group-admin")
        return cmd + " #GROUP USER on|off";
      if (cmd == "groups")
        return cmd;
      return {};
    };
    auto u = usage_of();
    if (u.empty())
      return die("unknown command " + cmd + "\n" + usage, 2);
    size_t words = 1;
    for (char c : u)
      words += c == ' ';
    if (o.command.size() != words
        || (cmd == "group-admin" && o.command[3] != "on" && o.command[3] != "off"))
      return die("usage: " + u, 2);
    client c;
    if (auto failed = open_control_session(o, c))
      return *failed;
    error err;
    if (cmd == "groups") {
      std::vector<std::string> groups;
      if (!(err = c.list_groups(&groups)))
        for (auto& g : groups)
          std::cout << g << "\n";
    } else if (cmd == "group-members") {
      std::vector<missive::group_member> members;
      if (!(err = c.list_members(o.command[1], &members)))
        for (auto& m : members)
          std::cout << m.user << '\t'
                    << (m.role == missive::group_role::owner ? "owner"
                        : m.role == missive::group_role::admin ? "admin"
                                                      : "member")
                    << "\n";
    } else if (cmd == "group-create") {
      err = c.create_group(o.command[1]);
    } else if (cmd == "group-add") {
      err = c.add_member(o.command[1], o.command[2]);
    } else if (cmd == "group-remove") {
      err = c.remove_member(o.command[1], o.command[2]);
    } else if (cmd == "group-leave") {
      err = c.leave_group(o.command[1]);
    } else {
      err = c.set_admin(o.command[1], o.command[2], o.command[3] == "on");
    }
    if (err)
      return die(cmd, err);
    return 0;
  }

  if (cmd == "push-token") {
    bool off = o.command.size() == 2 && o.command[1] == "off";
    if (o.command.size() != 3 && !off)
      return die("usage: push-token PLATFORM TOKEN | push-token off", 2);
    // The token belongs to the device itself: this logs in as D (a `watch` of D is replaced).
    client c;
    if (auto err = c.connect(o.server))
      return die("cannot reach " + o.server, err);
    if (auto err = c.login(o.user, o.password, o.device, nullptr))
      return die("login", err);
    if (auto err = off ? c.set_push_token("", "") : c.set_push_token(o.command[1], o.command[2]))
      return die(cmd, err);
    std::cout << (off ? "push token of " + o.device + " removed"
                      : "push token of " + o.device + " set for " + o.command[1])
              << "\n";
    return 0;
  }

  using clock = std::chrono::steady_clock;
  auto deadline = o.timeout_s ? clock::now()
                                  + std::chrono::duration_cast<clock::duration>(
                                    std::chrono::duration<double>(*o.timeout_s))
                              : clock::time_point::max();
  auto time_left = [&]() {
    auto now = clock::now();
    return now >= deadline ? std::chrono::milliseconds(0)
                           : std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::min<clock::duration>(deadline - now, std::chrono::seconds(5)));
  };

  if (cmd == "send") {
    if (o.command.size() != 3)
      return die("usage: send TO TEXT [--client-id ID] [--timeout S]", 2);
    if (!o.timeout_s)
      deadline = clock::now() + std::chrono::seconds(30);
    auto opts = device_opts(o);
    opts.receive = false; // the next `sync` still prints everything
    device d(opts);
    auto id = d.queue_send(o.command[1], o.command[2], o.client_id.value_or(random_client_id()));
    // Every step's events are reported: a step that reconnects also sends and acknowledges.
    auto wait = std::chrono::milliseconds(0);
    for (;;) {
      auto ev = d.step(wait);
      report(ev, id);
      for (auto& [acked, r] : ev.acked)
        if (acked == id) {
          std::cout << r.seq << "\n";
          return 0;
        }
      for (auto& [p, err] : ev.rejected)
        if (p.client_msg_id == id)
          return die("send", err);
      if (d.fatal())
        return die("send", d.fatal());
      if (time_left().count() == 0)
        return die("send: not acknowledged in time (" + d.last_error().to_string()
                     + "); it stays queued in " + o.state_file
                     + " and the next command re-sends it",
                   4);
      // Offline, or rate limited by the server: wait a little before the next attempt.
      wait = std::min(time_left(), std::chrono::milliseconds(100));
    }
  }

  if (cmd == "sync" || cmd == "watch") {
    if (o.command.size() != 1)
      return die("usage: " + cmd, 2);
    if (cmd == "sync" && !o.timeout_s)
      deadline = clock::now() + std::chrono::seconds(30);
    device d(device_opts(o));
    uint64_t printed = 0;
    auto retry_wait = std::chrono::milliseconds(0);
    for (;;) {
      // sync: one step once online catches up from the cursor. watch: keep stepping. Every
      // step's entries are printed: a step that reconnects also catches up.
      auto ev = d.step(cmd == "sync" ? retry_wait : time_left());
      printed += report(ev);
      if (d.fatal())
        return die(cmd, d.fatal());
      if (cmd == "sync" && d.online())
        return 0;
      if (o.count && printed >= *o.count)
        return 0;
      if (time_left().count() == 0) {
        if (cmd == "sync")
          return die("sync: cannot reach " + o.server, d.last_error());
        if (o.count)
          return die("watch: timed out after " + std::to_string(printed) + " of "
                       + std::to_string(*o.count) + " entries",
                     3);
        return 0;
      }
      retry_wait = std::min(time_left(), std::chrono::milliseconds(100));
    }
  }

  return die("unknown command " + cmd + "\n" + usage, 2);
}

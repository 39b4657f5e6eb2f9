#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <caf/actor_system.hpp>

#include "missive/actors/node.hpp"

namespace missive::protocol {

struct gateway_options {
  /// HOST:PORT to listen on; port 0 picks a free one (reported through on_listening).
  std::string listen = "127.0.0.1:7070";
  /// Largest message a client may send, in bytes (Cap'n Proto traversal limit).
  uint64_t max_message_bytes = 1u << 20;
  /// A connection quiet this long gets a heartbeat call.
  std::chrono::milliseconds heartbeat_interval{30000};
  /// A notify or heartbeat unanswered this long closes the connection (device offline).
  std::chrono::milliseconds push_timeout{10000};
  /// Event-loop threads serving connections (accepted on the calling thread, spread
  /// round-robin); a connection stays on its thread.
  size_t threads = 1;
  /// The gateway reads and writes the RPC messages of sends and notifies itself, and leaves
  /// every other call to Cap'n Proto's RPC system (see protocol/README.md). Off: the RPC
  /// system carries them all (the same messages on the wire, more CPU per message).
  bool direct_calls = true;
};

/// Blocks SIGINT, SIGTERM and SIGHUP so that the gateway's event loop can wait for them. Call in
/// main() before any thread is started (threads inherit the signal mask).
void capture_stop_signals();

/// Runs the Cap'n Proto gateway on the calling thread until SIGINT or SIGTERM. Calls
/// `on_listening` with the bound HOST:PORT once it accepts connections, and `on_hangup` (if
/// set) on the gateway's thread at every SIGHUP. Returns when every client connection has been
/// closed; the caller then stops the node's actors.
/// Throws std::runtime_error if the address cannot be bound.
void run_gateway(caf::actor_system& sys, const node& n, const gateway_options& opts,
                 const std::function<void(const std::string&)>& on_listening,
                 const std::function<void()>& on_hangup = {});

} // namespace missive::protocol

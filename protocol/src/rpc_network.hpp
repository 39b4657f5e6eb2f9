#pragma once

#include <capnp/rpc-twoparty.capnp.h>
#include <capnp/message.h>
#include <capnp/rpc.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include <cstdint>
#include <deque>
#include <unordered_map>

#include "server_internal.capnp.h"

namespace missive::protocol {

class batched_stream;

/// The gateway's RPC network: one per gateway thread, carrying all of its client connections
/// under one `capnp::RpcSystem`.
///
/// Why not Cap'n Proto's `TwoPartyVatNetwork` with an `RpcSystem` per connection (what
/// `TwoPartyServer` does): those two cost ≈ 4.2 KB of heap per connection before its first
/// message (2.3 KB the network, 1.9 KB the RPC system), a quarter of the budget for an idle
/// device. Here a connection is a small object of its own; the RPC system and its tables are
/// shared. The wire protocol is the same (two-party RPC over a byte stream: clients still use
/// `TwoPartyClient`); only the server's "vat ids" differ — `ConnectionId`, so that the bootstrap
/// factory can give every connection its own `Gateway`.
using rpc_vat_network =
  capnp::VatNetwork<wire::ConnectionId, capnp::rpc::twoparty::ProvisionId,
                    capnp::rpc::twoparty::RecipientId, capnp::rpc::twoparty::ThirdPartyCapId,
                    capnp::rpc::twoparty::JoinResult>;

class rpc_network;

/// One client connection: reads and writes framed Cap'n Proto messages on its stream, a
/// `batched_stream`.
///
/// A message already read with the ones before it is taken out of the stream's buffer at once,
/// and a message written while nothing waits is queued in the stream's next write at once:
/// Cap'n Proto's `tryReadMessage` and `writeMessage` would chain 3–5 promises for each
/// message on the socket. Only a message not read yet, or one written behind a full socket,
/// waits on a promise.
class rpc_connection final : public rpc_vat_network::Connection {
public:
  rpc_connection(rpc_network& network, uint64_t id, kj::Own<batched_stream> stream);
  ~rpc_connection() noexcept(false);

  uint64_t id() const { return id_; }

  /// Ends the connection from the server's side: the pending read fails, so the RPC system
  /// drops the connection (its capabilities, then this object, closing the socket).
  void close();

  wire::ConnectionId::Reader getPeerVatId() override;
  kj::Own<capnp::OutgoingRpcMessage> newOutgoingMessage(kj::uint first_segment_words) override;
  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> receiveIncomingMessage() override;
  kj::Promise<void> shutdown() override;

private:
  class outgoing;
  class incoming;
  void write(kj::Own<outgoing> message);
  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> read_message();
  kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> read_after(size_t bytes);

  rpc_network& network_;
  uint64_t id_;
  kj::Own<batched_stream> stream_;
  capnp::word vat_id_[2]; // this connection's ConnectionId as an unchecked message
  kj::Promise<void> previous_write_ = kj::READY_NOW;
  uint32_t writes_waiting_ = 0; // written through previous_write_ and not queued yet
  kj::Canceler reads_;
  bool closed_ = false;
  bool shut_down_ = false;
};

/// Hands the connections adopted on one gateway thread to its RPC system, and finds them by id.
class rpc_network final : public rpc_vat_network {
public:
  /// `options` limit every incoming message; `shutdown_grace` bounds how long a closing
  /// connection waits for its last writes to leave (a peer that reads nothing more cannot keep
  /// its socket open).
  rpc_network(capnp::ReaderOptions options, kj::Timer& timer, kj::Duration shutdown_grace);

  /// A new client connection (its socket, which gets a `batched_stream`), for the RPC
  /// system's next accept().
  void adopt(kj::Own<kj::AsyncIoStream> stream);

  /// The live connection with this id, if any.
  kj::Maybe<rpc_connection&> find(uint64_t id);

  kj::Maybe<kj::Own<Connection>> connect(wire::ConnectionId::Reader) override;
  kj::Promise<kj::Own<Connection>> accept() override;

private:
  friend class rpc_connection;

  capnp::ReaderOptions options_;
  kj::Timer& timer_;
  kj::Duration shutdown_grace_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, rpc_connection*> live_;
  std::deque<kj::Own<rpc_connection>> waiting_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<kj::Own<Connection>>>> acceptor_;
};

} // namespace missive::protocol

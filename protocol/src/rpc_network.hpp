#pragma once

#include <capnp/rpc-twoparty.capnp.h>
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
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

/// What the owner of a connection takes out of its RPC traffic before the RPC system sees it,
/// and sees of what the RPC system sends (the gateway's direct calls, gateway.cpp). Runs on the
/// connection's thread, in the order of the messages on the wire.
class rpc_interceptor {
public:
  virtual ~rpc_interceptor() noexcept(false) = default;

  /// A message from the peer: true if it was handled here, and the RPC system never sees it.
  /// An exception fails the connection, as a message the RPC system cannot read would.
  virtual bool take(capnp::rpc::Message::Reader message) = 0;

  /// A message of the RPC system's, just before it is written.
  virtual void sending(capnp::rpc::Message::Reader message) = 0;
};

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

  /// From now on, `interceptor` sees the connection's messages; it goes with the connection.
  void intercept(kj::Own<rpc_interceptor> interceptor) { interceptor_ = kj::mv(interceptor); }
  kj::Maybe<rpc_interceptor&> interceptor() {
    if (interceptor_.get() == nullptr)
      return nullptr;
    return *interceptor_;
  }

  /// A message of the interceptor's own (written in order with the RPC system's; the
  /// interceptor does not see it in `sending`). Its body is an `rpc::Message`.
  kj::Own<capnp::OutgoingRpcMessage> direct_message(kj::uint first_segment_words = 0);

private:
  class outgoing;
  class incoming;
  void write(kj::Own<outgoing> message);
  bool taken(incoming& message);
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
  kj::Own<rpc_interceptor> interceptor_; // or null
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
  rpc_connection& adopt(kj::Own<kj::AsyncIoStream> stream);

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

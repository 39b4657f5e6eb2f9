@0xe4b3c772f32708a8;
# Types the server uses internally with Cap'n Proto; never on the wire.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("missive::wire");

struct ConnectionId {
  # The "vat id" of one client connection in the gateway's RPC network: each gateway thread runs
  # one RPC system for all its connections (protocol/src/rpc_network.hpp), and its bootstrap
  # factory tells the connections apart by this.
  id @0 :UInt64;
}

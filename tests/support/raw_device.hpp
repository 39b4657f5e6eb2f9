#pragma once

// A device speaking raw Cap'n Proto through Cap'n Proto's own RPC system (to see wire fields
// the client library hides, or to make calls it never makes), on the calling thread's own
// event loop.

#include <string>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "missive.capnp.h"

namespace missive::test {

struct raw_device {
  raw_device(kj::AsyncIoContext& io, const std::string& address)
    : io(io),
      stream(io.provider->getNetwork().parseAddress(address).wait(io.waitScope)->connect().wait(
        io.waitScope)),
      rpc(*stream) {}

  /// A login request (not sent yet) of `user`/`device` with password "secret1".
  capnp::Request<wire::Gateway::LoginParams, wire::Gateway::LoginResults>
  login_request(const std::string& user, const std::string& device,
                kj::Own<wire::PushReceiver::Server> receiver) {
    auto req = rpc.bootstrap().castAs<wire::Gateway>().loginRequest();
    req.setUser(user);
    req.setPassword("secret1");
    req.setDeviceId(device);
    req.setReceiver(kj::mv(receiver));
    return req;
  }

  capnp::Response<wire::Gateway::LoginResults> login(const std::string& user,
                                                     const std::string& device,
                                                     kj::Own<wire::PushReceiver::Server> receiver) {
    return login_request(user, device, kj::mv(receiver)).send().wait(io.waitScope);
  }

  kj::AsyncIoContext& io;
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient rpc;
};

} // namespace missive::test

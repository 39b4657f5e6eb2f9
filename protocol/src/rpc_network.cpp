#include "rpc_network.hpp"

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <kj/debug.h>

#include <cstring>

namespace missive::protocol {

/// First segment of an outgoing message whose size the RPC system was not told (calls and
/// answers built without a size hint): Cap'n Proto's default is 1024 words, an 8 KiB `calloc`
/// zeroed for every call and answer, while a send, its answer with one entry, or a notify
/// with a few entries fit in 1 KiB; a bigger message grows by further segments.
constexpr kj::uint default_first_segment_words = 128;

/// An RPC message being built; written in order after the ones sent before it.
class rpc_connection::outgoing final : public capnp::OutgoingRpcMessage, public kj::Refcounted {
public:
  outgoing(rpc_connection& connection, kj::uint first_segment_words)
    : connection_(connection),
      message_(first_segment_words == 0 ? default_first_segment_words : first_segment_words) {}

  capnp::AnyPointer::Builder getBody() override { return message_.getRoot<capnp::AnyPointer>(); }
  void send() override { connection_.write(kj::addRef(*this)); }
  size_t sizeInWords() override { return message_.sizeInWords(); }

  capnp::MallocMessageBuilder& message() { return message_; }

private:
  rpc_connection& connection_;
  capnp::MallocMessageBuilder message_;
};

class rpc_connection::incoming final : public capnp::IncomingRpcMessage {
public:
  explicit incoming(kj::Own<capnp::MessageReader> message) : message_(kj::mv(message)) {}

  capnp::AnyPointer::Reader getBody() override { return message_->getRoot<capnp::AnyPointer>(); }
  size_t sizeInWords() override { return message_->sizeInWords(); }

private:
  kj::Own<capnp::MessageReader> message_;
};

rpc_connection::rpc_connection(rpc_network& network, uint64_t id,
                               kj::Own<kj::AsyncIoStream> stream)
  : network_(network), id_(id), stream_(kj::mv(stream)) {
  capnp::MallocMessageBuilder builder(4);
  builder.initRoot<wire::ConnectionId>().setId(id);
  std::memset(vat_id_, 0, sizeof(vat_id_));
  capnp::copyToUnchecked(builder.getRoot<wire::ConnectionId>().asReader(),
                         kj::arrayPtr(vat_id_, 2));
  network_.live_.emplace(id_, this);
}

rpc_connection::~rpc_connection() noexcept(false) {
  network_.live_.erase(id_);
}

void rpc_connection::close() {
  if (closed_)
    return;
  closed_ = true;
  reads_.cancel(KJ_EXCEPTION(DISCONNECTED, "connection closed by the server"));
}

wire::ConnectionId::Reader rpc_connection::getPeerVatId() {
  return capnp::readMessageUnchecked<wire::ConnectionId>(vat_id_);
}

kj::Own<capnp::OutgoingRpcMessage> rpc_connection::newOutgoingMessage(kj::uint first_segment_words) {
  return kj::refcounted<outgoing>(*this, first_segment_words);
}

void rpc_connection::write(kj::Own<outgoing> message) {
  // A failed write skips the ones after it; the read side fails as well and ends the connection.
  previous_write_ = previous_write_
                      .then([this, message = kj::mv(message)]() mutable {
                        return capnp::writeMessage(*stream_, message->message());
                      })
                      .eagerlyEvaluate(nullptr);
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>>
rpc_connection::receiveIncomingMessage() {
  if (closed_)
    return KJ_EXCEPTION(DISCONNECTED, "connection closed by the server");
  return reads_.wrap(capnp::tryReadMessage(*stream_, network_.options_))
    .then([](kj::Maybe<kj::Own<capnp::MessageReader>>&& message)
            -> kj::Maybe<kj::Own<capnp::IncomingRpcMessage>> {
      KJ_IF_MAYBE(m, message) {
        return kj::Own<capnp::IncomingRpcMessage>(kj::heap<incoming>(kj::mv(*m)));
      }
      return nullptr; // the client hung up
    });
}

kj::Promise<void> rpc_connection::shutdown() {
  auto written = kj::mv(previous_write_);
  previous_write_ = KJ_EXCEPTION(DISCONNECTED, "connection shut down");
  // A failed write or a peer gone already (ENOTCONN) leaves nothing to shut down.
  return written.then([]() {}, [](kj::Exception&&) {})
    .exclusiveJoin(network_.timer_.afterDelay(network_.shutdown_grace_))
    .then([this]() { (void)kj::runCatchingExceptions([this]() { stream_->shutdownWrite(); }); });
}

rpc_network::rpc_network(capnp::ReaderOptions options, kj::Timer& timer,
                         kj::Duration shutdown_grace)
  : options_(options), timer_(timer), shutdown_grace_(shutdown_grace) {}

void rpc_network::adopt(kj::Own<kj::AsyncIoStream> stream) {
  auto connection = kj::heap<rpc_connection>(*this, next_id_++, kj::mv(stream));
  KJ_IF_MAYBE(a, acceptor_) {
    auto fulfiller = kj::mv(*a);
    acceptor_ = nullptr;
    fulfiller->fulfill(kj::mv(connection));
  } else {
    waiting_.push_back(kj::mv(connection));
  }
}

kj::Maybe<rpc_connection&> rpc_network::find(uint64_t id) {
  if (auto it = live_.find(id); it != live_.end())
    return *it->second;
  return nullptr;
}

kj::Maybe<kj::Own<rpc_vat_network::Connection>> rpc_network::connect(wire::ConnectionId::Reader) {
  return nullptr; // the server never calls out
}

kj::Promise<kj::Own<rpc_vat_network::Connection>> rpc_network::accept() {
  if (!waiting_.empty()) {
    kj::Own<Connection> next = kj::mv(waiting_.front());
    waiting_.pop_front();
    return kj::mv(next);
  }
  auto paf = kj::newPromiseAndFulfiller<kj::Own<Connection>>();
  acceptor_ = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

} // namespace missive::protocol

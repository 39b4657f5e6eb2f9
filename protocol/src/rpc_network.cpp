#include "rpc_network.hpp"

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <kj/debug.h>

#include <cstring>

#include "batched_stream.hpp"
#include "framing.hpp"

namespace missive::protocol {

/// First segment of an outgoing message whose size the RPC system was not told (calls and
/// answers built without a size hint): Cap'n Proto's default is 1024 words, an 8 KiB `calloc`
/// zeroed for every call and answer, while a send, its answer with one entry, or a notify
/// with a few entries fit in 1 KiB; a bigger message grows by further segments.
constexpr kj::uint default_first_segment_words = 128;

/// An RPC message being built; written in order after the ones sent before it.
class rpc_connection::outgoing final : public capnp::OutgoingRpcMessage, public kj::Refcounted {
public:
  outgoing(rpc_connection& connection, kj::uint first_segment_words, bool direct)
    : connection_(connection),
      message_(first_segment_words == 0 ? default_first_segment_words : first_segment_words),
      direct_(direct) {}

  capnp::AnyPointer::Builder getBody() override { return message_.getRoot<capnp::AnyPointer>(); }
  void send() override { connection_.write(kj::addRef(*this)); }
  size_t sizeInWords() override { return message_.sizeInWords(); }

  capnp::MallocMessageBuilder& message() { return message_; }
  bool direct() const { return direct_; }

private:
  rpc_connection& connection_;
  capnp::MallocMessageBuilder message_;
  bool direct_; // the interceptor's own message, not the RPC system's
};

/// A message as it came on the wire (its segment table, then its segments), in one array.
class rpc_connection::incoming final : public capnp::IncomingRpcMessage {
public:
  incoming(kj::Array<capnp::word> words, capnp::ReaderOptions options)
    : words_(kj::mv(words)), message_(words_, options) {}

  capnp::AnyPointer::Reader getBody() override { return message_.getRoot<capnp::AnyPointer>(); }
  size_t sizeInWords() override { return words_.size(); }
  capnp::rpc::Message::Reader message() { return message_.getRoot<capnp::rpc::Message>(); }

private:
  kj::Array<capnp::word> words_;
  capnp::FlatArrayMessageReader message_;
};

rpc_connection::rpc_connection(rpc_network& network, uint64_t id,
                               kj::Own<batched_stream> stream)
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
  return kj::refcounted<outgoing>(*this, first_segment_words, false);
}

kj::Own<capnp::OutgoingRpcMessage> rpc_connection::direct_message(kj::uint first_segment_words) {
  return kj::refcounted<outgoing>(*this, first_segment_words, true);
}

void rpc_connection::write(kj::Own<outgoing> message) {
  if (!message->direct() && interceptor_.get() != nullptr)
    interceptor_->sending(message->message().getRoot<capnp::rpc::Message>().asReader());
  if (writes_waiting_ == 0 && !shut_down_ && write_now(*stream_, message->message()))
    return;
  // Behind a full socket (or a failed one), in order after the writes already waiting. A
  // failed write skips the ones after it; the read side fails as well and ends the connection.
  ++writes_waiting_;
  previous_write_ = previous_write_
                      .then([this, message = kj::mv(message)]() mutable {
                        return capnp::writeMessage(*stream_, message->message());
                      })
                      .then([this]() { --writes_waiting_; })
                      .eagerlyEvaluate(nullptr);
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>>
rpc_connection::receiveIncomingMessage() {
  if (closed_)
    return KJ_EXCEPTION(DISCONNECTED, "connection closed by the server");
  return read_message();
}

bool rpc_connection::taken(incoming& message) {
  return interceptor_.get() != nullptr && interceptor_->take(message.message());
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> rpc_connection::read_message() {
  for (;;) {
    if (closed_) // by the interceptor
      return KJ_EXCEPTION(DISCONNECTED, "connection closed by the server");
    next_message next;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      next = take_message(*stream_, network_.options_.traversalLimitInWords);
    })) {
      return kj::mv(*e);
    }
    if (next.words.size() == 0)
      return read_after(next.wait_for);
    if (next.rest == 0) {
      auto m = kj::heap<incoming>(kj::mv(next.words), network_.options_);
      bool handled = false;
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { handled = taken(*m); })) {
        return kj::mv(*e);
      }
      if (handled)
        continue; // the next one
      return kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>(kj::mv(m));
    }
    // A message bigger than the stream's buffer: the rest goes straight into its own array.
    auto rest = next.words.asBytes().slice(next.words.asBytes().size() - next.rest,
                                           next.words.asBytes().size());
    return reads_.wrap(stream_->read(rest.begin(), rest.size()))
      .then([this, message = kj::mv(next.words)]() mutable
            -> kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> {
        auto m = kj::heap<incoming>(kj::mv(message), network_.options_);
        if (taken(*m))
          return receiveIncomingMessage();
        return kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>(kj::mv(m));
      });
  }
}

kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>>
rpc_connection::read_after(size_t bytes) {
  return reads_.wrap(stream_->fill(bytes)).then(
    [this](bool more) -> kj::Promise<kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>> {
      if (more)
        return receiveIncomingMessage();
      if (stream_->buffered().size() == 0)
        return kj::Maybe<kj::Own<capnp::IncomingRpcMessage>>(nullptr); // the client hung up
      return KJ_EXCEPTION(DISCONNECTED, "Premature EOF.");
    });
}

kj::Promise<void> rpc_connection::shutdown() {
  auto written = kj::mv(previous_write_);
  previous_write_ = KJ_EXCEPTION(DISCONNECTED, "connection shut down"); // later writes fail
  shut_down_ = true;
  // A failed write or a peer gone already (ENOTCONN) leaves nothing to shut down.
  return written.then([]() {}, [](kj::Exception&&) {})
    .exclusiveJoin(network_.timer_.afterDelay(network_.shutdown_grace_))
    .then([this]() { (void)kj::runCatchingExceptions([this]() { stream_->shutdownWrite(); }); });
}

rpc_network::rpc_network(capnp::ReaderOptions options, kj::Timer& timer,
                         kj::Duration shutdown_grace)
  : options_(options), timer_(timer), shutdown_grace_(shutdown_grace) {}

rpc_connection& rpc_network::adopt(kj::Own<kj::AsyncIoStream> stream) {
  auto connection =
    kj::heap<rpc_connection>(*this, next_id_++, kj::heap<batched_stream>(kj::mv(stream)));
  auto& adopted = *connection;
  KJ_IF_MAYBE(a, acceptor_) {
    auto fulfiller = kj::mv(*a);
    acceptor_ = nullptr;
    fulfiller->fulfill(kj::mv(connection));
  } else {
    waiting_.push_back(kj::mv(connection));
  }
  return adopted;
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

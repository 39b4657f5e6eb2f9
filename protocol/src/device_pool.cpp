#include "missive/protocol/device_pool.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>

#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include "batched_stream.hpp"
#include "framing.hpp"
#include "socket_stream.hpp"
#include "convert.hpp"

namespace missive::protocol {

namespace {

/// HOST:PORT (IPv4) into a sockaddr.
bool parse_ipv4(const std::string& host_port, sockaddr_in* out) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos)
    return false;
  std::memset(out, 0, sizeof(*out));
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  return inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

/// Ticks due at given times, run on one event loop by a timerfd (microsecond resolution).
class tick_timer {
public:
  explicit tick_timer(kj::UnixEventPort& port)
    : fd_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)),
      observer_(port, fd_, kj::UnixEventPort::FdObserver::OBSERVE_READ),
      loop_(run().eagerlyEvaluate([](kj::Exception&& e) {
        KJ_LOG(ERROR, "device pool: tick timer failed", e);
      })) {}
  ~tick_timer() noexcept(false) {
    loop_ = nullptr; // before the observer and the fd it watches
  }

  void add(device_pool::clock::time_point at, device_pool::tick fn) {
    due_.push({at, next_++, std::move(fn)});
    arm();
  }

private:
  struct entry {
    device_pool::clock::time_point at;
    uint64_t order; // ties run in the order they were added
    device_pool::tick fn;
    bool operator>(const entry& o) const { return at != o.at ? at > o.at : order > o.order; }
  };

  kj::Promise<void> run() {
    return observer_.whenBecomesReadable().then([this]() {
      uint64_t expirations;
      while (::read(fd_, &expirations, sizeof(expirations)) > 0) {
      }
      auto now = device_pool::clock::now();
      while (!due_.empty() && due_.top().at <= now) {
        auto e = std::move(const_cast<entry&>(due_.top()));
        due_.pop();
        std::optional<device_pool::clock::time_point> again;
        // A tick that throws is dropped (and logged); the others keep their times.
        KJ_IF_MAYBE(failure, kj::runCatchingExceptions([&]() { again = e.fn(); })) {
          KJ_LOG(ERROR, "device pool: a scheduled tick failed and was dropped", *failure);
          again = std::nullopt;
        }
        if (again)
          due_.push({*again, next_++, std::move(e.fn)});
      }
      armed_ = {};
      arm();
      return run();
    });
  }

  /// The timerfd fires at the earliest due tick.
  void arm() {
    if (due_.empty() || (armed_ != device_pool::clock::time_point{} && armed_ <= due_.top().at))
      return;
    armed_ = due_.top().at;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(armed_.time_since_epoch())
                .count();
    itimerspec spec{};
    spec.it_value.tv_sec = ns / 1000000000;
    spec.it_value.tv_nsec = std::max<int64_t>(ns % 1000000000, 1); // all zero would disarm it
    KJ_SYSCALL(::timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr));
  }

  kj::AutoCloseFd fd_;
  kj::UnixEventPort::FdObserver observer_;
  std::priority_queue<entry, std::vector<entry>, std::greater<>> due_;
  uint64_t next_ = 0;
  device_pool::clock::time_point armed_{};
  kj::Promise<void> loop_;
};

thread_local const void* running_pool = nullptr; // the pool whose thread this is

} // namespace

/// One device connection, living on the pool's thread. It speaks Cap'n Proto's RPC protocol
/// (`capnp/rpc.capnp`: Bootstrap, Call, Return, Finish) itself rather than through an
/// `RpcSystem`: the server sees the same messages a `TwoPartyClient` sends, and the tool spends
/// a fraction of the CPU on each (no promise, question table or pipeline per call). The device
/// exports one capability, its `PushReceiver` (export 0), and imports the `Gateway` and its
/// `Session`; it never releases them (they go with the connection).
class pooled_device final : private kj::TaskSet::ErrorHandler {
public:
  pooled_device(pooled_device_spec spec, std::shared_ptr<device_handler> h, kj::Timer& timer)
    : spec_(std::move(spec)), handler_(std::move(h)), timer_(timer), tasks_(*this) {}

  void start(kj::Promise<kj::Own<kj::AsyncIoStream>> connecting) {
    tasks_.add(connecting.then([this](kj::Own<kj::AsyncIoStream>&& s) {
      stream_ = kj::heap<batched_stream>(kj::mv(s));
      outgoing m(8);
      m.message.initBootstrap().setQuestionId(ask(question{kind::bootstrap}));
      post(m);
      return read_loop();
    }));
  }

  void send(uint64_t id, std::string to, std::string body) {
    if (!logged_in_ || done_) {
      // Answered on a later turn, never inside send(): a caller that sends again from its
      // on_ack (a closed loop) must not recurse through every send of a device that is gone.
      tasks_.add(kj::evalLater([this, id]() {
        handler_->on_ack(id, error{error_code::not_logged_in, "not logged in"}, {});
      }));
      return;
    }
    outgoing m(24 + (to.size() + 8) / 8 + (body.size() + 7) / 8);
    auto p = call<wire::Session>(m, ask(question{kind::send, id}), session_, session_send)
               .initAs<wire::Session::SendParams>();
    p.setClientMsgId(id);
    p.setTo(to);
    p.setBody(as_data(body));
    post(m);
  }

  ~pooled_device() noexcept(false) {
    done_ = true; // no callbacks from here on
  }

private:
  static constexpr uint32_t receiver_export = 0;
  // Method ordinals in protocol/missive.capnp.
  static constexpr uint16_t gateway_login = 1;
  static constexpr uint16_t session_send = 0, session_sync = 1, session_ack = 2;
  static constexpr uint16_t session_set_push_token = 6;
  static constexpr uint16_t receiver_notify = 0, receiver_heartbeat = 1;

  enum class kind : uint8_t { bootstrap, login, push_token, send, sync, ack };
  struct question {
    kind what;
    uint64_t client_msg_id = 0; // send: the answer's key for the handler
    uint32_t upto = 0;          // ack: the cursor acknowledged
    bool live = false;
  };

  /// A message for the server, built in place.
  struct outgoing {
    explicit outgoing(size_t words)
      : builder(static_cast<unsigned>(words)), message(builder.initRoot<capnp::rpc::Message>()) {}
    capnp::MallocMessageBuilder builder;
    capnp::rpc::Message::Builder message;
  };

  /// A Call to method `method` of imported capability `target`; returns its params' content.
  template <class Interface>
  capnp::AnyPointer::Builder call(outgoing& m, uint32_t question_id, uint32_t target,
                                  uint16_t method) {
    auto c = m.message.initCall();
    c.setQuestionId(question_id);
    c.initTarget().setImportedCap(target);
    c.setInterfaceId(Interface::_capnpPrivate::typeId);
    c.setMethodId(method);
    return c.initParams().getContent();
  }

  uint32_t ask(question q) {
    q.live = true;
    if (!free_.empty()) {
      auto id = free_.back();
      free_.pop_back();
      questions_[id] = q;
      return id;
    }
    questions_.push_back(q);
    return static_cast<uint32_t>(questions_.size() - 1);
  }

  /// Queues `m` on the stream, after the Finish held back for a send's answer: both leave in
  /// this event-loop turn's one write (batched_stream copies at once, so the builder may go;
  /// its promise only waits behind a full socket, and a failed write shows in the read loop).
  void post(outgoing& m) {
    if (done_ || stream_.get() == nullptr)
      return;
    if (held_finish_) {
      auto id = *held_finish_;
      held_finish_ = std::nullopt;
      finish(id);
    }
    if (write_now(*stream_, m.builder))
      return;
    auto words = capnp::messageToFlatArray(m.builder); // behind a full socket: in order after
    auto bytes = words.asBytes();
    (void)stream_->write(bytes.begin(), bytes.size());
  }

  /// Tells the server a question is over (its answer read); the id may be asked again.
  void finish(uint32_t id) {
    outgoing m(4);
    auto f = m.message.initFinish();
    f.setQuestionId(id);
    f.setReleaseResultCaps(false); // capabilities in answers (the gateway, the session) stay ours
    questions_[id].live = false;
    free_.push_back(id);
    post(m);
  }

  /// Takes every message the stream has buffered whole, then waits for more (take_message: no
  /// promise for a message that came with the ones before it). A framing error fails the task,
  /// which closes the device.
  kj::Promise<void> read_loop() {
    for (;;) {
      if (done_)
        return kj::READY_NOW;
      auto next = take_message(*stream_, capnp::ReaderOptions().traversalLimitInWords);
      if (next.words.size() == 0) {
        return stream_->fill(next.wait_for).then([this](bool more) -> kj::Promise<void> {
          if (more)
            return read_loop();
          closed(error{error_code::disconnected, "connection closed"});
          return kj::READY_NOW;
        });
      }
      if (next.rest == 0) {
        deliver(next.words);
        continue;
      }
      auto bytes = next.words.asBytes();
      auto rest = bytes.slice(bytes.size() - next.rest, bytes.size());
      return stream_->read(rest.begin(), rest.size())
        .then([this, words = kj::mv(next.words)]() {
          deliver(words);
          return read_loop();
        });
    }
  }

  void deliver(kj::ArrayPtr<const capnp::word> words) {
    capnp::FlatArrayMessageReader reader(words);
    received(reader.getRoot<capnp::rpc::Message>());
  }

  void received(capnp::rpc::Message::Reader m) {
    switch (m.which()) {
      case capnp::rpc::Message::RETURN:
        return answered(m.getReturn());
      case capnp::rpc::Message::CALL:
        return called(m.getCall());
      case capnp::rpc::Message::FINISH:  // the server is done with an answer of ours
      case capnp::rpc::Message::RELEASE: // or with our receiver
        return;
      case capnp::rpc::Message::ABORT:
        return closed(error{error_code::disconnected,
                            "server aborted: " + std::string(m.getAbort().getReason().cStr())});
      default:
        return closed(error{error_code::disconnected, "unexpected RPC message from the server"});
    }
  }

  /// The only capability a Return may carry here (the gateway, the session): senderHosted.
  std::optional<uint32_t> single_cap(capnp::rpc::Payload::Reader p) {
    auto caps = p.getCapTable();
    if (caps.size() != 1 || !caps[0].isSenderHosted())
      return std::nullopt;
    return caps[0].getSenderHosted();
  }

  void answered(capnp::rpc::Return::Reader r) {
    auto id = r.getAnswerId();
    if (id >= questions_.size() || !questions_[id].live)
      return closed(error{error_code::disconnected, "an answer to no question"});
    auto q = questions_[id]; // a copy: the handlers below may ask new questions
    // A send's Finish waits for the device's next message; the others go now.
    if (q.what == kind::send) {
      auto earlier = held_finish_;
      held_finish_ = std::nullopt;
      if (earlier) // two answers before any message of ours: the first one's Finish goes now
        finish(*earlier);
      held_finish_ = id;
    } else {
      finish(id);
    }
    if (!r.isResults()) {
      auto why = r.isException() ? std::string(r.getException().getReason().cStr())
                                 : std::string("call not answered");
      return failed(q, error{error_code::disconnected, why});
    }
    auto payload = r.getResults();
    auto content = payload.getContent();
    switch (q.what) {
      case kind::bootstrap: {
        auto cap = single_cap(payload);
        if (!cap)
          return failed(q, error{error_code::disconnected, "bootstrap gave no gateway"});
        gateway_ = *cap;
        return login();
      }
      case kind::login: {
        auto res = content.getAs<wire::Gateway::LoginResults>();
        if (res.hasError()) {
          auto err = read_error(res.getError());
          if (err.code == error_code::unavailable && spec_.retry_unavailable.count() > 0) {
            auto pause = spec_.retry_unavailable.count() << std::min(refusals_++, 4u);
            pause += std::uniform_int_distribution<int64_t>(0, pause)(jitter_);
            tasks_.add(timer_.afterDelay(pause * kj::MILLISECONDS).then([this]() { login(); }));
            return;
          }
          handler_->on_login(err, {});
          return closed(err);
        }
        auto cap = single_cap(payload);
        if (!res.hasSession() || !cap)
          return failed(q, error{error_code::disconnected, "login gave no session"});
        session_ = *cap;
        logged_in_ = true;
        epoch_ = res.getEpoch();
        if (spec_.skip_history)
          cursor_ = res.getMaxSeq();
        auto token = res.getResumeToken();
        handler_->on_resume_token(std::string(token.asChars().begin(), token.size()));
        info_ = session_info{res.getEpoch(), res.getMaxSeq(), res.getCursor()};
        if (!spec_.push_platform.empty())
          return set_push_token(); // on_login once the server took it
        handler_->on_login({}, info_);
        return sync(); // what arrived before we were online
      }
      case kind::push_token: {
        auto res = content.getAs<wire::Session::SetPushTokenResults>();
        if (res.hasError()) {
          auto err = read_error(res.getError());
          handler_->on_login(err, {});
          return closed(err);
        }
        handler_->on_login({}, info_);
        return sync();
      }
      case kind::send: {
        auto res = content.getAs<wire::Session::SendResults>();
        if (res.hasError())
          handler_->on_ack(q.client_msg_id, read_error(res.getError()), {});
        else
          handler_->on_ack(q.client_msg_id, {}, send_result{res.getSeq(), res.getServerTime()});
        if (res.hasNotice() && !done_) // the send's own copy rides on its answer
          pushed(res.getNotice());
        return;
      }
      case kind::sync:
        return synced(content.getAs<wire::Session::SyncResults>());
      case kind::ack: {
        acking_ = false;
        if (!content.getAs<wire::Session::AckResults>().hasError()) {
          acked_ = std::max(acked_, q.upto);
          handler_->on_cursor_acked(q.upto);
        }
        return ack();
      }
    }
  }

  /// A call that came back without results (an exception): the send fails, anything else
  /// ends the connection.
  void failed(const question& q, const error& err) {
    if (q.what == kind::send)
      return handler_->on_ack(q.client_msg_id, err, {});
    if (q.what == kind::bootstrap || q.what == kind::login || q.what == kind::push_token)
      handler_->on_login(err, {});
    closed(err);
  }

  void login() {
    outgoing m(32 + (spec_.user.size() + spec_.password.size() + spec_.device.size()
                     + spec_.resume_token.size()) / 8);
    auto params = call<wire::Gateway>(m, ask(question{kind::login}), gateway_, gateway_login);
    capnp::BuilderCapabilityTable table; // writes the receiver as capability pointer 0
    auto p = table.imbue(params.initAs<wire::Gateway::LoginParams>());
    p.setUser(spec_.user);
    p.setPassword(spec_.password);
    p.setDeviceId(spec_.device);
    if (!spec_.resume_token.empty())
      p.setResumeToken(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(spec_.resume_token.data()),
                                    spec_.resume_token.size()));
    p.setReceiver(wire::PushReceiver::Client(capnp::newBrokenCap("exported by the device")));
    m.message.getCall().getParams().initCapTable(1)[0].setSenderHosted(receiver_export);
    post(m);
  }

  void set_push_token() {
    outgoing m(16 + (spec_.push_platform.size() + spec_.push_token.size()) / 8);
    auto p = call<wire::Session>(m, ask(question{kind::push_token}), session_,
                                 session_set_push_token)
               .initAs<wire::Session::SetPushTokenParams>();
    p.setPlatform(spec_.push_platform);
    p.setToken(spec_.push_token);
    post(m);
  }

  /// A call from the server to our receiver: notify or heartbeat, answered at once.
  void called(capnp::rpc::Call::Reader c) {
    outgoing m(16);
    auto ret = m.message.initReturn();
    ret.setAnswerId(c.getQuestionId());
    auto target = c.getTarget();
    bool ours = target.isImportedCap() && target.getImportedCap() == receiver_export
                && c.getInterfaceId() == wire::PushReceiver::_capnpPrivate::typeId;
    if (ours && c.getMethodId() == receiver_notify) {
      pushed(c.getParams().getContent().getAs<wire::PushReceiver::NotifyParams>());
      auto res = ret.initResults().getContent().initAs<wire::PushReceiver::NotifyResults>();
      if (spec_.ack && cursor_ > 0) { // the answer acknowledges: no ack call needed
        res.setCursor(cursor_);
        handler_->on_cursor_acked(cursor_);
      }
    } else if (ours && c.getMethodId() == receiver_heartbeat) {
      ret.initResults().getContent().initAs<wire::PushReceiver::HeartbeatResults>();
    } else {
      auto ex = ret.initException();
      ex.setReason("the device implements PushReceiver.notify and heartbeat only");
      ex.setType(capnp::rpc::Exception::Type::UNIMPLEMENTED);
    }
    post(m);
  }

  /// A notice (a notify's, or one riding on a send's answer): its entries above the cursor
  /// when it continues from the cursor, else a sync.
  template <class Reader>
  void pushed(Reader p) {
    if (p.getEpoch() == epoch_ && p.getComplete() && cursor_ >= p.getAfterSeq()) {
      std::vector<entry> fresh;
      for (auto e : p.getEntries())
        if (e.getSeq() > cursor_)
          fresh.push_back(read_entry(e));
      cursor_ = std::max(cursor_, p.getMaxSeq());
      if (!fresh.empty())
        handler_->on_entries(std::move(fresh));
    } else if (p.getEpoch() != epoch_ || p.getMaxSeq() > cursor_) {
      sync();
    }
  }

  /// Pages from the cursor to maxSeq; one sync at a time, repeated if asked again meanwhile.
  void sync() {
    if (syncing_) {
      sync_again_ = true;
      return;
    }
    if (!logged_in_ || done_)
      return;
    syncing_ = true;
    sync_again_ = false;
    outgoing m(24);
    auto p = call<wire::Session>(m, ask(question{kind::sync}), session_, session_sync)
               .initAs<wire::Session::SyncParams>();
    p.setEpoch(epoch_);
    p.setAfterSeq(cursor_);
    p.setLimit(1000); // big pages: a backlog costs few round trips (the server caps it)
    post(m);
  }

  void synced(wire::Session::SyncResults::Reader r) {
    syncing_ = false;
    if (r.hasError()) {
      auto err = read_error(r.getError());
      if (err.code == error_code::stale_epoch) {
        epoch_ = err.epoch;
        cursor_ = 0;
        return sync();
      }
      return closed(err);
    }
    std::vector<entry> fresh;
    for (auto e : r.getEntries())
      if (e.getSeq() > cursor_) {
        fresh.push_back(read_entry(e));
        cursor_ = e.getSeq();
      }
    if (!fresh.empty())
      handler_->on_entries(std::move(fresh));
    if ((r.getEntries().size() > 0 && cursor_ < r.getMaxSeq()) || sync_again_)
      sync();
    else
      ack();
  }

  /// With spec.ack, after a sync: acknowledges the cursor, one ack in flight at a time (what
  /// comes by notify is acknowledged in the notify's answer; a send's own copy, by the next
  /// one). A refused ack (a new epoch meanwhile) is left to the next one.
  void ack() {
    if (!spec_.ack || acking_ || cursor_ <= acked_ || !logged_in_ || done_)
      return;
    acking_ = true;
    outgoing m(16);
    auto p = call<wire::Session>(m, ask(question{kind::ack, 0, cursor_}), session_, session_ack)
               .initAs<wire::Session::AckParams>();
    p.setEpoch(epoch_);
    p.setSeq(cursor_);
    post(m);
  }

  /// The connection is over: sends still unanswered fail with `err`, then the handler hears.
  void closed(const error& err) {
    if (done_)
      return;
    done_ = true;
    logged_in_ = false;
    std::vector<uint64_t> unanswered;
    for (uint32_t id = 0; id < questions_.size(); ++id)
      if (questions_[id].live && questions_[id].what == kind::send
          && (!held_finish_ || *held_finish_ != id))
        unanswered.push_back(questions_[id].client_msg_id);
    for (auto id : unanswered)
      handler_->on_ack(id, err, {});
    handler_->on_closed(err);
  }

  void taskFailed(kj::Exception&& e) override { closed(transport_error(e)); }

  pooled_device_spec spec_;
  std::shared_ptr<device_handler> handler_;
  kj::Timer& timer_;
  std::minstd_rand jitter_{std::random_device{}()};
  uint32_t refusals_ = 0; // logins refused as unavailable so far
  kj::Own<batched_stream> stream_;
  std::vector<question> questions_; // by question id
  std::vector<uint32_t> free_;      // question ids finished, to ask again
  std::optional<uint32_t> held_finish_; // the last send's question, finished with the next message
  uint32_t gateway_ = 0; // imported capabilities
  uint32_t session_ = 0;
  bool logged_in_ = false;
  uint32_t epoch_ = 0;
  session_info info_{}; // from the login, reported once the push token is registered
  uint32_t cursor_ = 0;
  uint32_t acked_ = 0;
  bool acking_ = false;
  bool syncing_ = false;
  bool sync_again_ = false;
  bool done_ = false;
  kj::TaskSet tasks_;
};

struct device_pool::impl {
  std::vector<std::string> sources;
  std::mutex mutex;
  std::vector<std::function<void()>> queue;                         // guarded by mutex
  const kj::CrossThreadPromiseFulfiller<void>* waker = nullptr;     // guarded by mutex
  bool stopping = false;                                            // guarded by mutex
  std::atomic<device_id> next_id{0};
  std::thread thread;

  // Pool thread only:
  kj::AsyncIoContext* io = nullptr;
  tick_timer* ticks = nullptr;
  std::unordered_map<device_id, kj::Own<pooled_device>> devices;
  size_t next_source = 0;

  /// On the pool's thread: a send from a device that is (still) here.
  void send_now(device_id id, uint64_t client_msg_id, std::string to, std::string body) {
    auto it = devices.find(id);
    if (it != devices.end())
      it->second->send(client_msg_id, std::move(to), std::move(body));
  }

  void post(std::function<void()> fn) {
    std::lock_guard<std::mutex> guard(mutex);
    queue.push_back(std::move(fn));
    if (waker) {
      waker->fulfill();
      waker = nullptr;
    }
  }

  void run() {
    auto ctx = kj::setupAsyncIo();
    io = &ctx;
    tick_timer timer(ctx.unixEventPort);
    ticks = &timer;
    running_pool = this;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> current;
    for (;;) {
      std::vector<std::function<void()>> batch;
      kj::Maybe<kj::Promise<void>> wake;
      {
        std::lock_guard<std::mutex> guard(mutex);
        if (stopping)
          break;
        batch.swap(queue);
        if (batch.empty()) {
          auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
          current = kj::mv(paf.fulfiller);
          waker = current.get();
          wake = kj::mv(paf.promise);
        }
      }
      for (auto& fn : batch)
        fn();
      KJ_IF_MAYBE(w, wake) {
        w->wait(ctx.waitScope); // the event loop runs (RPCs, pushes) until something is posted
      } else {
        // Let I/O in between batches: runs all that is ready, including the writes this
        // batch gathered (batched_stream), and polls the sockets without blocking.
        ctx.waitScope.poll();
      }
    }
    devices.clear(); // connections close on their own thread
    ticks = nullptr;
    running_pool = nullptr;
    io = nullptr;
  }

  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(const std::string& server) {
    sockaddr_in remote{}, local{};
    if (!parse_ipv4(server, &remote)) {
      if (!sources.empty())
        return KJ_EXCEPTION(FAILED, "source binding needs IPv4 addresses", server);
      // A host name: KJ looks it up (on a thread of its own, milliseconds per connection).
      return io->provider->getNetwork().parseAddress(server).then(
        [](kj::Own<kj::NetworkAddress> a) { return a->connect(); });
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return KJ_EXCEPTION(FAILED, "socket() failed");
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!sources.empty()) {
      auto& source = sources[next_source++ % sources.size()];
      if (!parse_ipv4(source + ":0", &local)) {
        ::close(fd);
        return KJ_EXCEPTION(FAILED, "source binding needs IPv4 addresses", source);
      }
      if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
        ::close(fd);
        return KJ_EXCEPTION(FAILED, "bind() failed", source);
      }
    }
    // A socket_stream: after a read that emptied the socket, the next waits for readiness
    // instead of finding EAGAIN (as the gateway's connections do).
    return socket_stream::connect(io->unixEventPort, fd, reinterpret_cast<sockaddr*>(&remote),
                                  sizeof(remote))
      .then([](kj::Own<socket_stream>&& s) -> kj::Own<kj::AsyncIoStream> { return kj::mv(s); });
  }
};

device_pool::device_pool(std::vector<std::string> source_addresses)
  : impl_(std::make_unique<impl>()) {
  impl_->sources = std::move(source_addresses);
  impl_->thread = std::thread([this]() { impl_->run(); });
}

device_pool::~device_pool() {
  {
    std::lock_guard<std::mutex> guard(impl_->mutex);
    impl_->stopping = true;
    if (impl_->waker) {
      impl_->waker->fulfill();
      impl_->waker = nullptr;
    }
  }
  impl_->thread.join();
}

device_pool::device_id device_pool::add_device(pooled_device_spec spec,
                                               std::shared_ptr<device_handler> handler) {
  auto id = impl_->next_id++;
  impl_->post([im = impl_.get(), id, spec = std::move(spec), handler]() mutable {
    auto server = spec.server;
    auto d = kj::heap<pooled_device>(std::move(spec), handler, im->io->provider->getTimer());
    auto& ref = *d;
    im->devices.emplace(id, kj::mv(d));
    ref.start(im->connect(server));
  });
  return id;
}

void device_pool::send(device_id id, uint64_t client_msg_id, std::string to, std::string body) {
  if (running_pool == impl_.get())
    return impl_->send_now(id, client_msg_id, std::move(to), std::move(body));
  impl_->post([im = impl_.get(), id, client_msg_id, to = std::move(to),
               body = std::move(body)]() mutable {
    im->send_now(id, client_msg_id, std::move(to), std::move(body));
  });
}

void device_pool::schedule(clock::time_point first, tick fn) {
  impl_->post([im = impl_.get(), first, fn = std::move(fn)]() mutable {
    im->ticks->add(first, std::move(fn));
  });
}

void device_pool::close(device_id id) {
  impl_->post([im = impl_.get(), id]() { im->devices.erase(id); });
}

void device_pool::create_account(std::string server, std::string user, std::string password,
                                 std::function<void(const error&)> done) {
  impl_->post([im = impl_.get(), server, user, password, done]() {
    struct account_call {
      kj::Own<kj::AsyncIoStream> stream;
      kj::Own<capnp::TwoPartyClient> rpc;
    };
    auto call = std::make_shared<account_call>();
    auto p = im->connect(server).then([call, user, password](kj::Own<kj::AsyncIoStream>&& s) {
      call->stream = kj::heap<batched_stream>(kj::mv(s));
      call->rpc = kj::heap<capnp::TwoPartyClient>(*call->stream);
      auto req = call->rpc->bootstrap().castAs<wire::Gateway>().createAccountRequest();
      req.setUser(user);
      req.setPassword(password);
      return req.send();
    });
    // Detached: the call keeps itself alive until answered.
    p.then(
       [done, call](capnp::Response<wire::Gateway::CreateAccountResults>&& r) mutable {
         done(r.hasError() ? read_error(r.getError()) : error{});
         // The connection closes once the last reference (this lambda) goes away.
       },
       [done](kj::Exception&& e) { done(transport_error(e)); })
      .detach([](kj::Exception&&) {});
  });
}

} // namespace missive::protocol

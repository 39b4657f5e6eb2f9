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
#include <queue>
#include <thread>
#include <unordered_map>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include "batched_stream.hpp"
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

/// One device connection, living on the pool's thread.
class pooled_device final : private kj::TaskSet::ErrorHandler {
public:
  pooled_device(pooled_device_spec spec, std::shared_ptr<device_handler> h)
    : spec_(std::move(spec)), handler_(std::move(h)), tasks_(*this) {}

  void start(kj::Promise<kj::Own<kj::AsyncIoStream>> connecting) {
    tasks_.add(connecting.then([this](kj::Own<kj::AsyncIoStream>&& s) {
      stream_ = kj::heap<batched_stream>(kj::mv(s));
      rpc_ = kj::heap<capnp::TwoPartyClient>(*stream_);
      tasks_.add(rpc_->onDisconnect().then([this]() { closed(error{error_code::disconnected,
                                                                   "connection closed"}); }));
      auto gateway = rpc_->bootstrap().castAs<wire::Gateway>();
      auto req = gateway.loginRequest();
      req.setUser(spec_.user);
      req.setPassword(spec_.password);
      req.setDeviceId(spec_.device);
      req.setReceiver(kj::heap<receiver>(*this));
      return req.send().then([this](capnp::Response<wire::Gateway::LoginResults>&& r) {
        if (r.hasError()) {
          auto err = read_error(r.getError());
          handler_->on_login(err, {});
          return closed(err);
        }
        session_ = r.getSession();
        epoch_ = r.getEpoch();
        handler_->on_login({}, session_info{r.getEpoch(), r.getMaxSeq(), r.getCursor()});
        sync(); // what arrived before we were online
      });
    }));
  }

  void send(uint64_t id, std::string to, std::string body) {
    KJ_IF_MAYBE(s, session_) {
      // Without a size hint Cap'n Proto zeroes an 8 KiB first segment for every call.
      auto words = 4 + (to.size() + 8) / 8 + (body.size() + 7) / 8; // struct, text, data
      auto req = s->sendRequest(capnp::MessageSize{words, 0});
      req.setClientMsgId(id);
      req.setTo(to);
      req.setBody(as_data(body));
      tasks_.add(req.send().then(
        [this, id](capnp::Response<wire::Session::SendResults>&& r) {
          if (r.hasError())
            handler_->on_ack(id, read_error(r.getError()), {});
          else
            handler_->on_ack(id, {}, send_result{r.getSeq(), r.getServerTime()});
          if (r.hasNotice()) // the send's own copy rides on its answer
            pushed(r.getNotice());
          answered_send_ = kj::mv(r);
        },
        [this, id](kj::Exception&& e) { handler_->on_ack(id, transport_error(e), {}); }));
      answered_send_ = nullptr; // its Finish rides with this call
    } else {
      // Answered on a later turn, never inside send(): a caller that sends again from its
      // on_ack (a closed loop) must not recurse through every send of a device that is gone.
      tasks_.add(kj::evalLater([this, id]() {
        handler_->on_ack(id, error{error_code::not_logged_in, "not logged in"}, {});
      }));
    }
  }

private:
  class receiver final : public wire::PushReceiver::Server {
  public:
    explicit receiver(pooled_device& d) : d_(d) {}

  protected:
    kj::Promise<void> notify(NotifyContext ctx) override {
      d_.answered_send_ = nullptr; // its Finish rides with this call's answer
      d_.pushed(ctx.getParams());
      if (d_.spec_.ack && d_.cursor_ > 0) { // the answer acknowledges: no ack call needed
        ctx.getResults(capnp::MessageSize{1, 0}).setCursor(d_.cursor_);
        d_.handler_->on_cursor_acked(d_.cursor_);
      }
      return kj::READY_NOW;
    }
    kj::Promise<void> heartbeat(HeartbeatContext) override { return kj::READY_NOW; }

  private:
    pooled_device& d_;
  };

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
    KJ_IF_MAYBE(s, session_) {
      syncing_ = true;
      sync_again_ = false;
      auto req = s->syncRequest();
      req.setEpoch(epoch_);
      req.setAfterSeq(cursor_);
      req.setLimit(1000); // big pages: a backlog costs few round trips (the server caps it)
      tasks_.add(req.send().then([this](capnp::Response<wire::Session::SyncResults>&& r) {
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
      }));
    }
  }

  /// With spec.ack, after a sync: acknowledges the cursor, one ack in flight at a time (what
  /// comes by notify is acknowledged in the notify's answer; a send's own copy, by the next
  /// one). A refused ack (a new epoch meanwhile) is left to the next one.
  void ack() {
    if (!spec_.ack || acking_ || cursor_ <= acked_)
      return;
    KJ_IF_MAYBE(s, session_) {
      acking_ = true;
      auto upto = cursor_;
      auto req = s->ackRequest();
      req.setEpoch(epoch_);
      req.setSeq(upto);
      tasks_.add(req.send().then([this, upto](capnp::Response<wire::Session::AckResults>&& r) {
        acking_ = false;
        if (!r.hasError()) {
          acked_ = std::max(acked_, upto);
          handler_->on_cursor_acked(upto);
        }
        ack();
      }));
    }
  }

  void closed(const error& err) {
    if (done_)
      return;
    done_ = true;
    session_ = nullptr;
    handler_->on_closed(err);
  }

  void taskFailed(kj::Exception&& e) override { closed(transport_error(e)); }

  pooled_device_spec spec_;
  std::shared_ptr<device_handler> handler_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyClient> rpc_;
  kj::Maybe<wire::Session::Client> session_;
  /// The last send's answer, kept: dropping it sends a Finish, which on its own would cost
  /// both sides a write, a read and often a wake-up; it goes with the device's next message.
  kj::Maybe<capnp::Response<wire::Session::SendResults>> answered_send_;
  uint32_t epoch_ = 0;
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
    if (sources.empty()) {
      return io->provider->getNetwork().parseAddress(server).then(
        [](kj::Own<kj::NetworkAddress> a) { return a->connect(); });
    }
    sockaddr_in remote{}, local{};
    auto& source = sources[next_source++ % sources.size()];
    if (!parse_ipv4(server, &remote) || !parse_ipv4(source + ":0", &local))
      return KJ_EXCEPTION(FAILED, "source binding needs IPv4 addresses", server, source);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return KJ_EXCEPTION(FAILED, "socket() failed");
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
      ::close(fd);
      return KJ_EXCEPTION(FAILED, "bind() failed", source);
    }
    return io->lowLevelProvider->wrapConnectingSocketFd(
      fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote),
      kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
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
    auto d = kj::heap<pooled_device>(std::move(spec), handler);
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

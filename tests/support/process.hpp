#pragma once

// Child processes for end-to-end tests: the real missive-server and missive-cli binaries.
// Output goes to files so that nothing blocks on a full pipe.

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace missive::test {

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class process {
public:
  /// Starts argv[0] with stdout and stderr redirected to files under `dir`.
  /// `max_file_bytes` > 0 caps the size of any file the child writes (RLIMIT_FSIZE): a real
  /// "disk full" for that process.
  process(std::vector<std::string> argv, const std::filesystem::path& dir, const std::string& tag,
          std::vector<std::string> env = {}, long max_file_bytes = 0)
    : out_(dir / (tag + ".out")), err_(dir / (tag + ".err")) {
    pid_ = ::fork();
    if (pid_ < 0)
      throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      for (auto& e : env)
        ::putenv(const_cast<char*>(e.c_str()));
      if (max_file_bytes > 0) {
        struct rlimit lim{static_cast<rlim_t>(max_file_bytes), static_cast<rlim_t>(max_file_bytes)};
        ::setrlimit(RLIMIT_FSIZE, &lim);
      }
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }

  ~process() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }

  process(const process&) = delete;
  process& operator=(const process&) = delete;

  /// True until the process has exited (checks without blocking).
  pid_t pid() const { return pid_; }

  bool running() {
    if (pid_ <= 0 || status_)
      return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return false;
    }
    return true;
  }

  void signal(int sig) {
    if (running())
      ::kill(pid_, sig);
  }

  /// Waits for the exit (bounded); returns the exit code, 128+N for signal N, -1 on timeout.
  int wait(std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (running()) {
      if (std::chrono::steady_clock::now() > deadline)
        return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return *status_;
  }

  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }

  /// Polls stdout until it contains `needle` (bounded); returns the output then.
  std::optional<std::string> wait_for_output(const std::string& needle,
                                             std::chrono::milliseconds limit) {
    return wait_for(out_, needle, limit);
  }

  /// Polls stderr until it contains `needle` `times` times (bounded); returns it then.
  std::optional<std::string> wait_for_error(const std::string& needle,
                                            std::chrono::milliseconds limit, size_t times = 1) {
    return wait_for(err_, needle, limit, times);
  }

private:
  static size_t count(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
      ++n;
    return n;
  }

  std::optional<std::string> wait_for(const std::filesystem::path& file, const std::string& needle,
                                      std::chrono::milliseconds limit, size_t times = 1) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto text = read_file(file);
      if (count(text, needle) >= times)
        return text;
      if (!running()) {
        text = read_file(file); // what it wrote before it exited
        return count(text, needle) >= times ? std::optional<std::string>(text) : std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path out_, err_;
};

/// Runs a command to completion (bounded) and returns exit code, stdout and stderr.
struct command_result {
  int code;
  std::string out;
  std::string err;
};

inline command_result run_command(std::vector<std::string> argv, const std::filesystem::path& dir,
                                  std::vector<std::string> env = {}) {
  static int counter = 0;
  process p(std::move(argv), dir, "cmd" + std::to_string(++counter), std::move(env));
  int code = p.wait(std::chrono::seconds(60));
  return {code, p.out(), p.err()};
}

} // namespace missive::test

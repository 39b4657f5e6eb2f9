#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace missive::load {

/// A latency histogram in the style of HdrHistogram: log-linear buckets with 64 sub-buckets per
/// power of two (under 1.6% relative error), values in microseconds up to about 12 days.
/// record() is lock-free and may be called from any thread.
class histogram {
public:
  static constexpr int sub_bits = 6;
  static constexpr size_t linear = size_t{2} << sub_bits; // 0..127 exact
  static constexpr int max_exponent = 40;
  static constexpr size_t bucket_count = linear + max_exponent * (size_t{1} << sub_bits);

  void record(uint64_t micros);

  /// A copy of the counts, for percentiles and per-interval differences.
  struct snapshot {
    std::vector<uint64_t> counts = std::vector<uint64_t>(bucket_count, 0);
    uint64_t max = 0;
    uint64_t total() const;
    /// The smallest recorded value v such that a fraction `q` of all values is <= v (the upper
    /// edge of its bucket); 0 when empty.
    uint64_t percentile(double q) const;
    /// The same among `expected` values of which only those recorded have happened yet: the
    /// others are later than any recorded one. `unknown` when the `q`-th is one of them.
    uint64_t percentile_among(double q, uint64_t expected) const;
    static constexpr uint64_t unknown = UINT64_MAX;
    /// Counts of `later` minus counts of `this` (max: later's, as an upper bound).
    snapshot since(const snapshot& earlier) const;
  };
  snapshot take() const;

  static size_t index_of(uint64_t v);
  static uint64_t upper_edge(size_t index);

private:
  std::array<std::atomic<uint64_t>, bucket_count> counts_{};
  std::atomic<uint64_t> max_{0};
};

/// A set of 64-bit ids held in one array (open addressing, linear probing): an insert touches
/// one or two cache lines and allocates only when the set doubles. The load tool keeps one per
/// device for its exactly-once check, which runs for every delivery; a node-based set was the
/// tool's most expensive function of its own in the closed loop.
class id_set {
public:
  /// True if `id` was not in the set (it is now).
  bool insert(uint64_t id);
  size_t size() const { return size_ + (has_zero_ ? 1 : 0); }

private:
  void grow();

  std::vector<uint64_t> slots_; // 0: empty (zero itself is kept in has_zero_)
  size_t size_ = 0;             // nonzero ids held
  bool has_zero_ = false;
};

/// A simulated user's message ids carry the send's number (from 1) modulo 2^24. With `issued`
/// sends made so far, the send whose id carries `low24` is the latest with that remainder.
uint32_t send_number(uint32_t issued, uint32_t low24);

/// The ramp scenario's schedule for one simulated user: an open loop whose total rate steps up.
/// Step k (from 0) lasts `step_ns` at `rates[k]` messages/s shared by `users` users, so the user
/// sends every users / rates[k] seconds in it, the first at `phase` (0 to 1) of such an interval
/// into the step. Every send's planned time follows from its number: the answers, which carry
/// only that number, are timed from it.
class ramp_plan {
public:
  ramp_plan(const std::vector<double>& rates, int users, int64_t step_ns, double phase);
  /// Sends planned in all steps together.
  uint32_t sends() const { return before_.back(); }
  /// The planned time of send `n` (1 to sends()), in ns from the start of the first step.
  int64_t planned_ns(uint32_t n) const;

private:
  int64_t step_ns_;
  std::vector<int64_t> first_ns_, interval_ns_; // per step: first send, spacing
  std::vector<uint32_t> before_;                // sends planned before step k (k = steps: all)
};

/// One step of a ramp, judged: the latency of its messages (from their planned send) at the
/// recipient's devices, where `expected` deliveries were due and `h` holds those made. A
/// delivery not made counts as later than any made, so that a step cannot pass by losing its
/// slowest messages; a percentile among them is `histogram::snapshot::unknown`.
struct step_verdict {
  uint64_t expected = 0, delivered = 0;
  uint64_t p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
  bool met = false; // p99 and p99.9 within the targets
};
step_verdict judge_step(const histogram::snapshot& h, uint64_t expected, uint64_t p99_target_us,
                        uint64_t p999_target_us);

/// The CPU's name as Linux reports it (`model name` in /proc/cpuinfo), for the load tools'
/// JSON: figures from different hosts differ by up to a factor of two (BENCHMARKS.md, "Session
/// 13"). Quotes and backslashes are left out, so it can be written into JSON as is; "unknown" if
/// absent.
std::string host_cpu();

/// Resident memory of process `pid` in KiB (VmRSS in /proc), 0 if unknown.
uint64_t rss_kib(int pid);

/// CPU time (user and system, all threads) process `pid` has used so far, in ms; 0 if unknown.
/// `pid` 0 is this process.
uint64_t cpu_ms(int pid);

} // namespace missive::load

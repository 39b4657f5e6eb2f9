#pragma once

#include <array>
#include <atomic>
#include <cstdint>
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

/// A simulated user's message ids carry the send's number (from 1) modulo 2^24. With `issued`
/// sends made so far, the send whose id carries `low24` is the latest with that remainder.
uint32_t send_number(uint32_t issued, uint32_t low24);

} // namespace missive::load

#include "load_stats.hpp"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <fstream>
#include <sstream>

namespace missive::load {

size_t histogram::index_of(uint64_t v) {
  if (v < linear)
    return static_cast<size_t>(v);
  int e = (63 - std::countl_zero(v)) - sub_bits; // v >> e is in [64, 127]
  if (e > max_exponent)
    return bucket_count - 1;
  auto sub = static_cast<size_t>(v >> e) - (size_t{1} << sub_bits);
  return linear + static_cast<size_t>(e - 1) * (size_t{1} << sub_bits) + sub;
}

uint64_t histogram::upper_edge(size_t index) {
  if (index < linear)
    return index;
  auto e = static_cast<int>((index - linear) >> sub_bits) + 1;
  auto sub = (index - linear) & ((size_t{1} << sub_bits) - 1);
  return ((uint64_t{(size_t{1} << sub_bits) + sub} + 1) << e) - 1;
}

void histogram::record(uint64_t micros) {
  counts_[index_of(micros)].fetch_add(1, std::memory_order_relaxed);
  auto prev = max_.load(std::memory_order_relaxed);
  while (micros > prev && !max_.compare_exchange_weak(prev, micros, std::memory_order_relaxed)) {
  }
}

histogram::snapshot histogram::take() const {
  snapshot s;
  for (size_t i = 0; i < bucket_count; ++i)
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  s.max = max_.load(std::memory_order_relaxed);
  return s;
}

uint64_t histogram::snapshot::total() const {
  uint64_t n = 0;
  for (auto c : counts)
    n += c;
  return n;
}

uint64_t histogram::snapshot::percentile(double q) const {
  return percentile_among(q, total());
}

uint64_t histogram::snapshot::percentile_among(double q, uint64_t expected) const {
  auto n = total();
  auto target = static_cast<uint64_t>(std::ceil(q * static_cast<double>(expected)));
  if (target == 0)
    target = 1;
  if (expected == 0 || target > n)
    return expected == 0 ? 0 : unknown;
  uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= target)
      return std::min(upper_edge(i), max);
  }
  return max;
}

histogram::snapshot histogram::snapshot::since(const snapshot& earlier) const {
  snapshot d;
  for (size_t i = 0; i < counts.size(); ++i) {
    d.counts[i] = counts[i] - earlier.counts[i];
    if (d.counts[i] > 0)
      d.max = std::min(upper_edge(i), max); // the interval's own maximum, to bucket precision
  }
  return d;
}

namespace {

/// Fibonacci hashing: the ids differ mostly in their low bits; the multiplication spreads them
/// over the high bits, which pick the slot.
size_t slot_of(uint64_t id, size_t capacity) {
  int shift = 64 - std::countr_zero(capacity); // capacity: a power of two
  return static_cast<size_t>((id * 0x9E3779B97F4A7C15ull) >> shift);
}

} // namespace

bool id_set::insert(uint64_t id) {
  if (id == 0) {
    bool added = !has_zero_;
    has_zero_ = true;
    return added;
  }
  if ((size_ + 1) * 2 > slots_.size())
    grow();
  size_t mask = slots_.size() - 1;
  for (size_t i = slot_of(id, slots_.size());; i = (i + 1) & mask) {
    if (slots_[i] == id)
      return false;
    if (slots_[i] == 0) {
      slots_[i] = id;
      ++size_;
      return true;
    }
  }
}

void id_set::grow() {
  std::vector<uint64_t> old(std::max<size_t>(16, slots_.size() * 2), 0);
  old.swap(slots_);
  size_t mask = slots_.size() - 1;
  for (auto id : old) {
    if (id == 0)
      continue;
    size_t i = slot_of(id, slots_.size());
    while (slots_[i] != 0)
      i = (i + 1) & mask;
    slots_[i] = id;
  }
}

uint32_t send_number(uint32_t issued, uint32_t low24) {
  constexpr uint32_t mask = (uint32_t{1} << 24) - 1;
  return issued - ((issued - low24) & mask);
}

ramp_plan::ramp_plan(const std::vector<double>& rates, int users, int64_t step_ns, double phase)
  : step_ns_(step_ns) {
  before_.push_back(0);
  for (double rate : rates) {
    auto interval = std::max<int64_t>(1, static_cast<int64_t>(1e9 * users / rate));
    auto first = static_cast<int64_t>(phase * static_cast<double>(interval));
    first_ns_.push_back(first);
    interval_ns_.push_back(interval);
    // The sends at first, first + interval, ... before the step ends.
    auto in_step = first < step_ns ? (step_ns - first - 1) / interval + 1 : 0;
    before_.push_back(before_.back() + static_cast<uint32_t>(in_step));
  }
}

int64_t ramp_plan::planned_ns(uint32_t n) const {
  // The step whose sends include n: the last k with before_[k] < n.
  auto k = static_cast<size_t>(std::lower_bound(before_.begin(), before_.end(), n)
                               - before_.begin()) - 1;
  k = std::min(k, first_ns_.size() - 1);
  return int64_t(k) * step_ns_ + first_ns_[k] + int64_t(n - before_[k] - 1) * interval_ns_[k];
}

step_verdict judge_step(const histogram::snapshot& h, uint64_t expected, uint64_t p99_target_us,
                        uint64_t p999_target_us) {
  step_verdict v;
  v.expected = expected;
  v.delivered = h.total();
  v.p50_us = h.percentile_among(0.5, expected);
  v.p99_us = h.percentile_among(0.99, expected);
  v.p999_us = h.percentile_among(0.999, expected);
  v.max_us = v.delivered < expected ? histogram::snapshot::unknown : h.max;
  v.met = v.p99_us <= p99_target_us && v.p999_us <= p999_target_us;
  return v;
}

std::string host_cpu() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0)
      continue;
    auto colon = line.find(':');
    if (colon == std::string::npos)
      break;
    std::string out;
    for (char c : line.substr(colon + 1))
      if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20)
        out += c;
    auto first = out.find_first_not_of(' ');
    return first == std::string::npos ? "unknown" : out.substr(first);
  }
  return "unknown";
}

uint64_t rss_kib(int pid) {
  if (pid <= 0)
    return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  uint64_t value = 0;
  while (in >> key) {
    if (key == "VmRSS:" && in >> value)
      return value;
    in.ignore(4096, '\n');
  }
  return 0;
}

uint64_t cpu_ms(int pid) {
  if (pid < 0)
    return 0;
  std::ifstream in(pid == 0 ? std::string("/proc/self/stat")
                            : "/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  // The command name (field 2) is in parentheses and may hold spaces: count from its end.
  // Fields 14 and 15 are utime and stime, in clock ticks.
  auto close = line.rfind(')');
  if (close == std::string::npos)
    return 0;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int n = 3; n <= 15 && fields >> field; ++n)
    if (n == 14)
      utime = std::stoull(field);
    else if (n == 15)
      stime = std::stoull(field);
  static const long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? (utime + stime) * 1000 / uint64_t(hz) : 0;
}

} // namespace missive::load

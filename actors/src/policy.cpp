#include "missive/actors/policy.hpp"

#include <regex.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <caf/make_message.hpp>

#include "missive/actors/errc.hpp"

namespace missive::policy {

caf::error rule::on_send(const send_view&, user_state&, clock::time_point) const {
  return {};
}

caf::error rule::on_deliver(const send_view&, const user_state&) const {
  return {};
}

caf::error chain::on_send(const send_view& s, user_state& sender, clock::time_point now) const {
  for (auto& r : rules_)
    if (auto err = r->on_send(s, sender, now))
      return err;
  return {};
}

caf::error chain::on_deliver(const send_view& s, const user_state& recipient) const {
  for (auto& r : rules_)
    if (auto err = r->on_deliver(s, recipient))
      return err;
  return {};
}

namespace {

class size_rule final : public rule {
public:
  size_rule(size_t body, size_t request) : body_(body), request_(request) {}
  std::string_view name() const override { return "size"; }
  caf::error on_send(const send_view& s, user_state&, clock::time_point) const override {
    if (s.body.size() > body_)
      return caf::make_error(errc::too_large, "body of " + std::to_string(s.body.size())
                                                + " bytes exceeds the limit of "
                                                + std::to_string(body_));
    if (s.request_bytes > request_)
      return caf::make_error(errc::too_large, "request of " + std::to_string(s.request_bytes)
                                                + " bytes exceeds the limit of "
                                                + std::to_string(request_));
    return {};
  }

private:
  size_t body_;
  size_t request_;
};

class rate_rule final : public rule {
public:
  rate_rule(uint32_t burst, double per_second) : burst_(burst), per_second_(per_second) {}
  std::string_view name() const override { return "rate-limit"; }
  caf::error on_send(const send_view&, user_state& st, clock::time_point now) const override {
    if (per_second_ <= 0)
      return {};
    if (st.tokens < 0) {
      st.tokens = burst_;
    } else {
      std::chrono::duration<double> elapsed = now - st.refilled;
      st.tokens = std::min<double>(burst_, st.tokens + std::max(0.0, elapsed.count()) * per_second_);
    }
    st.refilled = now;
    if (st.tokens >= 1) {
      st.tokens -= 1;
      return {};
    }
    auto wait_ms = static_cast<uint32_t>(std::ceil((1 - st.tokens) / per_second_ * 1000));
    return caf::make_error(errc::rate_limited,
                           "more than " + std::to_string(burst_) + " sends at once; retry in "
                             + std::to_string(wait_ms) + " ms",
                           std::max<uint32_t>(wait_ms, 1));
  }

private:
  uint32_t burst_;
  double per_second_;
};

class blocklist_rule final : public rule {
public:
  std::string_view name() const override { return "blocklist"; }
  caf::error on_deliver(const send_view& s, const user_state& recipient) const override {
    if (recipient.blocked.count(std::string(s.from)) > 0)
      return caf::make_error(errc::blocked,
                             std::string(s.to) + " does not accept messages from "
                               + std::string(s.from));
    return {};
  }
};

class spam_rule_step final : public rule {
public:
  explicit spam_rule_step(std::shared_ptr<const spam_rules_slot> slot) : slot_(std::move(slot)) {}
  std::string_view name() const override { return "spam"; }
  caf::error on_send(const send_view& s, user_state&, clock::time_point) const override {
    if (!slot_)
      return {};
    auto rules = slot_->get();
    if (!rules)
      return {};
    auto hit = rules->match(s.body);
    if (!hit || hit->action == spam_rule::verdict::allow)
      return {};
    return caf::make_error(errc::spam, "rejected by the spam filter (rule on line "
                                         + std::to_string(hit->line) + ")");
  }

private:
  std::shared_ptr<const spam_rules_slot> slot_;
};

/// ASCII case folding: bodies are bytes, and rules are written for text.
char fold(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool contains_folded(std::string_view hay, std::string_view needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return fold(a) == fold(b); });
  return it != hay.end();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::string_view next_word(std::string_view& s) {
  s = trim(s);
  auto end = s.find_first_of(" \t");
  auto word = s.substr(0, end);
  s.remove_prefix(end == std::string_view::npos ? s.size() : end);
  s = trim(s);
  return word;
}

} // namespace

/// A POSIX extended regular expression (glibc: no recursion on the input, so a long body
/// cannot exhaust the stack), case-insensitive, matched anywhere in the body.
struct spam_rules::compiled {
  regex_t re;
  bool ok = false;
  ~compiled() {
    if (ok)
      regfree(&re);
  }
};

spam_rules::~spam_rules() = default;

std::shared_ptr<const spam_rules> spam_rules::parse(std::string_view text,
                                                    const std::string& source,
                                                    std::string* error) {
  std::shared_ptr<spam_rules> out(new spam_rules);
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto eol = text.find('\n');
    auto line = trim(text.substr(0, eol));
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (line.empty() || line.front() == '#')
      continue;
    auto where = source + ":" + std::to_string(line_no) + ": ";
    spam_rule r;
    r.line = line_no;
    auto verdict = next_word(line);
    if (verdict == "reject")
      r.action = spam_rule::verdict::reject;
    else if (verdict == "allow")
      r.action = spam_rule::verdict::allow;
    else {
      *error = where + "expected `reject` or `allow`, got `" + std::string(verdict) + "`";
      return nullptr;
    }
    auto kind = next_word(line);
    if (kind == "keyword")
      r.match = spam_rule::kind::keyword;
    else if (kind == "regex")
      r.match = spam_rule::kind::regex;
    else {
      *error = where + "expected `keyword` or `regex` after the verdict, got `"
               + std::string(kind) + "`";
      return nullptr;
    }
    if (line.empty()) {
      *error = where + "the rule has no pattern";
      return nullptr;
    }
    r.pattern = std::string(line);
    std::unique_ptr<compiled> c;
    if (r.match == spam_rule::kind::regex) {
      c = std::make_unique<compiled>();
      int rc = regcomp(&c->re, r.pattern.c_str(), REG_EXTENDED | REG_ICASE | REG_NOSUB);
      if (rc != 0) {
        char buf[256];
        regerror(rc, &c->re, buf, sizeof buf);
        *error = where + "bad regular expression `" + r.pattern + "`: " + buf;
        return nullptr;
      }
      c->ok = true;
    }
    out->rules_.push_back(std::move(r));
    out->regexes_.push_back(std::move(c));
  }
  return out;
}

const spam_rule* spam_rules::match(std::string_view body) const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    auto& r = rules_[i];
    bool hit = false;
    if (r.match == spam_rule::kind::keyword) {
      hit = contains_folded(body, r.pattern);
    } else {
      // REG_STARTEND: the body is bytes, not a C string (it may hold NULs).
      regmatch_t range[1];
      range[0].rm_so = 0;
      range[0].rm_eo = static_cast<regoff_t>(body.size());
      hit = regexec(&regexes_[i]->re, body.data(), 1, range, REG_STARTEND) == 0;
    }
    if (hit)
      return &r;
  }
  return nullptr;
}

std::shared_ptr<const spam_rules> load_spam_rules(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read the spam rules file " + path;
    return nullptr;
  }
  std::stringstream text;
  text << in.rdbuf();
  return spam_rules::parse(text.str(), path, error);
}

std::shared_ptr<const rule> size_limit(size_t max_body_bytes, size_t max_request_bytes) {
  return std::make_shared<size_rule>(max_body_bytes, max_request_bytes);
}

std::shared_ptr<const rule> rate_limit(uint32_t burst, double per_second) {
  return std::make_shared<rate_rule>(burst, per_second);
}

std::shared_ptr<const rule> blocklist() {
  return std::make_shared<blocklist_rule>();
}

std::shared_ptr<const rule> spam_filter(std::shared_ptr<const spam_rules_slot> rules) {
  return std::make_shared<spam_rule_step>(std::move(rules));
}

std::shared_ptr<const chain> build_chain(const chain_options& opts, std::string* error) {
  auto out = std::make_shared<chain>();
  std::vector<std::string_view> seen;
  for (auto& step : opts.steps) {
    if (std::find(seen.begin(), seen.end(), step) != seen.end()) {
      *error = "policy step `" + step + "` is listed twice";
      return nullptr;
    }
    seen.push_back(step);
    if (step == "size")
      out->add(size_limit(opts.max_body_bytes, opts.max_request_bytes));
    else if (step == "rate-limit")
      out->add(rate_limit(opts.rate_limit_burst, opts.rate_limit_per_second));
    else if (step == "spam")
      out->add(spam_filter(opts.spam));
    else if (step == "blocklist")
      out->add(blocklist());
    else {
      *error = "unknown policy step `" + step + "` (known: size, rate-limit, spam, blocklist)";
      return nullptr;
    }
  }
  return out;
}

} // namespace missive::policy

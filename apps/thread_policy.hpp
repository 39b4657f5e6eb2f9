#pragma once

// How the kernel schedules a process's threads. Missive's threads do a little work per wake-up
// and hand the rest to another thread (gateway → actors → persistence → gateway); under Linux's
// default policy each hand-off can preempt the thread that made it, so work crosses the cores in
// many small turns. Under SCHED_BATCH a woken thread waits until the running one blocks or its
// slice ends, and then finds more work queued (BENCHMARKS.md, session 9).

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace missive::app {

enum class thread_policy { batch, normal };

/// "batch" or "normal"; false for anything else.
inline bool parse_thread_policy(std::string_view text, thread_policy* out) {
  if (text == "batch")
    *out = thread_policy::batch;
  else if (text == "normal")
    *out = thread_policy::normal;
  else
    return false;
  return true;
}

/// "batch" or "normal".
inline const char* name_of(thread_policy p) {
  return p == thread_policy::batch ? "batch" : "normal";
}

/// Puts the calling thread under `p`. Threads it creates afterwards inherit the policy, so call
/// this before the first one. Returns an empty string, or why the kernel refused (unprivileged
/// processes may switch between these two policies; a sandbox may forbid it).
inline std::string apply_thread_policy(thread_policy p) {
  sched_param param{};
  if (sched_setscheduler(0, p == thread_policy::batch ? SCHED_BATCH : SCHED_OTHER, &param) != 0)
    return std::string("cannot set the thread policy: ") + std::strerror(errno);
  return {};
}

} // namespace missive::app

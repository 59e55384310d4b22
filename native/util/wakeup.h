// Wakeup: an eventfd that one thread signals and another waits on (with epoll).
// Hazard guarded: a lost wakeup. The counter semantics of eventfd make signal-before-wait safe: a
// signal sent while the engine thread is busy stays pending until it drains it.
#pragma once
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "util/unique_fd.h"

namespace kvwire {

class Wakeup {
 public:
  Wakeup() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }

  // Async-signal-safe and thread-safe: a single write(2).
  void Signal() const {
    uint64_t one = 1;
    ssize_t r;
    do {
      r = ::write(fd_.get(), &one, sizeof one);
    } while (r < 0 && errno == EINTR);
  }

  // Consumes all pending signals. Returns true when at least one was pending.
  bool Drain() const {
    uint64_t n = 0;
    return ::read(fd_.get(), &n, sizeof n) == static_cast<ssize_t>(sizeof n) && n > 0;
  }

 private:
  UniqueFd fd_;
};

}  // namespace kvwire

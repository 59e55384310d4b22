// Liveness beacons: a same-host peer's death seen by one memory load instead of a system call.
//
// Cross-memory attach (cma.h) names the peer by its pid, which is the peer's only while its
// process lives: once it has exited and been reaped, the number may go to another process. The
// thread that copies therefore checks that the peer still lives before each copy. Polling the
// peer's pidfd does it in one system call (0.2 µs, measured 0.35-0.4 µs of a 2.8 µs 4 KiB READ in
// the addon: the kernel entry also slows the code after it); a beacon does it in one load.
//
// A beacon (LivenessBeacon) is one page of a sealed memfd holding a robust, process-shared mutex
// that the engine thread locks when it starts and never unlocks. When that thread ends (its
// process exits, is killed or replaces itself by exec; or the agent closes), the kernel rewrites
// the mutex word from the owner's thread id to FUTEX_OWNER_DIED. It does so while the thread exits
// (the robust-futex list, before exit_notify), so before the process can be reaped and its pid
// reused. A same-host initiator that may use cross-memory attach gets the descriptor from the
// target's process (pidfd_getfd, which needs the same ptrace permission cross-memory attach does),
// maps the page read-only (PeerBeacon) and checks the word still holds the thread id it read at
// connect: a check made before a copy is as good as the pidfd's (a process that dies right after
// it can only have its pid reused after a reap and a wrap of the pid space); one made after a
// READ proves the bytes came from the peer (the pid was its own throughout).
//
// Hazards guarded: a page the owner shrinks would fault (SIGBUS) in the reader: the memfd is
// sealed against shrinking and growing, and a reader maps only a sealed memfd of at least a page.
// A word that is not a live owner when the initiator opens the page (0, or owner-died) is no
// beacon: the initiator keeps polling the pidfd.
#pragma once
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "util/unique_fd.h"

namespace kvwire {

class LivenessBeacon {
 public:
  // A new page, not held yet; nullptr where the kernel cannot make one (peers then poll our pidfd).
  static std::unique_ptr<LivenessBeacon> Create();
  ~LivenessBeacon();
  LivenessBeacon(const LivenessBeacon&) = delete;
  LivenessBeacon& operator=(const LivenessBeacon&) = delete;

  // On the thread whose life the beacon reports, once: false if the lock failed (no beacon then).
  bool Hold();
  // The memfd's descriptor number in this process, what a peer passes to pidfd_getfd.
  int fd() const { return fd_.get(); }

 private:
  LivenessBeacon(UniqueFd fd, pthread_mutex_t* mutex) : fd_(std::move(fd)), mutex_(mutex) {}
  UniqueFd fd_;
  pthread_mutex_t* mutex_;  // the mapped page
};

class PeerBeacon {
 public:
  // The beacon `remoteFd` of the process behind `pidfd`, mapped read-only; nullptr when it cannot
  // be had or is not a live beacon (the caller keeps polling the pidfd then).
  static std::unique_ptr<PeerBeacon> Open(int pidfd, int remoteFd);
  ~PeerBeacon();
  PeerBeacon(const PeerBeacon&) = delete;
  PeerBeacon& operator=(const PeerBeacon&) = delete;

  // True while the thread that held the beacon at Open() lives (so its process does too).
  bool Alive() const noexcept {
    const uint32_t w = word_->load(std::memory_order_acquire);
    return (w & kTidMask) == tid_ && (w & kOwnerDied) == 0;
  }

  static constexpr uint32_t kTidMask = 0x3fffffffu;    // FUTEX_TID_MASK
  static constexpr uint32_t kOwnerDied = 0x40000000u;  // FUTEX_OWNER_DIED

 private:
  PeerBeacon(void* page, uint32_t tid)
      : page_(page), word_(static_cast<const std::atomic<uint32_t>*>(page)), tid_(tid) {}
  void* page_;
  const std::atomic<uint32_t>* word_;  // the robust mutex's futex word (its first member)
  uint32_t tid_;
};

}  // namespace kvwire

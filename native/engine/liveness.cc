#include "engine/liveness.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

namespace kvwire {

namespace {

constexpr size_t kPage = 4096;

// The futex word the kernel rewrites is the mutex's first member (glibc's __data.__lock).
static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0, "the robust mutex's futex word is not first");
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
              "the futex word is read as a lock-free 32-bit atomic");

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

}  // namespace

std::unique_ptr<LivenessBeacon> LivenessBeacon::Create() {
  UniqueFd fd(memfd_create("kvwire-liveness", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid() || ftruncate(fd.get(), kPage) != 0) return nullptr;
  void* page = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (page == MAP_FAILED) return nullptr;
  auto* mutex = static_cast<pthread_mutex_t*>(page);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  // Sealed: a reader's mapping can never lose its page (no SIGBUS in the reader).
  if (rc != 0 || fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    munmap(page, kPage);
    return nullptr;
  }
  return std::unique_ptr<LivenessBeacon>(new LivenessBeacon(std::move(fd), mutex));
}

LivenessBeacon::~LivenessBeacon() {
  // Never unlocked: the holding thread has ended (the kernel marked the word owner-died) or the
  // process is going away. Peers keep their own mappings of the page.
  munmap(mutex_, kPage);
}

bool LivenessBeacon::Hold() {
  return pthread_mutex_lock(mutex_) == 0;
}

std::unique_ptr<PeerBeacon> PeerBeacon::Open(int pidfd, int remoteFd) {
  if (pidfd < 0 || remoteFd < 0) return nullptr;
  UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, remoteFd, 0)));
  if (!fd.valid()) return nullptr;
  // Only a sealed memfd of at least a page: nothing the peer does later can unmap it under us.
  const int seals = fcntl(fd.get(), F_GET_SEALS);
  struct stat st {};
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size < static_cast<off_t>(kPage)) {
    return nullptr;
  }
  void* page = mmap(nullptr, kPage, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (page == MAP_FAILED) return nullptr;
  const uint32_t w = static_cast<const std::atomic<uint32_t>*>(page)->load(std::memory_order_acquire);
  const uint32_t tid = w & kTidMask;
  if (tid == 0 || (w & kOwnerDied) != 0) {  // not held by a live thread: no beacon
    munmap(page, kPage);
    return nullptr;
  }
  return std::unique_ptr<PeerBeacon>(new PeerBeacon(page, tid));
}

PeerBeacon::~PeerBeacon() {
  munmap(page_, kPage);
}

}  // namespace kvwire

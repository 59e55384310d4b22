// Cross-memory attach: copying between this process and a same-host peer's registered memory with
// process_vm_readv / process_vm_writev, one system call for up to 1,024 descriptors.
//
// This is a path the target cannot check: the kernel lets any process of the same user (and
// ptrace rules allowing it) read and write another's memory. A target therefore offers it (by
// granting the base addresses of its regions) only to same-host peers of the same user, and only
// when the deployment allows one-sided access (AgentOptions.directAccess); the initiator uses it
// only for ranges it checked against the granted regions. See docs/SECURITY.md.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvwire {

struct CmaRange {
  uint8_t* local;
  uint64_t remote;  // the peer's virtual address
  uint64_t length;
};

// Copies `n` ranges to (write) or from (read) process `pid`. Returns 0 on success, else the errno
// of the failing call (ESRCH: the process is gone; EFAULT: a remote range is not mapped there any
// more; EPERM: the kernel refuses cross-process access between these processes).
int CmaCopy(pid_t pid, bool write, const CmaRange* ranges, size_t n);

// Ranges of at most this many bytes go through the peer's memory file when it is open: the
// kernel copies a page at a time through /proc/<pid>/mem (a bounce page), which beats
// process_vm_readv/writev for one page (4 KiB, C loop on this VM: 0.88 against 1.18 us read, 0.94
// against 1.16 write) and loses from two (16 KiB: 2.2 against 1.9).
inline constexpr uint64_t kMemFileMaxBytes = 4096;

// Copies one range to (write) or from (read) the process whose memory file `memFd` is (opened with
// O_RDWR on /proc/<pid>/mem). Returns 0 on success, else an errno (EFAULT: not mapped there, or the
// process is gone: the file reads nothing once its address space is).
int MemFileCopy(int memFd, bool write, const CmaRange& range);

// Opens process `pid`'s memory file for MemFileCopy, or returns -1 (no /proc, refused by the
// kernel's ptrace rules or a security module: process_vm_readv/writev are used instead). The caller
// checks afterwards that `pid` is still the process it means (its pidfd).
int OpenMemFile(pid_t pid);

// Moves the second half (by bytes) of `ranges` into `second`, cutting the range that straddles the
// middle in two: `tail(r, k)` is `r` without its first `k` bytes. False (nothing moved) when there
// is too little to split. For the copy helper's halves (copy_helper.h); R has a `length`.
template <class R, class Tail>
bool SplitInHalf(std::vector<R>* ranges, std::vector<R>* second, Tail tail) {
  uint64_t total = 0;
  for (const R& r : *ranges) total += r.length;
  if (total < 2) return false;
  const uint64_t keep = total / 2;
  uint64_t seen = 0;
  size_t i = 0;
  for (; i < ranges->size(); ++i) {
    R& r = (*ranges)[i];
    if (seen + r.length > keep) {
      const uint64_t first = keep - seen;  // bytes of this range that stay
      if (first > 0) {
        second->push_back(tail(r, first));
        r.length = first;
        ++i;
      }
      break;
    }
    seen += r.length;
  }
  second->insert(second->end(), ranges->begin() + static_cast<std::ptrdiff_t>(i), ranges->end());
  ranges->erase(ranges->begin() + static_cast<std::ptrdiff_t>(i), ranges->end());
  return !second->empty() && !ranges->empty();
}

}  // namespace kvwire

#include "engine/cma.h"

#include <sys/uio.h>

#include <cerrno>
#include <vector>

namespace kvwire {

namespace {
constexpr size_t kIovMax = 1024;  // IOV_MAX on Linux: the most iovecs one call takes
}

int CmaCopy(pid_t pid, bool write, const CmaRange* ranges, size_t n) {
  std::vector<iovec> local, remote;
  local.reserve(kIovMax);
  remote.reserve(kIovMax);
  size_t i = 0;
  uint64_t done = 0;  // bytes of ranges[i] already copied (a call may stop part way)
  while (i < n) {
    local.clear();
    remote.clear();
    uint64_t want = 0;
    for (size_t k = i; k < n && local.size() < kIovMax; ++k) {
      uint64_t skip = k == i ? done : 0;
      local.push_back(iovec{ranges[k].local + skip, static_cast<size_t>(ranges[k].length - skip)});
      remote.push_back(
          iovec{reinterpret_cast<void*>(ranges[k].remote + skip), static_cast<size_t>(ranges[k].length - skip)});
      want += ranges[k].length - skip;
    }
    ssize_t got = write ? process_vm_writev(pid, local.data(), local.size(), remote.data(), remote.size(), 0)
                        : process_vm_readv(pid, local.data(), local.size(), remote.data(), remote.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (got == 0 && want > 0) return EFAULT;  // no progress: a remote range is not mapped
    // Advance over what was copied (partial copies end at an iovec boundary or inside one).
    uint64_t left = static_cast<uint64_t>(got);
    while (left > 0 && i < n) {
      uint64_t rest = ranges[i].length - done;
      if (left >= rest) {
        left -= rest;
        ++i;
        done = 0;
      } else {
        done += left;
        left = 0;
      }
    }
  }
  return 0;
}

}  // namespace kvwire

// UcxEngine::TryInlineCopy: small transfers moved by the thread that posts them.
//
// Handing a transfer to the engine thread costs two thread wake-ups (the post, then the completion
// back to JavaScript) — tens of microseconds on a busy machine, far more than copying 4 KiB. Where
// every descriptor can go one-sided with no engine state (shared memory the peer allocated, mapped
// here; or, for the peer's registered memory, cross-memory attach), a transfer of at most
// inlineBytes is copied right here and reported complete at once.
//
// Hazards guarded:
//  - pid reuse: process_vm_* address a pid; the peer's pidfd (a duplicate owned by its PeerInfo)
//    is polled first: it turns readable when the process exits, before the pid can be reused;
//  - blocking the event loop: bounded by inlineBytes (default 256 KiB: tens of µs, measured in
//    bench/RESULTS.md); larger transfers go to the engine thread;
//  - errors: nothing is reported from here. Any failure (the peer exited, a range is unmapped,
//    the kernel refuses) returns false and the engine thread runs the transfer again and reports
//    the error with its full explanation, as for any other transfer.
#ifdef KVWIRE_HAVE_UCX
#include <poll.h>

#include <cstring>
#include <vector>

#include "engine/cma.h"
#include "engine/ucx_internal.h"

namespace kvwire {

bool UcxEngine::TryInlineCopy(const TransferRequest& req, const PeerInfo& peer) const {
  if (req.cuda || req.forceAm || req.hasNotify || req.bytes > opts_.inlineBytes) return false;
  if (peer.lost.load(std::memory_order_acquire)) return false;
  const bool cma = peer.cmaInline.load(std::memory_order_acquire);
  for (const ResolvedDesc& d : req.descs) {
    if (d.remoteMapped == nullptr && !cma) return false;
  }
  const bool write = req.op == Op::kWrite;
  // Small lists (the common case) stay on the stack.
  constexpr size_t kStackRanges = 16;
  CmaRange stackRanges[kStackRanges];
  std::vector<CmaRange> heapRanges;
  CmaRange* ranges = stackRanges;
  size_t unmapped = 0;
  for (const ResolvedDesc& d : req.descs) unmapped += d.remoteMapped == nullptr ? 1 : 0;
  if (unmapped > kStackRanges) {
    heapRanges.resize(unmapped);
    ranges = heapRanges.data();
  }
  size_t n = 0;
  for (const ResolvedDesc& d : req.descs) {
    if (d.remoteMapped != nullptr) continue;
    ranges[n++] = CmaRange{d.local, d.remoteAddr, d.length};
  }
  if (n > 0) {
    pollfd pf{peer.cmaPidfd.get(), POLLIN, 0};
    if (!peer.cmaPidfd.valid() || poll(&pf, 1, 0) != 0) return false;  // exited (or cannot tell)
    if (CmaCopy(static_cast<pid_t>(peer.pid), write, ranges, n) != 0) return false;
  }
  for (const ResolvedDesc& d : req.descs) {
    if (d.remoteMapped == nullptr) continue;
    if (write) std::memcpy(d.remoteMapped, d.local, d.length);
    else std::memcpy(d.local, d.remoteMapped, d.length);
  }
  return true;
}

}  // namespace kvwire
#endif

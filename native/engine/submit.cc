// UcxEngine::Submit: a transfer from the thread that posts it (the JavaScript thread), before the
// engine thread sees it: checked, resolved to addresses, and then either moved right here (small,
// one-sided) or queued for the engine thread.
//
// The checks repeat lib/transport's on purpose: the addon is callable on its own, and a region may
// be deregistered (here or by the peer) between those checks and this call. A refused transfer
// moves no byte and holds nothing.
//
// The inline copy (TryInlineCopy): handing a transfer to the engine thread costs two thread
// wake-ups (the post, then the completion back to JavaScript), tens of microseconds on a busy
// machine, far more than copying 4 KiB. Where every descriptor can go one-sided with no engine
// state (shared memory the peer allocated, mapped here; or, for the peer's registered memory,
// cross-memory attach), a transfer of at most inlineBytes is copied right here and reported
// complete at once.
//
// Hazards guarded:
//  - pid reuse: process_vm_* address a pid, which is the peer's only while its process lives. The
//    peer's liveness beacon (liveness.h: a word the kernel marks as the peer's engine thread ends,
//    before the process can be reaped) is read before the copy, and again after a READ's (then the
//    pid was the peer's throughout); a peer without one has its pidfd (a duplicate owned by its
//    PeerInfo) polled before the copy: one system call, 0.35-0.4 µs of a 2.8 µs 4 KiB READ;
//  - blocking the event loop: bounded by inlineBytes (default 1 MiB: up to ~70 µs of registered
//    memory, measured in bench/RESULTS-nixl.md); larger transfers go to the engine thread. From
//    kInlineSplitBytes (512 KiB) of cross-memory attach, half is copied by the posting thread's copy
//    helper at the same time (copy_helper.h): 1 MiB READs p50 73-75 -> 43-53 µs on 2 vCPUs;
//  - errors: nothing is reported from the inline copy. Any failure (the peer exited, a range is
//    unmapped, the kernel refuses) returns false and the engine thread runs the transfer again and
//    reports the error with its full explanation, as for any other transfer.
#ifdef KVWIRE_HAVE_UCX
#include <sched.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/cma.h"
#include "engine/ucx_internal.h"

namespace kvwire {

SubmitResult UcxEngine::Submit(const TransferOrder& order) {
  auto refuse = [](const char* c, std::string m) {
    SubmitResult r;
    r.code = c;
    r.message = std::move(m);
    return r;
  };
  if (order.notifyLength > wire::kMaxNotifyBytes) {
    return refuse(code::kInvalidArgument, "notification larger than 1 MiB");
  }
  std::shared_ptr<PeerInfo> peer = peerInfo(order.peerId);
  if (!peer) return refuse(code::kClosed, "the peer is disconnected");
  std::unique_ptr<TransferRequest> req = spareRequest_ ? std::move(spareRequest_) : std::make_unique<TransferRequest>();
  req->id = order.id;
  req->op = order.op;
  req->peerId = order.peerId;
  req->timeoutMs = order.timeoutMs;
  req->hasNotify = order.hasNotify;
  std::string why;
  if (const char* c = Resolve(order, *peer, req.get(), &why)) {
    for (auto& r : req->regions) r->Release();
    return refuse(c, std::move(why));
  }
  // Small transfers this thread can move without the engine thread are copied right now.
  SubmitResult out;
  if (TryInlineCopy(*req, *peer)) {
    for (auto& r : req->regions) r->Release();
    RecycleRequest(std::move(req));
    out.completed = true;
    return out;
  }
  if (order.hasNotify) req->notify.assign(reinterpret_cast<const char*>(order.notify), order.notifyLength);
  for (auto& r : req->regions) localUse(r->id(), +1);
  const bool wait = order.id != 0 && order.alone && WantsCompletionWait(*req);
  if (wait) claim_.store(order.id, std::memory_order_release);  // before the engine thread can see it
  Command c{Command::Kind::kPost};
  c.req = std::move(req);
  Enqueue(std::move(c), !wait);
  if (wait) out.completed = AwaitCompletion(order.id);
  return out;
}

void UcxEngine::RecycleRequest(std::unique_ptr<TransferRequest> req) {
  // Every field back to its default; the two lists keep their storage.
  std::vector<ResolvedDesc> descs = std::move(req->descs);
  std::vector<LocalRegionPtr> regions = std::move(req->regions);
  descs.clear();
  regions.clear();
  *req = TransferRequest{};
  req->descs = std::move(descs);
  req->regions = std::move(regions);
  spareRequest_ = std::move(req);
}

bool UcxEngine::WantsCompletionWait(const TransferRequest& req) {
  if (opts_.completionSpinUs == 0 || req.bytes > opts_.completionSpinBytes || req.cuda) return false;
  // Waits that keep coming back empty-handed (a slow or loaded peer) only burn this thread: after
  // four in a row, wait for one transfer in sixteen until a wait pays again.
  if (spinMisses_ >= 4 && ++spinSkips_ < 16) return false;
  spinSkips_ = 0;
  return true;
}

bool UcxEngine::AwaitCompletion(uint64_t id) {
  const uint64_t deadline = NowNs() + static_cast<uint64_t>(opts_.completionSpinUs) * 1000ull;
  // The posting thread runs the engine's turns itself for the whole wait, once it holds turnMu_
  // (between two of the engine thread's turns): the transfer is posted, progressed and completed
  // here, with no hand-off to the engine thread and back, and the engine thread steps aside
  // (Park) while such waits keep coming. See docs/transport.md, "Threads".
  std::unique_lock turn(turnMu_, std::defer_lock);
  bool done = false;
  bool refused = false;  // Drivable said no: wait without driving
  for (;;) {
    if (claim_.load(std::memory_order_acquire) == (id | kClaimDone)) {
      done = true;
      break;
    }
    bool found = false;
    if (!turn.owns_lock() && !refused && turn.try_lock() && !Drivable(turn)) {
      refused = true;  // the engine thread runs it: wake it, as Enqueue would have
      wakeup_.Signal();
    }
    bool over = NowNs() >= deadline;
    if (turn.owns_lock()) {
      found = Turn();
      if (claim_.load(std::memory_order_acquire) == (id | kClaimDone)) {
        done = true;
        break;
      }
      // Its first turn here started it: gone from xfers_ without being handed over, it failed (its
      // event is on its way), and waiting on would only burn the budget.
      if (xfers_.find(id) == xfers_.end()) over = true;
    }
    if (over) {
      uint64_t want = id;
      done = !claim_.compare_exchange_strong(want, 0, std::memory_order_acq_rel);  // else handed over just now
      break;
    }
    // The threads this wait depends on (this agent's engine thread, a same-host peer's) may need
    // this very core: give it away while waiting (returns at once when nothing else wants it).
    if (!found) sched_yield();
  }
  bool wake = !done;  // left to the engine thread, which reports it as usual
  if (turn.owns_lock()) {
    drives_.fetch_add(1, std::memory_order_release);
    wake = wake || PendingWork();
    turn.unlock();
  }
  if (wake) wakeup_.Signal();
  if (!done) {
    ++spinMisses_;
    return false;
  }
  claim_.store(0, std::memory_order_relaxed);
  spinMisses_ = 0;
  return true;
}

bool UcxEngine::Drivable(std::unique_lock<std::mutex>& turn) {
  // Not once the engine is closing (its thread shuts the worker down next), nor while CUDA copies
  // are in flight (their events are the engine thread's to poll), nor while a command other than
  // a transfer's is queued: a connect can hold its turn for seconds (UCX 1.13's tcp connect blocks
  // in ucp_ep_create; docs/RELIABILITY.md, F7), and the event loop must not.
  bool ok = !stopping_.load(std::memory_order_acquire) && !(cuda_ && cuda_->busy());
  if (ok) {
    std::lock_guard lock(cmdMu_);
    for (const Command& c : commands_) {
      if (c.kind != Command::Kind::kPost && c.kind != Command::Kind::kCancel && c.kind != Command::Kind::kNotify) {
        ok = false;
        break;
      }
    }
  }
  if (!ok) turn.unlock();
  return ok;
}

bool UcxEngine::PendingWork() const {
  return active_ > 0 || !xfers_.empty() || !serves_.empty() || !retiring_.empty() || !closing_.empty() ||
         !deferred_.empty() || !touched_.empty() || (cuda_ && cuda_->busy());
}

bool UcxEngine::HandOverCompletion(uint64_t id) {
  uint64_t want = id;
  return claim_.compare_exchange_strong(want, id | kClaimDone, std::memory_order_acq_rel);
}

const char* UcxEngine::Resolve(const TransferOrder& order, const PeerInfo& peer, TransferRequest* req,
                               std::string* why) {
  const Access need = order.op == Op::kWrite ? kAccessWrite : kAccessRead;
  req->descs.resize(order.count);
  uint32_t lastLocal = UINT32_MAX, lastRemote = UINT32_MAX;
  LocalRegion* local = nullptr;
  const RemoteRegion* remote = nullptr;
  // Region ids are small, dense integers: index them directly (descriptors of a KV layout cycle
  // through dozens of regions, so a last-used cache alone would miss on every descriptor). A short
  // list (the common batch of one) does without: building the index would cost it two allocations.
  const bool indexIds = order.count > 4;
  std::vector<LocalRegion*> localById;
  std::vector<const RemoteRegion*> remoteById;
  auto fail = [why](const char* c, size_t i, const char* what) {
    *why = "descriptor " + std::to_string(i) + what;
    return c;
  };
  for (size_t i = 0; i < order.count; ++i) {
    const DescriptorRef& e = order.descs[i];
    const uint32_t lid = e.localRegion, rid = e.remoteRegion;
    if (lid != lastLocal) {
      local = lid < localById.size() ? localById[lid] : nullptr;
      if (local == nullptr) {
        LocalRegionPtr r = regions_.Acquire(lid);
        if (!r) return fail(code::kDeregistered, i, ": local region was deregistered");
        local = r.get();
        req->regions.push_back(std::move(r));
        if (indexIds && lid < (1u << 20)) {
          if (localById.size() <= lid) localById.resize(lid + 1, nullptr);
          localById[lid] = local;
        }
      }
      lastLocal = lid;
    }
    if (rid != lastRemote) {
      remote = rid < remoteById.size() ? remoteById[rid] : nullptr;
      if (remote == nullptr) {
        remote = peer.Find(rid);
        if (remote == nullptr) return fail(code::kUnknownRegion, i, ": unknown remote region");
        if (indexIds && rid < (1u << 20)) {
          if (remoteById.size() <= rid) remoteById.resize(rid + 1, nullptr);
          remoteById[rid] = remote;
        }
      }
      lastRemote = rid;
    }
    if (remote->revoked.load(std::memory_order_relaxed)) {
      return fail(code::kDeregistered, i, ": the peer deregistered the remote region");
    }
    if ((remote->access & need) != need) return fail(code::kAccessDenied, i, ": access denied");
    const uint64_t loff = e.localOffset, roff = e.remoteOffset, len = e.length;
    if (len == 0 || !local->Contains(loff, len) || roff > remote->length || len > remote->length - roff) {
      return fail(code::kOutOfBounds, i, " is out of bounds");
    }
    // Mapped here: shared memory UCX allocated (all of it), or the peer's registered memory's
    // shared window (share.h; the ranges inside it).
    uint8_t* mapped = remote->mapped.load(std::memory_order_acquire);
    const PeerWindow* window = remote->windowReady.load(std::memory_order_acquire);
    uint8_t* shared = mapped == nullptr && window != nullptr ? window->At(roff, len) : nullptr;
    ResolvedDesc& d = req->descs[i];
    d = ResolvedDesc{local->base() + loff,
                     local->memh(),
                     len,
                     rid,
                     roff,
                     remote->base + roff,
                     mapped != nullptr ? mapped + roff : shared};
    d.remoteShared = shared != nullptr;
    if (local->onDevice() || remote->device >= 0) {  // device memory: never touched by host code here
      d.localDevice = static_cast<int16_t>(local->device());
      d.remoteDevice = static_cast<int16_t>(remote->device);
      if (remote->device >= 0) d.remoteMapped = nullptr;
      req->cuda = true;
    }
    req->bytes += len;
  }
  return nullptr;
}

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
  bool shared = false;
  for (const ResolvedDesc& d : req.descs) {
    unmapped += d.remoteMapped == nullptr ? 1 : 0;
    shared = shared || d.remoteShared;
  }
  if (unmapped > kStackRanges) {
    heapRanges.resize(unmapped);
    ranges = heapRanges.data();
  }
  size_t n = 0;
  for (const ResolvedDesc& d : req.descs) {
    if (d.remoteMapped != nullptr) continue;
    ranges[n++] = CmaRange{d.local, d.remoteAddr, d.length};
  }
  // The peer's own memory (cross-memory attach, or its registered memory's shared window) is its
  // only while its agent lives: checked before the copy, and after a READ.
  const bool check = n > 0 || shared;
  if (check && peer.CheckPid(peer.cmaPidfd.get()) != PeerInfo::Pid::kOurs) return false;  // the engine thread says why
  if (n > 0) {
    const auto pid = static_cast<pid_t>(peer.pid);
    uint64_t attachBytes = 0;
    for (size_t i = 0; i < n; ++i) attachBytes += ranges[i].length;
    if (attachBytes >= kInlineSplitBytes) {
      // Large: half of it by the posting thread's copy helper at the same time (copy_helper.h).
      std::vector<CmaRange> first(ranges, ranges + n), second;
      if (SplitInHalf(&first, &second,
                      [](const CmaRange& r, uint64_t k) {
                        return CmaRange{r.local + k, r.remote + k, r.length - k};
                      }) &&
          inlineHelper_.Start([pid, write, &second] { return CmaCopy(pid, write, second.data(), second.size()); })) {
        int err = CmaCopy(pid, write, first.data(), first.size());
        if (inlineHelper_.Wait() != 0 || err != 0) return false;
        n = 0;  // copied
      }
    }
    if (n == 1 && ranges[0].length <= kMemFileMaxBytes && peer.cmaMemFd.valid()) {
      if (MemFileCopy(peer.cmaMemFd.get(), write, ranges[0]) != 0) return false;
      n = 0;  // copied
    }
    if (n > 0 && CmaCopy(pid, write, ranges, n) != 0) return false;
  }
  for (const ResolvedDesc& d : req.descs) {
    if (d.remoteMapped == nullptr) continue;
    if (write) std::memcpy(d.remoteMapped, d.local, d.length);
    else std::memcpy(d.local, d.remoteMapped, d.length);
  }
  return !(check && !write && !peer.PidStillOurs());
}

}  // namespace kvwire
#endif

// UcxEngine, initiator side: posting READ and WRITE (one-sided RMA, or the AM protocol over tcp),
// their completions, deadlines and cancellation, and notifications sent by this agent.
#ifdef KVWIRE_HAVE_UCX

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/cma.h"
#include "engine/ucx_internal.h"

namespace kvwire {

namespace {
// Statuses that mean the peer is gone rather than that one operation failed.
bool IsPeerFailure(ucs_status_t st) {
  return st == UCS_ERR_CONNECTION_RESET || st == UCS_ERR_ENDPOINT_TIMEOUT || st == UCS_ERR_UNREACHABLE ||
         st == UCS_ERR_REJECTED || st == UCS_ERR_CANCELED;
}

using Phase = XferPhase;

// Why a same-host peer reached by cross-memory attach is lost.
std::string PeerGoneReason(PeerInfo::Pid why, uint32_t pid) {
  return why == PeerInfo::Pid::kAgentEnded ? "its agent ended (process " + std::to_string(pid) + ")"
                                           : "its process (pid " + std::to_string(pid) + ") exited";
}

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kPosting:
      return "posting";
    case Phase::kAwaitingTarget:
      return "awaiting-target";
    case Phase::kReceiving:
      return "receiving";
    case Phase::kNotifying:
      return "notifying";
    case Phase::kLanded:
      return "landed";
    case Phase::kFinished:
      return "finished";
    case Phase::kDraining:
      return "draining";
  }
  return "unknown";
}

// The legal moves of a transfer's life (the diagram at UcxEngine::Xfer, ucx_internal.h).
bool XferMoveAllowed(Phase from, Phase to) {
  if (to == Phase::kFinished || to == Phase::kDraining) return from != Phase::kFinished && from != Phase::kDraining;
  switch (from) {
    case Phase::kPosting:
      return to == Phase::kAwaitingTarget || to == Phase::kNotifying || to == Phase::kLanded;
    case Phase::kAwaitingTarget:
      return to == Phase::kReceiving || to == Phase::kLanded;
    case Phase::kReceiving:
      return to == Phase::kNotifying || to == Phase::kLanded;
    case Phase::kNotifying:
      return to == Phase::kLanded;
    default:
      return false;
  }
}
// One range of a one-sided copy: into/out of the peer's memory mapped here (`mapped`), else by
// cross-memory attach at the peer's address `remote`.
struct OneSidedCopy {
  uint8_t* local;
  uint8_t* mapped;
  uint64_t remote;
  uint64_t length;
};

// Copies `n` ranges; returns 0, or the errno of the cross-memory attach that failed.
int RunCopies(pid_t pid, bool write, const OneSidedCopy* c, size_t n) {
  std::vector<CmaRange> cma;
  for (size_t i = 0; i < n; ++i) {
    if (c[i].mapped != nullptr) {  // mapped shared memory: a plain copy, no system call
      if (write) std::memcpy(c[i].mapped, c[i].local, c[i].length);
      else std::memcpy(c[i].local, c[i].mapped, c[i].length);
    } else {
      cma.push_back(CmaRange{c[i].local, c[i].remote, c[i].length});
    }
  }
  return cma.empty() ? 0 : CmaCopy(pid, write, cma.data(), cma.size());
}

}  // namespace

void UcxEngine::MoveXfer(Xfer& x, Xfer::Phase to) {
  if (XferMoveAllowed(x.phase, to)) {
    x.phase = to;
    return;
  }
  // An engine defect. Refused (a finished transfer never comes back to life; a stuck one still
  // ends at its deadline), said once per process, and fatal in a build with KVWIRE_CHECK_STATES.
  std::string what = std::string("internal error: transfer ") + std::to_string(x.req->id) + " cannot move from " +
                     PhaseName(x.phase) + " to " + PhaseName(to) + "; please report it";
#ifdef KVWIRE_CHECK_STATES
  fprintf(stderr, "kvwire: %s\n", what.c_str());
  abort();
#else
  static std::atomic<bool> reported{false};
  if (reported.exchange(true)) return;
  EngineEvent w{EngineEvent::Kind::kWarning};
  w.text = std::move(what);
  Emit(std::move(w));
#endif
}

void UcxEngine::XferSendCb(void* req, ucs_status_t st, void* ud) {
  auto* x = static_cast<Xfer*>(ud);
  x->engine->Untrack(req);
  x->engine->OnXferOp(*x, st, false);
}

void UcxEngine::XferRecvCb(void* req, ucs_status_t st, size_t, void* ud) {
  auto* x = static_cast<Xfer*>(ud);
  x->engine->Untrack(req);
  x->engine->OnXferOp(*x, st, true);
}

void UcxEngine::OnXferOp(Xfer& x, ucs_status_t st, bool isRecv, uint32_t count) {
  x.inflight--;
  active_--;
  if (st != UCS_OK) {
    if (x.opError == UCS_OK) x.opError = st;
  } else if (isRecv) {
    x.gotCount += count;
  } else {
    x.completed += count;
  }
  Touch(x);
}

bool UcxEngine::TrackXferOp(Xfer& x, void* r, uint32_t count) {
  if (r == nullptr) {
    x.completed += count;
    return true;
  }
  if (UCS_PTR_IS_ERR(r)) {
    x.opError = UCS_PTR_STATUS(r);
    Touch(x);
    return false;
  }
  Track(r);
  x.inflight++;
  active_++;
  return true;
}

void UcxEngine::Touch(Xfer& x) {
  if (x.touched) return;
  x.touched = true;
  touched_.push_back(x.req->id);
}

void UcxEngine::ProcessTouched() {
  while (!touched_.empty()) {
    std::vector<uint64_t> ids;
    ids.swap(touched_);
    for (uint64_t id : ids) {
      auto it = xfers_.find(id);
      if (it == xfers_.end()) continue;
      Xfer& x = *it->second;
      x.touched = false;
      if (!x.Finished() && x.opError != UCS_OK) {
        auto ob = outbound_.find(x.req->peerId);
        if (ob != outbound_.end() && ob->second->state == Outbound::State::kLost) {
          FinishXfer(x, ob->second->lostCode,
                     "peer '" + ob->second->info->name + "' was lost: " + ob->second->lostReason);
        } else {
          FinishXfer(
              x, IsPeerFailure(x.opError) ? code::kPeerLost : code::kTransport,
              "the transport failed an operation of transfer " + std::to_string(id) + ": " + UcsMessage(x.opError));
        }
      }
      if (!x.Finished()) PumpXfer(x);  // may end `x` (its peer lost): only `id` is used after
      ReapXfer(id);
    }
  }
}

void UcxEngine::StartTransfer(std::unique_ptr<TransferRequest> req) {
  uint64_t id = req->id;
  auto owned = std::make_unique<Xfer>();
  Xfer& x = *owned;
  x.engine = this;
  x.req = std::move(req);
  x.startNs = NowNs();
  x.deadlineNs = DeadlineFrom(x.startNs, x.req->timeoutMs);
  nextDeadlineNs_ = std::min(nextDeadlineNs_, x.deadlineNs);
  xfers_[id] = std::move(owned);

  auto it = outbound_.find(x.req->peerId);
  if (it == outbound_.end()) {
    FinishXfer(x, code::kClosed, "the peer was disconnected before the transfer started");
    ReapXfer(id);
    return;
  }
  Outbound& ob = *it->second;
  if (ob.state == Outbound::State::kLost) {
    FinishXfer(x, ob.lostCode, "peer '" + ob.info->name + "' was lost: " + ob.lostReason);
    ReapXfer(id);
    return;
  }
  if (ob.state != Outbound::State::kConnected) {
    FinishXfer(x, code::kInvalidArgument, "the peer is not connected yet; await agent.connect() first");
    ReapXfer(id);
    return;
  }
  ob.xfers.insert(id);
  ob.liveXfers++;
  // One-sided when the target granted it and every descriptor can go that way: into shared memory
  // mapped here, or (host memory) by cross-memory attach. Anything else: the target's checks.
  x.rma = ob.oneSided && !x.req->forceAm && !x.req->cuda;
  for (size_t i = 0; x.rma && i < x.req->descs.size(); ++i) {
    const ResolvedDesc& d = x.req->descs[i];
    x.rma = d.remoteMapped != nullptr || (ob.cma && d.remoteDevice < 0 && d.localDevice < 0);
  }
  if (x.req->cuda) PrepareCudaXfer(x, ob);  // device memory: IPC or staging
  size_t n = x.req->descs.size();
  if (!x.rma && !x.cuda) {
    if (x.req->op == Op::kWrite) {
      x.whdrs.resize(n);
    } else {
      x.items.resize(n);
      x.got.assign(n, 0);
      for (size_t i = 0; i < n; ++i) {
        const ResolvedDesc& d = x.req->descs[i];
        x.items[i] = wire::ReadItem{d.remoteRegion, 0, d.remoteOffset, d.length};
      }
    }
  }
  PumpXfer(x);  // may end `x` (its peer lost): only `id` is used after
  ReapXfer(id);
}

void UcxEngine::PumpXfer(Xfer& x) {
  if (x.Finished()) return;
  // "Posted" is when the first operation goes to the transport (as nixlbench's post time): what
  // follows (copies, flow control, the wire) is the transfer itself.
  if (x.postedNs == 0) x.postedNs = NowNs();
  auto it = outbound_.find(x.req->peerId);
  if (it == outbound_.end() || it->second->ep == nullptr) {
    FinishXfer(x, code::kClosed, "the peer was disconnected while this transfer was in flight");
    return;
  }
  Outbound& ob = *it->second;
  if (x.phase == Phase::kPosting) {
    if (x.cuda) {
      PumpCudaXfer(x, ob);
    } else if (x.rma) {
      if (!PostOneSided(x, ob)) return;  // the peer was lost, and `x` reaped with it
    } else if (x.req->op == Op::kWrite) {
      PostAmWrite(x, ob);
    } else {
      PostReadRequest(x, ob);
    }
  }
  MaybeFinishXfer(x);
}

bool UcxEngine::PostOneSided(Xfer& x, Outbound& ob) {
  // Copied by this thread, a few MiB at a time (a large descriptor in pieces): between pieces the
  // deadline is checked (a copy is fast, but a transfer of gigabytes must still end at its
  // deadline, as any other does). A piece of at least kSplitBytes is copied in two halves at once,
  // the second by the copy helper thread (copy_helper.h). By cross-memory attach the kernel's side
  // of process_vm_* (pinning pages) keeps a core busy, and with a second core the piece takes about
  // half as long (registered memory, 4 MiB READs: 12.8-13.2 -> 20.7-21.3 GB/s; 64 x 1 MiB: 7.3-7.5
  // -> 12.7-13.0 GB/s). A memcpy of mapped memory (allocated, or registered memory a peer shares:
  // share.h) gains too, less steadily (one core's copy is not the memory bus' limit on this kind of
  // machine; interleaved pairs, GB/s, one -> two threads: registered 4 MiB READ 25-26 -> 37-41,
  // 16 MiB 17-18 -> 20-33, 64 x 1 MiB 13-14 -> 16; allocated 4 MiB 21-26 -> 25-39, 64 x 1 MiB
  // 10-13 -> 13-15).
  constexpr uint64_t kPieceBytes = 4u << 20;
  constexpr uint64_t kSplitBytes = 2u << 20;
  const size_t n = x.req->descs.size();
  const bool write = x.req->op == Op::kWrite;
  const pid_t pid = static_cast<pid_t>(ob.info->pid);
  std::vector<OneSidedCopy> piece;
  while (x.next < n) {
    if (NowNs() > x.deadlineNs) return true;  // CheckDeadlines fails it with ERR_KVWIRE_TIMEOUT
    uint64_t bytes = 0;
    uint32_t finished = 0;
    bool attach = false;
    piece.clear();
    while (x.next < n && bytes < kPieceBytes) {
      const ResolvedDesc& d = x.req->descs[x.next];
      uint64_t at = x.partDone;
      uint64_t len = std::min<uint64_t>(d.length - at, kPieceBytes - bytes);
      piece.push_back(OneSidedCopy{d.local + at, d.remoteMapped != nullptr ? d.remoteMapped + at : nullptr,
                                   d.remoteAddr + at, len});
      attach = attach || d.remoteMapped == nullptr || d.remoteShared;  // the peer's own memory
      bytes += len;
      x.partDone += len;
      if (x.partDone == d.length) {
        x.partDone = 0;
        x.next++;
        finished++;
      }
    }
    // The pid is the peer's only while its process lives (PeerInfo::CheckPid).
    const PeerInfo::Pid before = attach ? ob.info->CheckPid(ob.pidfd.get()) : PeerInfo::Pid::kOurs;
    if (before != PeerInfo::Pid::kOurs) {
      OutboundLost(ob, code::kPeerLost, PeerGoneReason(before, ob.info->pid));
      return false;
    }
    int err = 0;
    std::vector<OneSidedCopy> half;
    const bool split =
        bytes >= kSplitBytes && SplitInHalf(&piece, &half, [](const OneSidedCopy& c, uint64_t k) {
          return OneSidedCopy{c.local + k, c.mapped != nullptr ? c.mapped + k : nullptr, c.remote + k, c.length - k};
        });
    if (split && copyHelper_.Start([pid, write, &half] { return RunCopies(pid, write, half.data(), half.size()); })) {
      err = RunCopies(pid, write, piece.data(), piece.size());
      int other = copyHelper_.Wait();
      if (err == 0 || other == ESRCH) err = other;
    } else {
      err = RunCopies(pid, write, piece.data(), piece.size());
      if (err == 0 && !half.empty()) err = RunCopies(pid, write, half.data(), half.size());  // no helper thread
    }
    if (err == ESRCH) {
      OutboundLost(ob, code::kPeerLost, PeerGoneReason(PeerInfo::Pid::kExited, ob.info->pid));
      return false;
    }
    if (err == 0 && attach && !write && !ob.info->PidStillOurs()) {
      OutboundLost(ob, code::kPeerLost, PeerGoneReason(PeerInfo::Pid::kAgentEnded, ob.info->pid));
      return false;
    }
    if (err != 0) {
      FinishXfer(
          x, err == EFAULT ? code::kDeregistered : code::kTransport,
          std::string("cross-memory attach to '") + ob.info->name + "' failed: " + strerror(err) +
              (err == EFAULT ? " (the peer's memory is no longer mapped: it deregistered the region)"
                             : " (the kernel refused; check ptrace restrictions, or connect with protocol 'am')"));
      return true;
    }
    x.completed += finished;
  }
  return true;
}

void UcxEngine::PostAmWrite(Xfer& x, Outbound& ob) {
  size_t n = x.req->descs.size();
  // Host memory only, never a staging sub-transfer (native/cuda): those go one by one.
  const bool pack = opts_.batchBelow > 0 && !x.req->forceAm && x.req->parentId == 0 && !x.req->cuda;
  const uint32_t window = pack ? PackedWindowFor(x.req->bytes, n) : WindowFor(x.req->bytes, n);
  bool finSent = false;  // the last descriptor carried the FIN (WriteHdr::finCount): one message fewer
  while (x.next < n && x.next - x.completed < window) {
    uint32_t i = x.next;
    if (pack) {
      uint32_t run = PackedRun(i, static_cast<uint32_t>(n), window - (x.next - x.completed), x.req->bytes,
                               [&](uint32_t k) { return x.req->descs[k].length; });
      if (run >= 2) {
        if (!PostWriteBatch(x, ob, run)) return;
        continue;
      }
    }
    const ResolvedDesc& d = x.req->descs[i];
    wire::WriteHdr& h = x.whdrs[i];  // must stay valid until the send completes
    // Only an eager descriptor carries the FIN (a rendezvous one is followed by its own kWriteFin,
    // as for a READ's pushes: ucx_target.cc PumpServe).
    finSent = i + 1 == n && !x.req->hasNotify && d.length < opts_.rndvThreshold;
    h = wire::WriteHdr{
        ob.RouteOut(),  i,       x.req->timeoutMs, x.req->id, d.remoteRegion, finSent ? static_cast<uint32_t>(n) : 0u,
        d.remoteOffset, d.length};
    ucp_request_param_t p{};
    p.op_attr_mask =
        UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_MEMH;
    p.cb.send = &UcxEngine::XferSendCb;
    p.user_data = &x;
    p.flags = DataFlags(ob.lanes.peerErrors, d.length);
    p.memh = static_cast<ucp_mem_h>(d.memh);
    void* r = ucp_am_send_nbx(ob.ep, wire::kWrite, &h, sizeof h, d.local, d.length, &p);
    x.next++;
    if (!TrackXferOp(x, r, 1)) return;
  }
  if (x.next == n) {
    // Every descriptor is posted: tell the target how many to expect (it arrives after their
    // headers on this endpoint). The target confirms once every one has landed, and only then
    // delivers the notification. Sent now, not after the local completions, to save a round trip.
    MoveXfer(x, Phase::kAwaitingTarget);
    if (finSent) return;
    wire::WriteFinHdr h{ob.RouteOut(), static_cast<uint32_t>(n), static_cast<uint32_t>(x.req->hasNotify), x.req->id};
    SendControl(ob.ep, wire::kWriteFin, &h, sizeof h, x.req->notify.data(), x.req->notify.size(),
                FailXferIfUnsent(x.req->id));
  }
}

std::function<void(ucs_status_t)> UcxEngine::FailXferIfUnsent(uint64_t id) {
  return [this, id](ucs_status_t st) {
    if (st == UCS_OK) return;
    auto it = xfers_.find(id);
    if (it != xfers_.end() && it->second->opError == UCS_OK) {
      it->second->opError = st;
      Touch(*it->second);
    }
  };
}

void UcxEngine::PostReadRequest(Xfer& x, Outbound& ob) {
  MoveXfer(x, Phase::kAwaitingTarget);
  wire::ReadReqHdr h{ob.RouteOut(), static_cast<uint32_t>(x.items.size()), x.req->timeoutMs, x.req->id};
  SendControl(ob.ep, wire::kReadReq, &h, sizeof h, x.items.data(), x.items.size() * sizeof(wire::ReadItem),
              FailXferIfUnsent(x.req->id));
}

void UcxEngine::MaybeFinishXfer(Xfer& x) {
  const size_t n = x.req->descs.size();
  bool landed = false;
  if (x.phase == Phase::kPosting) {
    // Moved by this side alone: one-sided copies (memcpy or process_vm_*, in place once done) or
    // CUDA copies. Transfers by active messages leave kPosting on the target's word.
    landed = x.cuda ? CudaLanded(x) : x.rma && x.completed == n;
  } else if (x.phase == Phase::kReceiving) {
    landed = x.gotCount == n;  // the target pushed everything: wait for the last bytes to arrive
  }
  if (landed) {
    if (x.req->hasNotify) {
      SendTransferNotify(x);  // after the bytes, so the peer learns of them only once they are there
      return;
    }
    MoveXfer(x, Phase::kLanded);
  }
  if (x.phase == Phase::kLanded) FinishXfer(x, "", "");
}

void UcxEngine::SendTransferNotify(Xfer& x) {
  MoveXfer(x, Phase::kNotifying);
  auto it = outbound_.find(x.req->peerId);
  if (it == outbound_.end() || it->second->ep == nullptr) {
    FinishXfer(x, code::kClosed, "the peer was disconnected before the notification could be sent");
    return;
  }
  wire::NotifyHdr h{it->second->RouteOut()};
  uint64_t id = x.req->id;
  SendControl(it->second->ep, wire::kNotify, &h, sizeof h, x.req->notify.data(), x.req->notify.size(),
              [this, id](ucs_status_t st) {
                auto xi = xfers_.find(id);
                if (xi == xfers_.end()) return;
                if (st == UCS_OK) {
                  if (xi->second->phase == Phase::kNotifying) MoveXfer(*xi->second, Phase::kLanded);
                } else if (xi->second->opError == UCS_OK) {
                  xi->second->opError = st;
                }
                Touch(*xi->second);
              });
}

void UcxEngine::FinishXfer(Xfer& x, const std::string& c, const std::string& msg) {
  if (x.Finished()) return;
  MoveXfer(x, x.inflight > 0 ? Phase::kDraining : Phase::kFinished);
  EngineEvent e{EngineEvent::Kind::kTransferDone};
  e.id = x.req->id;
  e.code = c;
  e.text = msg;
  e.startNs = x.startNs;
  e.postedNs = x.postedNs != 0 ? x.postedNs : x.startNs;
  e.doneNs = NowNs();
  e.aux = x.inflight;  // > 0: a kTransferQuiesced follows when the last of them finishes
  auto it = outbound_.find(x.req->peerId);
  if (it != outbound_.end()) it->second->xfers.erase(x.req->id);
  if (x.req->parentId != 0) {
    OnChildFinished(x, c, msg);  // a staging sub-transfer reports to its transfer, not to JS
    return;
  }
  if (c.empty() && x.inflight == 0 && !x.cuda && x.req->id != 0 &&
      claim_.load(std::memory_order_acquire) == x.req->id) {
    // The posting thread is waiting for this success: ReapXfer hands it over once the regions are
    // released (a region the caller deregisters next must not be busy), or emits it.
    x.heldDone = std::make_unique<EngineEvent>(std::move(e));
    return;
  }
  Emit(std::move(e));
  if (x.cuda) OnCudaXferFinished(x);
}

void UcxEngine::ReapXfer(uint64_t id) {
  auto it = xfers_.find(id);
  if (it == xfers_.end()) return;
  Xfer& x = *it->second;
  if (!x.Finished() || x.inflight != 0) return;
  if (x.req->parentId != 0) {
    OnChildReaped(x);
  } else if (x.QuiesceOwed()) {
    EngineEvent e{EngineEvent::Kind::kTransferQuiesced};
    e.id = id;
    Emit(std::move(e));
  }
  for (auto& r : x.req->regions) {
    localUse(r->id(), -1);
    r->Release();
  }
  x.req->regions.clear();
  if (x.heldDone && !HandOverCompletion(id)) Emit(std::move(*x.heldDone));
  uint32_t peerId = x.req->peerId;
  xfers_.erase(it);
  auto ob = outbound_.find(peerId);
  if (ob != outbound_.end() && ob->second->liveXfers > 0 && --ob->second->liveXfers == 0 &&
      ob->second->state == Outbound::State::kClosing) {
    // A connection being closed waits for its transfers' last operations (callers may still hold it).
    deferred_.push_back([this, peerId] {
      auto again = outbound_.find(peerId);
      if (again != outbound_.end()) MaybeFinishOutboundClose(*again->second);
    });
  }
}

UcxEngine::Xfer* UcxEngine::XferFor(const wire::Route& r, uint64_t xferId) {
  if (OutboundFor(r) == nullptr) return nullptr;
  auto it = xfers_.find(xferId);
  if (it == xfers_.end() || it->second->req->peerId != r.id) return nullptr;
  return it->second.get();
}

void UcxEngine::CancelXfer(uint64_t id, const char* c, const std::string& msg) {
  auto it = xfers_.find(id);
  if (it == xfers_.end()) return;
  Xfer& x = *it->second;
  if (x.Finished()) return;
  // An AM READ past kPosting sent its request: the target is serving it, tell it to stop.
  if (!x.rma && !x.cuda && x.req->op == Op::kRead && x.phase != Phase::kPosting) {
    auto ob = outbound_.find(x.req->peerId);
    if (ob != outbound_.end() && ob->second->state == Outbound::State::kConnected) {
      wire::ReadCancelHdr h{ob->second->RouteOut(), id};
      SendControl(ob->second->ep, wire::kReadCancel, &h, sizeof h, nullptr, 0);
    }
  }
  FinishXfer(x, c, msg.empty() ? "the transfer was cancelled" : msg);
  // Operations already handed to UCX may still complete; the Xfer (and the regions it holds) lives
  // until they have, so no callback ever touches freed memory.
  if (x.inflight == 0) ReapXfer(id);
}

void UcxEngine::HandleWriteAck(const wire::StatusHdr& h, const uint8_t* data, size_t len) {
  HandleStatus(h, data, len, "WRITE");
}

// A target's verdict on a transfer: ok marks it (it completes once everything else is in place),
// anything else fails it with the target's reason.
void UcxEngine::HandleStatus(const wire::StatusHdr& h, const uint8_t* data, size_t len, const char* what) {
  Xfer* xp = XferFor(h.route, h.xferId);
  if (xp == nullptr || xp->Finished()) return;
  Xfer& x = *xp;
  if (h.status == static_cast<int32_t>(WireStatus::kOk)) {
    // Only the answer to this side's FIN (WRITE) or request (READ) counts; any other is dropped.
    if (x.phase != Phase::kAwaitingTarget) return;
    MoveXfer(x, x.req->op == Op::kWrite ? Phase::kLanded : Phase::kReceiving);
    Touch(x);
    return;
  }
  std::string msg(reinterpret_cast<const char*>(data), std::min<size_t>(len, 4096));
  FinishXfer(x, WireStatusCode(static_cast<WireStatus>(h.status)),
             std::string("the target refused the ") + what + ": " + msg);
  if (x.inflight == 0) ReapXfer(h.xferId);
}

ucs_status_t UcxEngine::HandleReadData(const wire::ReadDataHdr& h, void* data, size_t len,
                                       const ucp_am_recv_param_t* param) {
  Xfer* xp = XferFor(h.route, h.xferId);
  if (xp == nullptr) return UCS_OK;  // not ours, or finished and reaped: drop the bytes
  Xfer& x = *xp;
  // Only bytes the transfer asked for, of exactly the length asked, and each index once.
  if (x.Finished() || x.rma || x.req->op != Op::kRead || h.index >= x.got.size() || x.got[h.index] != 0 ||
      len != x.req->descs[h.index].length) {
    return UCS_OK;
  }
  x.got[h.index] = 1;
  uint8_t* dst = x.req->descs[h.index].local;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
    p.cb.recv_am = &UcxEngine::XferRecvCb;
    p.user_data = &x;
    p.memh = static_cast<ucp_mem_h>(x.req->descs[h.index].memh);
    void* r = ucp_am_recv_data_nbx(worker_, data, dst, len, &p);
    if (r == nullptr) {
      x.gotCount++;
    } else if (UCS_PTR_IS_ERR(r)) {
      if (x.opError == UCS_OK) x.opError = UCS_PTR_STATUS(r);
    } else {
      Track(r);
      x.inflight++;
      active_++;
    }
  } else {
    std::memcpy(dst, data, len);
    x.gotCount++;
  }
  // The last push standing for the target's ok FIN: as HandleStatus takes an ok kReadFin.
  if (h.fin != 0 && x.phase == Phase::kAwaitingTarget) MoveXfer(x, Phase::kReceiving);
  Touch(x);
  return UCS_OK;
}

void UcxEngine::HandleReadFin(const wire::StatusHdr& h, const uint8_t* data, size_t len) {
  HandleStatus(h, data, len, "READ");
}

void UcxEngine::HandleRevoke(const wire::RevokeHdr& h) {
  Outbound* ob = OutboundFor(h.route);
  if (ob == nullptr) return;
  auto rr = ob->info->regions.find(h.regionId);
  if (rr == ob->info->regions.end()) return;
  rr->second->revoked.store(true);
  EngineEvent e{EngineEvent::Kind::kRegionRevoked};
  e.id = ob->id;
  e.aux = h.regionId;
  Emit(std::move(e));
}

void UcxEngine::DoNotify(uint32_t peerId, std::string message, uint64_t token) {
  auto fail = [&](const char* c, const std::string& msg) {
    EngineEvent e{EngineEvent::Kind::kNotifyDone};
    e.id = token;
    e.code = c;
    e.text = msg;
    Emit(std::move(e));
  };
  auto it = outbound_.find(peerId);
  if (it == outbound_.end()) return fail(code::kClosed, "the peer was disconnected");
  Outbound& ob = *it->second;
  if (ob.state == Outbound::State::kLost) return fail(ob.lostCode.c_str(), ob.lostReason);
  if (ob.state != Outbound::State::kConnected) return fail(code::kInvalidArgument, "the peer is not connected yet");
  wire::NotifyHdr h{ob.RouteOut()};
  SendControl(ob.ep, wire::kNotify, &h, sizeof h, message.data(), message.size(), [this, token](ucs_status_t st) {
    EngineEvent e{EngineEvent::Kind::kNotifyDone};
    e.id = token;
    if (st != UCS_OK) {
      e.code = code::kTransport;
      e.text = "sending the notification failed: " + UcsMessage(st);
    }
    Emit(std::move(e));
  });
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

// UcxEngine, the staging path on the initiator: device memory moves through pinned staging
// buffers and the UCX wire, in chunks, pipelined.
//
// A transfer is cut into pieces (a descriptor larger than a chunk becomes several) and the pieces
// into stages: those of local device memory share a staging buffer of `stagingChunkBytes`, the
// others (local host memory) form one stage that needs none. Each stage moves on the wire as a
// sub-transfer of the ordinary engine (RMA or active messages, with their checks, deadlines and
// peer-loss handling), so the copy of one stage overlaps the wire of the others:
//   WRITE: device -> buffer (stream, event) -> sub-transfer WRITE -> buffer free
//   READ:  sub-transfer READ into the buffer -> buffer -> device (stream, event) -> buffer free
// Pieces of remote device memory are at most the peer's chunk (it stages them into its own
// buffers; native/engine/cuda_target.cc) and always go by active messages.
// The transfer has landed when every stage is done; its notification is sent after that.
#ifdef KVWIRE_HAVE_UCX
#include <algorithm>

#include "cuda/bounce_pool.h"
#include "engine/ucx_internal.h"

namespace kvwire {

namespace {
void ReleaseBufferIfIdle(cuda::Plane* plane, cuda::XferCuda& s, cuda::Stage& st, bool ended, bool* freed) {
  if (st.buffer < 0 || st.childAlive || st.copyPending) return;
  if (st.state != cuda::Stage::State::kDone && !ended) return;
  plane->initiatorPool().Release(st.buffer);
  st.buffer = -1;
  *freed = true;
  (void)s;
}
}  // namespace

void UcxEngine::PlanStaging(Xfer& x, Outbound& ob) {
  cuda::XferCuda& s = *x.cuda;
  const uint64_t own = opts_.cuda.chunkBytes;
  std::vector<cuda::Piece> direct, bounced;
  const auto& descs = x.req->descs;
  for (uint32_t i = 0; i < descs.size(); ++i) {
    const ResolvedDesc& d = descs[i];
    const bool bounce = d.localDevice >= 0;
    uint64_t cap = bounce ? own : UINT64_MAX;
    if (d.remoteDevice >= 0) {
      const RemoteRegion* rr = ob.info->Find(d.remoteRegion);
      uint64_t theirs = rr != nullptr && rr->stagingChunk > 0 ? rr->stagingChunk : own;
      cap = std::min(cap, theirs);
    }
    for (uint64_t off = 0; off < d.length; off += cap) {
      cuda::Piece p{i, off, std::min(cap, d.length - off), bounce ? 0 : -1};
      (bounce ? bounced : direct).push_back(p);
    }
  }
  if (!direct.empty()) {
    cuda::Stage st;
    st.first = 0;
    st.count = static_cast<uint32_t>(direct.size());
    s.stages.push_back(st);
  }
  s.pieces = std::move(direct);
  uint64_t fill = own;  // forces a new stage for the first bounced piece
  for (cuda::Piece& p : bounced) {
    if (fill + p.length > own) {
      cuda::Stage st;
      st.first = static_cast<uint32_t>(s.pieces.size());
      st.bounced = true;
      s.stages.push_back(st);
      fill = 0;
    }
    p.bounce = static_cast<int64_t>(fill);
    fill += p.length;
    s.stages.back().count++;
    s.pieces.push_back(p);
  }
}

void UcxEngine::PumpStaging(Xfer& x, Outbound& ob) {
  cuda::XferCuda& s = *x.cuda;
  // Stages whose device copy or wire step finished move on.
  for (uint32_t k = 0; k < s.nextStage && s.errorCode.empty(); ++k) {
    cuda::Stage& st = s.stages[k];
    if (st.state == cuda::Stage::State::kCopied) {
      StartStageChild(x, k);
    } else if (st.state == cuda::Stage::State::kLanded) {
      // READ: the bytes are in the staging buffer; copy them to the device.
      std::string error;
      if (!SubmitStageCopy(x, k, /*toDevice=*/true, &error)) {
        s.errorCode = code::kTransport;
        s.errorText = "queuing the copy of staged bytes to the device failed: " + error;
        return;
      }
    }
  }
  s.waitingForBuffer = false;
  while (s.nextStage < s.stages.size() && s.errorCode.empty()) {
    if (!StartStage(x, s.nextStage)) break;
    s.nextStage++;
  }
  (void)ob;
}

bool UcxEngine::StartStage(Xfer& x, uint32_t k) {
  cuda::XferCuda& s = *x.cuda;
  cuda::Stage& st = s.stages[k];
  if (!st.bounced) {
    st.state = cuda::Stage::State::kWire;
    StartStageChild(x, k);
    return true;
  }
  cuda::BouncePool& pool = cuda_->initiatorPool();
  std::string error;
  if (!pool.Ensure(&error)) {
    s.errorCode = code::kTransport;
    s.errorText = "staging device memory: " + error;
    return false;
  }
  int b = pool.Acquire();
  if (b < 0) {
    s.waitingForBuffer = true;  // a stage of this or another transfer frees one
    return false;
  }
  st.buffer = b;
  if (x.req->op == Op::kRead) {
    st.state = cuda::Stage::State::kWire;
    StartStageChild(x, k);
    return true;
  }
  // WRITE: copy the device bytes into the buffer first.
  error.clear();
  if (!SubmitStageCopy(x, k, /*toDevice=*/false, &error)) {
    pool.Release(b);
    st.buffer = -1;
    s.errorCode = code::kTransport;
    s.errorText = "queuing a copy of device memory into a staging buffer failed: " + error;
    return false;
  }
  return true;
}

bool UcxEngine::SubmitStageCopy(Xfer& x, uint32_t k, bool toDevice, std::string* error) {
  cuda::XferCuda& s = *x.cuda;
  cuda::Stage& st = s.stages[k];
  uint8_t* buf = cuda_->initiatorPool().data(st.buffer);
  std::vector<cuda::CopyOp> ops;
  int device = -1;
  for (uint32_t j = st.first; j < st.first + st.count; ++j) {
    const cuda::Piece& p = s.pieces[j];
    const ResolvedDesc& d = x.req->descs[p.desc];
    if (device < 0) device = d.localDevice;
    uint64_t onDevice = reinterpret_cast<uint64_t>(d.local) + p.offset;
    uint64_t staged = reinterpret_cast<uint64_t>(buf + p.bounce);
    ops.push_back(toDevice ? cuda::CopyOp{onDevice, staged, p.length} : cuda::CopyOp{staged, onDevice, p.length});
  }
  uint64_t id = x.req->id;
  bool ok = cuda_->Submit(
      device, ops,
      [this, id, k, toDevice](const std::string& err) {
        auto it = xfers_.find(id);
        if (it == xfers_.end()) return;
        Xfer& xx = *it->second;
        cuda::Stage& s2 = xx.cuda->stages[k];
        s2.copyPending = false;
        xx.inflight--;
        if (!err.empty()) {
          if (xx.cuda->errorCode.empty()) {
            xx.cuda->errorCode = code::kTransport;
            xx.cuda->errorText = (toDevice ? "copying staged bytes to the device failed: "
                                           : "copying device memory into a staging buffer failed: ") +
                                 err;
          }
        } else if (toDevice) {
          s2.state = cuda::Stage::State::kDone;
          xx.cuda->stagesDone++;
          xx.completed += s2.count;
        } else if (!xx.Finished()) {
          s2.state = cuda::Stage::State::kCopied;
        }
        bool freed = false;
        ReleaseBufferIfIdle(cuda_.get(), *xx.cuda, s2, xx.Finished() || !xx.cuda->errorCode.empty(), &freed);
        if (freed) TouchStagingWaiters();
        Touch(xx);
      },
      error);
  if (!ok) return false;
  st.state = toDevice ? cuda::Stage::State::kCopyOut : cuda::Stage::State::kCopyIn;
  st.copyPending = true;
  x.inflight++;
  return true;
}

void UcxEngine::StartStageChild(Xfer& x, uint32_t k) {
  cuda::XferCuda& s = *x.cuda;
  cuda::Stage& st = s.stages[k];
  st.state = cuda::Stage::State::kWire;
  auto req = std::make_unique<TransferRequest>();
  req->id = nextChildId_++;
  req->op = x.req->op;
  req->peerId = x.req->peerId;
  req->parentId = x.req->id;
  uint64_t now = NowNs();
  // The parent's deadline decides: the sub-transfer's is a second later, so the parent reports it.
  req->timeoutMs = static_cast<uint32_t>((x.deadlineNs > now ? (x.deadlineNs - now) / 1000000ull : 0) + 1000);
  uint8_t* buf = st.bounced ? cuda_->initiatorPool().data(st.buffer) : nullptr;
  void* bufMemh = st.bounced ? cuda_->initiatorPool().memh() : nullptr;
  req->descs.reserve(st.count);
  for (uint32_t j = st.first; j < st.first + st.count; ++j) {
    const cuda::Piece& p = s.pieces[j];
    const ResolvedDesc& d = x.req->descs[p.desc];
    ResolvedDesc c{st.bounced ? buf + p.bounce : d.local + p.offset,
                   st.bounced ? bufMemh : d.memh,
                   p.length,
                   d.remoteRegion,
                   d.remoteOffset + p.offset,
                   d.remoteAddr + p.offset,
                   d.remoteMapped != nullptr ? d.remoteMapped + p.offset : nullptr};
    c.remoteDevice = d.remoteDevice;
    if (d.remoteDevice >= 0) req->forceAm = true;
    req->bytes += p.length;
    req->descs.push_back(c);
  }
  uint64_t child = req->id;
  st.child = child;
  st.childAlive = true;
  s.childStage[child] = k;
  x.inflight++;
  StartTransfer(std::move(req));  // may finish (and reap) the child at once: see OnChild*
}

void UcxEngine::OnChildFinished(Xfer& child, const std::string& c, const std::string& msg) {
  auto it = xfers_.find(child.req->parentId);
  if (it == xfers_.end() || !it->second->cuda) return;
  Xfer& p = *it->second;
  cuda::XferCuda& s = *p.cuda;
  auto si = s.childStage.find(child.req->id);
  if (si == s.childStage.end()) return;
  cuda::Stage& st = s.stages[si->second];
  if (!c.empty()) {
    if (s.errorCode.empty() && !p.Finished()) {
      s.errorCode = c;
      s.errorText = msg;
    }
  } else if (p.req->op == Op::kRead && st.bounced) {
    st.state = cuda::Stage::State::kLanded;
  } else {
    st.state = cuda::Stage::State::kDone;
    s.stagesDone++;
    p.completed += st.count;
  }
  Touch(p);
}

void UcxEngine::OnChildReaped(Xfer& child) {
  auto it = xfers_.find(child.req->parentId);
  if (it == xfers_.end() || !it->second->cuda) return;
  Xfer& p = *it->second;
  cuda::XferCuda& s = *p.cuda;
  auto si = s.childStage.find(child.req->id);
  if (si == s.childStage.end()) return;
  cuda::Stage& st = s.stages[si->second];
  s.childStage.erase(si);
  st.childAlive = false;
  p.inflight--;
  bool freed = false;
  ReleaseBufferIfIdle(cuda_.get(), s, st, p.Finished() || !s.errorCode.empty(), &freed);
  if (freed) TouchStagingWaiters();
  Touch(p);
}

void UcxEngine::TouchStagingWaiters() {
  for (auto& [id, x] : xfers_) {
    if (x->cuda && x->cuda->waitingForBuffer && !x->Finished()) Touch(*x);
  }
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

// UcxEngine, transfers that touch device memory: choosing IPC or staging for each transfer, and
// the CUDA IPC path: the peer's device memory, mapped here when it connected, is copied to or from
// on a CUDA stream; the transfer has landed when the copies' events completed, and only then is
// its notification sent over the UCX endpoint, so it arrives after the data.
#ifdef KVWIRE_HAVE_UCX
#include <algorithm>

#include "cuda/bounce_pool.h"
#include "engine/ucx_internal.h"

namespace kvwire {

namespace {
// Copies per event: a long list is queued in batches, so a cancelled transfer stops issuing soon
// and the engine thread is never occupied for long by one transfer. A list with device memory at
// both ends goes as one gather-kernel launch per batch (the plane's), so its batches are larger.
constexpr uint32_t kCopiesPerBatch = 1024;
constexpr uint32_t kGatherCopiesPerBatch = 4096;
}  // namespace

void UcxEngine::PrepareCudaXfer(Xfer& x, Outbound& ob) {
  cuda::PeerCuda* pc = ob.cuda.get();
  cuda::Path path = pc != nullptr ? pc->path : cuda::Path::kStaging;
  if (path == cuda::Path::kUcx) {
    // UCX moves device memory itself, given CUDA-type registrations on both sides; a region UCX
    // could not register (memh or rkey missing) falls back to IPC or staging.
    bool ok = false;  // no one-sided UCX operations any more (SetupPeerCuda never picks this path)
    for (const ResolvedDesc& d : x.req->descs) {
      const RemoteRegion* rr = ob.info->Find(d.remoteRegion);
      if ((d.localDevice >= 0 && d.memh == nullptr) || (d.remoteDevice >= 0 && (rr == nullptr || rr->rkey.empty())))
        ok = false;
    }
    if (ok) {
      x.rma = true;
      for (ResolvedDesc& d : x.req->descs) d.remoteMapped = nullptr;  // never memcpy device memory on the host
      return;
    }
    path = ob.sameHost && cuda_ != nullptr ? cuda::Path::kIpc : cuda::Path::kStaging;
  }
  auto s = std::make_shared<cuda::XferCuda>();
  x.cuda = s;
  bool ipc = path == cuda::Path::kIpc && cuda_ != nullptr;
  const auto& descs = x.req->descs;
  if (ipc) {
    s->remoteAddrs.resize(descs.size());
    for (size_t i = 0; i < descs.size() && ipc; ++i) {
      const ResolvedDesc& d = descs[i];
      if (d.remoteDevice < 0) {
        ipc = false;  // remote host memory: only the wire reaches it
      } else if (pc->sameProcess) {
        s->remoteAddrs[i] = d.remoteAddr;
      } else {
        auto m = pc->mappings.find(d.remoteRegion);
        if (m == pc->mappings.end()) {
          ipc = false;  // the peer could not export this allocation
          continue;
        }
        const RemoteRegion* rr = ob.info->Find(d.remoteRegion);
        s->remoteAddrs[i] = m->second->base() + rr->ipcOffset + d.remoteOffset;
        if (std::find(s->mappings.begin(), s->mappings.end(), m->second) == s->mappings.end()) {
          s->mappings.push_back(m->second);
        }
      }
    }
  }
  if (ipc) {
    s->mode = cuda::XferCuda::Mode::kIpc;
    // The stream of the local device, else of the device the peer's memory was opened on.
    s->device = descs[0].localDevice >= 0 ? descs[0].localDevice : !s->mappings.empty() ? s->mappings[0]->device() : 0;
    // The gather kernel runs on that device and reaches its memory only: local ranges there, the
    // peer's opened there (or, in one process, allocated there).
    const int dev = s->device;
    s->deviceOnly =
        std::all_of(descs.begin(), descs.end(),
                    [&](const ResolvedDesc& d) {
                      return d.localDevice == dev && (!pc->sameProcess || d.remoteDevice == dev);
                    }) &&
        std::all_of(s->mappings.begin(), s->mappings.end(), [&](const auto& m) { return m->device() == dev; });
    return;
  }
  s->remoteAddrs.clear();
  s->mappings.clear();
  s->mode = cuda::XferCuda::Mode::kStaging;
  PlanStaging(x, ob);
}

void UcxEngine::PumpCudaXfer(Xfer& x, Outbound& ob) {
  cuda::XferCuda& s = *x.cuda;
  if (!s.errorCode.empty()) {
    FinishXfer(x, s.errorCode, s.errorText);
    return;
  }
  if (s.mode == cuda::XferCuda::Mode::kIpc) PumpIpc(x);
  else PumpStaging(x, ob);
  if (!s.errorCode.empty()) FinishXfer(x, s.errorCode, s.errorText);
}

bool UcxEngine::CudaLanded(const Xfer& x) const {
  const cuda::XferCuda& s = *x.cuda;
  if (!s.errorCode.empty()) return false;
  if (s.mode == cuda::XferCuda::Mode::kIpc) return s.nextDesc == x.req->descs.size() && s.batchesPending == 0;
  return s.stagesDone == s.stages.size();
}

void UcxEngine::OnCudaXferFinished(Xfer& x) {
  // A failed or cancelled staging transfer stops its sub-transfers; their staging buffers return
  // to the pool when they are reaped (an operation of theirs may still touch the memory).
  cuda::XferCuda& s = *x.cuda;
  std::vector<uint64_t> children;
  for (const cuda::Stage& st : s.stages) {
    if (st.childAlive) children.push_back(st.child);
  }
  for (uint64_t c : children) CancelXfer(c, code::kCancelled, "the transfer it belongs to ended");
  // Buffers held by stages with nothing in flight go back now; the others when their copy or
  // sub-transfer is done (OnChildReaped and the copy callbacks).
  bool freed = false;
  for (cuda::Stage& st : s.stages) {
    if (st.buffer >= 0 && !st.childAlive && !st.copyPending) {
      cuda_->initiatorPool().Release(st.buffer);
      st.buffer = -1;
      freed = true;
    }
  }
  if (freed) TouchStagingWaiters();
}

void UcxEngine::PumpIpc(Xfer& x) {
  cuda::XferCuda& s = *x.cuda;
  const auto& descs = x.req->descs;
  const uint32_t perBatch = s.deviceOnly ? kGatherCopiesPerBatch : kCopiesPerBatch;
  while (s.nextDesc < descs.size() && s.batchesPending < 4) {
    std::vector<cuda::CopyOp> ops;
    uint32_t end = std::min<uint32_t>(static_cast<uint32_t>(descs.size()), s.nextDesc + perBatch);
    ops.reserve(end - s.nextDesc);
    for (uint32_t i = s.nextDesc; i < end; ++i) {
      const ResolvedDesc& d = descs[i];
      uint64_t local = reinterpret_cast<uint64_t>(d.local);
      if (x.req->op == Op::kWrite) ops.push_back({s.remoteAddrs[i], local, d.length});
      else ops.push_back({local, s.remoteAddrs[i], d.length});
    }
    uint64_t id = x.req->id;
    uint32_t count = end - s.nextDesc;
    std::string error;
    bool ok = cuda_->Submit(
        s.device, ops,
        [this, id, count](const std::string& err) {
          auto it = xfers_.find(id);
          if (it == xfers_.end()) return;
          Xfer& xx = *it->second;
          xx.cuda->batchesPending--;
          xx.inflight--;
          if (!err.empty() && xx.cuda->errorCode.empty()) {
            xx.cuda->errorCode = code::kTransport;
            xx.cuda->errorText = "CUDA IPC copy of transfer " + std::to_string(id) + " failed: " + err;
          } else if (err.empty()) {
            xx.completed += count;
          }
          Touch(xx);
        },
        &error, s.deviceOnly);
    if (!ok) {
      s.errorCode = code::kTransport;
      s.errorText = "queuing CUDA IPC copies failed: " + error;
      return;
    }
    s.nextDesc = end;
    s.batchesPending++;
    x.inflight++;
  }
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

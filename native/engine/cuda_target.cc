// UcxEngine, the staging path on the target: device memory that peers WRITE or READ by active
// messages, through this agent's own pinned staging buffers.
//
//   WRITE: each descriptor (at most one chunk: the initiator splits them, knowing this agent's
//          chunk from its metadata) is received by rendezvous into a staging buffer, copied to the
//          device on a stream, and counts as landed only when that copy completed, so the WRITE is
//          acknowledged (and its notification delivered) after the bytes are in device memory.
//          Small eager descriptors are copied to the device at once. A descriptor that finds every
//          buffer busy waits (its rendezvous is started when one frees).
//   READ:  each item is copied from the device into a staging buffer, then pushed from there.
// Everything is checked first by the ordinary target code (region, access, bounds).
#ifdef KVWIRE_HAVE_UCX
#include <algorithm>

#include "cuda/bounce_pool.h"
#include "engine/ucx_internal.h"
#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include "cuda/context.h"
#include "cuda/driver.h"
#endif

namespace kvwire {

// A rendezvous WRITE descriptor bound for device memory, from arrival until its device copy is done.
struct UcxEngine::StagedRecv {
  UcxEngine* engine;
  uint32_t inboundId;
  uint64_t xferId;
  uint32_t index;
  LocalRegionPtr region;  // acquired
  uint64_t dst;           // device address
  size_t len;
  void* desc;  // UCX's rendezvous descriptor, until the receive starts
  cuda::BouncePool::Slot slot;
};

namespace {
struct StagedSend {
  UcxEngine* engine;
  uint64_t key;  // the served READ
  cuda::BouncePool::Slot slot;
};
}  // namespace

WireStatus UcxEngine::CheckStagedWrite(const LocalRegion& r, uint64_t len, uint32_t index, std::string* msg) {
  if (!cuda_) {
    *msg = "region '" + r.label() + "' is device memory but CUDA is unavailable on this agent";
    return WireStatus::kTransport;
  }
  uint64_t chunk = cuda_->targetPool().chunk();
  if (len > chunk) {
    *msg = "descriptor " + std::to_string(index) + " carries " + std::to_string(len) +
           " bytes for device memory, more than " + "this agent's staging chunk of " + std::to_string(chunk) +
           " bytes; the initiator must split it";
    return WireStatus::kInvalid;
  }
  return WireStatus::kOk;
}

ucs_status_t UcxEngine::StagedWrite(Inbound& ib, WriteRecord& rec, const wire::WriteHdr& h, LocalRegionPtr region,
                                    void* data, size_t len, const ucp_am_recv_param_t* param) {
  uint64_t dst = reinterpret_cast<uint64_t>(region->base()) + h.offset;
  auto fail = [&](const std::string& why) {
    if (rec.status == WireStatus::kOk) {
      rec.status = WireStatus::kTransport;
      rec.badIndex = h.index;
      rec.badMessage = why;
    }
  };
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    // Eager (below the rendezvous threshold): small; copied to the device from the message now.
#ifdef KVWIRE_HAVE_CUDA_HEADERS
    cuda::ScopedContext ctx(region->device());
    CUresult r = ctx.ok() ? cuda::GetDriver().cuMemcpyHtoD(dst, data, len) : CUDA_ERROR_INVALID_CONTEXT;
    if (r != CUDA_SUCCESS)
      fail("copying descriptor " + std::to_string(h.index) + " to the device failed: " + cuda::ErrorText(r));
#endif
    region->Release();
    rec.landed++;
    return UCS_OK;
  }
  cuda::BouncePool& pool = cuda_->targetPool();
  std::string error;
  if (!pool.Ensure(&error)) {
    fail("staging into device memory: " + error);
    region->Release();
    rec.landed++;
    return UCS_OK;  // the descriptor is dropped; the WRITE is refused with the reason
  }
  auto* s = new StagedRecv{this, ib.id, h.xferId, h.index, std::move(region), dst, len, data, {}};
  rec.pendingRecv++;
  if (!stagedWaiting_.empty() || !pool.Reserve(len, &s->slot)) {
    stagedWaiting_.push_back(s);
    return UCS_INPROGRESS;  // keeps the rendezvous descriptor until staging memory frees
  }
  StartStagedRecv(s);
  return UCS_OK;
}

void UcxEngine::StartStagedRecv(StagedRecv* s) {
  cuda::BouncePool& pool = cuda_->targetPool();
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
  p.cb.recv_am = &UcxEngine::StagedRecvCb;
  p.user_data = s;
  p.memh = static_cast<ucp_mem_h>(pool.memh());
  void* desc = s->desc;
  s->desc = nullptr;  // UCX owns it from here, even if the receive fails
  void* r = ucp_am_recv_data_nbx(worker_, desc, s->slot.data, s->len, &p);
  if (UCS_PTR_IS_PTR(r)) {
    Track(r);
    active_++;
  } else if (UCS_PTR_IS_ERR(r)) {
    FinishStagedRecv(s,
                     "receiving descriptor " + std::to_string(s->index) + " failed: " + UcsMessage(UCS_PTR_STATUS(r)));
  } else {
    StagedRecvCb(nullptr, UCS_OK, s->len, s);
  }
}

void UcxEngine::StagedRecvCb(void* req, ucs_status_t st, size_t, void* ud) {
  auto* s = static_cast<StagedRecv*>(ud);
  UcxEngine* self = s->engine;
  if (req != nullptr) {
    self->Untrack(req);
    self->active_--;
  }
  if (st != UCS_OK) {
    self->FinishStagedRecv(s, "receiving descriptor " + std::to_string(s->index) + " failed: " + UcsMessage(st));
    return;
  }
  std::vector<cuda::CopyOp> ops{{s->dst, reinterpret_cast<uint64_t>(s->slot.data), s->len}};
  std::string error;
  if (!self->cuda_->Submit(
          s->region->device(), ops,
          [self, s](const std::string& err) {
            self->FinishStagedRecv(
                s,
                err.empty() ? "" : "copying descriptor " + std::to_string(s->index) + " to the device failed: " + err);
          },
          &error)) {
    self->FinishStagedRecv(
        s, "queuing the copy of descriptor " + std::to_string(s->index) + " to the device failed: " + error);
  }
}

void UcxEngine::FinishStagedRecv(StagedRecv* s, const std::string& error) {
  if (s->slot.buffer >= 0) cuda_->targetPool().Free(s->slot);
  s->region->Release();
  WriteRecvDone(s->inboundId, s->xferId, [s, &error](Inbound&, WriteRecord& rec) {
    rec.landed++;
    if (!error.empty() && rec.status == WireStatus::kOk) {
      rec.status = WireStatus::kTransport;
      rec.badIndex = s->index;
      rec.badMessage = error;
    }
  });
  delete s;
  deferred_.push_back([this] { TargetBufferFreed(); });  // outside UCX's callbacks
}

bool UcxEngine::PrepareStagedServe(ServeTask& t, uint32_t* badIndex, std::string* msg) {
  bool any = false;
  for (auto& r : t.regions) any = any || r->onDevice();
  if (!any) return true;
  if (!cuda_) {
    *badIndex = 0;
    *msg = "a region being read is device memory but CUDA is unavailable on this agent";
    return false;
  }
  std::string error;
  if (!cuda_->targetPool().Ensure(&error)) {
    *badIndex = 0;
    *msg = "staging device memory: " + error;
    return false;
  }
  uint64_t chunk = cuda_->targetPool().chunk();
  t.itemDevice.assign(t.items.size(), -1);
  for (uint32_t i = 0; i < t.items.size(); ++i) {
    const LocalRegion* r = nullptr;
    for (auto& rr : t.regions) {
      if (rr->id() == t.items[i].regionId) r = rr.get();
    }
    if (r == nullptr || !r->onDevice()) continue;
    if (t.items[i].length > chunk) {
      *badIndex = i;
      *msg = "descriptor " + std::to_string(i) + " asks for " + std::to_string(t.items[i].length) +
             " bytes of device memory, more than this agent's staging chunk of " + std::to_string(chunk) +
             " bytes; the initiator must split it";
      return false;
    }
    t.itemDevice[i] = static_cast<int16_t>(r->device());
  }
  return true;
}

bool UcxEngine::StageServeItem(ServeTask& t, uint32_t i) {
  cuda::BouncePool& pool = cuda_->targetPool();
  cuda::BouncePool::Slot b;
  if (!pool.Reserve(t.items[i].length, &b)) {
    if (std::find(servesWaiting_.begin(), servesWaiting_.end(), t.key) == servesWaiting_.end())
      servesWaiting_.push_back(t.key);
    return false;
  }
  uint64_t key = t.key;
  std::vector<cuda::CopyOp> ops{
      {reinterpret_cast<uint64_t>(b.data), reinterpret_cast<uint64_t>(t.addrs[i]), t.items[i].length}};
  std::string error;
  bool ok = cuda_->Submit(
      t.itemDevice[i], ops,
      [this, key, i, b](const std::string& err) {
        cuda::BouncePool& pl = cuda_->targetPool();
        ServeTask& task = *serves_.at(key);  // alive: its inflight count includes this copy
        auto ibIt = inbound_.find(task.inboundId);
        bool gone = ibIt == inbound_.end() || ibIt->second->ep == nullptr || task.cancelled || !task.Serving();
        if (!err.empty() || gone) {
          pl.Free(b);
          task.inflight--;
          if (!err.empty())
            FinishServe(task, WireStatus::kTransport, i,
                        "copying device memory for descriptor " + std::to_string(i) + " failed: " + err);
          deferred_.push_back([this, key] {
            auto it = serves_.find(key);
            if (it != serves_.end()) PumpServe(*it->second);
            TargetBufferFreed();
          });
          return;
        }
        auto* ctx = new StagedSend{this, key, b};
        ucp_request_param_t p{};
        p.op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_MEMH;
        p.cb.send = &UcxEngine::StagedServeSendCb;
        p.user_data = ctx;
        p.flags = DataFlags(task.peerErrors, task.items[i].length);
        p.memh = static_cast<ucp_mem_h>(pl.memh());
        void* r = ucp_am_send_nbx(ibIt->second->ep, wire::kReadData, &task.hdrs[i], sizeof(wire::ReadDataHdr), b.data,
                                  task.items[i].length, &p);
        if (UCS_PTR_IS_PTR(r)) {
          Track(r);
          active_++;
          return;
        }
        delete ctx;
        pl.Free(b);
        task.inflight--;
        if (UCS_PTR_IS_ERR(r)) {
          FinishServe(task, WireStatus::kTransport, i,
                      "serving descriptor " + std::to_string(i) + " failed: " + UcsMessage(UCS_PTR_STATUS(r)));
        } else {
          task.completed++;
        }
        deferred_.push_back([this, key] {
          auto it = serves_.find(key);
          if (it != serves_.end()) PumpServe(*it->second);
          TargetBufferFreed();
        });
      },
      &error);
  if (!ok) {
    pool.Free(b);
    FinishServe(t, WireStatus::kTransport, i,
                "queuing a copy of device memory for descriptor " + std::to_string(i) + " failed: " + error);
    return false;
  }
  t.inflight++;
  return true;
}

void UcxEngine::StagedServeSendCb(void* req, ucs_status_t st, void* ud) {
  auto* ctx = static_cast<StagedSend*>(ud);
  UcxEngine* self = ctx->engine;
  self->Untrack(req);
  self->active_--;
  self->cuda_->targetPool().Free(ctx->slot);
  uint64_t key = ctx->key;
  delete ctx;
  ServeTask& t = *self->serves_.at(key);
  t.inflight--;
  if (st != UCS_OK) {
    if (t.opError == UCS_OK) t.opError = st;
  } else {
    t.completed++;
  }
  self->deferred_.push_back([self, key] {
    auto it = self->serves_.find(key);
    if (it != self->serves_.end()) self->PumpServe(*it->second);
    self->TargetBufferFreed();
  });
}

void UcxEngine::TargetBufferFreed() {
  if (!cuda_) return;
  cuda::BouncePool& pool = cuda_->targetPool();
  while (!stagedWaiting_.empty()) {
    StagedRecv* s = stagedWaiting_.front();
    auto ib = inbound_.find(s->inboundId);
    if (ib == inbound_.end() || ib->second->state == Inbound::State::kClosing) {
      stagedWaiting_.pop_front();
      ucp_am_data_release(worker_, s->desc);  // the initiator is gone: drop its bytes
      s->region->Release();
      delete s;
      continue;
    }
    if (!pool.Reserve(s->len, &s->slot)) break;  // in arrival order: the first waits, so do the rest
    stagedWaiting_.pop_front();
    StartStagedRecv(s);
  }
  std::vector<uint64_t> keys;
  keys.swap(servesWaiting_);
  for (uint64_t key : keys) {
    auto it = serves_.find(key);
    if (it != serves_.end()) PumpServe(*it->second);
  }
}

void UcxEngine::ReleaseStagedQueue() {
  for (StagedRecv* s : stagedWaiting_) {
    ucp_am_data_release(worker_, s->desc);
    s->region->Release();
    delete s;
  }
  stagedWaiting_.clear();
  servesWaiting_.clear();
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

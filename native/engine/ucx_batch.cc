// UcxEngine: packed messages of small descriptors over the AM protocol (tcp).
//
// Each active message over tcp costs a fixed amount (a rendezvous handshake, a syscall or two, a
// completion on each side) whatever its size, so 32 KiB KV blocks sent one per message move at a
// third of what 1 MiB messages do. A run of consecutive descriptors shorter than batchBelow is
// instead copied into one buffer of at most batchBytes and sent as one message; the other side
// scatters it. Memory copies run at 7-40 GB/s here against tcp's 2-8, so the copies cost less than
// the messages they save.
//
//   WRITE: kWriteBatch = a table of BatchEntry (region, offset, length, index), then the bytes.
//          The target checks every entry (region, access, bounds) before it writes any byte.
//   READ:  the target answers a kReadReq's consecutive small items with kReadDataBatch = their
//          bytes back to back; the initiator knows each item's length and destination.
// Descriptors touching device memory, and the staging sub-transfers of native/cuda, never pack.
#ifdef KVWIRE_HAVE_UCX
#include <algorithm>
#include <cstring>

#include "engine/ucx_internal.h"

namespace kvwire {

namespace {
// Descriptors in one packed WRITE: bounds its entry table (24 bytes each) to 48 KiB.
constexpr uint32_t kPackedItems = 2048;
// Packed messages a transfer is cut into, at least: the copies of one overlap the wire of others.
constexpr uint64_t kPackedPipeline = 8;
constexpr size_t kPackedPoolMax = 16;
}  // namespace

uint32_t UcxEngine::PackedRun(uint32_t first, uint32_t end, uint32_t limit, uint64_t transferBytes,
                              const std::function<uint64_t(uint32_t)>& length) const {
  if (opts_.batchBelow == 0) return 0;
  const uint64_t cap = std::clamp<uint64_t>(transferBytes / kPackedPipeline, 64u << 10, opts_.batchBytes);
  uint32_t k = first;
  uint64_t bytes = 0;
  while (k < end && k - first < limit && k - first < kPackedItems) {
    uint64_t l = length(k);
    if (l >= opts_.batchBelow || bytes + l > cap) break;
    bytes += l;
    k++;
  }
  return k - first;
}

size_t UcxEngine::PackedCapacity() const {
  return opts_.batchBytes + kPackedItems * sizeof(wire::BatchEntry);
}

UcxEngine::PackedBuffer UcxEngine::TakePacked(size_t size) {
  PackedBuffer b;
  b.engine = this;
  b.pooled = size <= PackedCapacity();
  if (!b.pooled) {
    b.bytes.reset(new uint8_t[size]);
  } else if (packedPool_.empty()) {
    b.bytes.reset(new uint8_t[PackedCapacity()]);
  } else {
    b.bytes = std::move(packedPool_.back());
    packedPool_.pop_back();
  }
  return b;
}

void UcxEngine::GivePacked(std::unique_ptr<uint8_t[]> buf) {
  if (packedPool_.size() < kPackedPoolMax) packedPool_.push_back(std::move(buf));
}

void* UcxEngine::RecvPacked(PackedRecv* pr, void* data, size_t len, ucp_am_recv_data_nbx_callback_t cb) {
  pr->engine = this;
  pr->length = len;
  pr->buf = TakePacked(len);
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.recv_am = cb;
  p.user_data = pr;
  return ucp_am_recv_data_nbx(worker_, data, pr->buf.data(), len, &p);
}

// ---- WRITE, initiator side --------------------------------------------------------------------

bool UcxEngine::PostWriteBatch(Xfer& x, Outbound& ob, uint32_t count) {
  const uint32_t first = x.next;
  const size_t table = static_cast<size_t>(count) * sizeof(wire::BatchEntry);
  uint64_t bytes = 0;
  for (uint32_t k = first; k < first + count; ++k) bytes += x.req->descs[k].length;
  auto* ps = new PackedSend;
  ps->xfer = &x;
  ps->count = count;
  ps->whdr = wire::WriteBatchHdr{ob.RouteOut(), count, x.req->timeoutMs, x.req->id};
  ps->buf = TakePacked(table + bytes);
  uint8_t* out = ps->buf.data() + table;
  for (uint32_t k = 0; k < count; ++k) {
    const ResolvedDesc& d = x.req->descs[first + k];
    wire::BatchEntry e{d.remoteRegion, first + k, d.remoteOffset, d.length};
    std::memcpy(ps->buf.data() + k * sizeof e, &e, sizeof e);
    std::memcpy(out, d.local, d.length);
    out += d.length;
  }
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = &UcxEngine::WriteBatchSendCb;
  p.user_data = ps;
  p.flags = DataFlags(ob.lanes.peerErrors, table + bytes);
  void* r = ucp_am_send_nbx(ob.ep, wire::kWriteBatch, &ps->whdr, sizeof ps->whdr, ps->buf.data(), table + bytes, &p);
  x.next += count;
  if (!UCS_PTR_IS_PTR(r)) delete ps;  // done or failed at once: no callback will come
  return TrackXferOp(x, r, count);
}

void UcxEngine::WriteBatchSendCb(void* req, ucs_status_t st, void* ud) {
  auto* ps = static_cast<PackedSend*>(ud);
  Xfer& x = *ps->xfer;  // alive: its inflight count includes this send
  x.engine->Untrack(req);
  x.engine->OnXferOp(x, st, false, ps->count);
  delete ps;
}

// ---- WRITE, target side -----------------------------------------------------------------------

ucs_status_t UcxEngine::HandleWriteBatch(const wire::WriteBatchHdr& h, void* data, size_t len,
                                         const ucp_am_recv_param_t* param) {
  Inbound* ibp = nullptr;
  WriteRecord* recp = WriteRecordFor(h.route, h.xferId, h.timeoutMs, &ibp);
  if (recp == nullptr) return UCS_OK;  // unknown sender: drop
  Inbound& ib = *ibp;
  WriteRecord& rec = *recp;
  if (rec.status != WireStatus::kOk) {
    rec.landed += h.count;
    return UCS_OK;
  }
  if (h.count == 0 || h.count > wire::kMaxBatchItems || len > wire::kMaxBatchBytes ||
      len < static_cast<size_t>(h.count) * sizeof(wire::BatchEntry)) {
    RefuseWrite(ib, rec, h.xferId, WireStatus::kInvalid, 0,
                "a packed WRITE of " + std::to_string(h.count) + " descriptors in " + std::to_string(len) +
                    " bytes is malformed");
    rec.landed += h.count;
    return UCS_OK;
  }
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    ApplyWriteBatch(ib, rec, h.xferId, static_cast<const uint8_t*>(data), len, h.count);
    return UCS_OK;
  }
  if (packedRecvBytes_ + len > wire::kMaxPackedInFlight) {
    RefuseWrite(ib, rec, h.xferId, WireStatus::kTransport, 0,
                "the target is already receiving " + std::to_string(packedRecvBytes_ >> 20) +
                    " MiB of packed WRITEs; retry, or lower tuning.batchBytes or the transfers in flight");
    rec.landed += h.count;
    return UCS_OK;  // the rendezvous data not received is released by UCX
  }
  auto* pr = new PackedRecv;
  pr->inboundId = ib.id;
  pr->xferId = h.xferId;
  pr->count = h.count;
  void* r = RecvPacked(pr, data, len, &UcxEngine::WriteBatchRecvCb);
  if (UCS_PTR_IS_PTR(r)) {
    Track(r);
    rec.pendingRecv++;
    active_++;
    packedRecvBytes_ += len;
    return UCS_OK;
  }
  if (r == nullptr) {
    ApplyWriteBatch(ib, rec, h.xferId, pr->buf.data(), len, h.count);
  } else {
    RefuseWrite(ib, rec, h.xferId, WireStatus::kTransport, 0,
                "receiving a packed WRITE failed: " + UcsMessage(UCS_PTR_STATUS(r)));
    rec.landed += h.count;
  }
  delete pr;
  return UCS_OK;
}

void UcxEngine::WriteBatchRecvCb(void* req, ucs_status_t st, size_t, void* ud) {
  auto* pr = static_cast<PackedRecv*>(ud);
  UcxEngine* self = pr->engine;
  self->Untrack(req);
  self->active_--;
  self->packedRecvBytes_ -= pr->length;
  self->WriteRecvDone(pr->inboundId, pr->xferId, [self, pr, st](Inbound& ib, WriteRecord& rec) {
    if (st == UCS_OK) {
      self->ApplyWriteBatch(ib, rec, pr->xferId, pr->buf.data(), pr->length, pr->count);
    } else {
      self->RefuseWrite(ib, rec, pr->xferId, WireStatus::kTransport, 0,
                        "receiving a packed WRITE failed: " + UcsMessage(st));
      rec.landed += pr->count;
    }
  });
  delete pr;
}

void UcxEngine::ApplyWriteBatch(Inbound& ib, WriteRecord& rec, uint64_t xferId, const uint8_t* data, size_t len,
                                uint32_t count) {
  const size_t table = static_cast<size_t>(count) * sizeof(wire::BatchEntry);
  const uint64_t payload = len - table;  // HandleWriteBatch checked len >= table
  std::vector<wire::BatchEntry> entries(count);
  std::memcpy(entries.data(), data, table);  // the message may not be aligned for the struct
  std::vector<LocalRegionPtr> regions;
  regions.reserve(count);
  auto refuse = [&](WireStatus st, uint32_t index, const std::string& msg) {
    for (auto& r : regions) r->Release();
    RefuseWrite(ib, rec, xferId, st, index, msg);
    rec.landed += count;
  };
  // Every entry is checked before any byte is written: a refused packed WRITE writes nothing.
  uint64_t sum = 0;
  for (const wire::BatchEntry& e : entries) {
    if (e.length > payload - sum) {
      return refuse(WireStatus::kInvalid, e.index,
                    "descriptor " + std::to_string(e.index) + " claims more bytes than its packed WRITE carries");
    }
    sum += e.length;
    LocalRegionPtr region;
    std::string msg;
    WireStatus st = CheckRemoteAccess(e.regionId, e.offset, e.length, kAccessWrite, e.index, &region, &msg);
    if (st != WireStatus::kOk) return refuse(st, e.index, msg);
    if (region->onDevice()) {
      region->Release();
      return refuse(WireStatus::kInvalid, e.index,
                    "descriptor " + std::to_string(e.index) + " packs bytes for device memory, which is never packed");
    }
    regions.push_back(std::move(region));
  }
  if (sum != payload) {
    return refuse(WireStatus::kInvalid, 0,
                  "a packed WRITE carries " + std::to_string(payload) + " bytes but its descriptors claim " +
                      std::to_string(sum));
  }
  const uint8_t* src = data + table;
  for (uint32_t k = 0; k < count; ++k) {
    std::memcpy(regions[k]->base() + entries[k].offset, src, entries[k].length);
    src += entries[k].length;
    regions[k]->Release();
  }
  rec.landed += count;
}

// ---- READ, target side ------------------------------------------------------------------------

bool UcxEngine::PostServeBatch(ServeTask& t, ucp_ep_h ep, uint32_t count) {
  const uint32_t first = t.next;
  uint64_t bytes = 0;
  for (uint32_t k = first; k < first + count; ++k) bytes += t.items[k].length;
  auto* ps = new PackedSend;
  ps->serve = &t;
  ps->count = count;
  ps->rhdr = wire::ReadDataBatchHdr{t.route, t.xferId, first, count};
  ps->buf = TakePacked(bytes);
  uint8_t* out = ps->buf.data();
  for (uint32_t k = first; k < first + count; ++k) {
    std::memcpy(out, t.addrs[k], t.items[k].length);
    out += t.items[k].length;
  }
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = &UcxEngine::ServeBatchSendCb;
  p.user_data = ps;
  p.flags = DataFlags(t.peerErrors, bytes);
  void* r = ucp_am_send_nbx(ep, wire::kReadDataBatch, &ps->rhdr, sizeof ps->rhdr, ps->buf.data(), bytes, &p);
  t.next += count;
  if (r == nullptr) {
    t.completed += count;
    delete ps;
  } else if (UCS_PTR_IS_ERR(r)) {
    delete ps;
    FinishServe(t, WireStatus::kTransport, first,
                "serving descriptors " + std::to_string(first) + ".." + std::to_string(first + count - 1) +
                    " failed: " + UcsMessage(UCS_PTR_STATUS(r)));
    return false;
  } else {
    Track(r);
    t.inflight++;
    active_++;
  }
  return true;
}

void UcxEngine::ServeBatchSendCb(void* req, ucs_status_t st, void* ud) {
  auto* ps = static_cast<PackedSend*>(ud);
  ServeTask& t = *ps->serve;  // alive: its inflight count includes this send
  t.engine->Untrack(req);
  t.engine->OnServeOp(t, st, ps->count);
  delete ps;
}

// ---- READ, initiator side ---------------------------------------------------------------------

ucs_status_t UcxEngine::HandleReadDataBatch(const wire::ReadDataBatchHdr& h, void* data, size_t len,
                                            const ucp_am_recv_param_t* param) {
  Xfer* xp = XferFor(h.route, h.xferId);
  if (xp == nullptr) return UCS_OK;  // not ours, or finished and reaped: drop the bytes
  Xfer& x = *xp;
  // Only descriptors this READ asked for, each once, host memory only, and exactly their bytes.
  const size_t n = x.got.size();
  if (x.Finished() || x.rma || x.cuda || x.req->op != Op::kRead || h.count == 0 || h.first >= n ||
      h.count > n - h.first) {
    return UCS_OK;
  }
  uint64_t sum = 0;
  for (uint32_t k = h.first; k < h.first + h.count; ++k) {
    if (x.got[k] != 0 || x.req->descs[k].localDevice >= 0) return UCS_OK;
    sum += x.req->descs[k].length;
  }
  if (sum != len) return UCS_OK;
  for (uint32_t k = h.first; k < h.first + h.count; ++k) x.got[k] = 1;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    ScatterReadBatch(x, h.first, h.count, static_cast<const uint8_t*>(data));
    x.gotCount += h.count;
    Touch(x);
    return UCS_OK;
  }
  auto* pr = new PackedRecv;
  pr->xfer = &x;
  pr->first = h.first;
  pr->count = h.count;
  void* r = RecvPacked(pr, data, len, &UcxEngine::ReadBatchRecvCb);
  if (UCS_PTR_IS_PTR(r)) {
    Track(r);
    x.inflight++;
    active_++;
    return UCS_OK;
  }
  if (r == nullptr) {
    ScatterReadBatch(x, h.first, h.count, pr->buf.data());
    x.gotCount += h.count;
  } else if (x.opError == UCS_OK) {
    x.opError = UCS_PTR_STATUS(r);
  }
  delete pr;
  Touch(x);
  return UCS_OK;
}

void UcxEngine::ReadBatchRecvCb(void* req, ucs_status_t st, size_t, void* ud) {
  auto* pr = static_cast<PackedRecv*>(ud);
  Xfer& x = *pr->xfer;  // alive: its inflight count includes this receive
  pr->engine->Untrack(req);
  // A cancelled or failed READ leaves its destination undefined: no need to fill it now.
  if (st == UCS_OK && !x.Finished()) pr->engine->ScatterReadBatch(x, pr->first, pr->count, pr->buf.data());
  pr->engine->OnXferOp(x, st, true, pr->count);
  delete pr;
}

void UcxEngine::ScatterReadBatch(Xfer& x, uint32_t first, uint32_t count, const uint8_t* data) {
  for (uint32_t k = first; k < first + count; ++k) {
    const ResolvedDesc& d = x.req->descs[k];
    std::memcpy(d.local, data, d.length);
    data += d.length;
  }
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

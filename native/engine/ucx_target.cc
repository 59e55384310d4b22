// UcxEngine, target side of the AM protocol: WRITE descriptors received in place, READ requests
// served as pushes, notifications delivered, and region revocation. Every descriptor a peer sends
// is checked here against this agent's own region table before a byte moves.
#ifdef KVWIRE_HAVE_UCX
#include <algorithm>
#include <cstring>

#include "engine/ucx_internal.h"

namespace kvwire {

namespace {
// A rendezvous receive in flight on the target: which WRITE it belongs to, and the region it pins.
struct TargetRecv {
  UcxEngine* engine;
  uint32_t inboundId;
  uint64_t xferId;
  LocalRegionPtr region;
};

std::string Num(uint64_t n) {
  std::string s = std::to_string(n), out;
  int c = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (c > 0 && c % 3 == 0) out.push_back(',');
    out.push_back(*it);
    ++c;
  }
  return std::string(out.rbegin(), out.rend());
}
}  // namespace

// Checks one descriptor a peer asked for. Returns kOk with the region acquired in `out`.
WireStatus UcxEngine::CheckRemoteAccess(uint32_t regionId, uint64_t offset, uint64_t length, Access need,
                                        uint32_t index, LocalRegionPtr* out, std::string* msg) {
  LocalRegionPtr r = regions_.Acquire(regionId);
  if (!r) {
    bool was = regions_.WasRegistered(regionId);
    *msg = "descriptor " + std::to_string(index) + " names region " + std::to_string(regionId) +
           (was ? ", which was deregistered; fetch fresh metadata" : ", which this agent never registered");
    return was ? WireStatus::kDeregistered : WireStatus::kUnknownRegion;
  }
  if ((r->access() & need) != need) {
    *msg = "descriptor " + std::to_string(index) + ": region '" + r->label() + "' allows " + AccessName(r->access()) +
           " access, not " + (need == kAccessWrite ? "write" : "read");
    r->Release();
    return WireStatus::kAccessDenied;
  }
  if (length == 0 || !r->Contains(offset, length)) {
    *msg = "descriptor " + std::to_string(index) + " reaches byte " + Num(offset + length) + " of region '" +
           r->label() + "' which has " + Num(r->length()) + " bytes";
    r->Release();
    return WireStatus::kOutOfBounds;
  }
  *out = std::move(r);
  return WireStatus::kOk;
}

void UcxEngine::TargetRecvCb(void* req, ucs_status_t st, size_t, void* ud) {
  auto* t = static_cast<TargetRecv*>(ud);
  UcxEngine* self = t->engine;
  self->Untrack(req);
  self->active_--;
  t->region->Release();
  self->WriteRecvDone(t->inboundId, t->xferId, [st](Inbound&, WriteRecord& rec) {
    rec.landed++;
    if (st != UCS_OK && rec.status == WireStatus::kOk) {
      rec.status = WireStatus::kTransport;
      rec.badMessage = "receiving a descriptor failed: " + UcsMessage(st);
    }
  });
  delete t;
}

void UcxEngine::WriteRecvDone(uint32_t inboundId, uint64_t xferId,
                              const std::function<void(Inbound&, WriteRecord&)>& land) {
  auto ib = inbound_.find(inboundId);
  if (ib == inbound_.end()) return;
  auto rec = ib->second->writes.find(xferId);
  if (rec == ib->second->writes.end()) return;
  rec->second.pendingRecv--;
  land(*ib->second, rec->second);
  if (ib->second->state == Inbound::State::kClosing) {
    // The initiator said goodbye: nothing is acknowledged any more; the close waits for this.
    if (rec->second.pendingRecv == 0) ib->second->writes.erase(rec);
    deferred_.push_back([this, inboundId] {
      auto it = inbound_.find(inboundId);
      if (it != inbound_.end()) MaybeFinishInboundClose(*it->second);
    });
    return;
  }
  if (!rec->second.finReceived) return;
  deferred_.push_back([this, inboundId, xferId] {  // outside UCX's callbacks: it sends the ack
    auto it = inbound_.find(inboundId);
    if (it != inbound_.end()) MaybeAckWrite(*it->second, xferId);
  });
}

UcxEngine::WriteRecord* UcxEngine::WriteRecordFor(const wire::Route& route, uint64_t xferId, uint32_t timeoutMs,
                                                  Inbound** ib) {
  *ib = InboundFor(route);
  if (*ib == nullptr) return nullptr;
  auto [recIt, created] = (*ib)->writes.try_emplace(xferId);
  if (created) recIt->second.deadlineNs = DeadlineFrom(NowNs(), timeoutMs + 5000);
  return &recIt->second;
}

ucs_status_t UcxEngine::HandleWrite(const wire::WriteHdr& h, void* data, size_t len, const ucp_am_recv_param_t* param) {
  ucs_status_t st = LandWrite(h, data, len, param);
  if (h.finCount != 0) {
    // The last descriptor stood for the FIN too: handled as a kWriteFin would be (after progress
    // returns, since it may answer), with no notification.
    wire::WriteFinHdr fin{h.route, h.finCount, 0, h.xferId};
    deferred_.push_back([this, fin] {
      if (!draining_) HandleWriteFin(fin, nullptr, 0);
    });
  }
  return st;
}

ucs_status_t UcxEngine::LandWrite(const wire::WriteHdr& h, void* data, size_t len, const ucp_am_recv_param_t* param) {
  Inbound* ibp = nullptr;
  WriteRecord* recp = WriteRecordFor(h.route, h.xferId, h.timeoutMs, &ibp);
  if (recp == nullptr) return UCS_OK;  // unknown sender: drop
  Inbound& ib = *ibp;
  WriteRecord& rec = *recp;
  if (rec.status != WireStatus::kOk) {
    rec.landed++;
    return UCS_OK;
  }
  LocalRegionPtr region;
  std::string msg;
  WireStatus st = CheckRemoteAccess(h.regionId, h.offset, h.length, kAccessWrite, h.index, &region, &msg);
  if (st == WireStatus::kOk && h.length != len) {
    region->Release();
    st = WireStatus::kInvalid;
    msg = "descriptor " + std::to_string(h.index) + " carries " + Num(len) + " bytes but claims " + Num(h.length);
  }
  if (st == WireStatus::kOk && region->onDevice()) {  // device memory: staged (native/engine/cuda_target.cc)
    st = CheckStagedWrite(*region, len, h.index, &msg);
    if (st != WireStatus::kOk) region->Release();
  }
  if (st != WireStatus::kOk) {
    RefuseWrite(ib, rec, h.xferId, st, h.index, msg);
    rec.landed++;
    return UCS_OK;  // a rendezvous descriptor not received is released by UCX
  }
  if (region->onDevice()) return StagedWrite(ib, rec, h, std::move(region), data, len, param);
  uint8_t* dst = region->base() + h.offset;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
    auto* t = new TargetRecv{this, ib.id, h.xferId, region};
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
    p.cb.recv_am = &UcxEngine::TargetRecvCb;
    p.user_data = t;
    p.memh = static_cast<ucp_mem_h>(region->memh());
    void* r = ucp_am_recv_data_nbx(worker_, data, dst, len, &p);
    if (UCS_PTR_IS_PTR(r)) {
      Track(r);
      rec.pendingRecv++;
      active_++;
      return UCS_OK;
    }
    delete t;
    if (UCS_PTR_IS_ERR(r) && rec.status == WireStatus::kOk) {
      rec.status = WireStatus::kTransport;
      rec.badMessage = "receiving descriptor " + std::to_string(h.index) + " failed: " + UcsMessage(UCS_PTR_STATUS(r));
    }
  } else {
    std::memcpy(dst, data, len);
  }
  region->Release();
  rec.landed++;
  return UCS_OK;
}

void UcxEngine::RefuseWrite(Inbound& ib, WriteRecord& rec, uint64_t xferId, WireStatus st, uint32_t index,
                            const std::string& msg) {
  if (rec.status != WireStatus::kOk) return;  // the first refusal is the one reported
  rec.status = st;
  rec.badIndex = index;
  rec.badMessage = msg;
  if (rec.nackSent) return;
  rec.nackSent = true;
  uint32_t ibId = ib.id;
  deferred_.push_back([this, ibId, xferId, st, index, msg] {
    auto it = inbound_.find(ibId);
    if (it != inbound_.end() && it->second->ep != nullptr) {
      SendStatus(*it->second, wire::kWriteAck, xferId, st, index, msg);
    }
  });
}

void UcxEngine::HandleWriteFin(const wire::WriteFinHdr& h, const uint8_t* data, size_t len) {
  Inbound* ibp = InboundFor(h.route);
  if (ibp == nullptr) return;
  Inbound& ib = *ibp;
  auto [recIt, created] = ib.writes.try_emplace(h.xferId);
  WriteRecord& rec = recIt->second;
  if (created) rec.deadlineNs = DeadlineFrom(NowNs(), 30000);
  rec.finReceived = true;
  rec.expected = h.count;
  rec.hasNotify = h.hasNotify != 0;
  if (len > 0) rec.notify.assign(reinterpret_cast<const char*>(data), len);
  MaybeAckWrite(ib, h.xferId);
}

void UcxEngine::MaybeAckWrite(Inbound& ib, uint64_t xferId) {
  auto it = ib.writes.find(xferId);
  if (it == ib.writes.end() || !it->second.finReceived) return;
  WriteRecord& rec = it->second;
  if (rec.status == WireStatus::kOk && (rec.landed < rec.expected || rec.pendingRecv > 0)) return;
  if (rec.status != WireStatus::kOk) {
    if (rec.pendingRecv > 0) return;  // let receives in flight finish before forgetting them
    if (!rec.nackSent) SendStatus(ib, wire::kWriteAck, xferId, rec.status, rec.badIndex, rec.badMessage);
    ib.writes.erase(it);
    return;
  }
  // Every byte is in place: the notification may be delivered now, then the initiator told.
  if (rec.hasNotify) {
    EngineEvent e{EngineEvent::Kind::kNotification};
    e.text = ib.name;
    e.bytes.assign(rec.notify.begin(), rec.notify.end());
    Emit(std::move(e));
  }
  SendStatus(ib, wire::kWriteAck, xferId, WireStatus::kOk, 0, "");
  ib.writes.erase(it);
}

void UcxEngine::HandleReadReq(const wire::ReadReqHdr& h, const uint8_t* data, size_t len) {
  Inbound* ibp = InboundFor(h.route);
  if (ibp == nullptr) return;
  Inbound& ib = *ibp;
  if (h.count == 0 || h.count > wire::kMaxReadItems || len != static_cast<size_t>(h.count) * sizeof(wire::ReadItem)) {
    SendStatus(ib, wire::kReadFin, h.xferId, WireStatus::kInvalid, 0, "malformed READ request");
    return;
  }
  auto task = std::make_unique<ServeTask>();
  task->engine = this;
  task->inboundId = ib.id;
  task->route = ib.RouteOut();
  task->peerErrors = ib.lanes.peerErrors;
  task->xferId = h.xferId;
  task->deadlineNs = DeadlineFrom(NowNs(), h.timeoutMs + 1000);
  task->items.resize(h.count);
  std::memcpy(task->items.data(), data, len);
  task->addrs.resize(h.count);
  task->memhs.resize(h.count);
  task->hdrs.resize(h.count);
  // Validate every descriptor before serving any: a refused READ moves no byte.
  uint32_t lastId = UINT32_MAX;
  LocalRegion* last = nullptr;
  for (uint32_t i = 0; i < h.count; ++i) {
    const wire::ReadItem& it = task->items[i];
    if (it.regionId != lastId) {
      last = nullptr;
      for (auto& r : task->regions) {
        if (r->id() == it.regionId) last = r.get();
      }
      if (last == nullptr) {
        LocalRegionPtr r;
        std::string msg;
        WireStatus st = CheckRemoteAccess(it.regionId, it.offset, it.length, kAccessRead, i, &r, &msg);
        if (st != WireStatus::kOk) {
          for (auto& rr : task->regions) rr->Release();
          SendStatus(ib, wire::kReadFin, h.xferId, st, i, msg);
          return;
        }
        last = r.get();
        task->regions.push_back(std::move(r));
      }
      lastId = it.regionId;
    }
    if (it.length == 0 || !last->Contains(it.offset, it.length)) {
      std::string msg = "descriptor " + std::to_string(i) + " reaches byte " + Num(it.offset + it.length) +
                        " of region '" + last->label() + "' which has " + Num(last->length()) + " bytes";
      for (auto& rr : task->regions) rr->Release();
      SendStatus(ib, wire::kReadFin, h.xferId, WireStatus::kOutOfBounds, i, msg);
      return;
    }
    task->bytes += it.length;
    task->addrs[i] = last->base() + it.offset;
    task->memhs[i] = last->memh();
    task->hdrs[i] = wire::ReadDataHdr{task->route, h.xferId, i, 0};
  }
  uint32_t bad = 0;
  std::string stagedMsg;
  if (!PrepareStagedServe(*task, &bad, &stagedMsg)) {  // device memory: served through staging buffers
    for (auto& rr : task->regions) rr->Release();
    SendStatus(ib, wire::kReadFin, h.xferId, WireStatus::kInvalid, bad, stagedMsg);
    return;
  }
  uint64_t key = nextServe_++;
  ServeTask& t = *task;
  serves_[key] = std::move(task);
  t.key = key;
  ib.reads[h.xferId] = &t;
  nextDeadlineNs_ = std::min(nextDeadlineNs_, t.deadlineNs);
  PumpServe(t);
}

void UcxEngine::ServeSendCb(void* req, ucs_status_t st, void* ud) {
  auto* t = static_cast<ServeTask*>(ud);
  t->engine->Untrack(req);
  t->engine->OnServeOp(*t, st, 1);
}

void UcxEngine::OnServeOp(ServeTask& t, ucs_status_t st, uint32_t count) {
  t.inflight--;
  active_--;
  if (st != UCS_OK) {
    if (t.opError == UCS_OK) t.opError = st;
  } else {
    t.completed += count;
  }
  uint64_t key = t.key;
  deferred_.push_back([this, key] {
    auto it = serves_.find(key);
    if (it != serves_.end()) PumpServe(*it->second);
  });
}

void UcxEngine::PumpServe(ServeTask& t) {
  auto ibIt = inbound_.find(t.inboundId);
  if (ibIt == inbound_.end() || ibIt->second->ep == nullptr || ibIt->second->state != Inbound::State::kServing) {
    t.cancelled = true;
  }
  if (t.opError != UCS_OK && t.phase != ServeTask::Phase::kFailed) {
    // A push failed, possibly after the FIN ok went out: an error FIN (follows it), once.
    AnswerServe(t, WireStatus::kTransport, 0, "serving the READ failed: " + UcsMessage(t.opError));
  }
  if (!t.cancelled && t.Serving()) {
    ucp_ep_h ep = ibIt->second->ep;
    size_t n = t.items.size();
    const bool pack = opts_.batchBelow > 0 && t.itemDevice.empty();  // host memory only
    const uint32_t window = pack ? PackedWindowFor(t.bytes, n) : WindowFor(t.bytes, n);
    bool finSent = false;  // the last push carried the ok FIN (ReadDataHdr::fin): one message fewer
    while (t.next < n && t.next - t.completed < window) {
      if (pack) {
        uint32_t run = PackedRun(t.next, static_cast<uint32_t>(n), window - (t.next - t.completed), t.bytes,
                                 [&](uint32_t k) { return t.items[k].length; });
        if (run >= 2) {
          if (!PostServeBatch(t, ep, run)) break;
          continue;
        }
      }
      if (!t.itemDevice.empty() && t.itemDevice[t.next] >= 0) {
        if (!StageServeItem(t, t.next)) break;  // waits for a staging buffer (or failed)
        t.next++;
        continue;
      }
      uint32_t i = t.next++;
      // Only an eager push carries the FIN: a rendezvous one (a large descriptor) is followed by its
      // own kReadFin, as before (carried by the rendezvous header, large READs over tcp were ~10%
      // slower: 1 MiB b1 4.3-4.7 against 5.2-5.3 GB/s).
      finSent = i + 1 == n && t.itemDevice.empty() && t.items[i].length < opts_.rndvThreshold;
      t.hdrs[i].fin = finSent ? 1 : 0;
      ucp_request_param_t p{};
      p.op_attr_mask =
          UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_MEMH;
      p.cb.send = &UcxEngine::ServeSendCb;
      p.user_data = &t;
      p.flags = DataFlags(t.peerErrors, t.items[i].length);
      p.memh = static_cast<ucp_mem_h>(t.memhs[i]);
      void* r = ucp_am_send_nbx(ep, wire::kReadData, &t.hdrs[i], sizeof(wire::ReadDataHdr), t.addrs[i],
                                t.items[i].length, &p);
      if (r == nullptr) {
        t.completed++;
      } else if (UCS_PTR_IS_ERR(r)) {
        FinishServe(t, WireStatus::kTransport, i,
                    "serving descriptor " + std::to_string(i) + " failed: " + UcsMessage(UCS_PTR_STATUS(r)));
        break;
      } else {
        Track(r);
        t.inflight++;
        active_++;
      }
    }
    // Everything is posted: the FIN follows the pushes on this endpoint, and the initiator
    // completes once every byte it announces has landed (a push failing later sends a second FIN
    // with the error). Sent now rather than after the local completions: one round trip less.
    // Staged (device) items are pushed only after their copy to host finishes, so a task with any
    // waits for every push to complete before its FIN.
    const bool staged = !t.itemDevice.empty();
    if (t.Serving() && (staged ? t.completed == n : t.next == n)) {
      if (finSent) {
        t.phase = ServeTask::Phase::kAnswered;  // the last push said it
      } else {
        FinishServe(t, WireStatus::kOk, 0, "");
      }
    }
  }
  if ((t.cancelled || !t.Serving()) && t.inflight == 0) {
    for (auto& r : t.regions) r->Release();
    t.regions.clear();
    if (ibIt != inbound_.end()) {
      auto rd = ibIt->second->reads.find(t.xferId);
      if (rd != ibIt->second->reads.end() && rd->second == &t) ibIt->second->reads.erase(rd);
      if (ibIt->second->state == Inbound::State::kClosing && ibIt->second->reads.empty()) {
        uint32_t ibId = ibIt->first;  // a closing connection waits for its served READs (callers may hold it)
        deferred_.push_back([this, ibId] {
          auto it = inbound_.find(ibId);
          if (it != inbound_.end()) MaybeFinishInboundClose(*it->second);
        });
      }
    }
    serves_.erase(t.key);  // `t` is gone after this line
  }
}

void UcxEngine::FinishServe(ServeTask& t, WireStatus st, uint32_t index, const std::string& msg) {
  if (!t.Serving()) return;  // answered already
  AnswerServe(t, st, index, msg);
}

void UcxEngine::AnswerServe(ServeTask& t, WireStatus st, uint32_t index, const std::string& msg) {
  t.phase = st == WireStatus::kOk ? ServeTask::Phase::kAnswered : ServeTask::Phase::kFailed;
  auto ibIt = inbound_.find(t.inboundId);
  if (ibIt == inbound_.end() || ibIt->second->ep == nullptr || t.cancelled) return;
  // Sent after every push completed: rendezvous pushes have landed, eager ones precede it.
  SendStatus(*ibIt->second, wire::kReadFin, t.xferId, st, index, msg);
}

void UcxEngine::HandleReadCancel(const wire::ReadCancelHdr& h) {
  Inbound* ib = InboundFor(h.route);
  if (ib == nullptr) return;
  auto rd = ib->reads.find(h.xferId);
  if (rd == ib->reads.end()) return;
  ServeTask& t = *rd->second;
  t.cancelled = true;  // the initiator gave up: stop pushing, send no FIN
  PumpServe(t);
}

void UcxEngine::HandleNotify(const wire::NotifyHdr& h, const uint8_t* data, size_t len) {
  Inbound* ib = InboundFor(h.route);
  if (ib == nullptr) return;
  EngineEvent e{EngineEvent::Kind::kNotification};
  e.text = ib->name;
  e.bytes.assign(data, data + len);
  Emit(std::move(e));
}

void UcxEngine::SendStatus(Inbound& ib, uint16_t amId, uint64_t xferId, WireStatus st, uint32_t index,
                           const std::string& msg) {
  if (ib.ep == nullptr) return;
  wire::StatusHdr h{ib.RouteOut(), xferId, static_cast<int32_t>(st), index};
  SendControl(ib.ep, amId, &h, sizeof h, msg.data(), msg.size());
}

void UcxEngine::RevokeRegion(uint32_t regionId) {
  for (auto& [id, ib] : inbound_) {
    if (ib->state != Inbound::State::kServing || ib->ep == nullptr) continue;
    wire::RevokeHdr h{ib->RouteOut(), regionId};
    SendControl(ib->ep, wire::kRevoke, &h, sizeof h, nullptr, 0);
  }
  // Reads being served from the region stop now.
  std::vector<uint64_t> keys;
  for (auto& [key, t] : serves_) {
    for (auto& r : t->regions) {
      if (r->id() == regionId) keys.push_back(key);
    }
  }
  for (uint64_t key : keys) {
    auto it = serves_.find(key);
    if (it == serves_.end()) continue;
    FinishServe(*it->second, WireStatus::kDeregistered, 0, "a region being read was deregistered");
    PumpServe(*it->second);
  }
}

void UcxEngine::SweepTargetState(uint64_t now) {
  std::vector<uint32_t> stuck, stale, closing;
  for (auto& [id, ib] : inbound_) {
    if (ib->state == Inbound::State::kAwaitingAuth && ib->authDeadlineNs <= now) stale.push_back(id);
    if (ib->state == Inbound::State::kClosing && ib->closeDeadlineNs <= now) closing.push_back(id);
    for (auto it = ib->writes.begin(); it != ib->writes.end();) {
      WriteRecord& rec = it->second;
      if (rec.deadlineNs <= now && rec.pendingRecv == 0) {
        if (rec.finReceived) {
          SendStatus(*ib, wire::kWriteAck, it->first, WireStatus::kTimeout, 0,
                     "the target did not receive every descriptor before the deadline");
        }
        it = ib->writes.erase(it);
        continue;
      }
      // Receives still in flight long after the deadline: the initiator is gone or cut off.
      if (rec.pendingRecv > 0 && rec.deadlineNs + kQuiesceGraceMs * 1000000ull <= now) stuck.push_back(id);
      ++it;
    }
  }
  for (uint32_t id : stale) {
    auto it = inbound_.find(id);
    if (it != inbound_.end()) InboundLost(*it->second, "it never answered the handshake's challenge");
  }
  for (uint32_t id : closing) {
    auto it = inbound_.find(id);
    if (it != inbound_.end()) MaybeFinishInboundClose(*it->second);
  }
  std::vector<uint64_t> expired;
  for (auto& [key, t] : serves_) {
    if (t->Serving() && t->deadlineNs <= now) expired.push_back(key);
    // Pushes still in flight long after the deadline: only closing the endpoint ends them.
    if (t->inflight > 0 && t->deadlineNs + kQuiesceGraceMs * 1000000ull <= now) stuck.push_back(t->inboundId);
  }
  for (uint64_t key : expired) {
    auto it = serves_.find(key);
    if (it == serves_.end()) continue;
    FinishServe(*it->second, WireStatus::kTimeout, 0, "serving the READ outlived its deadline");
    it->second->cancelled = true;
    PumpServe(*it->second);
  }
  for (uint32_t id : stuck) {
    auto it = inbound_.find(id);
    if (it != inbound_.end()) {
      InboundLost(*it->second,
                  "its operations did not end within " + std::to_string(kQuiesceGraceMs) + " ms of their deadline");
    }
  }
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

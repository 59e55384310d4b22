// UcxEngine connections: endpoints, the Hello handshake, which lanes UCX chose, liveness of
// same-host peers, peer loss and goodbyes; and the dispatch of incoming active messages.
#ifdef KVWIRE_HAVE_UCX
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <set>

#include "engine/process.h"
#include "engine/ucx_internal.h"

namespace kvwire {

namespace {

struct ControlBlock {
  UcxEngine* engine;
  std::string buf;
  std::function<void(ucs_status_t)> done;
};

bool IsSmTransport(const std::string& tl) {
  return tl == "sysv" || tl == "posix" || tl == "cma" || tl == "knem" || tl == "xpmem";
}
bool IsRdmaTransport(const std::string& tl) {
  return tl.rfind("rc", 0) == 0 || tl.rfind("dc", 0) == 0 || tl.rfind("ud", 0) == 0 || tl == "ib";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Endpoints

LaneInfo UcxEngine::DescribeLanes(ucp_ep_h ep) {
  LaneInfo info{"unknown", ""};
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  if (f == nullptr) return info;
  ucp_ep_print_info(ep, f);
  fclose(f);
  // Lines look like "#   lane[0]:  2:sysv/memory.0 md[1]  -> md[1]/sysv/sysdev[255] am am_bw#0".
  std::set<std::string> tls;
  std::vector<std::string> ordered;
  std::string all(text != nullptr ? text : "");
  free(text);
  size_t pos = 0;
  while ((pos = all.find("lane[", pos)) != std::string::npos) {
    size_t colon = all.find(':', pos);
    size_t eol = all.find('\n', pos);
    if (colon == std::string::npos || colon > eol) break;
    size_t tok = all.find(':', colon + 1);  // "2:sysv/memory.0": skip the resource index
    if (tok == std::string::npos || tok > eol) {
      pos = eol;
      continue;
    }
    size_t end = all.find_first_of(" \t", tok + 1);
    std::string res = all.substr(tok + 1, end - tok - 1);  // sysv/memory.0
    size_t dot = res.rfind('.');
    if (dot != std::string::npos) res = res.substr(0, dot);
    if (tls.insert(res).second) ordered.push_back(res);
    pos = eol == std::string::npos ? all.size() : eol;
  }
  bool sm = false, rdma = false, tcp = false, self = false, cuda = false;
  for (auto& r : ordered) {
    std::string tl = r.substr(0, r.find('/'));
    if (IsSmTransport(tl)) sm = true;
    else if (IsRdmaTransport(tl)) rdma = true;
    else if (tl == "tcp") tcp = true;
    else if (tl == "self") self = true;
    else if (tl.rfind("cuda", 0) == 0 || tl.rfind("gdr", 0) == 0) cuda = true;
    if (!info.detail.empty()) info.detail += "+";
    info.detail += r;
  }
  info.category = rdma ? "rdma" : sm ? "sm" : tcp ? "tcp" : self ? "self" : cuda ? "cuda" : "unknown";
  return info;
}

ucp_ep_h UcxEngine::CreateEp(const std::string& address, bool sameHost, bool watched, EpOwner* owner, LaneInfo* lanes,
                             std::string* error) {
  auto make = [&](ucp_err_handling_mode_t mode, ucs_status_t* st) -> ucp_ep_h {
    ucp_ep_params_t p{};
    p.field_mask =
        UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
    p.address = reinterpret_cast<const ucp_address_t*>(address.data());
    p.err_mode = mode;
    p.err_handler.cb = &UcxEngine::EpErrorCb;
    p.err_handler.arg = owner;
    ucp_ep_h ep = nullptr;
    *st = ucp_ep_create(worker_, &p, &ep);
    return *st == UCS_OK ? ep : nullptr;
  };
  ucs_status_t st = UCS_OK;
  // Shared memory refuses endpoints with peer error handling (UCX 1.13): for a peer on this host
  // try without it first, and keep that endpoint if UCX chose shared memory, or if the peer's
  // process is watched (pidfd): peer death is then detected by that and by deadlines. Without peer
  // error handling UCX also stripes rendezvous over every tcp interface (UCX_MAX_RNDV_RAILS),
  // where with it a tcp endpoint has a single lane.
  if (sameHost) {
    ucp_ep_h ep = make(UCP_ERR_HANDLING_MODE_NONE, &st);
    if (ep != nullptr) {
      *lanes = DescribeLanes(ep);
      lanes->peerErrors = false;
      if (lanes->category == "sm" || lanes->category == "self" || watched) return ep;
      void* req = ucp_ep_close_nb(ep, UCP_EP_CLOSE_MODE_FORCE);
      if (UCS_PTR_IS_PTR(req)) closing_.push_back(req);
    }
  }
  ucp_ep_h ep = make(UCP_ERR_HANDLING_MODE_PEER, &st);
  if (ep == nullptr) {
    *error = "UCX could not create an endpoint: " + UcsMessage(st) + " (transports: " + transportsConfigured() +
             (sameHost ? ")" : "; the peer is on another host, so shared memory cannot reach it)");
    return nullptr;
  }
  *lanes = DescribeLanes(ep);
  lanes->peerErrors = true;
  return ep;
}

void UcxEngine::CloseEp(ucp_ep_h ep, bool force) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  void* req = ucp_ep_close_nbx(ep, &p);
  if (UCS_PTR_IS_PTR(req)) closing_.push_back(req);
}

UcxEngine::EpOwner* UcxEngine::NewOwner(bool outbound, uint32_t id) {
  owners_.push_back(
      std::unique_ptr<EpOwner>(new EpOwner{outbound ? EpOwner::Kind::kOutbound : EpOwner::Kind::kInbound, id, this}));
  return owners_.back().get();
}

void UcxEngine::EpErrorCb(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* owner = static_cast<EpOwner*>(arg);
  owner->engine->OnEpError(owner, status);
}

void UcxEngine::OnEpError(EpOwner* owner, ucs_status_t status) {
  // Inside UCX's progress: defer, the endpoint cannot be closed from here.
  EpOwner::Kind kind = owner->kind;
  uint32_t id = owner->id;
  deferred_.push_back([this, kind, id, status] {
    std::string why = "the transport reported " + UcsMessage(status);
    if (kind == EpOwner::Kind::kOutbound) {
      auto it = outbound_.find(id);
      if (it != outbound_.end()) OutboundLost(*it->second, code::kPeerLost, why, true);
    } else {
      auto it = inbound_.find(id);
      if (it != inbound_.end()) InboundLost(*it->second, why, true);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Connect / disconnect (initiator side)

void UcxEngine::DoConnect(uint32_t peerId, std::shared_ptr<PeerInfo> info, uint32_t timeoutMs) {
  auto fail = [&](const char* c, const std::string& msg) {
    EngineEvent e{EngineEvent::Kind::kConnected};
    e.id = peerId;
    e.code = c;
    e.text = msg;
    Emit(std::move(e));
  };
  if (outbound_.count(peerId) != 0) {
    fail(code::kInvalidArgument, "peer id already in use");
    return;
  }
  auto ob = std::make_unique<Outbound>();
  ob->id = peerId;
  ob->info = info;
  ob->owner = NewOwner(true, peerId);
  ob->sameHost = !opts_.hostId.empty() && info->hostId == opts_.hostId;
  // A same-host peer is watched through a pidfd: its death is seen at once, whatever the transport.
  if (ob->sameHost && info->pid != 0) {
    int fd = OpenPidfd(info->pid, info->pidStart);
    if (fd == -2) {
      fail(code::kPeerUnreachable, "'" + info->name + "' (process " + std::to_string(info->pid) +
                                       ") is no longer running; get fresh metadata from its current process");
      return;
    }
    if (fd >= 0) {
      ob->pidfd.reset(fd);
      WatchFd(fd, MakeTag(FdTag::kOutboundPid, peerId));
    }
  }
  std::string error;
  ob->ep = CreateEp(info->address, ob->sameHost, ob->pidfd.valid(), ob->owner, &ob->lanes, &error);
  if (ob->ep == nullptr) {
    if (ob->pidfd.valid()) UnwatchFd(ob->pidfd.get());
    fail(code::kPeerUnreachable, "cannot reach '" + info->name + "': " + error);
    return;
  }
  ob->rma = opts_.protocol == "rma" ||
            (opts_.protocol == "auto" &&
             (ob->lanes.category == "sm" || ob->lanes.category == "rdma" || ob->lanes.category == "self"));
  ob->connectDeadlineNs = DeadlineFrom(NowNs(), timeoutMs);
  nextDeadlineNs_ = std::min(nextDeadlineNs_, ob->connectDeadlineNs);

  wire::HelloHdr h{};
  h.version = wire::kProtocolVersion;
  h.connId = peerId;
  h.pid = static_cast<uint32_t>(getpid());
  h.pidStart = opts_.pidStart;
  h.nameLen = static_cast<uint32_t>(opts_.name.size());
  h.addrLen = static_cast<uint32_t>(address_.size());
  h.hostLen = static_cast<uint32_t>(opts_.hostId.size());
  std::string data = opts_.name + address_ + opts_.hostId;
  ucp_ep_h ep = ob->ep;
  outbound_[peerId] = std::move(ob);
  SendControl(ep, wire::kHello, &h, sizeof h, data.data(), data.size(), [this, peerId](ucs_status_t st) {
    if (st == UCS_OK) return;
    auto it = outbound_.find(peerId);
    if (it != outbound_.end()) {
      OutboundLost(*it->second, code::kPeerUnreachable, "sending the handshake failed: " + UcsMessage(st));
    }
  });
}

void UcxEngine::HandleHelloAck(const wire::HelloAckHdr& h) {
  auto it = outbound_.find(h.connId);
  if (it == outbound_.end() || it->second->state != Outbound::State::kConnecting) return;
  Outbound& ob = *it->second;
  if (h.status != static_cast<int32_t>(WireStatus::kOk)) {
    OutboundLost(ob, code::kPeerUnreachable,
                 "'" + ob.info->name +
                     "' refused the connection: it speaks another kvwire wire protocol (this one speaks " +
                     std::to_string(wire::kProtocolVersion) +
                     "; run the same kvwire release on both sides) or the handshake was bad");
    return;
  }
  ob.inboundId = h.inboundId;
  std::string cudaError;
  if (!SetupPeerCuda(ob, &cudaError)) {  // the CUDA path asked for cannot reach this peer
    wire::ByeHdr bye{ob.inboundId, 0};
    SendControl(ob.ep, wire::kBye, &bye, sizeof bye, nullptr, 0);
    OutboundLost(ob, code::kUnsupported, cudaError);
    return;
  }
  ob.state = Outbound::State::kConnected;
  if (ob.rma) MapRemoteRegions(ob);
  EngineEvent e{EngineEvent::Kind::kConnected};
  e.id = ob.id;
  e.text =
      ob.lanes.category + "|" + ob.lanes.detail + "|" + (ob.rma ? "rma" : "am") + "|" + cuda::PathName(ob.cuda->path);
  Emit(std::move(e));
}

void UcxEngine::MapRemoteRegions(Outbound& ob) {
  // Shared memory the peer allocated with UCX can be mapped here: then a descriptor is one memcpy,
  // with no UCX request (and small transfers need no trip through the engine thread at all).
  for (auto& [id, rr] : ob.info->regions) {
    std::string error;
    ucp_rkey_h rk = RkeyFor(ob, id, &error);
    if (rk == nullptr) continue;
    void* ptr = nullptr;
    if (ucp_rkey_ptr(rk, rr->base, &ptr) == UCS_OK && ptr != nullptr) {
      // The whole region must be mapped, not just its first byte.
      void* last = nullptr;
      if (ucp_rkey_ptr(rk, rr->base + rr->length - 1, &last) == UCS_OK &&
          static_cast<uint8_t*>(last) == static_cast<uint8_t*>(ptr) + rr->length - 1) {
        rr->mapped.store(static_cast<uint8_t*>(ptr), std::memory_order_release);
      }
    }
  }
}

void UcxEngine::OutboundLost(Outbound& ob, const std::string& c, const std::string& reason, bool transportFailed) {
  if (ob.state == Outbound::State::kLost) {
    if (transportFailed && ob.ep != nullptr) {  // a lingering endpoint: UCX has now seen the failure
      CloseEp(ob.ep, true);
      ob.ep = nullptr;
    }
    return;
  }
  bool wasConnecting = ob.state == Outbound::State::kConnecting;
  ob.state = Outbound::State::kLost;
  ob.info->lost.store(true, std::memory_order_release);
  ob.lostCode = c;
  ob.lostReason = reason;
  std::vector<uint64_t> ids(ob.xfers.begin(), ob.xfers.end());
  for (uint64_t id : ids) {
    CancelXfer(id, c.c_str(), "peer '" + ob.info->name + "' was lost: " + reason);
  }
  if (ob.pidfd.valid()) {
    UnwatchFd(ob.pidfd.get());
    ob.pidfd.reset();
  }
  if (ob.ep != nullptr) {
    if (transportFailed || !ob.lanes.peerErrors || wasConnecting) {
      CloseEp(ob.ep, true);
      ob.ep = nullptr;
    } else {
      ob.lingerUntilNs = DeadlineFrom(NowNs(), kLingerMs);  // closed when UCX reports the reset
    }
  }
  EngineEvent e{wasConnecting ? EngineEvent::Kind::kConnected : EngineEvent::Kind::kPeerLost};
  e.id = ob.id;
  e.code = c;
  e.text = wasConnecting ? reason : ("peer '" + ob.info->name + "' was lost: " + reason);
  Emit(std::move(e));
}

void UcxEngine::DoDisconnect(uint32_t peerId, bool sayBye) {
  auto it = outbound_.find(peerId);
  if (it == outbound_.end()) return;
  Outbound& ob = *it->second;
  std::vector<uint64_t> ids(ob.xfers.begin(), ob.xfers.end());
  for (uint64_t id : ids) {
    CancelXfer(id, code::kClosed, "the peer was disconnected while this transfer was in flight");
  }
  if (ob.pidfd.valid()) UnwatchFd(ob.pidfd.get());
  if (ob.ep != nullptr) {
    bool alive = ob.state == Outbound::State::kConnected;
    if (alive && sayBye) {
      wire::ByeHdr h{ob.inboundId, 0};
      SendControl(ob.ep, wire::kBye, &h, sizeof h, nullptr, 0);
    }
    CloseEp(ob.ep, !alive && !ob.lanes.peerErrors);
    ob.ep = nullptr;
  }
  // Transfers still referencing the peer hold only its id; rkeys go with the Outbound.
  outbound_.erase(it);
}

// ---------------------------------------------------------------------------------------------
// Hello (target side)

void UcxEngine::HandleHello(const wire::HelloHdr& h, const uint8_t* data, size_t len) {
  uint64_t total = static_cast<uint64_t>(h.nameLen) + h.addrLen + h.hostLen;
  if (total != len || h.addrLen == 0 || h.nameLen > 4096 || h.hostLen > 4096) return;  // malformed: drop
  auto ib = std::make_unique<Inbound>();
  ib->id = nextInbound_++;
  ib->connId = h.connId;
  ib->name.assign(reinterpret_cast<const char*>(data), h.nameLen);
  std::string address(reinterpret_cast<const char*>(data) + h.nameLen, h.addrLen);
  std::string hostId(reinterpret_cast<const char*>(data) + h.nameLen + h.addrLen, h.hostLen);
  ib->owner = NewOwner(false, ib->id);
  bool sameHost = !opts_.hostId.empty() && hostId == opts_.hostId;
  if (sameHost && h.pid != 0) {
    int fd = OpenPidfd(h.pid, h.pidStart);
    if (fd >= 0) {
      ib->pidfd.reset(fd);
      WatchFd(fd, MakeTag(FdTag::kInboundPid, ib->id));
    }
  }
  std::string error;
  ib->ep = CreateEp(address, sameHost, ib->pidfd.valid(), ib->owner, &ib->lanes, &error);
  if (ib->ep == nullptr) {
    if (ib->pidfd.valid()) UnwatchFd(ib->pidfd.get());
    EngineEvent w{EngineEvent::Kind::kWarning};
    w.text = "could not answer '" + ib->name + "': " + error;
    Emit(std::move(w));
    return;
  }
  wire::HelloAckHdr ack{h.connId, ib->id, static_cast<int32_t>(WireStatus::kOk)};
  if (h.version != wire::kProtocolVersion) ack.status = static_cast<int32_t>(WireStatus::kInvalid);
  ucp_ep_h ep = ib->ep;
  if (ack.status != 0) {
    SendControl(ep, wire::kHelloAck, &ack, sizeof ack, nullptr, 0);
    CloseEp(ep, false);
    return;
  }
  inbound_[ib->id] = std::move(ib);
  SendControl(ep, wire::kHelloAck, &ack, sizeof ack, nullptr, 0);
}

void UcxEngine::InboundLost(Inbound& ib, const std::string& reason, bool transportFailed) {
  if (ib.lost) {
    if (transportFailed) {  // a lingering endpoint: UCX has now seen the failure
      if (ib.ep != nullptr) CloseEp(ib.ep, true);
      inbound_.erase(ib.id);
    }
    return;
  }
  ib.lost = true;
  for (auto& [xferId, t] : ib.reads) t->cancelled = true;
  ib.reads.clear();
  ib.writes.clear();
  if (ib.pidfd.valid()) {
    UnwatchFd(ib.pidfd.get());
    ib.pidfd.reset();
  }
  if (ib.ep != nullptr && !transportFailed && ib.lanes.peerErrors) {
    ib.lingerUntilNs = DeadlineFrom(NowNs(), kLingerMs);  // closed when UCX reports the reset
    return;
  }
  if (ib.ep != nullptr) CloseEp(ib.ep, true);
  inbound_.erase(ib.id);  // `ib` is gone after this line
}

void UcxEngine::HandleBye(const wire::ByeHdr& h) {
  if (h.fromTarget != 0) {
    auto it = outbound_.find(h.id);
    if (it != outbound_.end()) {
      OutboundLost(*it->second, code::kPeerLost, "'" + it->second->info->name + "' closed its agent");
    }
  } else {
    auto it = inbound_.find(h.id);
    if (it != inbound_.end()) InboundLost(*it->second, "the initiator closed");
  }
}

// ---------------------------------------------------------------------------------------------
// Liveness of same-host peers

int UcxEngine::OpenPidfd(uint32_t pid, uint64_t pidStart) {
#ifdef SYS_pidfd_open
  int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (fd < 0) return errno == ESRCH ? -2 : -1;
  // Guard against pid reuse: the process must have started when the metadata says it did.
  if (pidStart != 0) {
    uint64_t now = ProcessStartTime(pid);
    if (now != pidStart) {
      close(fd);
      return -2;
    }
  }
  return fd;
#else
  return -1;
#endif
}

void UcxEngine::OnLivenessFd(uint64_t tag) {
  uint32_t id = TagId(tag);
  if (TagKind(tag) == FdTag::kOutboundPid) {
    auto it = outbound_.find(id);
    if (it != outbound_.end()) {
      OutboundLost(*it->second, code::kPeerLost,
                   "its process (pid " + std::to_string(it->second->info->pid) + ") exited");
    }
  } else {
    auto it = inbound_.find(id);
    if (it != inbound_.end()) InboundLost(*it->second, "its process exited");
  }
}

ucp_rkey_h UcxEngine::RkeyFor(Outbound& ob, uint32_t regionId, std::string* error) {
  auto it = ob.rkeys.find(regionId);
  if (it != ob.rkeys.end()) return it->second;
  const RemoteRegion* rr = ob.info->Find(regionId);
  if (rr == nullptr || rr->rkey.empty()) {
    *error = "remote region " + std::to_string(regionId) + " has no remote key";
    return nullptr;
  }
  ucp_rkey_h rk = nullptr;
  ucs_status_t st = ucp_ep_rkey_unpack(ob.ep, rr->rkey.data(), &rk);
  if (st != UCS_OK) {
    *error = "unpacking the remote key of region " + std::to_string(regionId) + " failed: " + UcsMessage(st);
    return nullptr;
  }
  ob.rkeys[regionId] = rk;
  return rk;
}

// ---------------------------------------------------------------------------------------------
// Messages

void UcxEngine::SendControl(ucp_ep_h ep, uint16_t amId, const void* hdr, size_t hdrLen, const void* data,
                            size_t dataLen, std::function<void(ucs_status_t)> done) {
  auto* b = new ControlBlock{this, std::string(), std::move(done)};
  b->buf.reserve(hdrLen + dataLen);
  b->buf.append(static_cast<const char*>(hdr), hdrLen);
  if (dataLen > 0) b->buf.append(static_cast<const char*>(data), dataLen);
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_AM_SEND_FLAG_EAGER;
  p.user_data = b;
  p.cb.send = [](void* req, ucs_status_t st, void* ud) {
    auto* blk = static_cast<ControlBlock*>(ud);
    blk->engine->Untrack(req);
    blk->engine->pendingControl_--;
    if (blk->done) blk->done(st);
    delete blk;
  };
  void* req = ucp_am_send_nbx(ep, amId, b->buf.data(), hdrLen, b->buf.data() + hdrLen, dataLen, &p);
  if (UCS_PTR_IS_PTR(req)) {
    Track(req);
    pendingControl_++;
    return;
  }
  ucs_status_t st = UCS_PTR_STATUS(req);
  if (b->done) b->done(st);
  delete b;
}

template <typename H>
static const H* HeaderAs(const void* header, size_t len) {
  return len >= sizeof(H) ? static_cast<const H*>(header) : nullptr;
}

ucs_status_t UcxEngine::OnAm(uint16_t id, const void* header, size_t headerLen, void* data, size_t len,
                             const ucp_am_recv_param_t* param) {
  bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  // Data messages: handled here, where a rendezvous descriptor can still be received in place.
  if (id == wire::kWrite) {
    if (auto* h = HeaderAs<wire::WriteHdr>(header, headerLen)) return HandleWrite(*h, data, len, param);
    return UCS_OK;
  }
  if (id == wire::kReadData) {
    if (auto* h = HeaderAs<wire::ReadDataHdr>(header, headerLen)) return HandleReadData(*h, data, len, param);
    return UCS_OK;
  }
  if (id == wire::kWriteBatch) {
    if (auto* h = HeaderAs<wire::WriteBatchHdr>(header, headerLen)) return HandleWriteBatch(*h, data, len, param);
    return UCS_OK;
  }
  if (id == wire::kReadDataBatch) {
    if (auto* h = HeaderAs<wire::ReadDataBatchHdr>(header, headerLen)) return HandleReadDataBatch(*h, data, len, param);
    return UCS_OK;
  }
  // Control messages are always eager; a rendezvous one is malformed: drop it.
  if (rndv) return UCS_OK;
  std::string hdr(static_cast<const char*>(header), headerLen);
  std::string body(static_cast<const char*>(data), data != nullptr ? len : 0);
  // Handled after progress returns: they create endpoints and send answers.
  deferred_.push_back([this, id, hdr = std::move(hdr), body = std::move(body)] {
    const auto* d = reinterpret_cast<const uint8_t*>(body.data());
    switch (id) {
      case wire::kHello:
        if (auto* h = HeaderAs<wire::HelloHdr>(hdr.data(), hdr.size())) HandleHello(*h, d, body.size());
        break;
      case wire::kHelloAck:
        if (auto* h = HeaderAs<wire::HelloAckHdr>(hdr.data(), hdr.size())) HandleHelloAck(*h);
        break;
      case wire::kWriteFin:
        if (auto* h = HeaderAs<wire::WriteFinHdr>(hdr.data(), hdr.size())) HandleWriteFin(*h, d, body.size());
        break;
      case wire::kWriteAck:
        if (auto* h = HeaderAs<wire::StatusHdr>(hdr.data(), hdr.size())) HandleWriteAck(*h, d, body.size());
        break;
      case wire::kReadReq:
        if (auto* h = HeaderAs<wire::ReadReqHdr>(hdr.data(), hdr.size())) HandleReadReq(*h, d, body.size());
        break;
      case wire::kReadFin:
        if (auto* h = HeaderAs<wire::StatusHdr>(hdr.data(), hdr.size())) HandleReadFin(*h, d, body.size());
        break;
      case wire::kReadCancel:
        if (auto* h = HeaderAs<wire::ReadCancelHdr>(hdr.data(), hdr.size())) HandleReadCancel(*h);
        break;
      case wire::kNotify:
        if (auto* h = HeaderAs<wire::NotifyHdr>(hdr.data(), hdr.size())) HandleNotify(*h, d, body.size());
        break;
      case wire::kRevoke:
        if (auto* h = HeaderAs<wire::RevokeHdr>(hdr.data(), hdr.size())) HandleRevoke(*h);
        break;
      case wire::kBye:
        if (auto* h = HeaderAs<wire::ByeHdr>(hdr.data(), hdr.size())) HandleBye(*h);
        break;
      default:
        break;
    }
  });
  return UCS_OK;
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

// UcxEngine connections: endpoints and which lanes UCX chose, attaching a handshaken peer,
// goodbyes, peer loss, retiring endpoints, and liveness of same-host peers. The handshake itself is
// in ucx_handshake.cc, the messages' dispatch in ucx_messages.cc.
#ifdef KVWIRE_HAVE_UCX
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "engine/address_check.h"
#include "engine/cma.h"
#include "engine/process.h"
#include "engine/ucx_internal.h"

namespace kvwire {

namespace {

bool IsSmTransport(const std::string& tl) {
  return tl == "sysv" || tl == "posix" || tl == "cma" || tl == "knem" || tl == "xpmem";
}
bool IsRdmaTransport(const std::string& tl) {
  return tl.rfind("rc", 0) == 0 || tl.rfind("dc", 0) == 0 || tl.rfind("ud", 0) == 0 || tl == "ib";
}

}  // namespace

bool UcxEngine::PosixPeerErrorsFromEnv() {
  // Unset: kvwire turns it on (Init). Set: UCX reads it as a boolean (y, yes, on or 1).
  const char* v = getenv("UCX_POSIX_ERROR_HANDLING");
  if (v == nullptr) v = getenv("UCX_SYSV_ERROR_HANDLING");
  if (v == nullptr) return true;
  std::string s(v);
  for (char& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return s == "y" || s == "yes" || s == "on" || s == "1";
}

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

UcpEndpoint UcxEngine::CreateEp(const std::string& address, bool sameHost, EpOwner* owner, LaneInfo* lanes,
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
  // Every endpoint has peer error handling where UCX offers it: only then does UCX 1.13 end the
  // operations in flight on it when it is closed by force (a transfer whose peer died or hung must
  // quiesce: its memory may be reused or deregistered). UCX refuses a forced close of an endpoint
  // without it (ucp_ep_close_nbx: invalid parameter), and cannot cancel a send that waits for
  // room in a dead or stopped peer's shared-memory FIFO, so such a send would pin the caller's
  // memory until the worker is destroyed (and the worker cannot be destroyed under it).
  // Shared memory has it through posix with UCX_POSIX_ERROR_HANDLING=y, which kvwire sets unless
  // the environment says otherwise (Init); sysv never has it. When a same-host peer can be reached by shared
  // memory only without it (the setting was turned off on either side, or sysv only), the
  // endpoint goes without: its death is then seen through its pidfd, data to it always goes eager
  // (DataFlags), and a transfer cut by a death or a hang over it may never quiesce.
  // A refused endpoint is refused by the local lane selection, before anything reaches the peer:
  // trying again without error handling leaves the peer nothing behind.
  // (Not tried where this process turned it off: UCX would log an error for every such peer.)
  const bool shm = sameHost && OffersSharedMemory(reinterpret_cast<const uint8_t*>(address.data()), address.size());
  const bool tryPeer = !shm || posixPeerErrors_;
  ucp_ep_h ep = make(tryPeer ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE, &st);
  bool peerErrors = tryPeer && ep != nullptr;
  if (ep == nullptr && tryPeer && shm) ep = make(UCP_ERR_HANDLING_MODE_NONE, &st);
  if (ep == nullptr) {
    *error = "UCX could not create an endpoint: " + UcsMessage(st) + " (transports: " + transportsConfigured() +
             (sameHost ? ")" : "; the peer is on another host, so shared memory cannot reach it)");
    return UcpEndpoint();
  }
  *lanes = DescribeLanes(ep);
  lanes->peerErrors = peerErrors;
  return UcpEndpoint(ep);
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
      if (it != outbound_.end()) OutboundLost(*it->second, code::kPeerLost, why);
    } else {
      auto it = inbound_.find(id);
      if (it != inbound_.end()) InboundLost(*it->second, why);
    }
  });
}

void UcxEngine::RetireEp(UcpEndpoint ep, bool flush, uint32_t graceMs) {
  // An endpoint retired already was taken from its owner then: nothing is left to close twice
  // (a second close would act on a destroyed endpoint).
  if (!ep) return;
  Retiring r{std::move(ep), UcpRequest(), DeadlineFrom(NowNs(), graceMs)};
  if (flush) r.flush = r.ep.Flush();
  // Closed by the engine loop (ProgressRetiring), never here: closing an endpoint by force
  // completes its requests at once, running their callbacks, and a caller in the middle of ending
  // a connection (e.g. DoDisconnect, before it forgets the Outbound) would see them re-enter it
  // and retire the same endpoint twice (a SIGSEGV in UCX, seen after a partition).
  retiring_.push_back(std::move(r));
}

void UcxEngine::ProgressRetiring(uint64_t now) {
  // Callbacks run by a forced close may retire more endpoints: they land in retiring_ for the
  // next pass, never in the list being walked.
  std::vector<Retiring> work;
  work.swap(retiring_);
  for (Retiring& r : work) {
    if (r.flush.inProgress() && now < r.deadlineNs) {
      retiring_.push_back(std::move(r));
      continue;
    }
    r.flush.reset();  // given back before the close
    // FORCE: the only close after which UCX 1.13 destroys an endpoint its peer connected to.
    // (Refused for an endpoint without peer error handling: see CreateEp.)
    UcpRequest closing = r.ep.CloseByForce();
    if (closing) closing_.push_back(std::move(closing));
  }
  // Close requests UCX is done with are freed (by their owner, on erase).
  closing_.erase(std::remove_if(closing_.begin(), closing_.end(), [](const UcpRequest& c) { return !c.inProgress(); }),
                 closing_.end());
}

// ---------------------------------------------------------------------------------------------
// Connect, attach, disconnect (initiator side)

void UcxEngine::DoConnect(uint32_t peerId, const std::shared_ptr<PeerInfo>& info, uint32_t timeoutMs) {
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
  ob->token = RandomToken();
  RandomBytes(ob->nonce, sizeof ob->nonce);
  ob->keyIndex = opts_.auth.enabled() ? 0 : -1;
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
  ob->ep = CreateEp(info->address, ob->sameHost, ob->owner, &ob->lanes, &error);
  if (!ob->ep) {
    if (ob->pidfd.valid()) UnwatchFd(ob->pidfd.get());
    fail(code::kPeerUnreachable, "cannot reach '" + info->name + "': " + error);
    return;
  }
  ob->connectDeadlineNs = DeadlineFrom(NowNs(), timeoutMs);
  nextDeadlineNs_ = std::min(nextDeadlineNs_, ob->connectDeadlineNs);
  Outbound& ref = *ob;
  outbound_[peerId] = std::move(ob);
  SendHello(ref);
}

void UcxEngine::DoAttach(uint32_t peerId) {
  auto it = outbound_.find(peerId);
  if (it == outbound_.end() || it->second->state != Outbound::State::kAttaching) return;
  Outbound& ob = *it->second;
  std::string cudaError;
  if (!SetupPeerCuda(ob, &cudaError)) {  // the CUDA path asked for cannot reach this peer
    OutboundLost(ob, code::kUnsupported, cudaError);
    return;
  }
  ob.state = Outbound::State::kConnected;
  if (ob.oneSided) MapRemoteRegions(ob);
  if (ob.cma && ob.pidfd.valid()) MapSharedWindows(ob);
  if (ob.cma && ob.pidfd.valid() && !ob.info->cmaInline.load(std::memory_order_relaxed)) {
    // Small transfers by cross-memory attach may now run on the calling thread: it gets its own
    // pidfd to check the peer is alive (the pid is the peer's only while its process lives).
    int fd = fcntl(ob.pidfd.get(), F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) {
      ob.info->cmaPidfd.reset(fd);
      // ... or, cheaper, its liveness beacon (liveness.h) when it offered one we can map.
      if (ob.beaconFd >= 0) ob.info->cmaBeacon = PeerBeacon::Open(ob.pidfd.get(), ob.beaconFd);
      // Its memory file, for one-page copies (cma.h). Opened by pid: it is the peer's if the peer
      // still lives afterwards (a pid names no other process while its own lives).
      UniqueFd mem(OpenMemFile(static_cast<pid_t>(ob.info->pid)));
      if (mem.valid() && ob.info->CheckPid(ob.pidfd.get()) == PeerInfo::Pid::kOurs) ob.info->cmaMemFd = std::move(mem);
      ob.info->cmaInline.store(true, std::memory_order_release);
    }
  }
  EngineEvent e{EngineEvent::Kind::kConnected};
  e.id = ob.id;
  e.connection =
      ConnectionInfo{ob.lanes.category, ob.lanes.detail, ob.oneSided ? "rma" : "am", cuda::PathName(ob.cuda->path),
                     !ob.info->cmaInline.load(std::memory_order_relaxed) ? ""
                     : ob.info->cmaBeacon != nullptr                     ? "beacon"
                                                                         : "pidfd"};
  Emit(std::move(e));
}

void UcxEngine::MapRemoteRegions(Outbound& ob) {
  // Shared memory the peer allocated with UCX can be mapped here: then a descriptor is one memcpy,
  // with no UCX request (and small transfers need no trip through the engine thread at all).
  for (auto& [id, rr] : ob.info->regions) {
    if (rr->rkey.empty()) continue;
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

void UcxEngine::MapSharedWindows(Outbound& ob) {
  // Registered memory the peer shares (share.h): mapped here, so that its ranges are a memcpy. A
  // record that does not check out leaves the region to cross-memory attach.
  for (auto& [id, rr] : ob.info->regions) {
    if (!rr->hasShare || rr->windowReady.load(std::memory_order_relaxed) != nullptr) continue;
    std::string why;
    rr->window = PeerWindow::Map(ob.pidfd.get(), rr->share, rr->length, (rr->access & kAccessWrite) != 0, &why);
    if (rr->window) rr->windowReady.store(rr->window.get(), std::memory_order_release);
  }
}

ucp_rkey_h UcxEngine::RkeyFor(Outbound& ob, uint32_t regionId, std::string* error) {
  auto it = ob.rkeys.find(regionId);
  if (it != ob.rkeys.end()) return it->second.get();
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
  ob.rkeys.emplace(regionId, UcpRkey(rk));
  return rk;
}

void UcxEngine::OutboundLost(Outbound& ob, const std::string& c, const std::string& reason) {
  if (ob.state == Outbound::State::kLost) return;
  if (ob.state == Outbound::State::kClosing) {
    // Being disconnected already (JavaScript forgot it): end it now, nothing to report.
    ob.closeDeadlineNs = 0;
    ob.byeReceived = true;
    std::vector<uint64_t> ids(ob.xfers.begin(), ob.xfers.end());
    for (uint64_t id : ids) CancelXfer(id, code::kClosed, "the peer was disconnected");
    RetireEp(std::move(ob.ep), false, 0);
    if (ob.pidfd.valid()) UnwatchFd(ob.pidfd.get());
    outbound_.erase(ob.id);  // `ob` is gone after this line
    return;
  }
  bool handshaking = ob.state == Outbound::State::kConnecting || ob.state == Outbound::State::kAttaching;
  ob.state = Outbound::State::kLost;
  ob.info->lost.store(true, std::memory_order_release);
  ob.lostCode = c;
  ob.lostReason = reason;
  std::vector<uint64_t> ids(ob.xfers.begin(), ob.xfers.end());
  for (uint64_t id : ids) CancelXfer(id, c.c_str(), "peer '" + ob.info->name + "' was lost: " + reason);
  if (ob.pidfd.valid()) {
    UnwatchFd(ob.pidfd.get());
    ob.pidfd.reset();
  }
  // Nothing will answer on this endpoint: close it by force, which ends (completes with an error)
  // the operations still in flight on it, so that the transfers they belong to quiesce.
  RetireEp(std::move(ob.ep), false, 0);
  EngineEvent e{handshaking ? EngineEvent::Kind::kConnected : EngineEvent::Kind::kPeerLost};
  e.id = ob.id;
  e.code = c;
  e.text = handshaking ? reason : ("peer '" + ob.info->name + "' was lost: " + reason);
  Emit(std::move(e));
}

void UcxEngine::DoDisconnect(uint32_t peerId) {
  auto it = outbound_.find(peerId);
  if (it == outbound_.end()) return;
  Outbound& ob = *it->second;
  if (ob.state == Outbound::State::kClosing) return;
  std::vector<uint64_t> ids(ob.xfers.begin(), ob.xfers.end());
  for (uint64_t id : ids) {
    CancelXfer(id, code::kClosed, "the peer was disconnected while this transfer was in flight");
  }
  bool greeted = ob.state == Outbound::State::kConnected || ob.state == Outbound::State::kAttaching;
  if (!greeted || !ob.ep) {  // lost, or still connecting: nobody to say goodbye to
    RetireEp(std::move(ob.ep), false, 0);
    if (ob.pidfd.valid()) UnwatchFd(ob.pidfd.get());
    outbound_.erase(it);
    return;
  }
  // Goodbye first: the target stops serving us, lets what it has in flight toward us end, and
  // says goodbye back; then (MaybeFinishOutboundClose) the endpoint is retired. Rkeys and the
  // mapped memory go with the Outbound; transfers still holding the peer's id find it closing.
  ob.state = Outbound::State::kClosing;
  ob.closeDeadlineNs = DeadlineFrom(NowNs(), kCloseGraceMs);
  nextDeadlineNs_ = std::min(nextDeadlineNs_, ob.closeDeadlineNs);
  wire::ByeHdr h{ob.RouteOut(), 0};
  SendControl(ob.ep, wire::kBye, &h, sizeof h, nullptr, 0);
  MaybeFinishOutboundClose(ob);
}

void UcxEngine::MaybeFinishOutboundClose(Outbound& ob) {
  if (ob.state != Outbound::State::kClosing) return;
  bool quiet = ob.liveXfers == 0 && ob.byeReceived;
  if (!quiet && NowNs() < ob.closeDeadlineNs) return;
  RetireEp(std::move(ob.ep), quiet, kCloseGraceMs);
  if (ob.pidfd.valid()) UnwatchFd(ob.pidfd.get());
  outbound_.erase(ob.id);  // `ob` is gone after this line
}

// ---------------------------------------------------------------------------------------------
// Inbound connections (target side)

void UcxEngine::InboundLost(Inbound& ib, const std::string& reason) {
  (void)reason;
  for (auto& [xferId, t] : ib.reads) t->cancelled = true;
  ib.reads.clear();
  ib.writes.clear();
  if (ib.pidfd.valid()) {
    UnwatchFd(ib.pidfd.get());
    ib.pidfd.reset();
  }
  // Force: nothing answers on it, and operations in flight on it end (served READs quiesce).
  RetireEp(std::move(ib.ep), false, 0);
  uint32_t id = ib.id;
  // Served READs still in flight find the inbound gone and release their regions when their
  // last push ends.
  std::vector<uint64_t> keys;
  for (auto& [key, t] : serves_) {
    if (t->inboundId == id) keys.push_back(key);
  }
  inbound_.erase(id);  // `ib` is gone after this line
  for (uint64_t key : keys) {
    auto it = serves_.find(key);
    if (it != serves_.end()) PumpServe(*it->second);
  }
}

void UcxEngine::MaybeFinishInboundClose(Inbound& ib) {
  if (ib.state != Inbound::State::kClosing) return;
  bool quiet = ib.reads.empty();
  for (auto& [xferId, rec] : ib.writes) {
    if (rec.pendingRecv > 0) quiet = false;
  }
  if (!quiet && NowNs() < ib.closeDeadlineNs) return;
  // Quiet (or out of patience): goodbye back, then the endpoint is retired once that is flushed.
  wire::ByeHdr h{ib.RouteOut(), wire::kByeFromTarget | wire::kByeAck};
  SendControl(ib.ep, wire::kBye, &h, sizeof h, nullptr, 0);
  RetireEp(std::move(ib.ep), quiet, kCloseGraceMs);
  if (ib.pidfd.valid()) UnwatchFd(ib.pidfd.get());
  for (auto& [xferId, t] : ib.reads) t->cancelled = true;
  inbound_.erase(ib.id);  // `ib` is gone after this line
}

void UcxEngine::HandleBye(const wire::ByeHdr& h) {
  if ((h.flags & wire::kByeFromTarget) != 0) {
    Outbound* ob = OutboundFor(h.route);
    if (ob == nullptr) return;
    if ((h.flags & wire::kByeAck) != 0 && ob->state == Outbound::State::kClosing) {
      ob->byeReceived = true;
      MaybeFinishOutboundClose(*ob);
      return;
    }
    OutboundLost(*ob, code::kPeerLost, "'" + ob->info->name + "' closed its agent");
    return;
  }
  Inbound* ib = InboundFor(h.route, false);
  if (ib == nullptr || ib->state == Inbound::State::kClosing) return;
  // The initiator is done with us: stop serving it, let operations in flight end, then answer.
  ib->state = Inbound::State::kClosing;
  ib->closeDeadlineNs = DeadlineFrom(NowNs(), kCloseGraceMs);
  nextDeadlineNs_ = std::min(nextDeadlineNs_, ib->closeDeadlineNs);
  for (auto& [xferId, t] : ib->reads) t->cancelled = true;
  for (auto it = ib->writes.begin(); it != ib->writes.end();) {
    if (it->second.pendingRecv == 0) it = ib->writes.erase(it);
    else ++it;
  }
  std::vector<uint64_t> keys;
  for (auto& [xferId, t] : ib->reads) keys.push_back(t->key);
  for (uint64_t key : keys) {
    auto it = serves_.find(key);
    if (it != serves_.end()) PumpServe(*it->second);
  }
  auto again = inbound_.find(h.route.id);
  if (again != inbound_.end()) MaybeFinishInboundClose(*again->second);
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

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

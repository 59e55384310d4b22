// UcxEngine, the handshake (wire protocol 3):
//
//   initiator                                    target
//   kHello {connId, token_i, nonce_i, ts, mac}  ->   checks version (and with a shared secret: key
//                                                    id, ts within 60 s, nonce never seen, mac)
//                                                    BEFORE it parses the initiator's address
//                                               <-   kHelloAck {inboundId, token_t, nonce_t, mac}
//                                                    + the grant (its regions, as far as it trusts
//                                                    this peer: see grant.h)
//   checks the mac (the target holds the secret
//   and answers this hello), then
//   kAuth {mac over nonce_t, nonce_i}           ->   serves nothing to this connection until then
//
// Without a shared secret the macs are absent and the target serves at once (the deployment
// chose not to authenticate; the grant still comes from the target, not from metadata).
// Every later message carries the receiver's route (id + token), checked before anything else.
#ifdef KVWIRE_HAVE_UCX
#include <unistd.h>

#include <cstring>

#include "engine/address_check.h"
#include "engine/grant.h"
#include "engine/process.h"
#include "engine/ucx_internal.h"

namespace kvwire {

namespace {

constexpr const char* kHelloDomain = "kvwire hello v3";
constexpr const char* kAckDomain = "kvwire ack v3";
constexpr const char* kAuthDomain = "kvwire auth v3";

Digest HelloMac(const std::string& key, wire::HelloHdr h, const uint8_t* data, size_t len) {
  std::memset(h.mac, 0, sizeof h.mac);
  return Mac(key, kHelloDomain, {{&h, sizeof h}, {data, len}});
}

Digest AckMac(const std::string& key, const uint8_t* helloNonce, wire::HelloAckHdr h, const void* data, size_t len) {
  std::memset(h.mac, 0, sizeof h.mac);
  return Mac(key, kAckDomain, {{helloNonce, wire::kNonceBytes}, {&h, sizeof h}, {data, len}});
}

Digest AuthMac(const std::string& key, const uint8_t* ackNonce, const uint8_t* helloNonce, const wire::Route& r) {
  return Mac(key, kAuthDomain, {{ackNonce, wire::kNonceBytes}, {helloNonce, wire::kNonceBytes}, {&r, sizeof r}});
}

}  // namespace

// ---- Routes -----------------------------------------------------------------------------------

UcxEngine::Inbound* UcxEngine::InboundFor(const wire::Route& r, bool serving) {
  auto it = inbound_.find(r.id);
  if (it == inbound_.end()) return nullptr;
  Inbound& ib = *it->second;
  uint8_t a[8], b[8];
  std::memcpy(a, &r.token, 8);
  std::memcpy(b, &ib.token, 8);
  if (!DigestEqual(a, b, 8)) return nullptr;
  if (serving && ib.state != Inbound::State::kServing) return nullptr;
  return &ib;
}

UcxEngine::Outbound* UcxEngine::OutboundFor(const wire::Route& r) {
  auto it = outbound_.find(r.id);
  if (it == outbound_.end()) return nullptr;
  Outbound& ob = *it->second;
  uint8_t a[8], b[8];
  std::memcpy(a, &r.token, 8);
  std::memcpy(b, &ob.token, 8);
  if (!DigestEqual(a, b, 8) || ob.state == Outbound::State::kConnecting) return nullptr;
  return &ob;
}

// ---- Initiator: hello, the target's answer, our proof ----------------------------------------

void UcxEngine::SendHello(Outbound& ob) {
  wire::HelloHdr h{};
  h.version = wire::kProtocolVersion;
  h.connId = ob.id;
  h.pid = static_cast<uint32_t>(getpid());
  h.pidStart = opts_.pidStart;
  h.token = ob.token;
  h.nameLen = static_cast<uint32_t>(opts_.name.size());
  h.addrLen = static_cast<uint32_t>(address_.size());
  h.hostLen = static_cast<uint32_t>(opts_.hostId.size());
  std::memcpy(h.nonce, ob.nonce, sizeof h.nonce);
  std::string data = opts_.name + address_ + opts_.hostId;
  if (ob.keyIndex >= 0) {
    const AuthKey& k = opts_.auth.at(ob.keyIndex);
    h.flags = wire::kHelloAuthenticated;
    h.tsMs = WallMs();
    std::memcpy(h.keyId, k.id.data(), sizeof h.keyId);
    Digest m = HelloMac(k.key, h, reinterpret_cast<const uint8_t*>(data.data()), data.size());
    std::memcpy(h.mac, m.data(), sizeof h.mac);
  }
  uint32_t peerId = ob.id;
  SendControl(ob.ep, wire::kHello, &h, sizeof h, data.data(), data.size(), [this, peerId](ucs_status_t st) {
    if (st == UCS_OK) return;
    // Possibly inside UCX (a forced close completes the send at once): the connection ends later.
    deferred_.push_back([this, peerId, st] {
      auto it = outbound_.find(peerId);
      if (it != outbound_.end()) {
        OutboundLost(*it->second, code::kPeerUnreachable, "sending the handshake failed: " + UcsMessage(st));
      }
    });
  });
}

void UcxEngine::HandleHelloAck(const wire::HelloAckHdr& h, const uint8_t* data, size_t len) {
  auto it = outbound_.find(h.connId);
  if (it == outbound_.end() || it->second->state != Outbound::State::kConnecting) return;
  Outbound& ob = *it->second;
  uint8_t a[8], b[8];
  std::memcpy(a, &h.initiatorToken, 8);
  std::memcpy(b, &ob.token, 8);
  if (!DigestEqual(a, b, 8)) return;  // not an answer to our hello
  if (ob.keyIndex >= 0) {
    Digest m = AckMac(opts_.auth.at(ob.keyIndex).key, ob.nonce, h, data, len);
    if (!DigestEqual(m.data(), h.mac, sizeof h.mac)) {
      Abandon(ob, wire::Route{h.inboundId, 0, h.token});
      OutboundLost(ob, code::kUnauthorized,
                   "'" + ob.info->name + "' answered without proving it holds the shared secret; " +
                       "both agents need the same auth.secret");
      return;
    }
  }
  if (h.status != static_cast<int32_t>(WireStatus::kOk)) {
    std::string why(reinterpret_cast<const char*>(data), std::min<size_t>(len, 1024));
    OutboundLost(ob, code::kPeerUnreachable,
                 "'" + ob.info->name +
                     "' refused the connection: " + (why.empty() ? std::string("the handshake was bad") : why));
    return;
  }
  // The process that answered must be the one the metadata names: the pid is what cross-memory
  // attach and the liveness watch use, so forged metadata must not point them at another process.
  if (h.pid != ob.info->pid || (ob.info->pidStart != 0 && h.pidStart != 0 && h.pidStart != ob.info->pidStart)) {
    Abandon(ob, wire::Route{h.inboundId, 0, h.token});
    OutboundLost(ob, code::kBadMetadata,
                 "bad metadata: it names process " + std::to_string(ob.info->pid) + " of '" + ob.info->name +
                     "', but process " + std::to_string(h.pid) +
                     " answered at its address; the metadata was altered or is stale: fetch it again");
    return;
  }
  ob.inboundId = h.inboundId;
  ob.peerToken = h.token;
  ob.beaconFd =
      h.beaconFd > 0 && h.beaconFd <= static_cast<uint32_t>(INT32_MAX) ? static_cast<int>(h.beaconFd - 1) : -1;
  // One-sided access needs the target's grant, a same-host peer whose process is watched (no pid
  // reuse) over shared memory, and this agent willing to use it.
  ob.oneSided = (h.flags & wire::kAckOneSided) != 0 && ob.sameHost && ob.pidfd.valid() &&
                (ob.lanes.category == "sm" || ob.lanes.category == "self") && opts_.protocol != "am";
  // Cross-memory attach is this engine's own system call (process_vm_*), not a UCX lane: it is
  // offered when both agents' UCX has cma configured (UCX_TLS), whichever lanes UCX chose (an
  // endpoint with peer error handling uses posix shared memory alone).
  const auto* peerAddress = reinterpret_cast<const uint8_t*>(ob.info->address.data());
  const auto* ownAddress = reinterpret_cast<const uint8_t*>(address_.data());
  ob.cma = ob.oneSided && (ob.lanes.detail.find("cma/") != std::string::npos ||
                           (OffersTransport(peerAddress, ob.info->address.size(), "cma") &&
                            OffersTransport(ownAddress, address_.size(), "cma")));
  if (ob.keyIndex >= 0) {
    wire::AuthHdr auth{};
    auth.route = ob.RouteOut();
    Digest m = AuthMac(opts_.auth.at(ob.keyIndex).key, h.nonce, ob.nonce, auth.route);
    std::memcpy(auth.mac, m.data(), sizeof auth.mac);
    SendControl(ob.ep, wire::kAuth, &auth, sizeof auth, nullptr, 0);
  }
  // JavaScript checks the grant against the metadata it was given, then attaches (or disconnects).
  ob.state = Outbound::State::kAttaching;
  EngineEvent e{EngineEvent::Kind::kHandshaked};
  e.id = ob.id;
  e.connection = ConnectionInfo{ob.lanes.category, ob.lanes.detail, ob.oneSided ? "rma" : "am", ""};
  e.bytes.assign(data, data + len);
  e.aux = ob.oneSided ? 1 : 0;
  Emit(std::move(e));
}

void UcxEngine::Abandon(Outbound& ob, const wire::Route& route) {
  // The target answered and keeps a connection for us until we say goodbye: without this, every
  // handshake given up after its answer (altered metadata, a timeout) would leave the target an
  // endpoint toward this worker, to which it would say goodbye only when it closes.
  if (!ob.ep) return;
  wire::ByeHdr bye{route, 0};
  SendControl(ob.ep, wire::kBye, &bye, sizeof bye, nullptr, 0);
  RetireEp(std::move(ob.ep), true, kCloseGraceMs);  // flushed: the goodbye gets out first
}

// ---- Target: a hello, our answer, the initiator's proof ---------------------------------------

bool UcxEngine::TrustsOneSided(uint32_t pid, bool sameHost, bool watched, const LaneInfo& lanes) const {
  // The paths the target cannot check are offered only where the kernel already lets the peer do
  // as much (same host, same user) and the deployment allows them.
  return opts_.directAccess && sameHost && watched && (lanes.category == "sm" || lanes.category == "self") &&
         SameUser(pid);
}

void UcxEngine::HandleHello(const wire::HelloHdr& h, const uint8_t* data, size_t len) {
  uint64_t total = static_cast<uint64_t>(h.nameLen) + h.addrLen + h.hostLen;
  if (total != len || h.addrLen == 0 || h.nameLen > 4096 || h.hostLen > 4096) return;  // malformed: drop
  int keyIndex = -1;
  const bool otherVersion = h.version != wire::kProtocolVersion;
  if (opts_.auth.enabled()) {
    // Nothing the hello says is used (or parsed by UCX) before it is proven to come from a holder
    // of the secret, fresh, and seen once.
    bool ok = !otherVersion && (h.flags & wire::kHelloAuthenticated) != 0;
    if (ok) keyIndex = opts_.auth.Find(h.keyId);
    if (keyIndex < 0) ok = false;
    if (ok) {
      Digest m = HelloMac(opts_.auth.at(keyIndex).key, h, data, len);
      ok = DigestEqual(m.data(), h.mac, sizeof h.mac) && replay_.Admit(h.nonce, sizeof h.nonce, h.tsMs, WallMs());
    }
    if (!ok) {
      uint64_t now = NowNs();
      if (now - lastAuthWarnNs_ > 10000000000ull || lastAuthWarnNs_ == 0) {
        lastAuthWarnNs_ = now;
        EngineEvent w{EngineEvent::Kind::kWarning};
        w.text =
            "refused a connection that did not prove it holds this agent's secret (unsigned, another key, "
            "a clock more than 60 s off, or a replayed handshake); further refusals for 10 s are not reported";
        Emit(std::move(w));
      }
      return;
    }
  }
  if (inbound_.size() >= kMaxInbound) return;
  std::string address(reinterpret_cast<const char*>(data) + h.nameLen, h.addrLen);
  std::string why;
  if (!CheckWorkerAddress(reinterpret_cast<const uint8_t*>(address.data()), address.size(), &why, &addressRules_)) {
    return;
  }
  if (otherVersion) {
    // Told why, so the initiator's message says what to do (an older kvwire reads the first three
    // fields of the answer, which every version lays out alike).
    LaneInfo lanes;
    std::string error;
    UcpEndpoint ep = CreateEp(address, false, NewOwner(false, 0), &lanes, &error);
    if (!ep) return;
    wire::HelloAckHdr ack{};
    ack.connId = h.connId;
    ack.status = static_cast<int32_t>(WireStatus::kInvalid);
    ack.initiatorToken = h.token;
    std::string msg = "it speaks kvwire wire protocol " + std::to_string(wire::kProtocolVersion) + ", this agent " +
                      std::to_string(h.version) + "; run the same kvwire release on both sides";
    SendControl(ep, wire::kHelloAck, &ack, sizeof ack, msg.data(), msg.size());
    RetireEp(std::move(ep), true, kCloseGraceMs);
    return;
  }
  auto ib = std::make_unique<Inbound>();
  ib->id = nextInbound_++;
  ib->connId = h.connId;
  ib->peerToken = h.token;
  ib->token = RandomToken();
  ib->keyIndex = keyIndex;
  std::memcpy(ib->peerNonce, h.nonce, sizeof ib->peerNonce);
  RandomBytes(ib->nonce, sizeof ib->nonce);
  ib->name.assign(reinterpret_cast<const char*>(data), h.nameLen);
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
  ib->ep = CreateEp(address, sameHost, ib->owner, &ib->lanes, &error);
  if (!ib->ep) {
    if (ib->pidfd.valid()) UnwatchFd(ib->pidfd.get());
    EngineEvent w{EngineEvent::Kind::kWarning};
    w.text = "could not answer '" + ib->name + "': " + error;
    Emit(std::move(w));
    return;
  }
  ib->oneSided = TrustsOneSided(h.pid, sameHost, ib->pidfd.valid(), ib->lanes);
  std::string grant = BuildGrant(ib->oneSided);
  wire::HelloAckHdr ack{};
  ack.connId = h.connId;
  ack.inboundId = ib->id;
  ack.status = static_cast<int32_t>(WireStatus::kOk);
  ack.flags = ib->oneSided ? wire::kAckOneSided : 0;
  ack.initiatorToken = h.token;
  ack.token = ib->token;
  ack.pid = static_cast<uint32_t>(getpid());
  ack.pidStart = opts_.pidStart;
  ack.beaconFd = ib->oneSided && beacon_ != nullptr ? static_cast<uint32_t>(beacon_->fd()) + 1 : 0;
  std::memcpy(ack.nonce, ib->nonce, sizeof ack.nonce);
  if (keyIndex >= 0) {
    Digest m = AckMac(opts_.auth.at(keyIndex).key, h.nonce, ack, grant.data(), grant.size());
    std::memcpy(ack.mac, m.data(), sizeof ack.mac);
    ib->state = Inbound::State::kAwaitingAuth;
    ib->authDeadlineNs = DeadlineFrom(NowNs(), kAuthTimeoutMs);
  } else {
    ib->state = Inbound::State::kServing;
  }
  ucp_ep_h ep = ib->ep;
  inbound_[ib->id] = std::move(ib);
  SendControl(ep, wire::kHelloAck, &ack, sizeof ack, grant.data(), grant.size());
}

void UcxEngine::HandleAuth(const wire::AuthHdr& h) {
  Inbound* ib = InboundFor(h.route, false);
  if (ib == nullptr || ib->state != Inbound::State::kAwaitingAuth || ib->keyIndex < 0) return;
  Digest m = AuthMac(opts_.auth.at(ib->keyIndex).key, ib->nonce, ib->peerNonce, h.route);
  if (!DigestEqual(m.data(), h.mac, sizeof h.mac)) return;  // stays unserved, forgotten at its deadline
  ib->state = Inbound::State::kServing;
}

std::string UcxEngine::BuildGrant(bool oneSided) {
  GrantWriter w(oneSided, regions_.maxId(), opts_.name);
  regions_.ForEach([&](LocalRegion& r) {
    if (r.access() == kAccessNone) {
      // Not exported: no length, no label, no key, nothing but "this id is taken", so that metadata
      // naming it (a guessed id) is refused outright rather than taken for a deregistered region.
      w.Add(r.id(), 0, 0, 0, std::string(), std::string());
      return;
    }
    uint8_t kind =
        static_cast<uint8_t>(r.access()) | (r.onDevice() ? kGrantDevice : 0) | (r.allocated() ? kGrantMappable : 0);
    uint64_t base = oneSided ? reinterpret_cast<uint64_t>(r.base()) : 0;
    w.Add(r.id(), kind, r.length(), base, r.label(), r.GrantKey(oneSided));
  });
  return w.Finish();
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

// UcxEngine messages: sending control messages, and the dispatch of every incoming active
// message to its handler. Data messages are handled inside UCX's callback (where a rendezvous
// payload can still be received in place); control messages after progress returns (they create
// endpoints and send answers). kAuth is handled inline too: it must take effect before the data
// messages that follow it on the same endpoint.
#ifdef KVWIRE_HAVE_UCX
#include <cstring>

#include "engine/ucx_internal.h"

namespace kvwire {

namespace {

struct ControlBlock {
  UcxEngine* engine;
  std::string buf;
  std::function<void(ucs_status_t)> done;
};

template <typename H>
const H* HeaderAs(const void* header, size_t len) {
  return len >= sizeof(H) ? static_cast<const H*>(header) : nullptr;
}

}  // namespace

void UcxEngine::SendControl(ucp_ep_h ep, uint16_t amId, const void* hdr, size_t hdrLen, const void* data,
                            size_t dataLen, std::function<void(ucs_status_t)> done) {
  if (ep == nullptr) {  // retired already (a message handled while shutting down): nobody to tell
    if (done) done(UCS_ERR_NOT_CONNECTED);
    return;
  }
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

uint32_t UcxEngine::DataFlags(bool peerErrors, size_t len) const {
  if (!peerErrors) return UCP_AM_SEND_FLAG_EAGER;
  return len >= opts_.rndvThreshold ? UCP_AM_SEND_FLAG_RNDV : 0;
}

ucs_status_t UcxEngine::OnAm(uint16_t id, const void* header, size_t headerLen, void* data, size_t len,
                             const ucp_am_recv_param_t* param) {
  // Shutting down, every endpoint retired: messages still arriving (a peer's goodbye) act on
  // nothing (UCX drops a rendezvous descriptor not received).
  if (draining_) return UCS_OK;
  bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  // Data messages: handled here, where a rendezvous descriptor can still be received in place.
  // Each handler checks the route before anything else.
  switch (id) {
    case wire::kWrite:
      if (auto* h = HeaderAs<wire::WriteHdr>(header, headerLen)) return HandleWrite(*h, data, len, param);
      return UCS_OK;
    case wire::kReadData:
      if (auto* h = HeaderAs<wire::ReadDataHdr>(header, headerLen)) return HandleReadData(*h, data, len, param);
      return UCS_OK;
    case wire::kWriteBatch:
      if (auto* h = HeaderAs<wire::WriteBatchHdr>(header, headerLen)) return HandleWriteBatch(*h, data, len, param);
      return UCS_OK;
    case wire::kReadDataBatch:
      if (auto* h = HeaderAs<wire::ReadDataBatchHdr>(header, headerLen)) {
        return HandleReadDataBatch(*h, data, len, param);
      }
      return UCS_OK;
    default:
      break;
  }
  // Control messages are always eager; a rendezvous one is malformed: drop it.
  if (rndv) return UCS_OK;
  if (id == wire::kAuth) {
    if (auto* h = HeaderAs<wire::AuthHdr>(header, headerLen)) HandleAuth(*h);
    return UCS_OK;
  }
  if (id == wire::kHelloAck && headerLen >= 12 && headerLen < sizeof(wire::HelloAckHdr)) {
    // An older kvwire refusing our hello: its answer is connId, inboundId, status (12 bytes).
    uint32_t connId;
    std::memcpy(&connId, header, 4);
    deferred_.push_back([this, connId] {
      auto it = outbound_.find(connId);
      if (it == outbound_.end() || it->second->state != Outbound::State::kConnecting) return;
      OutboundLost(*it->second, code::kPeerUnreachable,
                   "'" + it->second->info->name + "' refused the connection: it speaks an older kvwire wire protocol " +
                       "(this one speaks " + std::to_string(wire::kProtocolVersion) +
                       "); run the same kvwire release on both sides");
    });
    return UCS_OK;
  }
  std::string hdr(static_cast<const char*>(header), headerLen);
  std::string body(static_cast<const char*>(data), data != nullptr ? len : 0);
  // Handled after progress returns: they create endpoints and send answers.
  deferred_.push_back([this, id, hdr = std::move(hdr), body = std::move(body)] {
    if (draining_) return;  // received before shutdown retired the endpoints, run after: moot
    const auto* d = reinterpret_cast<const uint8_t*>(body.data());
    switch (id) {
      case wire::kHello:
        if (auto* h = HeaderAs<wire::HelloHdr>(hdr.data(), hdr.size())) HandleHello(*h, d, body.size());
        break;
      case wire::kHelloAck:
        if (auto* h = HeaderAs<wire::HelloAckHdr>(hdr.data(), hdr.size())) HandleHelloAck(*h, d, body.size());
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

// Engine-thread state of UcxEngine: connections, transfers, served reads. Private to engine/*.cc.
#pragma once
#ifdef KVWIRE_HAVE_UCX
#include <unordered_set>

#include "engine/cuda_state.h"
#include "engine/ucx_engine.h"
#include "util/clock.h"

namespace kvwire {

// Passed to UCX as the endpoint error handler's argument. Lives until the endpoint is destroyed
// (its close request completed): UCX may report an error on an endpoint up to then.
struct UcxEngine::EpOwner {
  enum class Kind : uint8_t { kOutbound, kInbound } kind;
  uint32_t id;
  UcxEngine* engine;
};

// A peer this agent connected to (the initiator side of transfers).
//
// Life: kConnecting (hello sent) -> kAttaching (the target accepted and granted its regions;
// JavaScript checks the grant against the metadata) -> kConnected -> kClosing (disconnect: goodbye
// sent, waiting for the target's goodbye and for this side's operations to end) -> gone; or kLost
// (the peer died, closed, or a deadline passed with operations stuck) -> gone when disconnected.
struct UcxEngine::Outbound {
  uint32_t id = 0;
  std::shared_ptr<PeerInfo> info;
  UcpEndpoint ep;  // empty once retired (RetireEp)
  EpOwner* owner = nullptr;
  enum class State : uint8_t { kConnecting, kAttaching, kConnected, kClosing, kLost } state = State::kConnecting;
  uint64_t token = 0;                     // ours: the target puts it in every message to us
  uint64_t peerToken = 0;                 // the target's: we put it in every message to it
  uint32_t inboundId = 0;                 // the target's id for the connection, from its HelloAck
  uint8_t nonce[wire::kNonceBytes] = {};  // our hello's, bound into the target's answer
  int keyIndex = -1;                      // the auth key of the handshake, -1 without authentication
  bool oneSided = false;                  // the target granted one-sided access (mapped memory, cross-memory attach)
  bool cma = false;                       // ... and the kernel lets this process reach it (UCX chose cma)
  bool sameHost = false;
  LaneInfo lanes;
  UniqueFd pidfd;
  int beaconFd = -1;  // the target's liveness beacon, a descriptor of its process (from its HelloAck)
  uint64_t connectDeadlineNs = 0;
  uint64_t closeDeadlineNs = 0;                 // kClosing: torn down at the latest then
  bool byeReceived = false;                     // kClosing: the target said it is quiet
  std::unordered_map<uint32_t, UcpRkey> rkeys;  // destroyed with the Outbound, before the worker
  std::unordered_set<uint64_t> xfers;           // transfers not finished
  uint32_t liveXfers = 0;                       // transfers not reaped (operations may be in flight)
  std::string lostCode, lostReason;
  std::shared_ptr<cuda::PeerCuda> cuda;  // CUDA path and IPC mappings (set when connected)
  wire::Route RouteOut() const { return wire::Route{inboundId, 0, peerToken}; }
  bool Usable() const { return state == State::kConnected; }
};

// A WRITE being received by this agent (target side), keyed by the initiator's transfer id.
struct UcxEngine::WriteRecord {
  uint32_t landed = 0;       // descriptors placed (or rejected)
  uint32_t pendingRecv = 0;  // rendezvous receives in flight
  bool finReceived = false;
  uint32_t expected = 0;
  bool hasNotify = false;
  std::string notify;
  WireStatus status = WireStatus::kOk;
  uint32_t badIndex = 0;
  std::string badMessage;
  bool nackSent = false;
  uint64_t deadlineNs = 0;
};

// A peer that connected to this agent (the target side of transfers).
//
// Life: kAwaitingAuth (answered its hello; with authentication, serves nothing until kAuth proves
// it holds the secret) -> kServing -> kClosing (it said goodbye: operations for it are left to
// finish, then goodbye back) -> gone; or lost (died, deadline passed with operations stuck) -> gone.
struct UcxEngine::Inbound {
  uint32_t id = 0;
  uint32_t connId = 0;  // the initiator's id for this connection
  std::string name;
  LaneInfo lanes;
  UcpEndpoint ep;  // our endpoint back to the initiator, for answers; empty once retired
  EpOwner* owner = nullptr;
  UniqueFd pidfd;
  enum class State : uint8_t { kAwaitingAuth, kServing, kClosing } state = State::kAwaitingAuth;
  uint64_t token = 0;                         // ours: the initiator puts it in every message to us
  uint64_t peerToken = 0;                     // the initiator's
  uint8_t nonce[wire::kNonceBytes] = {};      // our challenge (kHelloAck)
  uint8_t peerNonce[wire::kNonceBytes] = {};  // the initiator's (kHello)
  int keyIndex = -1;
  bool oneSided = false;         // granted one-sided access: it may map our allocated memory and attach ours
  uint64_t authDeadlineNs = 0;   // kAwaitingAuth: forgotten then
  uint64_t closeDeadlineNs = 0;  // kClosing: torn down at the latest then
  std::unordered_map<uint64_t, WriteRecord> writes;
  std::unordered_map<uint64_t, ServeTask*> reads;
  wire::Route RouteOut() const { return wire::Route{connId, 0, peerToken}; }
};

// A transfer this agent initiated.
//
// Life (XferPhase; every move goes through UcxEngine::MoveXfer, and XferMoveAllowed in
// ucx_initiator.cc lists the legal ones):
//   kPosting -> kAwaitingTarget     AM: WRITE sent every descriptor and its FIN; READ sent its request
//   kAwaitingTarget -> kReceiving   READ: the target's FIN said every byte was pushed
//   kAwaitingTarget -> kLanded      WRITE: the target's ack (landed, and the notification that rode
//                                   in the FIN delivered)
//   kPosting | kReceiving -> landed one-sided or CUDA copies done, or a READ's data all in: then
//                                   kNotifying (a notification to send) -> kLanded once sent,
//                                   or kLanded at once
//   kLanded -> kFinished            success reported
//   any of the above -> kFinished   failed, cancelled, timed out, or its peer was lost
// kFinished means reported (to JavaScript; a staging sub-transfer to its parent) with nothing in
// flight: the Xfer is reaped (destroyed) at once. It is kDraining instead when UCX operations or
// CUDA copies are still in flight: reaped when the last one ends, and a top-level transfer then
// reports kTransferQuiesced.
enum class XferPhase : uint8_t { kPosting, kAwaitingTarget, kReceiving, kNotifying, kLanded, kFinished, kDraining };
struct UcxEngine::Xfer {
  using Phase = XferPhase;
  UcxEngine* engine = nullptr;
  std::unique_ptr<TransferRequest> req;
  Phase phase = Phase::kPosting;
  bool rma = false;               // the path: one-sided (memcpy, cross-memory attach), else AM or CUDA
  bool touched = false;           // in touched_, for ProcessTouched (not a phase: any phase may be queued)
  ucs_status_t opError = UCS_OK;  // first failed operation, turned into an error after progress
  uint64_t deadlineNs = 0, startNs = 0, postedNs = 0;
  uint32_t next = 0;       // next descriptor to post
  uint64_t partDone = 0;   // one-sided copies: bytes of descriptor `next` already copied
  uint32_t inflight = 0;   // UCX requests outstanding that point at this Xfer
  uint32_t completed = 0;  // descriptors completed locally
  std::vector<wire::WriteHdr> whdrs;
  std::vector<wire::ReadItem> items;
  std::vector<uint8_t> got;
  uint32_t gotCount = 0;
  std::shared_ptr<cuda::XferCuda> cuda;  // CUDA IPC or staging state (null for host transfers)
  // Its success, held back from the event sink while the posting thread waits for it
  // (UcxEngine::AwaitCompletion): handed over when the Xfer is reaped, else emitted then.
  std::unique_ptr<EngineEvent> heldDone;

  bool Finished() const { return phase == Phase::kFinished || phase == Phase::kDraining; }
  // Finished with operations in flight, and reported to JavaScript: kTransferQuiesced is owed.
  bool QuiesceOwed() const { return phase == Phase::kDraining && req->parentId == 0; }
};

// A READ this agent serves for an inbound peer, by pushing the bytes back.
//
// Life (Phase; FinishServe and AnswerServe move it): kServing (pushing) -> kAnswered (every push
// posted and the FIN ok sent; pushes may still be in flight) or kFailed (a FIN with the error: a
// refused or failed push, a deregistered region, the deadline); kAnswered -> kFailed when a push in
// flight fails after all (its error FIN follows the FIN ok). So one FIN ok at most and one error FIN
// at most. `cancelled` is not a phase: the initiator gave up or the connection went, in any phase;
// from then on nothing more is pushed and no FIN is sent. The task is destroyed once it is no
// longer serving (or cancelled) and nothing of it is in flight.
struct UcxEngine::ServeTask {
  enum class Phase : uint8_t { kServing, kAnswered, kFailed };
  UcxEngine* engine = nullptr;
  uint32_t inboundId = 0;
  uint64_t xferId = 0;
  uint64_t key = 0;  // in serves_
  uint64_t bytes = 0;
  ucs_status_t opError = UCS_OK;
  std::vector<wire::ReadItem> items;
  std::vector<uint8_t*> addrs;
  std::vector<void*> memhs;
  std::vector<LocalRegionPtr> regions;  // acquired
  std::vector<wire::ReadDataHdr> hdrs;
  uint32_t next = 0, inflight = 0, completed = 0;
  uint64_t deadlineNs = 0;
  Phase phase = Phase::kServing;
  bool cancelled = false;
  std::vector<int16_t> itemDevice;  // per item: CUDA device of the bytes, -1 host (empty: all host)
  wire::Route route{};              // the initiator's route, carried by every push
  bool peerErrors = true;           // the endpoint has peer error handling (else pushes go eager)

  bool Serving() const { return phase == Phase::kServing; }
};

// A packed message's bytes; back to the engine's pool (when they came from it) on destruction.
struct UcxEngine::PackedBuffer {
  UcxEngine* engine = nullptr;
  std::unique_ptr<uint8_t[]> bytes;
  bool pooled = false;
  PackedBuffer() = default;
  PackedBuffer(PackedBuffer&&) = default;
  PackedBuffer& operator=(PackedBuffer&&) = default;
  ~PackedBuffer() {
    if (pooled && bytes) engine->GivePacked(std::move(bytes));
  }
  uint8_t* data() const { return bytes.get(); }
};

// A packed message in flight (kWriteBatch from an initiator, kReadDataBatch from a target): UCX
// reads its header and buffer until the send completes.
struct UcxEngine::PackedSend {
  Xfer* xfer = nullptr;        // kWriteBatch
  ServeTask* serve = nullptr;  // kReadDataBatch
  uint32_t count = 0;
  wire::WriteBatchHdr whdr{};
  wire::ReadDataBatchHdr rhdr{};
  PackedBuffer buf;
};

// A packed message arriving by rendezvous into a buffer of its own, scattered when complete.
struct UcxEngine::PackedRecv {
  UcxEngine* engine = nullptr;
  Xfer* xfer = nullptr;    // kReadDataBatch (this agent initiated the READ)
  uint32_t inboundId = 0;  // kWriteBatch (this agent is the WRITE's target)
  uint64_t xferId = 0;
  uint32_t first = 0, count = 0;
  uint64_t length = 0;
  PackedBuffer buf;
};

struct UcxEngine::Command {
  enum class Kind : uint8_t { kConnect, kAttach, kDisconnect, kPost, kCancel, kNotify, kRevoke } kind;
  uint32_t peerId = 0;
  uint64_t id = 0;
  uint32_t timeoutMs = 0;
  std::shared_ptr<PeerInfo> info;
  std::unique_ptr<TransferRequest> req;
  std::string text;
  const char* code = nullptr;
};

// epoll tags: the kind in the top byte, an id in the low 32 bits.
enum class FdTag : uint8_t { kWakeup = 1, kWorker = 2, kOutboundPid = 3, kInboundPid = 4 };
inline uint64_t MakeTag(FdTag k, uint32_t id) {
  return (static_cast<uint64_t>(k) << 56) | id;
}
inline FdTag TagKind(uint64_t t) {
  return static_cast<FdTag>(t >> 56);
}
inline uint32_t TagId(uint64_t t) {
  return static_cast<uint32_t>(t);
}

// How long a connection being closed waits for the other end's goodbye and for its own
// operations to end before it is torn down anyway (the peer is unresponsive or partitioned).
inline constexpr uint32_t kCloseGraceMs = 2000;
// How long after a transfer's deadline its operations may still run before the connection they
// use is closed by force to end them (quiesced must resolve in bounded time: UCX cannot cancel a
// send in flight, only an endpoint).
inline constexpr uint32_t kQuiesceGraceMs = 2000;
// How long a target waits for an authenticated initiator's answer to its challenge.
inline constexpr uint32_t kAuthTimeoutMs = 30000;
// Largest number of inbound connections a target keeps (beyond, hellos are dropped).
inline constexpr size_t kMaxInbound = 4096;

inline uint64_t DeadlineFrom(uint64_t now, uint32_t timeoutMs) {
  return now + static_cast<uint64_t>(timeoutMs) * 1000000ull;
}

std::string UcsMessage(ucs_status_t st);

}  // namespace kvwire
#endif

// UcxEngine: one UCX context + worker, run by a dedicated engine thread.
//
// Threading: every UCX call on the worker (endpoints, transfers, progress) happens in a turn of the
// engine (Turn), under turnMu_; the JS thread talks to the engine through a command queue and an
// eventfd, and hears back through an event sink (a ThreadSafeFunction in the addon). The turns are
// the engine thread's, except while the JS thread waits for a small transfer it just posted
// (AwaitCompletion): then it runs them itself, and the engine thread steps aside (Park) while such
// waits keep coming. Memory registration is a context-level call and runs on the JS thread (the
// context is created with mt_workers_shared so that is safe).
//
// Idle behaviour: after progress finds no work for `spinUs`, the thread arms the worker and sleeps
// in epoll on the worker's event fd, the command eventfd and the liveness fds of same-host peers,
// with a timeout at the nearest deadline. An idle agent therefore uses no CPU.
//
// Data paths, chosen per peer from what the target granted and the lanes UCX selected:
//   one-sided (same-host peers the target trusts, over shared memory): a memcpy into the peer's
//        shared memory mapped here (regions it allocated), or cross-memory attach (process_vm_*)
//        for regions it registered. The target cannot check these: the kernel lets any process of
//        the same user do as much; see docs/SECURITY.md.
//   active messages (everything else): WRITE sends each descriptor's bytes as an AM that the
//        target validates and receives in place; READ asks the target to serve the descriptors as
//        pushes, which the target validates again.
// UCX's own one-sided operations (put/get) are never used, and the context is created without
// them: UCX serves its software-emulated put/get to any connected peer without a check of any
// kind (any address of this process), so a target must not offer them.
#pragma once
#ifdef KVWIRE_HAVE_UCX
#include <ucp/api/ucp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/address_check.h"
#include "engine/auth.h"
#include "engine/copy_helper.h"
#include "engine/liveness.h"
#include "engine/regions.h"
#include "engine/types.h"
#include "engine/ucx_handles.h"
#include "engine/wire.h"
#include "cuda/device_memory.h"
#include "cuda/plane.h"
#include "util/unique_fd.h"
#include "util/wakeup.h"

namespace kvwire {

// One descriptor pair of a transfer, resolved to addresses on the JS thread.
struct ResolvedDesc {
  uint8_t* local;
  void* memh;  // the local region's ucp_mem_h: UCX uses it instead of its registration cache
  uint64_t length;
  uint32_t remoteRegion;
  uint64_t remoteOffset;
  uint64_t remoteAddr;        // peer's virtual address (remote base + offset)
  uint8_t* remoteMapped;      // the same bytes mapped into this process (shared memory), or nullptr
  int16_t localDevice = -1;   // CUDA device of the local bytes, -1 for host memory
  int16_t remoteDevice = -1;  // the peer's CUDA device of the remote bytes, -1 for host memory
  // remoteMapped is registered memory the peer shares (share.h): like cross-memory attach, a copy
  // is the peer's bytes only while its agent lives, which is checked around it.
  bool remoteShared = false;
};

// Where a transfer this agent initiated is in its life (ucx_internal.h, at UcxEngine::Xfer).
enum class XferPhase : uint8_t;

struct TransferRequest {
  uint64_t id = 0;
  Op op = Op::kRead;
  uint32_t peerId = 0;
  std::vector<ResolvedDesc> descs;
  std::vector<LocalRegionPtr> regions;  // acquired; released when the last operation finishes
  std::string notify;
  bool hasNotify = false;
  uint32_t timeoutMs = 0;
  uint64_t bytes = 0;
  bool cuda = false;      // a descriptor touches device memory: native/engine/cuda_*.cc moves it
  bool forceAm = false;   // remote device memory the target stages: active messages, never RMA
  uint64_t parentId = 0;  // a staging stage's sub-transfer: reports to its parent, not to JS
};

// A descriptor as the caller names it: regions by id, offsets and length, nothing checked yet.
struct DescriptorRef {
  uint32_t localRegion;
  uint64_t localOffset;
  uint32_t remoteRegion;
  uint64_t remoteOffset;
  uint64_t length;
};

// A transfer as the caller asks for it (UcxEngine::Submit). Borrowed for the call only.
struct TransferOrder {
  uint64_t id = 0;
  Op op = Op::kRead;
  uint32_t peerId = 0;
  uint32_t timeoutMs = 0;
  const DescriptorRef* descs = nullptr;
  size_t count = 0;
  bool hasNotify = false;
  const uint8_t* notify = nullptr;  // the notification's bytes (hasNotify)
  size_t notifyLength = 0;
  // No other transfer of the agent is pending (its caller's view): the posting thread may wait for
  // this one's completion (UcxEngine::WantsCompletionWait). False holds no post back.
  bool alone = true;
};

// What UcxEngine::Submit did with a transfer: refused it (`code` set, `message` says why), moved it
// on the calling thread (`completed`: done, no event follows), or queued it for the engine thread
// (kTransferDone follows).
struct SubmitResult {
  const char* code = nullptr;
  std::string message;
  bool completed = false;
};

struct EngineOptions {
  std::string name;
  std::string transports;             // UCX_TLS value; empty: UCX_TLS from the environment, else UCX's default
  std::string protocol = "auto";      // auto | rma | am ('am': never one-sided access, even if granted)
  AuthKeys auth;                      // empty: peers are not authenticated
  bool directAccess = true;           // grant one-sided access to trusted same-host peers of the same user
  uint32_t spinUs = 100;              // busy-poll this long after the last activity before sleeping
  uint32_t busySpinUs = 2000;         // ... and this long while operations are in flight
  uint64_t rndvThreshold = 16384;     // AM payloads at least this large go by rendezvous (zero copy)
  uint32_t windowOps = 256;           // AM operations in flight per transfer, at most ...
  uint64_t windowBytes = 4u << 20;    // ... and about this many bytes (a few large, many small)
  uint64_t inlineBytes = 1ull << 20;  // mapped/cma transfers up to this size: copied by the caller
  // The posting thread waits up to completionSpinUs for a queued transfer of at most
  // completionSpinBytes to complete (UcxEngine::AwaitCompletion), running the engine's turns
  // itself, instead of hearing of it through the event sink (0: never waits). A 4 KiB round trip
  // over tcp takes ~14-20 µs on 2 vCPUs; up to 16 KiB travels eagerly (rndvThreshold), above it
  // rendezvous adds round trips.
  uint32_t completionSpinUs = 120;
  uint64_t completionSpinBytes = 64u << 10;
  // AM protocol (tcp): runs of descriptors shorter than batchBelow travel packed in one message of
  // at most batchBytes, copied out on one side and scattered on the other (0: every descriptor alone).
  uint64_t batchBelow = uint64_t{128} << 10;
  uint64_t batchBytes = 1u << 20;
  std::string hostId;  // identifies host + pid namespace (liveness checks need both equal)
  uint64_t pidStart = 0;
  cuda::PlaneOptions cuda;  // CUDA path and staging pipeline (AgentOptions.cuda)
};

// Where UCX's endpoint lanes go, classified. `category` is what peer.transport reports.
struct LaneInfo {
  std::string category;     // sm | tcp | rdma | self | unknown
  std::string detail;       // e.g. "sysv/memory+posix/memory+cma/memory"
  bool peerErrors = false;  // created with UCP_ERR_HANDLING_MODE_PEER (UCX reports peer failure)
};

class UcxEngine {
 public:
  using EventSink = std::function<void(std::vector<EngineEvent>&&)>;

  // Creates the context, worker and engine thread. Returns nullptr and sets `error` on failure.
  static std::unique_ptr<UcxEngine> Create(const EngineOptions& opts, EventSink sink, std::string* error);
  ~UcxEngine();
  UcxEngine(const UcxEngine&) = delete;
  UcxEngine& operator=(const UcxEngine&) = delete;

  // ---- JS thread API ----
  const std::string& workerAddress() const { return address_; }
  // A peer's worker address may be given to UCX (address_check.h). Any thread.
  bool CheckPeerAddress(const uint8_t* data, size_t len, std::string* why) const {
    return CheckWorkerAddress(data, len, why, &addressRules_);
  }
  std::string transportsConfigured() const;

  // Registers [base, base+length). On success fills the packed rkey (empty for access 'none').
  bool Register(uint32_t id, const std::string& label, uint8_t* base, uint64_t length, Access access, std::string* rkey,
                std::string* error);
  // Allocates `length` bytes with UCX (shared memory where UCX can: same-host peers then map it and
  // move bytes with one memcpy instead of a system call per operation) and registers them.
  bool Allocate(uint32_t id, const std::string& label, uint64_t length, Access access, std::string* rkey,
                uint8_t** base, std::shared_ptr<UcpMemory>* allocation, std::string* error);
  // Deregisters. Returns false with `busyUsers` set when local transfers still use the region.
  // `released` is emitted (kRegionReleased via the sink) when no operation can touch the memory.
  bool Deregister(uint32_t id, uint32_t* busyUsers, bool* known);
  // The keys a device region is granted with (built in TypeScript just after registerDevice).
  bool SetGrantKeys(uint32_t id, std::string trusted, std::string restricted);
  RegionTable& regions() { return regions_; }
  // Registers validated device memory (native/engine/cuda_memory.cc): with UCX when UCX moves
  // device memory itself, else for the CUDA IPC and staging paths only.
  bool RegisterDevice(uint32_t id, const std::string& label, const cuda::DeviceRange& range, Access access,
                      std::string* rkey, std::string* error);
  // Whether this UCX moves CUDA device memory itself (built with CUDA transports).
  bool ucxCudaMemory() const { return ucxCudaMemory_; }

  // Starts the handshake; the engine reports kHandshaked (with the target's grant), or kConnected
  // with an error.
  void Connect(uint32_t peerId, std::shared_ptr<PeerInfo> info, uint32_t timeoutMs);
  // After kHandshaked: the caller filled peerInfo(peerId)->regions from the checked grant.
  void Attach(uint32_t peerId);
  void Disconnect(uint32_t peerId);
  std::shared_ptr<PeerInfo> peerInfo(uint32_t peerId);
  // Starts a transfer (native/engine/submit.cc): checks every descriptor against the regions and
  // the peer's grant, then moves it right here when it is small and one-sided (it completed), else
  // queues it for the engine thread. A refused transfer moves nothing and holds nothing.
  SubmitResult Submit(const TransferOrder& order);
  uint64_t stagingChunkBytes() const { return opts_.cuda.chunkBytes; }
  void Cancel(uint64_t transferId, const char* code);
  void Notify(uint32_t peerId, std::string message, uint64_t token);

  // Asks the engine thread to close, and returns at once: the thread fails everything in flight
  // with ERR_KVWIRE_CLOSED, says goodbye to peers, frees UCX (bounded: ShutdownOnThread), then
  // reports kClosed through the sink as its last event and ends. Close() after that event only
  // joins a thread that has ended. Idempotent.
  void BeginClose();
  // Closes synchronously, on the calling thread (the environment's exit hook, the destructor, a
  // failed Create): the sink is detached first, the engine thread joined (the whole shutdown, up to
  // ~1.5 s, is waited for here). Idempotent. Returns the events the sink could not deliver any more.
  std::vector<EngineEvent> Close();

 private:
  struct Outbound;
  struct Inbound;
  struct Xfer;
  struct ServeTask;
  struct WriteRecord;
  struct EpOwner;
  struct Command;
  struct AmSlot {
    UcxEngine* engine;
    uint16_t id;
  };

  explicit UcxEngine(const EngineOptions& opts, EventSink sink);
  static uint32_t ProtFor(Access access);
  bool AddRegion(uint32_t id, const std::string& label, uint8_t* base, uint64_t length, Access access, ucp_mem_h memh,
                 std::string* rkey, std::string* error, std::function<void(ucp_mem_h)> unmap, int device = -1,
                 bool allocated = false);
  bool Init(std::string* error);
  void Run();
  // Engine thread: steps aside while a posting thread drives the turns (drives_ moved). True: it
  // parked (look again); false: run a turn.
  bool Park();
  static constexpr long kParkUs = 200;
  // Engine thread: epoll_wait on the engine's fds (worker, wakeup, peers' pidfds), then acts on them
  // under turnMu_.
  void LookAtFds(int timeoutMs);
  // One turn of the engine: commands, progress, deferred work, deadlines, events. Under turnMu_,
  // on the engine thread or on a posting thread that drives the worker while it waits (submit.cc).
  // Returns whether it found anything to do.
  bool Turn();
  // wake: signal a sleeping engine thread (false: the posting thread runs the turns itself).
  void Enqueue(Command&& c, bool wake = true);
  bool DrainCommands();  // false when there was nothing to run
  void Emit(EngineEvent&& e);
  void FlushEvents();
  void CheckDeadlines(uint64_t now);
  uint64_t NextWakeNs() const;
  void ShutdownOnThread();
  // After ShutdownOnThread: every registration released, the engine's hold on the context dropped
  // (on the engine thread, so that close() keeps the JS thread for none of it).
  void ReleaseAfterShutdown();
  void RunDeferred();
  // Every UCX request in flight, so shutdown can cancel what is left and never destroy a worker
  // (or clean up a context) under an operation still using registered memory.
  void Track(void* req) { live_.emplace(req, UcpRequest(req)); }
  void Untrack(void* req) {
    auto it = live_.find(req);
    if (it != live_.end()) live_.erase(it);  // freed by its owner
    else UcpRequest{req}.reset();            // never tracked: freed all the same
  }
  void localUse(uint32_t regionId, int delta);
  // Submit's parts (submit.cc). Resolve: the order's descriptors to addresses, acquiring the local
  // regions into `req`; returns an error code (and `why`) for the first descriptor that fails.
  const char* Resolve(const TransferOrder& order, const PeerInfo& peer, TransferRequest* req, std::string* why);
  // Moves a small host-memory transfer on the calling thread, when every descriptor can go
  // one-sided without the engine thread (shared memory mapped here, or a same-host peer's memory by
  // cross-memory attach) and the transfer is at most inlineBytes (the budget that bounds how long
  // the JS thread is kept: bench/RESULTS.md). True: done, nothing to post (the caller releases the
  // regions). False: nothing is known to have moved; post it (the engine reports any error).
  bool TryInlineCopy(const TransferRequest& req, const PeerInfo& peer) const;
  // Whether the posting thread should wait for a transfer it is about to queue (small enough, and
  // recent waits did not all come back empty-handed).
  bool WantsCompletionWait(const TransferRequest& req);
  // Keeps an inline-copied transfer's request, emptied, for the next Submit (spareRequest_).
  void RecycleRequest(std::unique_ptr<TransferRequest> req);
  // The posting thread waits up to completionSpinUs for queued transfer `id` (claim_ set to it
  // before it was queued), running the engine's turns itself once it holds turnMu_. True: it
  // succeeded and no event follows; false: its kTransferDone follows.
  bool AwaitCompletion(uint64_t id);
  // Whoever runs the turn, when a transfer is reaped: hands a success the posting thread waits for
  // over (true), else false (the caller emits the event).
  bool HandOverCompletion(uint64_t id);
  // Under turnMu_: whether the engine has operations, serves or cleanup under way.
  bool PendingWork() const;
  // Posting thread, turnMu_ just taken: whether it may run the turns (not while closing, with CUDA
  // copies in flight, or with a command other than a transfer's queued); if not, unlocks it.
  bool Drivable(std::unique_lock<std::mutex>& turn);
  uint32_t localUsers(uint32_t regionId);

  // Connections (ucx_connect.cc): endpoints, attach, goodbyes, loss, liveness.
  void DoConnect(uint32_t peerId, const std::shared_ptr<PeerInfo>& info, uint32_t timeoutMs);
  void DoAttach(uint32_t peerId);
  UcpEndpoint CreateEp(const std::string& address, bool sameHost, EpOwner* owner, LaneInfo* lanes, std::string* error);
  // Whether posix shared memory offers peer error handling to this process (see CreateEp).
  static bool PosixPeerErrorsFromEnv();
  LaneInfo DescribeLanes(ucp_ep_h ep);
  void MapRemoteRegions(Outbound& ob);
  void MapSharedWindows(Outbound& ob);
  EpOwner* NewOwner(bool outbound, uint32_t id);
  static void EpErrorCb(void* arg, ucp_ep_h ep, ucs_status_t status);
  void OnEpError(EpOwner* owner, ucs_status_t status);
  // Ends an endpoint. UCX 1.13 destroys an endpoint that has a connection from its peer only when
  // it is closed with FORCE (a flushing close keeps it, and its socket, until the worker is
  // destroyed: a descriptor leaked per connection on each side); and a forced close with
  // operations in flight toward a live peer made UCX on that peer complete them twice (an
  // assertion). So an endpoint is retired: flushed first when `flush` (the peer is alive and
  // quiet), then closed with FORCE once the flush ended or `graceMs` passed. Takes the endpoint
  // from its owner (which is left empty: an endpoint cannot be retired twice); its EpOwner stays
  // in owners_ until the worker is destroyed.
  void RetireEp(UcpEndpoint ep, bool flush, uint32_t graceMs);
  void ProgressRetiring(uint64_t now);
  // The peer is gone (it died, closed its agent, or its operations outlived their deadline): its
  // transfers fail with `code` and the endpoint is closed by force (nothing answers on it).
  void OutboundLost(Outbound& ob, const std::string& code, const std::string& reason);
  void InboundLost(Inbound& ib, const std::string& reason);
  void DoDisconnect(uint32_t peerId);
  // Closing a connection both ends are done with: once this side's operations on it ended and the
  // other end said goodbye (or the grace period passed), the endpoint is retired.
  void MaybeFinishOutboundClose(Outbound& ob);
  void MaybeFinishInboundClose(Inbound& ib);
  void HandleBye(const wire::ByeHdr& h);

  // The handshake (ucx_handshake.cc): hello, challenge, answer, the grant.
  void SendHello(Outbound& ob);
  void HandleHello(const wire::HelloHdr& h, const uint8_t* data, size_t len);
  void HandleHelloAck(const wire::HelloAckHdr& h, const uint8_t* data, size_t len);
  // Gives up a handshake the target already answered: goodbye on `route`, endpoint retired.
  void Abandon(Outbound& ob, const wire::Route& route);
  void HandleAuth(const wire::AuthHdr& h);
  std::string BuildGrant(bool oneSided);
  bool TrustsOneSided(uint32_t pid, bool sameHost, bool watched, const LaneInfo& lanes) const;
  // The connection a message names, when its route matches (id and token) and the peer may use it
  // now (`serving`: past the handshake, not closing); null otherwise, and the message is dropped.
  Inbound* InboundFor(const wire::Route& r, bool serving = true);
  Outbound* OutboundFor(const wire::Route& r);
  // Returns a pidfd for a live same-host process, -1 when not applicable, -2 when it is gone.
  int OpenPidfd(uint32_t pid, uint64_t pidStart);
  void WatchFd(int fd, uint64_t tag);
  void UnwatchFd(int fd);
  void OnLivenessFd(uint64_t tag);
  ucp_rkey_h RkeyFor(Outbound& ob, uint32_t regionId, std::string* error);

  // Initiator side (ucx_initiator.cc)
  static void XferSendCb(void* req, ucs_status_t st, void* ud);
  static void XferRecvCb(void* req, ucs_status_t st, size_t len, void* ud);
  // A UCX operation of `x` covering `count` descriptors finished (a send, or a receive of READ data).
  void OnXferOp(Xfer& x, ucs_status_t st, bool isRecv, uint32_t count = 1);
  // What ucp_*_nbx returned for an operation covering `count` descriptors of `x`: done at once, in
  // flight until its callback, or failed (false: the transfer fails on the next pass).
  bool TrackXferOp(Xfer& x, void* request, uint32_t count);
  void Touch(Xfer& x);
  // Moves `x` to phase `to` when its life allows it (ucx_internal.h); an illegal move is refused.
  void MoveXfer(Xfer& x, XferPhase to);
  // Operations a transfer keeps in flight: windowBytes worth of its average descriptor, between
  // 2 and windowOps. Too many concurrent rendezvous slow tcp down; too few leave the pipe idle.
  uint32_t WindowFor(uint64_t bytes, size_t count) const {
    uint64_t avg = count == 0 ? 1 : std::max<uint64_t>(1, bytes / count);
    uint64_t w = opts_.windowBytes / avg;
    return static_cast<uint32_t>(std::min<uint64_t>(opts_.windowOps, std::max<uint64_t>(2, w)));
  }
  // With packing, the window counts descriptors of a few packed messages: windowBytes worth, uncapped.
  uint32_t PackedWindowFor(uint64_t bytes, size_t count) const {
    uint64_t avg = count == 0 ? 1 : std::max<uint64_t>(1, bytes / count);
    uint64_t w = std::max<uint64_t>(2, opts_.windowBytes / avg);
    return static_cast<uint32_t>(std::max<uint64_t>(WindowFor(bytes, count), std::min<uint64_t>(count, w)));
  }
  void ProcessTouched();
  void StartTransfer(std::unique_ptr<TransferRequest> req);
  void PumpXfer(Xfer& x);
  // One-sided: memcpy into the peer's shared memory mapped here, or cross-memory attach. False:
  // the peer's process is gone; it was declared lost, and `x` failed and was reaped with it.
  bool PostOneSided(Xfer& x, Outbound& ob);
  // AM flags of a data message of `len` bytes: rendezvous above the threshold, except on endpoints
  // without peer error handling (shared memory), where data always goes eager: a rendezvous send
  // to a process that died is never completed or cancelled there by UCX 1.13, and its transfer
  // would never quiesce.
  uint32_t DataFlags(bool peerErrors, size_t len) const;
  void PostAmWrite(Xfer& x, Outbound& ob);
  void PostReadRequest(Xfer& x, Outbound& ob);
  // For SendControl: a control message of transfer `id` that could not be sent fails the transfer.
  std::function<void(ucs_status_t)> FailXferIfUnsent(uint64_t id);
  void MaybeFinishXfer(Xfer& x);
  void SendTransferNotify(Xfer& x);
  void FinishXfer(Xfer& x, const std::string& code, const std::string& msg);
  // Destroys transfer `id` once it is finished with nothing in flight (else leaves it).
  void ReapXfer(uint64_t id);
  void CancelXfer(uint64_t id, const char* code, const std::string& msg);
  // The transfer a target's message names: its route must be the connection's, and the transfer
  // one this agent started on that connection.
  Xfer* XferFor(const wire::Route& r, uint64_t xferId);
  void HandleWriteAck(const wire::StatusHdr& h, const uint8_t* data, size_t len);
  void HandleStatus(const wire::StatusHdr& h, const uint8_t* data, size_t len, const char* what);
  ucs_status_t HandleReadData(const wire::ReadDataHdr& h, void* data, size_t len, const ucp_am_recv_param_t* p);
  void HandleReadFin(const wire::StatusHdr& h, const uint8_t* data, size_t len);
  void HandleRevoke(const wire::RevokeHdr& h);
  void DoNotify(uint32_t peerId, std::string message, uint64_t token);

  // Packed messages of small descriptors over the AM protocol (ucx_batch.cc)
  struct PackedBuffer;
  struct PackedSend;
  struct PackedRecv;
  // Descriptors from `first` (below `end`) that go in one packed message: consecutive ones with
  // length(k) < batchBelow, batchBytes in all, at most `limit`. Below 2: send them one by one.
  uint32_t PackedRun(uint32_t first, uint32_t end, uint32_t limit, uint64_t transferBytes,
                     const std::function<uint64_t(uint32_t)>& length) const;
  // A buffer for a packed message of `size` bytes, from the pool when it fits a pooled buffer; it
  // goes back to the pool when its PackedBuffer is destroyed.
  PackedBuffer TakePacked(size_t size);
  void GivePacked(std::unique_ptr<uint8_t[]> buf);
  size_t PackedCapacity() const;
  // Starts receiving a rendezvous packed message of `len` bytes into a buffer of `pr`'s own, with
  // `cb` (user data: `pr`) on completion; returns what ucp_am_recv_data_nbx returned.
  void* RecvPacked(PackedRecv* pr, void* data, size_t len, ucp_am_recv_data_nbx_callback_t cb);
  bool PostWriteBatch(Xfer& x, Outbound& ob, uint32_t count);
  static void WriteBatchSendCb(void* req, ucs_status_t st, void* ud);
  ucs_status_t HandleWriteBatch(const wire::WriteBatchHdr& h, void* data, size_t len, const ucp_am_recv_param_t* p);
  static void WriteBatchRecvCb(void* req, ucs_status_t st, size_t len, void* ud);
  void ApplyWriteBatch(Inbound& ib, WriteRecord& rec, uint64_t xferId, const uint8_t* data, size_t len, uint32_t count);
  bool PostServeBatch(ServeTask& t, ucp_ep_h ep, uint32_t count);
  static void ServeBatchSendCb(void* req, ucs_status_t st, void* ud);
  ucs_status_t HandleReadDataBatch(const wire::ReadDataBatchHdr& h, void* data, size_t len,
                                   const ucp_am_recv_param_t* p);
  static void ReadBatchRecvCb(void* req, ucs_status_t st, size_t len, void* ud);
  void ScatterReadBatch(Xfer& x, uint32_t first, uint32_t count, const uint8_t* data);

  // Target side (ucx_target.cc)
  WireStatus CheckRemoteAccess(uint32_t regionId, uint64_t offset, uint64_t length, Access need, uint32_t index,
                               LocalRegionPtr* out, std::string* msg);
  static void TargetRecvCb(void* req, ucs_status_t st, size_t len, void* ud);
  static void ServeSendCb(void* req, ucs_status_t st, void* ud);
  // A push of `count` descriptors of `t` finished: count it, then pump the task again.
  void OnServeOp(ServeTask& t, ucs_status_t st, uint32_t count);
  ucs_status_t HandleWrite(const wire::WriteHdr& h, void* data, size_t len, const ucp_am_recv_param_t* p);
  // HandleWrite's descriptor: checked and placed (or refused); the FIN it may carry is not its part.
  ucs_status_t LandWrite(const wire::WriteHdr& h, void* data, size_t len, const ucp_am_recv_param_t* p);
  void HandleWriteFin(const wire::WriteFinHdr& h, const uint8_t* data, size_t len);
  void MaybeAckWrite(Inbound& ib, uint64_t xferId);
  // A receive of WRITE `xferId` from `inboundId` finished: `land` records its outcome in the
  // WRITE's record (skipped when the sender or the record is gone), then the WRITE is acknowledged
  // once complete.
  void WriteRecvDone(uint32_t inboundId, uint64_t xferId, const std::function<void(Inbound&, WriteRecord&)>& land);
  // The record of WRITE `xferId` from inbound peer `inboundId`, created by its first message (and
  // forgotten 5 s after the initiator's deadline); null when the sender is unknown or lost.
  WriteRecord* WriteRecordFor(const wire::Route& route, uint64_t xferId, uint32_t timeoutMs, Inbound** ib);
  // Marks a WRITE failed with the target's reason and answers the initiator once.
  void RefuseWrite(Inbound& ib, WriteRecord& rec, uint64_t xferId, WireStatus st, uint32_t index,
                   const std::string& msg);
  void HandleReadReq(const wire::ReadReqHdr& h, const uint8_t* data, size_t len);
  void PumpServe(ServeTask& t);
  // Ends serving `t` with a FIN (ok, or an error), unless it was answered already.
  void FinishServe(ServeTask& t, WireStatus st, uint32_t index, const std::string& msg);
  // Moves `t` to kAnswered (st ok) or kFailed and sends its FIN, unless it was cancelled.
  void AnswerServe(ServeTask& t, WireStatus st, uint32_t index, const std::string& msg);
  void HandleReadCancel(const wire::ReadCancelHdr& h);
  void HandleNotify(const wire::NotifyHdr& h, const uint8_t* data, size_t len);
  void SendStatus(Inbound& ib, uint16_t amId, uint64_t xferId, WireStatus st, uint32_t index, const std::string& msg);
  void RevokeRegion(uint32_t regionId);
  void SweepTargetState(uint64_t now);

  // ---- CUDA device memory (native/engine/cuda_*.cc) ----
  struct StagedRecv;
  void InitCuda();
  // At connect: picks the peer's CUDA path and opens its IPC handles. False: the forced path is impossible.
  bool SetupPeerCuda(Outbound& ob, std::string* error);
  void PrepareCudaXfer(Xfer& x, Outbound& ob);
  void PumpCudaXfer(Xfer& x, Outbound& ob);
  bool CudaLanded(const Xfer& x) const;
  void OnCudaXferFinished(Xfer& x);
  void PumpIpc(Xfer& x);
  void PlanStaging(Xfer& x, Outbound& ob);
  void PumpStaging(Xfer& x, Outbound& ob);
  bool StartStage(Xfer& x, uint32_t stage);
  // Queues the device copy of a bounced stage: its staging buffer to the device (a READ's landed
  // bytes) or the device into the buffer (a WRITE's, before the wire). On completion the stage moves
  // on, or the transfer takes the copy's error; the buffer is released once idle. False: nothing
  // was queued (*error says why).
  bool SubmitStageCopy(Xfer& x, uint32_t stage, bool toDevice, std::string* error);
  void StartStageChild(Xfer& x, uint32_t stage);
  void OnChildFinished(Xfer& child, const std::string& code, const std::string& msg);
  void OnChildReaped(Xfer& child);
  void TouchStagingWaiters();
  // Target side: device memory received through and served from the target's staging buffers.
  WireStatus CheckStagedWrite(const LocalRegion& r, uint64_t len, uint32_t index, std::string* msg);
  ucs_status_t StagedWrite(Inbound& ib, WriteRecord& rec, const wire::WriteHdr& h, LocalRegionPtr region, void* data,
                           size_t len, const ucp_am_recv_param_t* param);
  void StartStagedRecv(StagedRecv* s);
  static void StagedRecvCb(void* req, ucs_status_t st, size_t len, void* ud);
  void FinishStagedRecv(StagedRecv* s, const std::string& error);
  bool PrepareStagedServe(ServeTask& t, uint32_t* badIndex, std::string* msg);
  bool StageServeItem(ServeTask& t, uint32_t index);
  static void StagedServeSendCb(void* req, ucs_status_t st, void* ud);
  void TargetBufferFreed();
  void ReleaseStagedQueue();

  // Sends a small control AM (eager, header + data copied into a heap block kept until completion).
  void SendControl(ucp_ep_h ep, uint16_t amId, const void* hdr, size_t hdrLen, const void* data, size_t dataLen,
                   std::function<void(ucs_status_t)> done = nullptr);

  static ucs_status_t AmCallback(void* arg, const void* header, size_t headerLen, void* data, size_t len,
                                 const ucp_am_recv_param_t* param);
  ucs_status_t OnAm(uint16_t id, const void* header, size_t headerLen, void* data, size_t len,
                    const ucp_am_recv_param_t* param);

  EngineOptions opts_;
  EventSink sink_;
  ucp_context_h context_ = nullptr;
  std::shared_ptr<ContextRef> ctxRef_;
  UcpWorker worker_;
  std::string address_;
  AddressRules addressRules_;     // what a peer's worker address may hold (address_check.h)
  bool posixPeerErrors_ = false;  // endpoints over posix shared memory can have peer error handling
  int workerFd_ = -1;
  UniqueFd epoll_;
  Wakeup wakeup_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool closed_ = false;

  std::mutex cmdMu_;
  std::deque<Command> commands_;
  std::atomic<bool> hasCommands_{false};
  std::atomic<bool> sleeping_{false};
  // Held by whichever thread runs the engine (Turn): the engine thread for each of its turns, or the
  // posting thread for the whole of a completion wait, during which it runs the turns itself.
  std::mutex turnMu_;
  // Completion waits that ran the turns themselves, counted by the posting thread; the engine thread
  // steps aside (Park) while they keep coming (seenDrives_: the count at its last look, its own).
  std::atomic<uint64_t> drives_{0};
  uint64_t seenDrives_ = 0;

  // The completion the posting thread waits for (submit.cc, AwaitCompletion): 0, or the id of the
  // transfer it waits for, which the engine thread turns into id | kClaimDone when that transfer
  // succeeded (and then emits no kTransferDone for it). Only the posting thread stores ids and 0.
  static constexpr uint64_t kClaimDone = 1ull << 63;
  std::atomic<uint64_t> claim_{0};
  uint32_t spinMisses_ = 0;  // posting thread: waits in a row that ended without the completion
  uint32_t spinSkips_ = 0;   // posting thread: transfers posted without waiting since the last wait
  // Posting thread: the request of the last transfer it copied inline, emptied, with its lists'
  // capacity kept: the next Submit fills it instead of allocating three times (submit.cc).
  std::unique_ptr<TransferRequest> spareRequest_;

  // This agent's liveness beacon (liveness.h), held by the engine thread from its start: offered to
  // the same-host peers it grants one-sided access, so they check it lives without a system call.
  // Made before the engine thread starts; the engine thread's alone from then on.
  std::unique_ptr<LivenessBeacon> beacon_;

  CopyHelper copyHelper_;  // turns (turnMu_): the second half of large one-sided copies (PostOneSided)
  // The posting thread's: the second half of an inline cross-memory attach of at least
  // kInlineSplitBytes (TryInlineCopy).
  mutable CopyHelper inlineHelper_;
  static constexpr uint64_t kInlineSplitBytes = 512u << 10;

  std::mutex eventMu_;
  std::vector<EngineEvent> events_;       // turns only (turnMu_), flushed to the sink
  std::vector<EngineEvent> undelivered_;  // events produced after the sink was detached

  RegionTable regions_;

  std::mutex peersMu_;                                                 // guards peerInfos_
  std::unordered_map<uint32_t, std::shared_ptr<PeerInfo>> peerInfos_;  // JS-thread view

  // Engine-thread state.
  std::unordered_map<uint32_t, std::unique_ptr<Outbound>> outbound_;
  std::unordered_map<uint32_t, std::unique_ptr<Inbound>> inbound_;
  uint32_t nextInbound_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Xfer>> xfers_;
  std::unordered_map<uint64_t, std::unique_ptr<ServeTask>> serves_;  // by serial
  uint64_t nextServe_ = 1;
  std::vector<std::function<void()>> deferred_;  // work moved out of UCX callbacks
  std::vector<uint64_t> touched_;                // transfers whose state changed in a callback
  // Buffers of packed messages, kept for reuse: fresh pages cost a fault each (256 per MiB).
  std::vector<std::unique_ptr<uint8_t[]>> packedPool_;
  // Bytes of packed WRITEs being received into buffers of their own: bounded, so that no peer can
  // make this agent allocate without limit by sending many large packed messages at once.
  uint64_t packedRecvBytes_ = 0;
  std::vector<AmSlot> amSlots_;
  uint32_t pendingControl_ = 0;  // control messages not yet completed
  std::mutex localUseMu_;
  std::unordered_map<uint32_t, int64_t> localUse_;  // region id -> transfers initiated here using it
  uint64_t nextDeadlineNs_ = UINT64_MAX;
  uint64_t lastSweepNs_ = 0;
  uint64_t lastActivityNs_ = 0;
  uint64_t lastFdPollNs_ = 0;
  uint32_t active_ = 0;                         // operations in flight (busy-poll while > 0)
  std::vector<UcpRequest> closing_;             // endpoint close requests in flight
  std::unordered_map<void*, UcpRequest> live_;  // operation requests in flight (see Track)
  bool draining_ = false;                       // shutdown retired every endpoint: incoming messages are dropped
  bool leaked_ = false;                         // shutdown could not finish: UCX is left allocated
  // Endpoints being retired (RetireEp): flushing, then closed by force.
  struct Retiring {
    UcpEndpoint ep;
    UcpRequest flush;  // empty when done or not asked for
    uint64_t deadlineNs;
  };
  std::vector<Retiring> retiring_;
  // Error-handler arguments: kept while the worker lives (UCX may report an error on an endpoint
  // as late as its close; a few dozen bytes per connection).
  std::deque<std::unique_ptr<EpOwner>> owners_;
  // Hellos seen recently (authenticated handshakes): a replayed one is refused.
  ReplayWindow replay_{60000, 65536};
  uint64_t lastAuthWarnNs_ = 0;  // refused handshakes are reported at most every 10 s
  // CUDA: copies, staging buffers and IPC mappings (engine thread; null without a CUDA driver).
  cuda::PlanePtr cuda_;
  bool ucxCudaMemory_ = false;
  uint64_t nextChildId_ = 1ull << 62;      // sub-transfer ids never meet JS transfer ids
  std::deque<StagedRecv*> stagedWaiting_;  // rendezvous receives waiting for a target buffer
  std::vector<uint64_t> servesWaiting_;    // served READs waiting for a target buffer
};

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

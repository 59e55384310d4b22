// UcxEngine lifecycle: context and worker, the engine thread's loop, commands in, events out,
// deadlines, registration, and shutdown.
#ifdef KVWIRE_HAVE_UCX
#include "engine/ucx_engine.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "engine/address_check.h"
#include "engine/ucx_internal.h"
#include "engine/ucx_memory_hooks.h"
#include "util/switch.h"

namespace kvwire {

const char* WireStatusCode(WireStatus s) {
  switch (s) {
    case WireStatus::kOk:
      return "";
    case WireStatus::kOutOfBounds:
      return code::kOutOfBounds;
    case WireStatus::kAccessDenied:
      return code::kAccessDenied;
    case WireStatus::kUnknownRegion:
      return code::kUnknownRegion;
    case WireStatus::kDeregistered:
      return code::kDeregistered;
    case WireStatus::kCancelled:
      return code::kCancelled;
    case WireStatus::kTimeout:
      return code::kTimeout;
    case WireStatus::kClosed:
      return code::kClosed;
    case WireStatus::kInvalid:
      return code::kInvalidArgument;
    case WireStatus::kTransport:
      break;
  }
  return code::kTransport;
}

std::string UcsMessage(ucs_status_t st) {
  return ucs_status_string(st);
}

UcxEngine::UcxEngine(const EngineOptions& opts, EventSink sink) : opts_(opts), sink_(std::move(sink)) {}

std::unique_ptr<UcxEngine> UcxEngine::Create(const EngineOptions& opts, EventSink sink, std::string* error) {
  std::unique_ptr<UcxEngine> e(new UcxEngine(opts, std::move(sink)));
  if (!e->Init(error)) {
    e->Close();
    return nullptr;
  }
  return e;
}

namespace {
// Whether a UCX_TLS value may select a shared-memory transport: "all", an exclusion list ("^..."),
// or a list naming sm, shm, mm, posix or sysv.
bool MayUseSharedMemory(const std::string& tls) {
  if (tls.empty() || tls[0] == '^') return true;
  size_t start = 0;
  while (start <= tls.size()) {
    size_t end = tls.find(',', start);
    if (end == std::string::npos) end = tls.size();
    std::string tl = tls.substr(start, end - start);
    if (tl == "all" || tl == "sm" || tl == "shm" || tl == "mm" || tl == "posix" || tl == "sysv") return true;
    start = end + 1;
  }
  return false;
}
}  // namespace

std::string UcxEngine::transportsConfigured() const {
  if (!opts_.transports.empty()) return opts_.transports;
  const char* env = getenv("UCX_TLS");
  return env != nullptr ? env : "all";
}

bool UcxEngine::Init(std::string* error) {
  if (!wakeup_.valid()) {
    *error = std::string("eventfd failed: ") + strerror(errno);
    return false;
  }
  KeepUcxMemoryHooksOff();  // before the process's first ucp_init (ucx_memory_hooks.h)
  ucp_config_t* read = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &read);
  if (st != UCS_OK) {
    *error = "reading the UCX configuration failed: " + UcsMessage(st) + " (check UCX_* environment variables)";
    return false;
  }
  UcpConfig config(read);
  if (!opts_.transports.empty()) {
    st = ucp_config_modify(config, "TLS", opts_.transports.c_str());
    if (st != UCS_OK) {
      *error = "transports '" + opts_.transports + "' rejected by UCX: " + UcsMessage(st) +
               " (use names UCX knows: tcp, sm, posix, sysv, cma, rc, ud, dc, cuda_ipc, all)";
      return false;
    }
  }
  // Peer error handling over posix shared memory (CreateEp says why), unless the environment
  // decides (UCX_POSIX_ERROR_HANDLING): given to UCX here rather than through the environment, so
  // that UCX does not warn about an unused variable where posix is not among the transports.
  // (Only where shared memory is among the transports: UCX warns about a setting no transport took.)
  posixPeerErrors_ = PosixPeerErrorsFromEnv();
  if (getenv("UCX_POSIX_ERROR_HANDLING") == nullptr && getenv("UCX_SYSV_ERROR_HANDLING") == nullptr &&
      MayUseSharedMemory(transportsConfigured()) && ucp_config_modify(config, "MM_ERROR_HANDLING", "y") != UCS_OK) {
    posixPeerErrors_ = false;
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
  // No UCP_FEATURE_RMA: with it, UCX serves its software-emulated put/get (the path for transports
  // without native one-sided operations, tcp among them) to any connected peer, at any address of
  // this process, with no check at all. kvwire's one-sided paths do not need it.
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 1;  // ucp_mem_map runs on the JS thread while the engine thread progresses
  params.name = opts_.name.c_str();
  st = ucp_init(&params, config, &context_);
  config.reset();
  if (st != UCS_OK) {
    context_ = nullptr;
    *error = "UCX initialization failed: " + UcsMessage(st) + " (transports: " + transportsConfigured() + ")";
    return false;
  }
  ctxRef_ = std::make_shared<ContextRef>(context_);
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;  // one thread at a time (turnMu_): the engine's, or a posting thread's
  ucp_worker_h worker = nullptr;
  st = ucp_worker_create(context_, &wp, &worker);
  if (st != UCS_OK) {
    *error = "creating the UCX worker failed: " + UcsMessage(st);
    return false;
  }
  worker_.reset(worker);
  ucp_address_t* addr = nullptr;
  size_t addrLen = 0;
  st = ucp_worker_get_address(worker_, &addr, &addrLen);
  if (st != UCS_OK) {
    *error = "querying the UCX worker address failed: " + UcsMessage(st);
    return false;
  }
  address_.assign(reinterpret_cast<const char*>(addr), addrLen);
  ucp_worker_release_address(worker_, addr);
  // What a peer's address may hold, judged by ours (same UCX, same transport code): see
  // address_check.h. An address of ours that does not parse would refuse every peer: say so now.
  std::string why;
  if (!ParseWorkerAddress(reinterpret_cast<const uint8_t*>(address_.data()), address_.size(), nullptr, &why)) {
    *error = "this UCX packs worker addresses kvwire cannot check (" + why + "); kvwire supports UCX 1.13's formats";
    return false;
  }
  addressRules_ = RulesFromOwnAddress(reinterpret_cast<const uint8_t*>(address_.data()), address_.size());

  st = ucp_worker_get_efd(worker_, &workerFd_);
  if (st != UCS_OK) {
    *error = "the UCX worker has no event fd (" + UcsMessage(st) + "); wakeup is required";
    return false;
  }
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) {
    *error = std::string("epoll_create1 failed: ") + strerror(errno);
    return false;
  }
  WatchFd(wakeup_.fd(), MakeTag(FdTag::kWakeup, 0));
  WatchFd(workerFd_, MakeTag(FdTag::kWorker, 0));

  amSlots_.reserve(wire::kAmCount);
  for (uint16_t id = 1; id < wire::kAmCount; ++id) amSlots_.push_back({this, id});
  for (auto& slot : amSlots_) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG |
                    UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = slot.id;
    hp.cb = &UcxEngine::AmCallback;
    hp.arg = &slot;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    st = ucp_worker_set_am_recv_handler(worker_, &hp);
    if (st != UCS_OK) {
      *error = "registering active-message handler " + std::to_string(slot.id) + " failed: " + UcsMessage(st);
      return false;
    }
  }
  InitCuda();
  // Without a beacon (KVWIRE_LIVENESS_BEACON=0, or a kernel that cannot make one) peers poll our
  // pidfd instead.
  if (SwitchOn("KVWIRE_LIVENESS_BEACON")) beacon_ = LivenessBeacon::Create();
  thread_ = std::thread([this] { Run(); });
  pthread_setname_np(thread_.native_handle(), "kvwire-engine");  // as top -H, perf and gdb show it
  return true;
}

UcxEngine::~UcxEngine() {
  Close();
}

ucs_status_t UcxEngine::AmCallback(void* arg, const void* header, size_t headerLen, void* data, size_t len,
                                   const ucp_am_recv_param_t* param) {
  auto* slot = static_cast<AmSlot*>(arg);  // one per AM id, owned by the engine
  return slot->engine->OnAm(slot->id, header, headerLen, data, len, param);
}

// ---------------------------------------------------------------------------------------------
// Commands and events

void UcxEngine::Enqueue(Command&& c, bool wake) {
  {
    std::lock_guard lock(cmdMu_);
    commands_.push_back(std::move(c));
  }
  // Signal only a sleeping engine thread (a spinning one sees hasCommands_). The engine sets
  // sleeping_ and then re-checks hasCommands_ before it sleeps, so no command is ever missed.
  hasCommands_.store(true, std::memory_order_seq_cst);
  if (wake && sleeping_.load(std::memory_order_seq_cst)) wakeup_.Signal();
}

bool UcxEngine::DrainCommands() {
  if (!hasCommands_.exchange(false, std::memory_order_seq_cst)) return false;
  std::deque<Command> batch;
  {
    std::lock_guard lock(cmdMu_);
    batch.swap(commands_);
  }
  for (auto& c : batch) {
    switch (c.kind) {
      case Command::Kind::kConnect:
        DoConnect(c.peerId, c.info, c.timeoutMs);
        break;
      case Command::Kind::kAttach:
        DoAttach(c.peerId);
        break;
      case Command::Kind::kDisconnect:
        DoDisconnect(c.peerId);
        break;
      case Command::Kind::kPost:
        StartTransfer(std::move(c.req));
        break;
      case Command::Kind::kCancel:
        CancelXfer(c.id, c.code, c.text);
        break;
      case Command::Kind::kNotify:
        DoNotify(c.peerId, std::move(c.text), c.id);
        break;
      case Command::Kind::kRevoke:
        RevokeRegion(static_cast<uint32_t>(c.id));
        break;
    }
  }
  return true;
}

void UcxEngine::Emit(EngineEvent&& e) {
  events_.push_back(std::move(e));
}

void UcxEngine::FlushEvents() {
  if (events_.empty()) return;
  std::lock_guard lock(eventMu_);
  if (sink_) {
    sink_(std::move(events_));
  } else {
    for (auto& e : events_) undelivered_.push_back(std::move(e));
  }
  events_.clear();
}

// ---------------------------------------------------------------------------------------------
// JS-thread API

namespace {
// Registered host memory is read and written by peers on this host through cross-memory attach,
// whose cost is mostly the kernel walking and pinning the owner's pages: on 2 MiB pages it is 2.5x
// (64 KiB) to 3x (256 KiB) cheaper than on 4 KiB pages (measured from C on this kind of machine:
// process_vm_readv of 64 KiB 8.7 -> 3.5 us, 256 KiB 33 -> 10.5 us). Where the kernel makes huge
// pages only for memory that asks (transparent_hugepage=madvise, the common default), the whole
// 2 MiB pages inside a registered region ask: pages touched from then on (a KV cache filled after
// it was registered; Buffer.alloc's large buffers are untouched until written) are huge, and
// khugepaged may merge the others later. The advice stays after deregistration (the memory is the
// caller's; it only lets the kernel use huge pages there). KVWIRE_HUGE_PAGES=0 turns it off.
void AdviseHugePages(uint8_t* base, uint64_t length) {
  static const bool enabled = SwitchOn("KVWIRE_HUGE_PAGES");
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const auto start = reinterpret_cast<uintptr_t>(base);
  const uintptr_t lo = (start + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (start + length) & ~(kHuge - 1);
  if (!enabled || hi <= lo) return;
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice only: failure changes nothing
}
}  // namespace

bool UcxEngine::Register(uint32_t id, const std::string& label, uint8_t* base, uint64_t length, Access access,
                         std::string* rkey, std::string* error) {
  // Its whole pages shared with same-host peers first (share.h), before UCX looks at the memory.
  std::shared_ptr<SharedWindow> window;
  std::string unshared;
  if (access != kAccessNone) window = SharedWindow::Share(base, length, &unshared);
  AdviseHugePages(base, length);
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_PROT;
  mp.address = base;
  mp.length = length;
  mp.prot = ProtFor(access);
  ucp_mem_h memh = nullptr;
  ucs_status_t st = ucp_mem_map(context_, &mp, &memh);
  if (st != UCS_OK) {
    *error = "UCX could not register " + std::to_string(length) + " bytes: " + UcsMessage(st);
    return false;
  }
  auto mem = std::make_shared<UcpMemory>(ctxRef_, memh);  // unmapped when the region is released
  // Released in that order: UCX lets go of the memory, then its pages go back to private memory.
  if (!AddRegion(id, label, base, length, access, memh, rkey, error, [mem, window](ucp_mem_h) mutable {
        mem.reset();
        window.reset();
      })) {
    return false;
  }
  if (window) SetGrantKeys(id, window->RecordFor(base, length).Encode(), std::string());
  return true;
}

bool UcxEngine::Allocate(uint32_t id, const std::string& label, uint64_t length, Access access, std::string* rkey,
                         uint8_t** base, std::shared_ptr<UcpMemory>* allocation, std::string* error) {
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS |
                  UCP_MEM_MAP_PARAM_FIELD_PROT;
  mp.address = nullptr;
  mp.length = length;
  mp.flags = UCP_MEM_MAP_ALLOCATE;
  mp.prot = ProtFor(access);
  ucp_mem_h memh = nullptr;
  ucs_status_t st = ucp_mem_map(context_, &mp, &memh);
  if (st != UCS_OK) {
    *error = "UCX could not allocate " + std::to_string(length) + " bytes: " + UcsMessage(st);
    return false;
  }
  // Two owners: the region (until it is released) and the JS ArrayBuffer over the memory (until
  // it is collected). The memory goes back to UCX when both are done, never before.
  auto shared = std::make_shared<UcpMemory>(ctxRef_, memh);
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  st = ucp_mem_query(memh, &attr);
  if (st != UCS_OK || attr.address == nullptr || attr.length < length) {
    *error = "UCX allocated memory it cannot describe: " + UcsMessage(st);
    return false;  // unmapped by `shared`
  }
  *base = static_cast<uint8_t*>(attr.address);
  *allocation = shared;
  return AddRegion(
      id, label, *base, length, access, memh, rkey, error, [shared](ucp_mem_h) mutable { shared.reset(); }, -1, true);
}

uint32_t UcxEngine::ProtFor(Access access) {
  uint32_t prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_LOCAL_WRITE;
  if (access & kAccessRead) prot |= UCP_MEM_MAP_PROT_REMOTE_READ;
  if (access & kAccessWrite) prot |= UCP_MEM_MAP_PROT_REMOTE_WRITE;
  return prot;
}

bool UcxEngine::AddRegion(uint32_t id, const std::string& label, uint8_t* base, uint64_t length, Access access,
                          ucp_mem_h memh, std::string* rkey, std::string* error, std::function<void(ucp_mem_h)> unmap,
                          int device, bool allocated) {
  rkey->clear();
  // A remote key only for memory a trusted peer may map (shared memory UCX allocated, exported):
  // the grant hands it to such peers, and to no one else. Registered memory needs none (peers
  // reach it through the target's checks, or by cross-memory attach, which takes no key).
  if (allocated && access != kAccessNone && memh != nullptr) {
    void* buf = nullptr;
    size_t size = 0;
    ucs_status_t st = ucp_rkey_pack(context_, memh, &buf, &size);
    if (st != UCS_OK) {
      unmap(memh);
      *error = "UCX could not pack a remote key: " + UcsMessage(st);
      return false;
    }
    UcpRkeyBuffer packed(buf);
    rkey->assign(static_cast<const char*>(packed.get()), size);
  }
  UcxEngine* self = this;
  auto region = std::make_shared<LocalRegion>(
      id, label, base, length, access, memh,
      [self, unmap = std::move(unmap)](LocalRegion& r) mutable {
        unmap(static_cast<ucp_mem_h>(r.memh()));
        EngineEvent e{EngineEvent::Kind::kRegionReleased};
        e.id = r.id();
        std::lock_guard lock(self->eventMu_);
        if (self->sink_) {
          std::vector<EngineEvent> one;
          one.push_back(std::move(e));
          self->sink_(std::move(one));
        } else {
          self->undelivered_.push_back(std::move(e));
        }
      },
      device);
  if (allocated) region->set_allocated();
  region->SetGrantKeys(*rkey, std::string());
  regions_.Insert(std::move(region));
  return true;
}

bool UcxEngine::SetGrantKeys(uint32_t id, std::string trusted, std::string restricted) {
  LocalRegionPtr r = regions_.Find(id);
  if (!r) return false;
  r->SetGrantKeys(std::move(trusted), std::move(restricted));
  return true;
}

bool UcxEngine::Deregister(uint32_t id, uint32_t* busyUsers, bool* known) {
  LocalRegionPtr r = regions_.Find(id);
  *known = r != nullptr;
  *busyUsers = 0;
  if (!r) return false;
  // Transfers this agent initiated still use it: refuse; the caller can await or cancel them.
  // (Operations peers started are not the caller's to await: those are revoked below and the
  // registration lives on until they finish.)
  if (uint32_t local = localUsers(id); local > 0) {
    *busyUsers = local;
    return false;
  }
  regions_.Remove(id);
  if (r->access() != kAccessNone) {
    Command c{Command::Kind::kRevoke};
    c.id = id;
    Enqueue(std::move(c));
  }
  r->MarkDeregistered();
  return true;
}

void UcxEngine::Connect(uint32_t peerId, std::shared_ptr<PeerInfo> info, uint32_t timeoutMs) {
  {
    std::lock_guard lock(peersMu_);
    peerInfos_[peerId] = info;
  }
  Command c{Command::Kind::kConnect};
  c.peerId = peerId;
  c.info = std::move(info);
  c.timeoutMs = timeoutMs;
  Enqueue(std::move(c));
}

void UcxEngine::Attach(uint32_t peerId) {
  Command c{Command::Kind::kAttach};
  c.peerId = peerId;
  Enqueue(std::move(c));
}

void UcxEngine::Disconnect(uint32_t peerId) {
  {
    std::lock_guard lock(peersMu_);
    peerInfos_.erase(peerId);
  }
  Command c{Command::Kind::kDisconnect};
  c.peerId = peerId;
  Enqueue(std::move(c));
}

std::shared_ptr<PeerInfo> UcxEngine::peerInfo(uint32_t peerId) {
  std::lock_guard lock(peersMu_);
  auto it = peerInfos_.find(peerId);
  return it == peerInfos_.end() ? nullptr : it->second;
}

void UcxEngine::Cancel(uint64_t transferId, const char* code) {
  Command c{Command::Kind::kCancel};
  c.id = transferId;
  c.code = code;
  Enqueue(std::move(c));
}

void UcxEngine::Notify(uint32_t peerId, std::string message, uint64_t token) {
  Command c{Command::Kind::kNotify};
  c.peerId = peerId;
  c.text = std::move(message);
  c.id = token;
  Enqueue(std::move(c));
}

// Local-use counts: how many transfers initiated here use each region (JS thread increments on
// post, the engine thread decrements when the transfer is reaped).
void UcxEngine::localUse(uint32_t regionId, int delta) {
  std::lock_guard lock(localUseMu_);
  auto& n = localUse_[regionId];
  n += delta;
  if (n == 0) localUse_.erase(regionId);
}

uint32_t UcxEngine::localUsers(uint32_t regionId) {
  std::lock_guard lock(localUseMu_);
  auto it = localUse_.find(regionId);
  return it == localUse_.end() ? 0 : static_cast<uint32_t>(it->second);
}

// ---------------------------------------------------------------------------------------------
// The engine thread

void UcxEngine::WatchFd(int fd, uint64_t tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
}

void UcxEngine::UnwatchFd(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

uint64_t UcxEngine::NextWakeNs() const {
  return nextDeadlineNs_;
}

void UcxEngine::Run() {
  // Held until this thread ends: then the kernel marks the beacon's word (liveness.h). One this
  // thread cannot hold is no beacon.
  if (beacon_ != nullptr && !beacon_->Hold()) beacon_.reset();
  lastActivityNs_ = NowNs();
  while (!stopping_.load(std::memory_order_acquire)) {
    if (Park()) continue;
    std::unique_lock turn(turnMu_);
    const bool found = Turn();
    const uint64_t now = NowNs();

    // Spin (progress without sleeping) for spinUs after the last activity: a transfer that just
    // completed is usually followed by the next one, and waking a sleeping thread costs tens of
    // microseconds on a VM, more than the transfer itself for small ones. While spinning, still
    // look at the fds every millisecond: a peer's death (its pidfd) must be noticed even when
    // progress keeps finding work (e.g. retrying sends to a process that is gone).
    // With operations in flight, spin longer (busySpinUs): the transport needs this thread to
    // progress promptly (tcp's rendezvous is a conversation), and every sleep costs a wake-up.
    uint64_t spinNs = static_cast<uint64_t>(active_ > 0 ? opts_.busySpinUs : opts_.spinUs) * 1000ull;
    bool spin = now - lastActivityNs_ < spinNs || !deferred_.empty() || !touched_.empty();
    int timeoutMs = 0;
    if (spin) {
      turn.unlock();
      // Found nothing: give the core away for a moment. On a machine with few cores the thread
      // that would produce our next event (the peer's engine, this process's JS thread) often
      // waits for this very core; without the yield it waited for our time slice to end, and a
      // 4 KiB round trip over tcp took ~250 µs instead of ~45 µs (2 shared cores, bench/RESULTS.md).
      // With an idle core sched_yield returns at once: spinning stays spinning.
      if (!found) sched_yield();
      if (now - lastFdPollNs_ < 1000000ull) continue;
    } else {
      ucs_status_t st = ucp_worker_arm(worker_);
      if (st == UCS_ERR_BUSY) {
        turn.unlock();
        if (now - lastFdPollNs_ < 1000000ull) continue;  // events arrived while arming
      } else {
        timeoutMs = -1;
        uint64_t wake = NextWakeNs();
        if (PendingWork()) {
          // Something is pending: wake at least every 100 ms to sweep (deadlines, liveness).
          uint64_t sweep = now + 100000000ull;
          if (sweep < wake) wake = sweep;
        }
        if (wake != UINT64_MAX) {
          timeoutMs = wake <= now ? 0 : static_cast<int>((wake - now + 999999) / 1000000);
        }
        sleeping_.store(true, std::memory_order_seq_cst);
        if (hasCommands_.load(std::memory_order_seq_cst)) timeoutMs = 0;  // arrived meanwhile
        turn.unlock();
      }
    }
    LookAtFds(timeoutMs);
  }
  std::lock_guard last(turnMu_);
  ShutdownOnThread();
  FlushEvents();  // the transfers it failed, before their regions' releases
  ReleaseAfterShutdown();
  Emit(EngineEvent{EngineEvent::Kind::kClosed});
  FlushEvents();  // the last use of the sink: nothing else runs on this thread after it
}

void UcxEngine::LookAtFds(int timeoutMs) {
  epoll_event evs[16];
  int n = epoll_wait(epoll_.get(), evs, 16, timeoutMs);
  sleeping_.store(false, std::memory_order_seq_cst);
  std::lock_guard turn(turnMu_);
  lastFdPollNs_ = NowNs();
  for (int i = 0; i < n; ++i) {
    uint64_t tag = evs[i].data.u64;
    switch (TagKind(tag)) {
      case FdTag::kWakeup:
        wakeup_.Drain();
        break;
      case FdTag::kWorker:
        break;  // progress at the top of the loop
      case FdTag::kOutboundPid:
      case FdTag::kInboundPid:
        OnLivenessFd(tag);
        break;
    }
  }
  if (timeoutMs != 0) lastActivityNs_ = lastFdPollNs_;  // woken up: expect more to follow
}

bool UcxEngine::Park() {
  const uint64_t drives = drives_.load(std::memory_order_acquire);
  if (drives == seenDrives_) return false;
  // A posting thread ran the turns since this thread last looked (submit.cc, AwaitCompletion): it
  // is posting small transfers one after another and driving each itself. Spinning beside it would
  // take the core it (or the peer) needs, so step aside for kParkUs, woken early by a command; then
  // look again. The pidfds are still looked at every millisecond.
  seenDrives_ = drives;
  sleeping_.store(true, std::memory_order_seq_cst);
  if (!hasCommands_.load(std::memory_order_seq_cst)) {
    pollfd pf{wakeup_.fd(), POLLIN, 0};
    const timespec park{0, kParkUs * 1000};
    if (ppoll(&pf, 1, &park, nullptr) > 0) wakeup_.Drain();
  }
  sleeping_.store(false, std::memory_order_seq_cst);
  if (NowNs() - lastFdPollNs_ >= 1000000ull) LookAtFds(0);
  return true;
}

bool UcxEngine::Turn() {
  bool commands = DrainCommands();
  unsigned work = 0;
  for (int i = 0; i < 64; ++i) {
    unsigned n = ucp_worker_progress(worker_);
    work += n;
    if (n == 0) break;
  }
  RunDeferred();
  if (!retiring_.empty() || !closing_.empty()) {  // endpoints retired since the last turn
    ProgressRetiring(NowNs());
    RunDeferred();
  }
  if (cuda_ && cuda_->busy()) {  // CUDA copies in flight: poll their events every turn
    work += cuda_->Poll() + 1;
    RunDeferred();
  }
  uint64_t now = NowNs();
  const bool found = work > 0 || commands;
  if (found) lastActivityNs_ = now;
  if (now >= nextDeadlineNs_ || now - lastSweepNs_ > 100000000ull) CheckDeadlines(now);
  FlushEvents();
  return found;
}

void UcxEngine::RunDeferred() {
  // Deferred work first (it may declare a peer lost), then transfers touched by callbacks, so a
  // transfer that failed because its peer died reports ERR_KVWIRE_PEER_LOST.
  while (!deferred_.empty() || !touched_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto& f : batch) f();
    ProcessTouched();
  }
}

void UcxEngine::CheckDeadlines(uint64_t now) {
  lastSweepNs_ = now;
  uint64_t next = UINT64_MAX;
  std::vector<uint64_t> expired;
  for (auto& [id, x] : xfers_) {
    if (x->Finished()) continue;
    if (x->deadlineNs <= now) {
      expired.push_back(id);
    } else {
      next = std::min(next, x->deadlineNs);
    }
  }
  for (uint64_t id : expired) {
    auto it = xfers_.find(id);
    if (it == xfers_.end()) continue;
    Xfer& x = *it->second;
    std::string msg = "transfer " + std::to_string(id) + " (" + std::to_string(x.req->descs.size()) + " descriptors, " +
                      std::to_string(x.req->bytes) + " bytes) did not complete within " +
                      std::to_string(x.req->timeoutMs) + " ms (" + std::to_string(x.completed) +
                      " descriptors done); the peer may be overloaded or gone: raise timeoutMs or check the peer";
    CancelXfer(id, code::kTimeout, msg);
  }
  // Operations still in flight well after their transfer's deadline (a hung or partitioned peer):
  // UCX cannot cancel a send, only close its endpoint, so the connection goes, and with it every
  // operation on it (quiesced then resolves, and the memory can be deregistered).
  std::vector<uint32_t> stuckPeers;
  for (auto& [id, x] : xfers_) {
    if (x->Finished() && x->inflight > 0 && x->deadlineNs + kQuiesceGraceMs * 1000000ull <= now) {
      stuckPeers.push_back(x->req->peerId);
    } else if (x->inflight > 0) {
      next = std::min<uint64_t>(next, x->deadlineNs + kQuiesceGraceMs * 1000000ull);
    }
  }
  for (uint32_t peerId : stuckPeers) {
    auto it = outbound_.find(peerId);
    if (it == outbound_.end()) continue;
    OutboundLost(*it->second, code::kTimeout,
                 "operations of a transfer to it did not end within " + std::to_string(kQuiesceGraceMs) +
                     " ms of its deadline; the connection was closed to free their memory (connect again)");
  }
  std::vector<uint32_t> silent, closing;
  for (auto& [id, ob] : outbound_) {
    bool handshaking = ob->state == Outbound::State::kConnecting || ob->state == Outbound::State::kAttaching;
    if (handshaking) {
      if (ob->connectDeadlineNs <= now) silent.push_back(id);
      else next = std::min(next, ob->connectDeadlineNs);
    }
    if (ob->state == Outbound::State::kClosing) {
      if (ob->closeDeadlineNs <= now) closing.push_back(id);
      else next = std::min(next, ob->closeDeadlineNs);
    }
  }
  for (uint32_t id : silent) {
    auto it = outbound_.find(id);
    if (it == outbound_.end()) continue;
    Outbound& ob = *it->second;
    if (ob.state == Outbound::State::kAttaching) Abandon(ob, ob.RouteOut());
    OutboundLost(ob, code::kPeerUnreachable,
                 ob.state == Outbound::State::kAttaching
                     ? "the handshake with '" + ob.info->name + "' was not completed in time"
                     : "no answer from '" + ob.info->name + "' while connecting over " + ob.lanes.category + " (" +
                           ob.lanes.detail +
                           "); is the peer running, does its metadata come from its current process, and do both "
                           "agents share the same auth secret (or none) and kvwire release?");
  }
  for (uint32_t id : closing) {
    auto it = outbound_.find(id);
    if (it != outbound_.end()) MaybeFinishOutboundClose(*it->second);
  }
  ProgressRetiring(now);
  SweepTargetState(now);
  for (auto& [id, ib] : inbound_) {
    if (ib->state == Inbound::State::kClosing) next = std::min(next, ib->closeDeadlineNs);
    if (ib->state == Inbound::State::kAwaitingAuth) next = std::min(next, ib->authDeadlineNs);
  }
  for (auto& [key, t] : serves_) {
    if (t->Serving()) next = std::min(next, t->deadlineNs);
  }
  nextDeadlineNs_ = next;
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void UcxEngine::BeginClose() {
  if (closed_ || !thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  wakeup_.Signal();
}

std::vector<EngineEvent> UcxEngine::Close() {
  {
    std::lock_guard lock(eventMu_);
    sink_ = nullptr;  // from here on, events are returned to the caller
  }
  if (!closed_) {
    closed_ = true;
    if (thread_.joinable()) {
      stopping_.store(true, std::memory_order_release);
      wakeup_.Signal();
      thread_.join();  // immediate when the thread reported kClosed already (BeginClose)
    } else {
      if (worker_) ShutdownOnThread();  // Init failed before the thread started
      ReleaseAfterShutdown();
    }
  }
  std::lock_guard lock(eventMu_);
  std::vector<EngineEvent> out;
  out.swap(undelivered_);
  return out;
}

void UcxEngine::ReleaseAfterShutdown() {
  // Regions: release every registration (the memory itself belongs to JS). The JS thread no
  // longer registers or posts: the agent refuses every call once close() began.
  std::vector<uint32_t> ids;
  regions_.ForEach([&](LocalRegion& r) { ids.push_back(r.id()); });
  for (uint32_t id : ids) {
    LocalRegionPtr r = regions_.Remove(id);
    if (r) r->MarkDeregistered();
  }
  // The context is cleaned up when its last user lets go: this engine, or memory it
  // allocated that JavaScript still references. After a failed shutdown it is never cleaned up.
  if (leaked_ && ctxRef_) new std::shared_ptr<ContextRef>(ctxRef_);  // deliberately leaked
  ctxRef_.reset();
  context_ = nullptr;
}

void UcxEngine::ShutdownOnThread() {
  // 0. Commands not yet run: transfers posted just before close() fail like the others.
  std::deque<Command> left;
  {
    std::lock_guard lock(cmdMu_);
    left.swap(commands_);
  }
  for (auto& c : left) {
    if (c.kind != Command::Kind::kPost) continue;
    EngineEvent e{EngineEvent::Kind::kTransferDone};
    e.id = c.req->id;
    e.code = code::kClosed;
    e.text = "the agent was closed before this transfer started";
    Emit(std::move(e));
    for (auto& r : c.req->regions) {
      localUse(r->id(), -1);
      r->Release();
    }
  }
  // 1. Every transfer this agent initiated fails with ERR_KVWIRE_CLOSED.
  std::vector<uint64_t> ids;
  for (auto& [id, x] : xfers_) ids.push_back(id);
  for (uint64_t id : ids) {
    CancelXfer(id, code::kClosed, "the agent was closed while this transfer was in flight");
  }
  for (auto& [key, t] : serves_) t->cancelled = true;
  // 1b. CUDA copies in flight complete (a GPU copy always does); their callbacks run.
  if (cuda_) {
    cuda_->Drain();
    RunDeferred();
  }
  // 2. Let what is already in flight finish (up to 500 ms): transfers were failed above and post
  //    nothing more, served reads were cancelled. Closing an endpoint under operations toward a
  //    live peer made UCX 1.13's tcp transport complete them twice on the peer (an assertion
  //    there), so endpoints are closed only once they are quiet.
  uint64_t until = NowNs() + 500000000ull;
  while ((pendingControl_ > 0 || !live_.empty()) && NowNs() < until) {
    ucp_worker_progress(worker_);
    RunDeferred();
  }
  // 3. Say goodbye, so peers fail their transfers at once instead of at their deadlines, then
  //    retire every endpoint: flushed where the peer is healthy (the goodbye gets out), closed by
  //    force (the only close after which UCX frees an endpoint its peer connected to).
  draining_ = true;
  for (auto& [id, ob] : outbound_) {
    if (!ob->ep) continue;
    bool healthy = ob->state == Outbound::State::kConnected || ob->state == Outbound::State::kAttaching;
    if (healthy) {
      wire::ByeHdr h{ob->RouteOut(), 0};
      SendControl(ob->ep, wire::kBye, &h, sizeof h, nullptr, 0);
    }
    RetireEp(std::move(ob->ep), healthy && live_.empty(), 500);
  }
  for (auto& [id, ib] : inbound_) {
    if (!ib->ep) continue;
    wire::ByeHdr h{ib->RouteOut(), wire::kByeFromTarget};
    SendControl(ib->ep, wire::kBye, &h, sizeof h, nullptr, 0);
    RetireEp(std::move(ib->ep), live_.empty(), 500);
  }
  // 4. Let the closes and every operation in flight finish (endpoints closed by force complete
  //    their requests with an error).
  const uint64_t grace = NowNs() + 1000000000ull;
  while ((!retiring_.empty() || !closing_.empty() || !live_.empty()) && NowNs() < grace) {
    ucp_worker_progress(worker_);
    RunDeferred();
    ProgressRetiring(NowNs());
  }
  // 5. What transfers and served reads still hold goes back (no callback can run any more:
  //    nothing progresses this worker after this point).
  for (auto& [key, t] : serves_) {
    for (auto& r : t->regions) r->Release();
    t->regions.clear();
  }
  serves_.clear();
  for (auto& [id, x] : xfers_) {
    for (auto& r : x->req->regions) {
      localUse(r->id(), -1);
      r->Release();
    }
    x->req->regions.clear();
    if (x->QuiesceOwed()) {
      EngineEvent e{EngineEvent::Kind::kTransferQuiesced};
      e.id = id;
      Emit(std::move(e));
    }
  }
  xfers_.clear();
  outbound_.clear();  // destroys rkeys
  inbound_.clear();
  ReleaseStagedQueue();
  if (!closing_.empty() || !live_.empty()) {
    // UCX still holds operations we cannot finish: destroying the worker (or cleaning up the
    // context, or freeing those requests and endpoints) now would abort the process inside UCX.
    // Leave them allocated instead: their owners forget them.
    leaked_ = true;
    for (auto& [req, owned] : live_) (void)owned.release();
    for (UcpRequest& c : closing_) (void)c.release();
    for (Retiring& r : retiring_) {
      (void)r.flush.release();
      (void)r.ep.release();
    }
    (void)worker_.release();
    EngineEvent w{EngineEvent::Kind::kWarning};
    w.text = std::to_string(live_.size() + closing_.size()) +
             " UCX operations did not finish within 1 s of close(); their resources are left allocated";
    Emit(std::move(w));
    (void)cuda_.release();  // its staging buffers may still be in UCX's hands: leave them allocated
    return;
  }
  if (cuda_) cuda_->Drain();  // copies started while closing (a WRITE still arriving) complete first
  cuda_.reset();              // closes IPC mappings, frees staging buffers (their UCX registrations first)
  // Endpoints whose flush outlived the grace period (retired with a longer one before close()):
  // the worker's destruction destroys them; their flush requests go with the worker's memory.
  for (Retiring& r : retiring_) {
    (void)r.flush.release();
    (void)r.ep.release();
  }
  retiring_.clear();
  worker_.reset();  // every endpoint closed, every request freed: see UcpWorker
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX

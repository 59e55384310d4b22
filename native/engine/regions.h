// Local regions: memory this agent registered, shared by the JS thread (register, deregister,
// validation of posts) and the engine thread (target-side validation of what peers ask for).
//
// Hazard guarded: memory released while an operation still uses it. Every operation acquires the
// regions it touches; deregistration removes a region from the table at once (no new operation can
// reach it) but the transport's registration is released only when the last user lets go, and the
// JS side keeps the memory alive until the engine reports the region released.
#pragma once
#include <poll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "engine/liveness.h"
#include "engine/share.h"
#include "engine/types.h"
#include "util/unique_fd.h"

namespace kvwire {

class LocalRegion {
 public:
  // `release` runs exactly once, on whichever thread lets go last after deregistration.
  // `device` >= 0: CUDA device memory of that device (never dereferenced on the host; `memh` is
  // null unless UCX itself moves device memory). -1: host memory.
  LocalRegion(uint32_t id, std::string label, uint8_t* base, uint64_t length, Access access, void* memh,
              std::function<void(LocalRegion&)> release, int device = -1)
      : id_(id),
        label_(std::move(label)),
        base_(base),
        length_(length),
        access_(access),
        memh_(memh),
        device_(device),
        release_(std::move(release)) {}

  uint32_t id() const { return id_; }
  const std::string& label() const { return label_; }
  uint8_t* base() const { return base_; }
  uint64_t length() const { return length_; }
  Access access() const { return access_; }
  void* memh() const { return memh_; }
  int device() const { return device_; }
  bool onDevice() const { return device_ >= 0; }
  bool Contains(uint64_t offset, uint64_t len) const { return offset <= length_ && len <= length_ - offset; }
  uint32_t users() const { return state_.load() & kUserMask; }
  // Memory UCX allocated as shared memory (agent.allocate()): a trusted same-host peer maps it.
  bool allocated() const { return allocated_; }
  void set_allocated() { allocated_ = true; }

  // The key a peer trusted with one-sided access is granted (the packed rkey of allocated shared
  // memory; a device key with its CUDA IPC handle), and the key any other peer is granted (nothing
  // for host memory; a device key without IPC handle). Set at registration, before the region is
  // exported; read by the engine thread when it answers a handshake.
  void SetGrantKeys(std::string trusted, std::string restricted) {
    std::lock_guard lock(keyMu_);
    trustedKey_ = std::move(trusted);
    restrictedKey_ = std::move(restricted);
  }
  std::string GrantKey(bool trusted) const {
    std::lock_guard lock(keyMu_);
    return trusted ? trustedKey_ : restrictedKey_;
  }

  void Acquire() { state_.fetch_add(1, std::memory_order_acq_rel); }
  void Release() {
    uint32_t old = state_.fetch_sub(1, std::memory_order_acq_rel);
    if (old == (kDeregistered | 1u)) release_(*this);
  }
  // Returns the number of users at the time of deregistration.
  uint32_t MarkDeregistered() {
    uint32_t old = state_.fetch_or(kDeregistered, std::memory_order_acq_rel);
    if ((old & kDeregistered) == 0 && (old & kUserMask) == 0) release_(*this);
    return old & kUserMask;
  }

 private:
  static constexpr uint32_t kDeregistered = 1u << 31;
  static constexpr uint32_t kUserMask = kDeregistered - 1;
  const uint32_t id_;
  const std::string label_;
  uint8_t* const base_;
  const uint64_t length_;
  const Access access_;
  void* const memh_;
  const int device_;
  std::function<void(LocalRegion&)> release_;
  std::atomic<uint32_t> state_{0};
  bool allocated_ = false;
  mutable std::mutex keyMu_;
  std::string trustedKey_, restrictedKey_;
};

using LocalRegionPtr = std::shared_ptr<LocalRegion>;

class RegionTable {
 public:
  void Insert(LocalRegionPtr r) {
    std::unique_lock lock(mu_);
    if (r->id() > maxId_) maxId_ = r->id();
    map_[r->id()] = std::move(r);
  }
  // True for an id that was registered once and is gone now (ids are never reused).
  bool WasRegistered(uint32_t id) {
    std::shared_lock lock(mu_);
    return id != 0 && id <= maxId_ && map_.count(id) == 0;
  }
  // Finds and acquires; nullptr when unknown (never registered, or deregistered).
  LocalRegionPtr Acquire(uint32_t id) {
    std::shared_lock lock(mu_);
    auto it = map_.find(id);
    if (it == map_.end()) return nullptr;
    it->second->Acquire();
    return it->second;
  }
  LocalRegionPtr Find(uint32_t id) {
    std::shared_lock lock(mu_);
    auto it = map_.find(id);
    return it == map_.end() ? nullptr : it->second;
  }
  LocalRegionPtr Remove(uint32_t id) {
    std::unique_lock lock(mu_);
    auto it = map_.find(id);
    if (it == map_.end()) return nullptr;
    LocalRegionPtr r = std::move(it->second);
    map_.erase(it);
    return r;
  }
  template <typename F>
  void ForEach(F&& f) {
    std::shared_lock lock(mu_);
    for (auto& [id, r] : map_) f(*r);
  }
  size_t size() {
    std::shared_lock lock(mu_);
    return map_.size();
  }
  // The highest id ever registered: a peer told of it can tell "deregistered" from "never existed".
  uint32_t maxId() {
    std::shared_lock lock(mu_);
    return maxId_;
  }

 private:
  std::shared_mutex mu_;
  std::unordered_map<uint32_t, LocalRegionPtr> map_;
  uint32_t maxId_ = 0;
};

// A remote region, as the peer's metadata described it. Immutable but for `revoked`.
struct RemoteRegion {
  uint32_t id = 0;
  uint64_t base = 0;  // the peer's virtual address of byte 0
  uint64_t length = 0;
  Access access = kAccessNone;
  std::string rkey;  // packed UCX rkey of shared memory the peer lets this agent map (one-sided grants only)
  std::atomic<bool> revoked{false};
  // Device memory (the peer's device ordinal, -1 for host memory) and how to reach it: the IPC
  // handle of its allocation (empty when the peer could not export one) and the region's offset in
  // it, the peer's PCI bus id of the device, and the largest piece the peer stages at once.
  int device = -1;
  std::string ipcHandle;
  uint64_t ipcOffset = 0;
  std::string busId;
  uint64_t stagingChunk = 0;
  // Where this process sees byte 0 of the region, when UCX mapped it here (shared memory the peer
  // allocated with UCX: ucp_rkey_ptr). Set by the engine thread before the peer is reported
  // connected; valid until the peer is disconnected (which only the JS thread can cause).
  std::atomic<uint8_t*> mapped{nullptr};
  // Registered memory the peer shares (share.h): its record from the grant, and the window mapped
  // here from it (by the engine thread when the peer connects, before it is reported connected;
  // null when the record did not check out: cross-memory attach serves the region then).
  bool hasShare = false;
  ShareRecord share;
  std::unique_ptr<PeerWindow> window;
  std::atomic<const PeerWindow*> windowReady{nullptr};
};

// What connect() learned from the peer's metadata, and (regions) from its grant once the handshake
// succeeded: parsed and checked against each other in TypeScript (lib/transport/grant.ts), filled in
// on the JS thread before the engine is told to attach, immutable afterwards.
struct PeerInfo {
  std::string name;
  std::string address;  // UCX worker address bytes
  uint32_t pid = 0;
  uint64_t pidStart = 0;
  std::string hostId;
  std::atomic<bool> lost{false};  // set by the engine thread when the peer is lost
  // Cross-memory attach from the calling thread (native/engine/submit.cc): the engine thread
  // fills cmaPidfd (its own descriptor, a duplicate of the liveness watch's: the watch may close
  // its copy at any time) and then sets cmaInline, once, when the peer is connected with one-sided
  // access by cma. Never changed afterwards; closed with the PeerInfo.
  UniqueFd cmaPidfd;
  // The peer's liveness beacon (liveness.h), when it has one: checked by a load instead of a poll
  // of cmaPidfd. Set with cmaPidfd, before cmaInline.
  std::unique_ptr<PeerBeacon> cmaBeacon;
  // The peer's memory file (/proc/<pid>/mem), when it could be opened: one page read or written
  // through it costs a quarter less than by process_vm_readv/writev (cma.h, MemFileCopy). Tied to
  // the address space the peer had when it was opened (a reused pid reaches nothing through it).
  // Set with cmaPidfd, before cmaInline.
  UniqueFd cmaMemFd;
  std::atomic<bool> cmaInline{false};

  // Whether `pid` still names the peer, checked before each cross-memory attach (by the calling
  // thread and by the engine thread, each with its own duplicate `pidfd`): its beacon when it has
  // one (which also turns when its agent closed or it replaced itself by exec), else its pidfd,
  // readable once it exited (an invalid one cannot tell: not ours then).
  enum class Pid : uint8_t { kOurs, kAgentEnded, kExited };
  Pid CheckPid(int pidfd) const noexcept {
    if (cmaBeacon != nullptr) return cmaBeacon->Alive() ? Pid::kOurs : Pid::kAgentEnded;
    pollfd pf{pidfd, POLLIN, 0};
    return pidfd >= 0 && poll(&pf, 1, 0) == 0 ? Pid::kOurs : Pid::kExited;
  }
  // After a READ's attach: the bytes are the peer's only if the pid was its own throughout, which
  // its beacon tells (a peer without one was checked before the copy only).
  bool PidStillOurs() const noexcept { return cmaBeacon == nullptr || cmaBeacon->Alive(); }
  std::unordered_map<uint32_t, std::unique_ptr<RemoteRegion>> regions;
  const RemoteRegion* Find(uint32_t id) const {
    auto it = regions.find(id);
    return it == regions.end() ? nullptr : it->second.get();
  }
};

}  // namespace kvwire

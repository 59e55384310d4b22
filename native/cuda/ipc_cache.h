// IpcCache: peers' device memory opened here with cuIpcOpenMemHandle, one mapping per exported
// allocation, shared by every region and connection that names it.
//
// Opening costs milliseconds, so it happens once, when a peer connects, not per transfer. A
// mapping is closed when its last user lets go: the peer's connection (disconnect, loss, close)
// and every transfer still copying through it; so no copy ever runs on a closed mapping.
// The driver refuses to open a handle twice in one process, hence the cache keyed by handle bytes.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "cuda/device_memory.h"

namespace kvwire::cuda {

class IpcMapping {
 public:
  IpcMapping(uint64_t base, int device) : base_(base), device_(device) {}
  ~IpcMapping();
  IpcMapping(const IpcMapping&) = delete;
  IpcMapping& operator=(const IpcMapping&) = delete;
  // Where byte 0 of the exported allocation is mapped in this process.
  uint64_t base() const { return base_; }
  // The device whose context opened it (copies through it run on that device's stream).
  int device() const { return device_; }

 private:
  uint64_t base_;
  int device_;
};

class IpcCache {
 public:
  // Opens (or finds) the mapping of `handle` in the context of `device`.
  std::shared_ptr<IpcMapping> Open(const IpcHandle& handle, int device, std::string* error);

 private:
  std::map<IpcHandle, std::weak_ptr<IpcMapping>> open_;
};

}  // namespace kvwire::cuda

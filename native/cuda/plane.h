// Plane: an engine's CUDA machinery, owned and used by its engine thread only.
//
//  - the copy engine: copies go on a non-blocking stream per device, then an event; Poll(), called
//    by the engine thread on every turn of its loop while anything is in flight, runs the callback
//    of every event that completed. No thread ever blocks on the GPU (only Drain() at shutdown);
//  - the staging buffers: pinned host memory registered with UCX, in two pools, one for transfers
//    this engine initiates and one for the ones it serves as a target, so two engines staging into
//    each other can never each hold every buffer while waiting for the other's (no deadlock);
//  - the IPC mappings of peers' device memory (IpcCache).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kvwire::cuda {

class Plane;
class BouncePool;
class IpcCache;

// Deletes a Plane (defined where Plane is complete, so engine headers need only the declaration).
struct PlaneDeleter {
  void operator()(Plane* p) const;
};
using PlanePtr = std::unique_ptr<Plane, PlaneDeleter>;

struct PlaneOptions {
  std::string path = "auto";          // auto | ucx | ipc | staging
  bool gather = false;                // device-to-device lists by the gather kernel (KVWIRE_CUDA_GATHER=1)
  uint64_t chunkBytes = 16ull << 20;  // staging buffer size: the pipeline's unit
  uint32_t buffers = 4;               // staging buffers per pool (copies and the wire overlap)
};

// Registers host memory with the transport (ucp_mem_map) and back: the pools' buffers must be
// registered so UCX moves them zero-copy.
struct HostRegistrar {
  std::function<void*(void* base, uint64_t length, std::string* error)> map;  // -> memh, nullptr on failure
  std::function<void(void* memh)> unmap;
};

// One copy: `bytes` from `src` to `dst` (device or host addresses; unified addressing decides).
struct CopyOp {
  uint64_t dst;
  uint64_t src;
  uint64_t bytes;
};

#ifdef KVWIRE_HAVE_CUDA_HEADERS
// Creates the plane, or nullptr (with `error`) when the CUDA driver is not loaded. `warn` tells the
// agent's user something they should know (called on the engine thread).
PlanePtr CreatePlane(const PlaneOptions& opts, HostRegistrar registrar, std::function<void(std::string)> warn,
                     std::string* error);
#endif

class Plane {
 public:
  // Called with an empty string on success, else what failed.
  using Done = std::function<void(const std::string& error)>;

  virtual ~Plane() = default;
  virtual const PlaneOptions& options() const = 0;

  // Queues `ops` on `device`'s stream and an event after them; `done` runs from Poll() once the
  // event completed (or failed). Returns false (with `error`, `done` not called) when nothing could
  // be queued; after a partial failure the copies already queued still complete before `done`.
  // `deviceOnly`: every end of every op is device memory (local or IPC-mapped), so a list of two
  // or more goes as one launch of the gather kernel (gather.h) where it is loaded.
  virtual bool Submit(int device, const std::vector<CopyOp>& ops, Done done, std::string* error,
                      bool deviceOnly = false) = 0;

  // Runs the callbacks of completed work; returns how many ran. Callbacks may Submit again.
  virtual unsigned Poll() = 0;
  // Work in flight (the engine thread keeps polling while true).
  virtual bool busy() const = 0;
  // Waits for everything in flight and runs the callbacks (shutdown only).
  virtual void Drain() = 0;

  virtual BouncePool& initiatorPool() = 0;
  virtual BouncePool& targetPool() = 0;
  virtual IpcCache& ipc() = 0;
  // This process's ordinal of the device with PCI bus id `busId`, or -1 when it does not see it.
  virtual int DeviceByBusId(const std::string& busId) = 0;
  virtual std::string BusIdOf(int device) = 0;
};

}  // namespace kvwire::cuda

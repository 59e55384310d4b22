// Engine-thread CUDA state of a connection (PeerCuda) and of a transfer (XferCuda), kept by
// UcxEngine's Outbound and Xfer and used by native/engine/cuda_*.cc only.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/ipc_cache.h"

namespace kvwire::cuda {

// How transfers that touch device memory travel to a peer.
enum class Path : uint8_t {
  kUcx,      // UCX moves device memory itself (UCX built with CUDA transports)
  kIpc,      // same host: the peer's device memory is mapped here, copies run on a CUDA stream
  kStaging,  // through pinned host buffers and the UCX wire, pipelined in chunks
};

inline const char* PathName(Path p) {
  switch (p) {
    case Path::kUcx:
      return "ucx";
    case Path::kIpc:
      return "ipc";
    case Path::kStaging:
      return "staging";
  }
  return "staging";
}

struct PeerCuda {
  Path path = Path::kStaging;
  bool sameProcess = false;  // the peer's device pointers are valid here as they are
  std::unordered_map<uint32_t, std::shared_ptr<IpcMapping>> mappings;  // by remote region id
};

// A piece of one descriptor that moves as one unit of the staging pipeline.
struct Piece {
  uint32_t desc;    // descriptor index in the transfer
  uint64_t offset;  // from the start of the descriptor
  uint64_t length;
  int64_t bounce = -1;  // offset in the stage's staging buffer, -1: moves directly (host memory)
};

// A group of pieces that share one staging buffer (or none) and one sub-transfer on the wire.
struct Stage {
  uint32_t first = 0, count = 0;  // pieces
  bool bounced = false;           // uses a staging buffer
  int buffer = -1;
  uint64_t child = 0;        // the sub-transfer moving it on the wire
  bool childAlive = false;   // started and not yet reaped
  bool copyPending = false;  // a device copy in flight
  // WRITE: kWaiting -> kCopyIn (device to buffer) -> kCopied -> kWire -> kDone.
  // READ:  kWaiting -> kWire -> kLanded (in the buffer) -> kCopyOut (buffer to device) -> kDone.
  enum class State : uint8_t { kWaiting, kCopyIn, kCopied, kWire, kLanded, kCopyOut, kDone } state = State::kWaiting;
};

struct XferCuda {
  enum class Mode : uint8_t { kIpc, kStaging } mode = Mode::kStaging;
  std::string errorCode, errorText;  // the first failure; the transfer fails with it
  // IPC: copies queued in batches, each with an event.
  std::vector<std::shared_ptr<IpcMapping>> mappings;  // kept open until the copies are done
  std::vector<uint64_t> remoteAddrs;                  // per descriptor, as mapped here
  int device = 0;                                     // whose stream runs the copies
  uint32_t nextDesc = 0;
  uint32_t batchesPending = 0;
  bool deviceOnly = false;  // every range on `device` at both ends: the gather kernel may copy it
  // Staging.
  std::vector<Piece> pieces;
  std::vector<Stage> stages;
  uint32_t nextStage = 0, stagesDone = 0, stagesActive = 0;
  std::unordered_map<uint64_t, uint32_t> childStage;  // sub-transfer id -> stage
  bool waitingForBuffer = false;
};

}  // namespace kvwire::cuda

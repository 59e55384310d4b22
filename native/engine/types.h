// Types shared by the engine and the N-API layer: access modes, error codes, and the events the
// engine thread hands to the JS thread. Nothing here depends on UCX, so the addon builds without it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kvwire {

// Remote access a region grants. Mirrors the TypeScript Access type; values are bit flags.
enum Access : uint8_t {
  kAccessNone = 0,
  kAccessRead = 1,
  kAccessWrite = 2,
  kAccessReadWrite = 3,
};

inline const char* AccessName(Access a) {
  switch (a) {
    case kAccessNone:
      return "no remote";
    case kAccessRead:
      return "read";
    case kAccessWrite:
      return "write";
    case kAccessReadWrite:
      return "read and write";
  }
  return "unknown";
}

enum class Op : uint8_t { kRead = 0, kWrite = 1 };

// The native/TypeScript contract has one source per list, here: the addon exports each list
// (`contract` in native/addon.cc) and test/transport/native-contract.test.ts compares it with
// lib/native.ts and lib/errors.ts, so neither side can drift from the other unnoticed.

// Stable error codes (name, suffix): code::kName is "ERR_KVWIRE_<suffix>", exactly as lib/errors.ts
// spells it.
#define KVWIRE_ERROR_CODES(X)           \
  X(kOutOfBounds, OUT_OF_BOUNDS)        \
  X(kAccessDenied, ACCESS_DENIED)       \
  X(kBadMetadata, BAD_METADATA)         \
  X(kTimeout, TIMEOUT)                  \
  X(kPeerLost, PEER_LOST)               \
  X(kPeerUnreachable, PEER_UNREACHABLE) \
  X(kClosed, CLOSED)                    \
  X(kUnsupported, UNSUPPORTED)          \
  X(kInvalidArgument, INVALID_ARGUMENT) \
  X(kDeregistered, DEREGISTERED)        \
  X(kUnknownRegion, UNKNOWN_REGION)     \
  X(kRegionBusy, REGION_BUSY)           \
  X(kCancelled, CANCELLED)              \
  X(kTransport, TRANSPORT)              \
  X(kCapacity, CAPACITY)                \
  X(kUnauthorized, UNAUTHORIZED)

namespace code {
#define KVWIRE_DEFINE_CODE(name, suffix) inline constexpr const char* name = "ERR_KVWIRE_" #suffix;
KVWIRE_ERROR_CODES(KVWIRE_DEFINE_CODE)
#undef KVWIRE_DEFINE_CODE
}  // namespace code

// Wire status numbers for the codes a target can answer with (AM replies carry a number).
enum class WireStatus : int32_t {
  kOk = 0,
  kOutOfBounds = 1,
  kAccessDenied = 2,
  kUnknownRegion = 3,
  kDeregistered = 4,
  kCancelled = 5,
  kTimeout = 6,
  kTransport = 7,
  kClosed = 8,
  kInvalid = 9,
};

const char* WireStatusCode(WireStatus s);

// The kinds of event from the engine thread to the JS thread, in the order of their numbers
// (lib/native.ts NativeEventKind has the same names and numbers; add new kinds at the end).
//   TransferDone      id = transfer id; code empty on success; aux = operations still in flight
//   Connected         id = peer id; code empty on success; connection = what UCX chose
//   Notification      text = sender name; bytes = message
//   PeerLost          id = peer id (outbound); text = reason
//   NotifyDone        id = notify token; code empty on success
//   RegionRevoked     id = peer id; aux = remote region id
//   Warning           text = message (e.g. transport fell back to tcp)
//   RegionReleased    id = local region id: no operation can touch its memory any more
//   TransferQuiesced  id = transfer id: its last operation finished (after TransferDone)
//   Handshaked        id = peer id; bytes = the target's grant; aux = 1 when one-sided access was
//                     granted; connection = what UCX chose. Attach (or disconnect) follows.
//   Closed            the engine's last event, after close(): every transfer it failed, every
//                     region it released was reported before it; its thread has ended.
#define KVWIRE_EVENT_KINDS(X) \
  X(TransferDone)             \
  X(Connected)                \
  X(Notification)             \
  X(PeerLost)                 \
  X(NotifyDone)               \
  X(RegionRevoked)            \
  X(Warning)                  \
  X(RegionReleased)           \
  X(TransferQuiesced)         \
  X(Handshaked)               \
  X(Closed)

// What the engine learned about a connection (Connected, Handshaked): the transport category
// ("sm", "tcp", ...), UCX's lanes, "rma" or "am", the CUDA path ("" when none applies), and how the
// calling thread checks the peer lives before it copies by cross-memory attach ("beacon", "pidfd";
// "" when it never does).
struct ConnectionInfo {
  std::string transport;
  std::string lanes;
  std::string protocol;
  std::string cudaPath;
  std::string liveness;
};

// One event from the engine thread to the JS thread.
struct EngineEvent {
  enum class Kind : uint8_t {
#define KVWIRE_DEFINE_KIND(name) k##name,
    KVWIRE_EVENT_KINDS(KVWIRE_DEFINE_KIND)
#undef KVWIRE_DEFINE_KIND
  };
  Kind kind;
  uint64_t id = 0;
  uint64_t aux = 0;
  std::string code;  // error code, empty on success
  std::string text;  // message / name
  std::vector<uint8_t> bytes;
  ConnectionInfo connection;  // Connected (on success) and Handshaked
  // Telemetry for kTransferDone (monotonic ns): when the engine thread began posting, when the
  // last operation was handed to the transport, when the transfer completed.
  uint64_t startNs = 0, postedNs = 0, doneNs = 0;
};

}  // namespace kvwire

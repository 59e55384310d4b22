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

// Stable error codes, spelled exactly as lib/errors.ts spells them.
namespace code {
inline constexpr const char* kOutOfBounds = "ERR_KVWIRE_OUT_OF_BOUNDS";
inline constexpr const char* kAccessDenied = "ERR_KVWIRE_ACCESS_DENIED";
inline constexpr const char* kBadMetadata = "ERR_KVWIRE_BAD_METADATA";
inline constexpr const char* kTimeout = "ERR_KVWIRE_TIMEOUT";
inline constexpr const char* kPeerLost = "ERR_KVWIRE_PEER_LOST";
inline constexpr const char* kPeerUnreachable = "ERR_KVWIRE_PEER_UNREACHABLE";
inline constexpr const char* kClosed = "ERR_KVWIRE_CLOSED";
inline constexpr const char* kUnsupported = "ERR_KVWIRE_UNSUPPORTED";
inline constexpr const char* kInvalidArgument = "ERR_KVWIRE_INVALID_ARGUMENT";
inline constexpr const char* kDeregistered = "ERR_KVWIRE_DEREGISTERED";
inline constexpr const char* kUnknownRegion = "ERR_KVWIRE_UNKNOWN_REGION";
inline constexpr const char* kRegionBusy = "ERR_KVWIRE_REGION_BUSY";
inline constexpr const char* kCancelled = "ERR_KVWIRE_CANCELLED";
inline constexpr const char* kTransport = "ERR_KVWIRE_TRANSPORT";
inline constexpr const char* kCapacity = "ERR_KVWIRE_CAPACITY";
inline constexpr const char* kUnauthorized = "ERR_KVWIRE_UNAUTHORIZED";
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

// One event from the engine thread to the JS thread.
struct EngineEvent {
  enum class Kind : uint8_t {
    kTransferDone,      // id = transfer id; code empty on success; aux = operations still in flight
    kConnected,         // id = peer id; code empty on success; text = transport summary
    kNotification,      // text = sender name; bytes = message
    kPeerLost,          // id = peer id (outbound) ; text = reason
    kNotifyDone,        // id = notify token; code empty on success
    kRegionRevoked,     // id = peer id; aux = remote region id
    kWarning,           // text = message (e.g. transport fell back to tcp)
    kRegionReleased,    // id = local region id: no operation can touch its memory any more
    kTransferQuiesced,  // id = transfer id: its last operation finished (after kTransferDone)
    kHandshaked,        // id = peer id; bytes = the target's grant; aux = 1 when one-sided access
                        // was granted; text = transport summary. Attach (or disconnect) follows.
  };
  Kind kind;
  uint64_t id = 0;
  uint64_t aux = 0;
  std::string code;  // error code, empty on success
  std::string text;  // message / name / transport
  std::vector<uint8_t> bytes;
  // Telemetry for kTransferDone (monotonic ns): when the engine thread began posting, when the
  // last operation was handed to the transport, when the transfer completed.
  uint64_t startNs = 0, postedNs = 0, doneNs = 0;
  uint64_t bytesMoved = 0;
};

}  // namespace kvwire

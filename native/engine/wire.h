// The kvwire wire protocol between two UCX engines: active-message ids and their headers.
//
// Every header is a packed little-endian struct (x86-64 and aarch64 are both little-endian; the
// HELLO carries the protocol version so a peer built otherwise is refused, not misread).
// Every handler checks the header length before reading it: a short header is dropped and counted,
// never read past its end.
#pragma once
#include <cstdint>

namespace kvwire::wire {

// 2: kWriteBatch and kReadDataBatch (runs of small descriptors packed into one message).
inline constexpr uint16_t kProtocolVersion = 2;

enum AmId : uint16_t {
  kHello = 1,           // initiator -> target: who I am, where to answer
  kHelloAck = 2,        // target -> initiator: accepted (inbound id) or refused
  kWrite = 3,           // initiator -> target: one descriptor's bytes, to be placed by the target
  kWriteFin = 4,        // initiator -> target: all descriptors of a WRITE were sent
  kWriteAck = 5,        // target -> initiator: WRITE landed (or why not)
  kReadReq = 6,         // initiator -> target: serve these descriptors back to me
  kReadData = 7,        // target -> initiator: one descriptor's bytes
  kReadFin = 8,         // target -> initiator: all served (or why not)
  kReadCancel = 9,      // initiator -> target: stop serving this READ
  kNotify = 10,         // either way: a notification (after any data it follows)
  kRevoke = 11,         // target -> initiators: a region was deregistered
  kBye = 12,            // either way: this agent is closing
  kWriteBatch = 13,     // initiator -> target: several small descriptors' bytes in one message
  kReadDataBatch = 14,  // target -> initiator: the bytes of consecutive small descriptors
  kAmCount = 15,
};

#pragma pack(push, 1)
struct HelloHdr {
  uint16_t version;
  uint16_t flags;
  uint32_t connId;  // initiator's id for this connection, echoed in the ack
  uint32_t pid;
  uint32_t nameLen;  // data = name bytes, worker address bytes, host id bytes
  uint32_t addrLen;
  uint32_t hostLen;
  uint64_t pidStart;  // process start time (clock ticks since boot), guards pid reuse
};
struct HelloAckHdr {
  uint32_t connId;
  uint32_t inboundId;  // the id the initiator puts in every later header
  int32_t status;      // WireStatus
};
struct WriteHdr {
  uint32_t inboundId;
  uint32_t index;  // descriptor index within the transfer
  uint64_t xferId;
  uint32_t regionId;
  uint32_t timeoutMs;  // so the target can forget a transfer whose initiator vanished
  uint64_t offset;
  uint64_t length;
};
struct WriteFinHdr {
  uint32_t inboundId;
  uint32_t count;  // descriptors in the transfer; data = notification bytes (may be empty)
  uint64_t xferId;
  uint8_t hasNotify;
};
struct StatusHdr {  // kWriteAck and kReadFin
  uint64_t xferId;
  int32_t status;  // WireStatus
  uint32_t index;  // offending descriptor, when status != ok
};
struct ReadReqHdr {
  uint32_t inboundId;
  uint32_t count;  // data = count x ReadItem
  uint64_t xferId;
  uint32_t timeoutMs;
};
struct ReadItem {
  uint32_t regionId;
  uint32_t pad;
  uint64_t offset;
  uint64_t length;
};
struct ReadDataHdr {
  uint64_t xferId;
  uint32_t index;
};
struct ReadCancelHdr {
  uint32_t inboundId;
  uint64_t xferId;
};
struct NotifyHdr {
  uint32_t inboundId;  // data = message bytes
};
struct RevokeHdr {
  uint32_t connId;  // the initiator's id for the connection (from its Hello)
  uint32_t regionId;
};
// kWriteBatch: data = count x BatchEntry, then the descriptors' bytes back to back, in entry order.
struct WriteBatchHdr {
  uint32_t inboundId;
  uint32_t count;  // descriptors in this message
  uint64_t xferId;
  uint32_t timeoutMs;
};
struct BatchEntry {
  uint32_t regionId;
  uint32_t index;  // descriptor index within the transfer
  uint64_t offset;
  uint64_t length;
};
// kReadDataBatch: data = the bytes of descriptors first .. first + count - 1, back to back (the
// initiator knows their lengths and destinations: it asked for them).
struct ReadDataBatchHdr {
  uint64_t xferId;
  uint32_t first;
  uint32_t count;
};
struct ByeHdr {
  uint32_t id;  // inbound id (initiator -> target) or conn id (target -> initiator)
  uint8_t fromTarget;
};
#pragma pack(pop)

// Largest notification message accepted (bytes). Larger ones are refused at the sender.
inline constexpr uint32_t kMaxNotifyBytes = 1u << 20;
// Largest descriptor count in one READ request (each item is 24 bytes on the wire).
inline constexpr uint32_t kMaxReadItems = 1u << 22;
// Largest batch message accepted (bytes, entry table included) and descriptors in one batch: a
// peer claiming more is refused rather than allowed to make this agent allocate it.
inline constexpr uint64_t kMaxBatchBytes = 64ull << 20;
// Packed WRITE bytes a target receives at once, from all its peers; beyond it a packed WRITE is refused.
inline constexpr uint64_t kMaxPackedInFlight = 256ull << 20;
inline constexpr uint32_t kMaxBatchItems = 1u << 16;

}  // namespace kvwire::wire

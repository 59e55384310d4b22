// The kvwire wire protocol between two UCX engines: active-message ids and their headers.
//
// Every header is a packed little-endian struct (x86-64 and aarch64 are both little-endian; the
// HELLO carries the protocol version so a peer built otherwise is refused, not misread).
// Every handler checks the header length before reading it: a short header is dropped and counted,
// never read past its end.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvwire::wire {

// 2: kWriteBatch and kReadDataBatch (runs of small descriptors packed into one message).
// 3: every message names its connection with a Route the receiver checks (an id and a random token
//    only the two ends know); the handshake is authenticated (kHello MAC, kHelloAck MAC, kAuth) when
//    the agents share a secret; the target hands out its region table (the grant) in kHelloAck;
//    kBye with kByeAck closes a connection only once both ends are quiet.
inline constexpr uint16_t kProtocolVersion = 4;

enum AmId : uint16_t {
  kHello = 1,           // initiator -> target: who I am, where to answer
  kHelloAck = 2,        // target -> initiator: accepted (ids, tokens, grant) or refused
  kWrite = 3,           // initiator -> target: one descriptor's bytes, to be placed by the target
  kWriteFin = 4,        // initiator -> target: all descriptors of a WRITE were sent
  kWriteAck = 5,        // target -> initiator: WRITE landed (or why not)
  kReadReq = 6,         // initiator -> target: serve these descriptors back to me
  kReadData = 7,        // target -> initiator: one descriptor's bytes
  kReadFin = 8,         // target -> initiator: all served (or why not)
  kReadCancel = 9,      // initiator -> target: stop serving this READ
  kNotify = 10,         // initiator -> target: a notification (after any data it follows)
  kRevoke = 11,         // target -> initiators: a region was deregistered
  kBye = 12,            // either way: this end is closing the connection (or its agent)
  kWriteBatch = 13,     // initiator -> target: several small descriptors' bytes in one message
  kReadDataBatch = 14,  // target -> initiator: the bytes of consecutive small descriptors
  kAuth = 15,           // initiator -> target: the answer to the target's challenge (kHelloAck)
  kAmCount = 16,
};

inline constexpr size_t kNonceBytes = 16;
inline constexpr size_t kMacBytes = 32;
inline constexpr size_t kKeyIdBytes = 8;

#pragma pack(push, 1)
// The receiver's id for the connection (its inbound id on the target, its connection id on the
// initiator) and the token the receiver chose for it and told only its peer. Hazard guarded: ids
// are small integers anyone could guess; without the token, any UCX peer could act on another
// peer's connection (write into its target's memory, inject READ data, close it).
struct Route {
  uint32_t id;
  uint32_t reserved;
  uint64_t token;
};
struct HelloHdr {
  uint16_t version;
  uint16_t flags;   // kHelloAuthenticated: nonce, ts, keyId and mac are set
  uint32_t connId;  // initiator's id for this connection, echoed in the ack
  uint32_t pid;
  uint32_t nameLen;  // data = name bytes, worker address bytes, host id bytes
  uint32_t addrLen;
  uint32_t hostLen;
  uint64_t pidStart;  // process start time (clock ticks since boot), guards pid reuse
  uint64_t token;     // the initiator's token: every message to it carries it
  uint64_t tsMs;      // the initiator's clock (ms since the epoch): bounds replays
  uint8_t nonce[kNonceBytes];
  uint8_t keyId[kKeyIdBytes];
  uint8_t mac[kMacBytes];  // HMAC over "kvwire hello v3", this header with mac zeroed, and the data
};
inline constexpr uint16_t kHelloAuthenticated = 1;
struct HelloAckHdr {
  uint32_t connId;             // echoed from the hello
  uint32_t inboundId;          // the target's id for the connection
  int32_t status;              // WireStatus
  uint32_t flags;              // kAckOneSided: the grant carries keys for one-sided access
  uint64_t initiatorToken;     // echoed from the hello
  uint64_t token;              // the target's token: every message to it carries it
  uint8_t nonce[kNonceBytes];  // the target's challenge, answered by kAuth
  uint32_t pid;                // the target's process: the initiator checks it against the metadata
  uint32_t beaconFd;           // with one-sided access: its liveness beacon's descriptor + 1 (liveness.h), 0: none
  uint64_t pidStart;
  uint8_t mac[kMacBytes];  // HMAC over "kvwire ack v3", the hello's nonce, this header with mac zeroed, the data
};                         // data = the grant (status ok) or a reason (refused)
inline constexpr uint32_t kAckOneSided = 1;
struct AuthHdr {
  Route route;
  uint8_t mac[kMacBytes];  // HMAC over "kvwire auth v3", the target's nonce, the initiator's nonce, the route
};
struct WriteHdr {
  Route route;
  uint32_t index;      // descriptor index within the transfer
  uint32_t timeoutMs;  // so the target can forget a transfer whose initiator vanished
  uint64_t xferId;
  uint32_t regionId;
  // Nonzero: this descriptor is the WRITE's last and stands for its kWriteFin too (a WRITE without
  // a notification whose last descriptor travels alone, eagerly): the transfer has finCount
  // descriptors.
  uint32_t finCount;
  uint64_t offset;
  uint64_t length;
};
struct WriteFinHdr {
  Route route;
  uint32_t count;  // descriptors in the transfer; data = notification bytes (may be empty)
  uint32_t hasNotify;
  uint64_t xferId;
};
struct StatusHdr {  // kWriteAck and kReadFin
  Route route;
  uint64_t xferId;
  int32_t status;  // WireStatus
  uint32_t index;  // offending descriptor, when status != ok
};
struct ReadReqHdr {
  Route route;
  uint32_t count;  // data = count x ReadItem
  uint32_t timeoutMs;
  uint64_t xferId;
};
struct ReadItem {
  uint32_t regionId;
  uint32_t pad;
  uint64_t offset;
  uint64_t length;
};
struct ReadDataHdr {
  Route route;
  uint64_t xferId;
  uint32_t index;
  // Nonzero: the READ's last push, standing for an ok kReadFin too (its last descriptor travels
  // alone and eagerly, from host memory): the initiator completes once every byte is in.
  uint32_t fin;
};
struct ReadCancelHdr {
  Route route;
  uint64_t xferId;
};
struct NotifyHdr {
  Route route;  // data = message bytes
};
struct RevokeHdr {
  Route route;
  uint32_t regionId;
};
// kWriteBatch: data = count x BatchEntry, then the descriptors' bytes back to back, in entry order.
struct WriteBatchHdr {
  Route route;
  uint32_t count;  // descriptors in this message
  uint32_t timeoutMs;
  uint64_t xferId;
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
  Route route;
  uint64_t xferId;
  uint32_t first;
  uint32_t count;
};
struct ByeHdr {
  Route route;
  uint32_t flags;  // kByeFromTarget, kByeAck
};
inline constexpr uint32_t kByeFromTarget = 1;
inline constexpr uint32_t kByeAck = 2;  // "I am quiet too": the connection may be torn down
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

// The grant: the region table a target hands one initiator in its kHelloAck, after the handshake.
//
// Why it exists: metadata is public (it travels through routers, caches, files), and UCX parses
// what is in it. So metadata carries only what is needed to find the agent and name its regions;
// what gives access (base addresses, UCX remote keys, CUDA IPC handles) comes from the target
// itself, over the connection it accepted, to that peer only, and only as far as the target trusts
// it: one-sided access (mapped shared memory, cross-memory attach, CUDA IPC) is granted to
// same-host peers of the same user that the deployment allows (AgentOptions.directAccess); every
// other peer gets the table without addresses or keys, and all its transfers pass the target's
// checks. The initiator compares the grant with the metadata it was given and refuses a mismatch
// (lib/transport/grant.ts parses it).
//
// Layout (little-endian):
//    0  magic "KVWG"         u32
//    4  version              u16 (= 1)
//    6  flags                u16 (kGrantOneSided)
//    8  highest region id    u32 (ids up to it that are absent were deregistered)
//   12  region count         u32
//   16  the agent's name     u16 length + UTF-8 (the initiator checks it against the metadata)
//       per region: id u32, kind u8 (bits 0-1 access, bit 2 device memory, bit 3 mappable shared
//       memory), length u64, base u64 (0 unless one-sided), label (u16 length + UTF-8), key length
//       u32, key bytes
#pragma once
#include <cstdint>
#include <string>

namespace kvwire {

inline constexpr uint32_t kGrantMagic = 0x4757564b;  // "KVWG" read as little-endian
inline constexpr uint16_t kGrantVersion = 1;
inline constexpr uint16_t kGrantOneSided = 1;
inline constexpr uint8_t kGrantDevice = 4;
inline constexpr uint8_t kGrantMappable = 8;

class GrantWriter {
 public:
  GrantWriter(bool oneSided, uint32_t highestId, const std::string& name);
  void Add(uint32_t id, uint8_t kind, uint64_t length, uint64_t base, const std::string& label, const std::string& key);
  // The finished grant (the count is patched in).
  std::string Finish();

 private:
  void Put(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
  uint32_t count_ = 0;
};

}  // namespace kvwire

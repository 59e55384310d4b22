#include "engine/address_check.h"

#include <cmath>
#include <cstring>

namespace kvwire {

namespace {

// UCX 1.13's packed worker address (src/ucp/wireup/address.c), as ucp_worker_get_address packs
// it: pack flags WORKER_UUID, WORKER_NAME, DEVICE_ADDR, IFACE_ADDR (and SYS_DEVICE with memory
// type detection), never per-endpoint addresses or resource indices, never unified mode.
constexpr uint8_t kVersionV1 = 0;
constexpr uint8_t kVersionV2 = 1;
constexpr uint8_t kHeaderDebugInfo = 1, kHeaderUuid = 2, kHeaderClientId = 4, kHeaderAmOnly = 8;
constexpr uint8_t kNullResource = 0xff;
constexpr uint8_t kFlagLast = 0x80, kFlagHasEpAddr = 0x40, kFlagNumPaths = 0x40, kFlagSysDevice = 0x20;
constexpr uint8_t kIfaceLenMask = 0x3f, kDeviceLenMask = 0x1f;
constexpr uint8_t kMdEmptyDev = 0x80, kMdMaskV1 = 0x1f, kMdMaskV2 = 0x7f;
constexpr uint32_t kMaxMds = 64;     // UCP_MAX_MDS: md indices index 64-bit maps
constexpr size_t kMaxEntries = 128;  // UCP_MAX_RESOURCES
constexpr size_t kIfaceAttrV1 = 16;  // float overhead, float bandwidth, float lat_ovh, u32 prio+flags
constexpr size_t kIfaceAttrV2 = 8;   // fp8 overhead, fp8 bandwidth, fp8 latency, u8 prio, u16 seg, u16 flags

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool Take(size_t k, const uint8_t** out) {
    if (k > n_ - off_) return false;
    *out = p_ + off_;
    off_ += k;
    return true;
  }
  bool Byte(uint8_t* b) {
    const uint8_t* q;
    if (!Take(1, &q)) return false;
    *b = *q;
    return true;
  }
  bool Peek(uint8_t* b) const {
    if (off_ >= n_) return false;
    *b = p_[off_];
    return true;
  }
  size_t offset() const { return off_; }
  bool done() const { return off_ == n_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t off_ = 0;
};

bool Fail(std::string* why, const std::string& msg, size_t at) {
  if (why != nullptr) *why = msg + " (at byte " + std::to_string(at) + ")";
  return false;
}

// A value packed in the low bits of a byte, extended to the next byte in format v2 when the low
// bits are all set.
bool Extended(Reader& r, uint8_t first, uint8_t mask, uint8_t version, uint32_t* value) {
  uint32_t v = first & mask;
  if (version != kVersionV1 && v == mask) {
    uint8_t b;
    if (!r.Byte(&b)) return false;
    v = b;
  }
  *value = v;
  return true;
}

bool FiniteIn(float v, double lo, double hi) {
  return std::isfinite(v) && v >= lo && v <= hi;
}

}  // namespace

bool ParseWorkerAddress(const uint8_t* data, size_t len, std::vector<AddressEntry>* entries, std::string* why) {
  if (data == nullptr || len < 2) return Fail(why, "the worker address is too short", 0);
  if (len > size_t{64} * 1024) return Fail(why, "the worker address is longer than 64 KiB", 0);
  Reader r(data, len);
  uint8_t b0;
  r.Byte(&b0);
  uint8_t version = b0 & 0x0f, flags;
  if (version == kVersionV1) {
    flags = b0 >> 4;
  } else if (version == kVersionV2) {
    if ((b0 >> 4) != 0) return Fail(why, "unknown bits in the address header", 0);
    if (!r.Byte(&flags)) return Fail(why, "truncated address header", 1);
  } else {
    // ucp_address_unpack asserts on any other version: the process would abort.
    return Fail(why, "address format version " + std::to_string(version) + " is not one UCX 1.13 reads", 0);
  }
  if ((flags & ~(kHeaderDebugInfo | kHeaderUuid | kHeaderClientId | kHeaderAmOnly)) != 0) {
    return Fail(why, "unknown address header flags", 0);
  }
  const uint8_t* skip;
  // Format v1 always carries the worker uuid (UCX reads it whatever the flag says).
  if ((version == kVersionV1 || (flags & kHeaderUuid) != 0) && !r.Take(8, &skip)) {
    return Fail(why, "truncated worker uuid", r.offset());
  }
  if ((flags & kHeaderClientId) != 0 && !r.Take(8, &skip)) return Fail(why, "truncated client id", r.offset());
  if ((flags & kHeaderDebugInfo) != 0) {
    uint8_t n;
    if (!r.Byte(&n) || !r.Take(n, &skip)) return Fail(why, "truncated worker name", r.offset());
  }
  uint8_t next;
  if (!r.Peek(&next)) return Fail(why, "the address ends before its transports", r.offset());
  if (next == kNullResource) return Fail(why, "the address carries no transport", r.offset());
  size_t count = 0;
  bool lastDev = false;
  while (!lastDev) {
    size_t at = r.offset();
    uint8_t md;
    if (!r.Byte(&md)) return Fail(why, "truncated device entry", at);
    bool emptyDev = (md & kMdEmptyDev) != 0;
    uint32_t mdIndex;
    if (!Extended(r, md, version == kVersionV1 ? kMdMaskV1 : kMdMaskV2, version, &mdIndex)) {
      return Fail(why, "truncated md index", at);
    }
    if (mdIndex >= kMaxMds) return Fail(why, "md index " + std::to_string(mdIndex) + " is out of range", at);
    uint8_t lenByte;
    if (!r.Byte(&lenByte)) return Fail(why, "truncated device address length", r.offset());
    lastDev = (lenByte & kFlagLast) != 0;
    uint32_t devLen;
    if (!Extended(r, lenByte, kDeviceLenMask, version, &devLen))
      return Fail(why, "truncated device address length", at);
    if ((lenByte & kFlagNumPaths) != 0) {
      uint8_t paths;
      if (!r.Byte(&paths)) return Fail(why, "truncated path count", r.offset());
      if (paths == 0) return Fail(why, "a device with no path", r.offset() - 1);
    }
    if ((lenByte & kFlagSysDevice) != 0 && !r.Take(1, &skip)) return Fail(why, "truncated system device", r.offset());
    if (!r.Take(devLen, &skip)) return Fail(why, "truncated device address", r.offset());
    bool lastTl = emptyDev;
    while (!lastTl) {
      size_t tlAt = r.offset();
      if (++count > kMaxEntries) return Fail(why, "more than 128 transport entries", tlAt);
      const uint8_t* csum;
      const uint8_t* attr;
      if (!r.Take(2, &csum)) return Fail(why, "truncated transport name checksum", tlAt);
      if (!r.Take(version == kVersionV1 ? kIfaceAttrV1 : kIfaceAttrV2, &attr)) {
        return Fail(why, "truncated interface attributes", r.offset());
      }
      if (version == kVersionV1) {
        float overhead, bandwidth, latency;
        std::memcpy(&overhead, attr, 4);
        std::memcpy(&bandwidth, attr + 4, 4);
        std::memcpy(&latency, attr + 8, 4);
        // Seconds, and bytes per second (negative: an older UCX's "shared" bandwidth). A NaN
        // passes UCX's own "bandwidth <= 0" check and poisons lane selection.
        if (!FiniteIn(overhead, 0, 1) || !FiniteIn(latency, -1, 1) || !FiniteIn(std::fabs(bandwidth), 1, 1e13)) {
          return Fail(why, "interface attributes out of range (NaN, infinite or absurd)", tlAt + 2);
        }
      } else {
        uint16_t seg;
        std::memcpy(&seg, attr + 4, 2);
        if (attr[1] == 0) return Fail(why, "a zero bandwidth", tlAt + 2);  // UCX refuses it
        (void)seg;
      }
      uint8_t ifLenByte;
      if (!r.Byte(&ifLenByte)) return Fail(why, "truncated interface address length", r.offset());
      if ((ifLenByte & kFlagHasEpAddr) != 0) {
        return Fail(why, "an endpoint address in a worker address", r.offset() - 1);
      }
      lastTl = (ifLenByte & kFlagLast) != 0;
      uint32_t ifLen;
      if (!Extended(r, ifLenByte, kIfaceLenMask, version, &ifLen)) {
        return Fail(why, "truncated interface address length", r.offset());
      }
      if (!r.Take(ifLen, &skip)) return Fail(why, "truncated interface address", r.offset());
      if (entries != nullptr) {
        AddressEntry e;
        e.tlNameCsum = static_cast<uint16_t>(csum[0] | (csum[1] << 8));
        e.mdIndex = mdIndex;
        e.deviceAddressLength = devLen;
        e.ifaceAddressLength = ifLen;
        entries->push_back(e);
      }
    }
  }
  if (!r.done()) return Fail(why, std::to_string(len - r.offset()) + " bytes after the last transport", r.offset());
  return true;
}

uint16_t TlNameChecksum(const char* name) {
  uint16_t crc = 0xffff;
  for (const char* p = name; *p != 0; ++p) {
    crc ^= static_cast<uint8_t>(*p);
    for (int bit = 0; bit < 8; ++bit) crc = static_cast<uint16_t>((crc >> 1) ^ ((crc & 1) ? 0x8408u : 0u));
  }
  return static_cast<uint16_t>(~crc);
}

bool OffersSharedMemory(const uint8_t* data, size_t len) {
  std::vector<AddressEntry> entries;
  std::string why;
  if (!ParseWorkerAddress(data, len, &entries, &why)) return false;
  for (const char* tl : {"posix", "sysv", "xpmem", "knem", "self"}) {
    uint16_t csum = TlNameChecksum(tl);
    for (const AddressEntry& e : entries) {
      if (e.tlNameCsum == csum) return true;
    }
  }
  return false;
}

bool OffersTransport(const uint8_t* data, size_t len, const char* tl) {
  std::vector<AddressEntry> entries;
  std::string why;
  if (!ParseWorkerAddress(data, len, &entries, &why)) return false;
  uint16_t csum = TlNameChecksum(tl);
  for (const AddressEntry& e : entries) {
    if (e.tlNameCsum == csum) return true;
  }
  return false;
}

AddressRules RulesFromOwnAddress(const uint8_t* data, size_t len) {
  AddressRules rules;
  std::vector<AddressEntry> entries;
  std::string why;
  if (!ParseWorkerAddress(data, len, &entries, &why)) return rules;
  for (const AddressEntry& e : entries)
    rules.lengths[e.tlNameCsum].insert({e.deviceAddressLength, e.ifaceAddressLength});
  return rules;
}

bool CheckWorkerAddress(const uint8_t* data, size_t len, std::string* why, const AddressRules* rules) {
  std::vector<AddressEntry> entries;
  if (!ParseWorkerAddress(data, len, &entries, why)) return false;
  if (rules == nullptr || rules->lengths.empty()) return true;
  bool common = false;
  for (const AddressEntry& e : entries) {
    auto it = rules->lengths.find(e.tlNameCsum);
    if (it == rules->lengths.end()) continue;  // a transport this agent lacks: UCX ignores it
    common = true;
    if (it->second.count({e.deviceAddressLength, e.ifaceAddressLength}) == 0) {
      if (why != nullptr) {
        *why = "a transport entry (name checksum 0x" + std::to_string(e.tlNameCsum) + ") has a " +
               std::to_string(e.deviceAddressLength) + "-byte device address and a " +
               std::to_string(e.ifaceAddressLength) + "-byte interface address, which that transport never packs";
      }
      return false;
    }
  }
  if (!common) {
    if (why != nullptr) *why = "the address offers no transport this agent has";
    return false;
  }
  return true;
}

}  // namespace kvwire

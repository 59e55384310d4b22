// Checks a UCX worker address (as UCX 1.13 packs it, address formats v1 and v2) before UCX parses
// it. Hazard guarded: ucp_address_unpack trusts its input completely. It is given no length and
// reads until flags in the data say stop; an unknown format version is an assertion (the process
// aborts); a field out of range overflows a bitmap or makes lane selection assert; a NaN bandwidth
// slips past its check. A peer's worker address reaches UCX from metadata (connect) and from a
// hello (the target answering it): every field UCX would read is checked here first, within the
// given length, against the ranges UCX itself produces.
//
// What a check of the format cannot tell: whether the addresses inside (an IP and port, a shared
// memory segment, a process id) belong to the agent the metadata claims. An address that passes
// makes UCX contact whatever it names. Authenticated agents (AgentOptions.auth) accept only
// signed metadata and hellos, which closes that too; see docs/SECURITY.md.
//
// Pure C++17, no UCX, no Node-API: the reliability suite fuzzes it as is.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace kvwire {

// One transport entry of a parsed address.
struct AddressEntry {
  uint16_t tlNameCsum = 0;
  uint32_t mdIndex = 0;
  size_t deviceAddressLength = 0;
  size_t ifaceAddressLength = 0;
};

// What a well-formed address of a peer may contain beyond its format: for each transport this
// agent has (by its name checksum, as in its own address), the device and iface address lengths
// its own address uses. A peer's entry of such a transport must use lengths seen for it here
// (UCX's transport code reads the addresses at the lengths it expects); entries of transports this
// agent lacks are ignored by UCX, and only their framing is checked.
struct AddressRules {
  std::map<uint16_t, std::set<std::pair<size_t, size_t>>> lengths;
};

// Parses `data` (`len` bytes) as a worker address. On success fills `entries` (when given) and
// returns true; on failure says why.
bool ParseWorkerAddress(const uint8_t* data, size_t len, std::vector<AddressEntry>* entries, std::string* why);

// The rules this agent's own address implies (call it with the agent's address).
AddressRules RulesFromOwnAddress(const uint8_t* data, size_t len);

// UCX's checksum of a transport name (ucs_crc16_string), as addresses carry it.
uint16_t TlNameChecksum(const char* name);

// True when a well-formed address offers a transport that reaches a process of this host through
// memory (posix, sysv, xpmem, knem shared memory; self: the same process).
bool OffersSharedMemory(const uint8_t* data, size_t len);

// True when a well-formed address offers transport `tl` (a UCX transport name, e.g. "cma").
bool OffersTransport(const uint8_t* data, size_t len, const char* tl);

// Checks a peer's address: well formed, and (with `rules`) transports known here at the lengths
// used here. `why` says what is wrong.
bool CheckWorkerAddress(const uint8_t* data, size_t len, std::string* why, const AddressRules* rules = nullptr);

}  // namespace kvwire

// Who this process is, in terms a peer can check: pid, its start time (guards pid reuse), and a
// host id that is equal exactly when two processes share a kernel and a pid namespace (only then
// does a pid name the same process on both sides, and only then can shared memory reach).
#pragma once
#include <cstdint>
#include <string>

namespace kvwire {

// Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat); 0 if unknown.
uint64_t ProcessStartTime(uint32_t pid);

// "<hostname>/<boot id>/<pid namespace>", e.g. "node-7/2f1c.../pid:[4026531836]".
std::string HostId();

// True when process `pid` (of this pid namespace) runs with this process's effective user id: the
// kernel then lets each read and write the other's memory anyway (ptrace rules permitting).
bool SameUser(uint32_t pid);

}  // namespace kvwire

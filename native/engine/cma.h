// Cross-memory attach: copying between this process and a same-host peer's registered memory with
// process_vm_readv / process_vm_writev, one system call for up to 1,024 descriptors.
//
// This is a path the target cannot check: the kernel lets any process of the same user (and
// ptrace rules allowing it) read and write another's memory. A target therefore offers it (by
// granting the base addresses of its regions) only to same-host peers of the same user, and only
// when the deployment allows one-sided access (AgentOptions.directAccess); the initiator uses it
// only for ranges it checked against the granted regions. See docs/SECURITY.md.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvwire {

struct CmaRange {
  uint8_t* local;
  uint64_t remote;  // the peer's virtual address
  uint64_t length;
};

// Copies `n` ranges to (write) or from (read) process `pid`. Returns 0 on success, else the errno
// of the failing call (ESRCH: the process is gone; EFAULT: a remote range is not mapped there any
// more; EPERM: the kernel refuses cross-process access between these processes).
int CmaCopy(pid_t pid, bool write, const CmaRange* ranges, size_t n);

}  // namespace kvwire

// UCX's memory hooks, kept off in a Node process.
//
// UCX (libucm) can patch libc's mmap, munmap, mremap, brk, sbrk, madvise and shmat/shmdt in place
// ("bistro" hooks) to see memory being unmapped, which only its registration cache needs; kvwire
// registers every region itself and passes the memory handle with each operation. Inside Node the
// patching and the patched functions race V8's threads, which map and unmap memory all the time: a
// process with the hooks crashed at exit about once in a hundred runs with nothing but the addon
// loaded, and the reliability suite's lifetime scenario, whose first agent is a worker thread's,
// crashed in 3 runs of 40 on a loaded machine (V8's concurrent marker faulting on malloc memory
// the patched sbrk had given back; glibc aborting with "break adjusted to free malloc space").
//
// UCX decides at load, from UCX_MEM_EVENTS in the process environment: lib/native.ts sets it to
// "no" when the main thread imports kvwire. A worker thread's process.env is its own copy, so a
// process whose main thread never imported kvwire loads UCX from a worker with nothing said, and
// UCX patches libc then; the addon reports it (ucxMemoryHooks) and kvwire warns.
#pragma once

namespace kvwire {

// Whether UCX installed its mmap hooks when it loaded (UCX_MEM_EVENTS not "no" in the process
// environment and the default hook mode). The first call reads what UCX parsed at load: the
// addon's module init makes it, before any agent exists.
bool UcxMemoryHooksAtLoad();

// Before the process's first ucp_init: where the environment does not name UCX_MEM_EVENTS, UCX's
// memory events are switched off through its configuration call, so that no registration cache
// asks for more hooks (its malloc hooks among them). Installed mmap hooks stay (they cannot be
// taken back), dispatching to no handler.
void KeepUcxMemoryHooksOff();

}  // namespace kvwire

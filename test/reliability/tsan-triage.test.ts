// The sanitizer runs count, without failing, two kinds of ThreadSanitizer report (tsan-triage.ts).
// The triage must not let through a race with a kvwire frame or any other Node frame.
import { describe, expect, it } from 'vitest';
import { triage } from './tsan-triage.js';

const INSIDE_UCX = `WARNING: ThreadSanitizer: data race (pid=20091)
  Write of size 1 at 0x7fdd7fa13f28 by main thread (mutexes: write M300750600956543056):
    #0 pthread_rwlock_destroy ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:1397 (libtsan.so+0x408b1)
    #1 <null> <null> (libucs.so.0+0x12d01)

  Previous atomic read of size 1 at 0x7fdd7fa13f28 by thread T12:
    #0 pthread_rwlock_rdlock ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:1406 (libtsan.so+0x447f1)
    #1 <null> <null> (libucs.so.0+0x15ab4)

  Thread T12 'async' (tid=20176, running) created by main thread at:
    #0 pthread_create ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:1001 (libtsan.so+0x5e686)
    #1 ucs_pthread_create <null> (libucs.so.0+0x36487)
`;

const PUBLISHED = `WARNING: ThreadSanitizer: data race (pid=28410)
  Read of size 8 at 0x7f1fe6575000 by thread T13:
    #0 memcpy ../../../../src/libsanitizer/sanitizer_common/sanitizer_common_interceptors.inc:827 (libtsan.so+0x5dda6)
    #1 memcpy ../../../../src/libsanitizer/sanitizer_common/sanitizer_common_interceptors.inc:819 (libtsan.so+0x5dda6)
    #2 <null> <null> (libucp.so.0+0x67ad3)

  Previous write of size 8 at 0x7f1fe6575000 by main thread (mutexes: write M300750600956543056):
    #0 calloc ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:667 (libtsan.so+0x3ee50)
    #1 node::NodeArrayBufferAllocator::Allocate(unsigned long) <null> (node+0xbbe4d0)

  Location is heap block of size 4194304 at 0x7f1fe6575000 allocated by main thread:
    #0 calloc ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:667 (libtsan.so+0x3ee50)
    #1 node::NodeArrayBufferAllocator::Allocate(unsigned long) <null> (node+0xbbe4d0)
`;

// Seen in CI (the TSan run of connect/disconnect cycles over tcp): V8's garbage collector, wholly
// inside the node binary.
const INSIDE_NODE = `WARNING: ThreadSanitizer: data race (pid=28338)
  Write of size 1 at 0x7b140001c4d8 by thread T4:
    #0 pthread_mutex_destroy ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:1312 (libtsan.so+0x42191)
    #1 v8::internal::(anonymous namespace)::ParallelClearingJob::~ParallelClearingJob() <null> (node+0x1122244)

  Previous atomic read of size 1 at 0x7b140001c4d8 by main thread (mutexes: write M300750600956543056, write M295684205994608928):
    #0 pthread_mutex_lock ../../../../src/libsanitizer/sanitizer_common/sanitizer_common_interceptors.inc:4324 (libtsan.so+0x558e1)
    #1 v8::internal::(anonymous namespace)::ParallelClearingJob::GetMaxConcurrency(unsigned long) const <null> (node+0x11224ab)

  Location is heap block of size 72 at 0x7b140001c4d0 allocated by main thread:
    #0 operator new(unsigned long) ../../../../src/libsanitizer/tsan/tsan_new_delete.cpp:64 (libtsan.so+0x87323)
    #1 v8::internal::MarkCompactCollector::ClearNonLiveReferences() <null> (node+0x113e720)

  Thread T4 (tid=28343, running) created by main thread at:
    #0 pthread_create ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:1001 (libtsan.so+0x5e686)
    #1 uv_thread_create_ex ../deps/uv/src/unix/thread.c:172 (node+0x18baa4b)

SUMMARY: ThreadSanitizer: data race (/usr/bin/node+0x1122244) in v8::internal::(anonymous namespace)::ParallelClearingJob::~ParallelClearingJob()
`;

describe('ThreadSanitizer report triage', () => {
  it('counts a race between UCX threads inside UCX', () => {
    expect(triage(INSIDE_UCX)).toBe('ucx');
  });

  it('counts UCX reading, for a peer, a buffer whose allocation by Node TSan cannot order', () => {
    expect(triage(PUBLISHED)).toBe('published-memory');
  });

  it('reads the allocation from its first frame past the runtime (TSan may unwind garbage below it)', () => {
    const deeper = PUBLISHED.replace(
      '#1 node::NodeArrayBufferAllocator::Allocate(unsigned long) <null> (node+0xbbe4d0)\n\n  Location',
      '#1 node::NodeArrayBufferAllocator::Allocate(unsigned long) <null> (node+0xbbe4d0)\n    #2 <null> <null> (libucs.so.0+0x335f3)\n\n  Location',
    );
    expect(deeper).toContain('libucs.so.0+0x335f3');
    expect(triage(deeper)).toBe('published-memory');
  });

  it("counts a race between Node's own threads wholly inside the node binary (V8's GC)", () => {
    expect(triage(INSIDE_NODE)).toBe('node');
  });

  it('fails a Node race with a kvwire or UCX frame on either side', () => {
    const kvwire = '#2 kvwire::Agent::Register(Napi::CallbackInfo const&) native/agent.cc:1 (kvwire.node+0x1234)';
    const withKvwire = INSIDE_NODE.replace('(node+0x11224ab)\n', `(node+0x11224ab)\n    ${kvwire}\n`);
    expect(withKvwire).toContain('kvwire.node+0x1234');
    expect(triage(withKvwire)).toBeUndefined();
    expect(
      triage(
        INSIDE_NODE.replace('(node+0x1122244)\n', '(node+0x1122244)\n    #2 <null> <null> (libucp.so.0+0x67ad3)\n'),
      ),
    ).toBeUndefined();
    expect(triage(INSIDE_NODE.replace('(node+0x11224ab)', '(libfoo.so+0x11224ab)'))).toBeUndefined();
  });

  it('fails anything with a kvwire frame, another Node frame, or no second access', () => {
    const kvwire = '#1 kvwire::UcxEngine::Run() native/engine/ucx_engine.cc:1 (kvwire.node+0x1234)';
    expect(triage(INSIDE_UCX.replace('#1 <null> <null> (libucs.so.0+0x15ab4)', kvwire))).toBeUndefined();
    expect(triage(INSIDE_UCX.replace('(libucs.so.0+0x12d01)', '(node+0x12d01)'))).toBeUndefined();
    expect(triage(PUBLISHED.replace('#2 <null> <null> (libucp.so.0+0x67ad3)', kvwire))).toBeUndefined();
    expect(triage(PUBLISHED.replace('node::NodeArrayBufferAllocator::Allocate', 'node::Buffer::New'))).toBeUndefined();
    expect(triage(PUBLISHED.replace(/ {2}Previous write[^]*$/, ''))).toBeUndefined();
    expect(
      triage(
        INSIDE_UCX.replace('WARNING: ThreadSanitizer: data race', 'WARNING: ThreadSanitizer: heap-use-after-free'),
      ),
    ).toBeUndefined();
  });
});

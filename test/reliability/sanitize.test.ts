// The sanitizer runs count, without failing, the ThreadSanitizer races that lie wholly inside UCX's
// libraries (sanitize.ts): the classifier must not let a race with a kvwire or Node frame through.
import { expect, it } from 'vitest';
import { insideUcx } from './sanitize.js';
it('counts a race between UCX threads inside UCX as UCX-internal, and nothing with a kvwire or Node frame', () => {
  const ucx = `WARNING: ThreadSanitizer: data race (pid=20091)
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
  expect(insideUcx(ucx)).toBe(true);
  expect(
    insideUcx(
      ucx.replace('#1 <null> <null> (libucs.so.0+0x15ab4)', '#1 kvwire::UcxEngine::Run() x.cc:1 (kvwire.node+0x1234)'),
    ),
  ).toBe(false);
  expect(insideUcx(ucx.replace('(libucs.so.0+0x12d01)', '(node+0x12d01)'))).toBe(false);
});

// CUDA device memory between two processes over the fake CUDA driver (a TEST DOUBLE for CPU CI:
// see fake-driver.ts). The same scenarios run on a real GPU in test/gpu/transfers.test.ts; this
// suite proves kvwire's own code paths: IPC metadata and handle mapping, copy completion by
// events (the fake completes copies late, on a stream thread), notification ordering, and the
// staging pipeline with small chunks, on both sides, over shared memory and tcp.
import { FAKE_CUDA } from './fake-driver.js';

import { describe } from 'vitest';
import { transferScenarios } from './scenarios.js';

process.env.KVWIRE_FAKE_CUDA_DELAY_US = '200'; // copies complete later than issued: events are polled

describe.skipIf(FAKE_CUDA.path === undefined)('fake CUDA driver (test double)', () => {
  transferScenarios({
    paths: ['ipc', 'staging'],
    transports: (path) => (path === 'ipc' ? ['sm'] : ['sm', 'tcp']),
    size: 4 << 20,
    chunk: { local: 256 << 10, peer: 64 << 10 },
    maxDescriptor: 200 << 10,
  });
});

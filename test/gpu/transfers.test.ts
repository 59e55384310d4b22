// On a GPU: two processes on one GPU, READ and WRITE over CUDA IPC and over host staging, device
// and host memory on either side, every byte verified; notifications after the data. The same
// scenarios run on CPU CI over the fake driver (test/cuda/two-process.test.ts); this is the proof.
import { describe } from 'vitest';
import { transferScenarios } from '../cuda/scenarios.js';
import { GPU_SKIP, gpuTitle } from './gpu.js';

describe.skipIf(GPU_SKIP !== undefined)(gpuTitle('GPU transfers'), () => {
  transferScenarios({
    paths: ['ipc', 'staging'],
    transports: (path) => (path === 'ipc' ? ['sm', 'tcp'] : ['sm', 'tcp']),
    size: 64 << 20,
    chunk: { local: 1 << 20, peer: 512 << 10 },
    maxDescriptor: 2 << 20,
  });
});

describe.skipIf(GPU_SKIP !== undefined)(gpuTitle('GPU transfers with the default 16 MiB staging chunks'), () => {
  transferScenarios({
    paths: ['staging'],
    transports: () => ['sm'],
    size: 256 << 20,
    chunk: { local: 16 << 20, peer: 16 << 20 },
    maxDescriptor: 40 << 20,
  });
});

// On a GPU: two processes on one GPU, READ and WRITE over CUDA IPC and over host staging, device
// and host memory on either side, every byte verified; notifications after the data. The same
// scenarios run on CPU CI over the fake driver (test/cuda/two-process.test.ts); this is the proof.
import { afterAll, beforeAll, describe } from 'vitest';
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

// The gather kernel (native/cuda/gather.cu), opt-in until this suite has passed with it on a GPU:
// IPC lists with device memory at both ends go as one launch per list, ranges of 1 byte to 2 MiB
// at odd offsets (its byte path and its 16-byte path, ranges of many 64 KiB chunks).
describe.skipIf(GPU_SKIP !== undefined)(gpuTitle('GPU transfers by the gather kernel (KVWIRE_CUDA_GATHER=1)'), () => {
  beforeAll(() => {
    process.env.KVWIRE_CUDA_GATHER = '1';
  });
  afterAll(() => {
    delete process.env.KVWIRE_CUDA_GATHER;
  });
  transferScenarios({
    paths: ['ipc'],
    transports: () => ['sm'],
    size: 64 << 20,
    chunk: { local: 1 << 20, peer: 512 << 10 },
    maxDescriptor: 2 << 20,
  });
});

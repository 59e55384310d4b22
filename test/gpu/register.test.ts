// On a GPU: registration of device pointers the agent did not allocate (a raw address inside a
// larger allocation, as a PyTorch tensor inside its caching allocator's block), and every kind of
// bad device pointer refused with the driver's reason, never a crash.
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, cuda, decodeDeviceKey, ErrorCode } from '../../lib/index.js';
import type { CudaAllocation } from '../../lib/index.js';
import { expectCode } from '../transport/helpers.js';
import { GPU_SKIP, gpuTitle } from './gpu.js';

describe.skipIf(GPU_SKIP !== undefined)(gpuTitle('GPU registration'), () => {
  const agents: Agent[] = [];
  const allocations: CudaAllocation[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.close();
    for (const m of allocations.splice(0)) if (!m.freed) m.free();
  });
  async function agent(): Promise<Agent> {
    const a = await Agent.create({ name: `gpu-reg-${agents.length}` });
    agents.push(a);
    return a;
  }

  it('registers a foreign device pointer inside a larger allocation; the grant carries its IPC handle and offset', async () => {
    const a = await agent();
    const block = cuda.alloc(0, 8 << 20);
    allocations.push(block);
    const tensor = { kind: 'cuda' as const, device: 0, pointer: block.pointer + (3n << 20n), length: 1 << 20 };
    const r = a.register(tensor, { access: 'readwrite', label: 'tensor' });
    expect([r.kind, r.device, r.pointer, r.length]).toEqual(['cuda', 0, tensor.pointer, 1 << 20]);
    const k = decodeDeviceKey(a.deviceGrantKey(r, true)!);
    expect(k.ipcOffset).toBe(3 << 20);
    expect(k.ipcHandle).toHaveLength(64);
    expect(k.busId).toBe(cuda.devices()[0]!.pciBusId);
    // Bytes written through the driver at the tensor's address are the region's bytes.
    cuda.copyToDevice(tensor, Buffer.alloc(16, 7));
    const back = Buffer.alloc(16);
    cuda.copyFromDevice(block, back, 3 << 20);
    expect([...back]).toEqual(new Array(16).fill(7));
  });

  it('refuses unknown, host, out-of-allocation, wrong-device and freed pointers', async () => {
    const a = await agent();
    const m = cuda.alloc(0, 1 << 20);
    allocations.push(m);
    expectCode(
      () => a.register({ kind: 'cuda', device: 0, pointer: 0x1000n, length: 4096 }),
      ErrorCode.INVALID_ARGUMENT,
      /not memory the CUDA driver knows|not device memory/,
    );
    expectCode(
      () => a.register({ kind: 'cuda', device: 0, pointer: m.pointer + (1n << 20n) - 16n, length: 4096 }),
      ErrorCode.INVALID_ARGUMENT,
      /past the end of its allocation/,
    );
    const other = cuda.devices().length;
    expectCode(
      () => a.register({ kind: 'cuda', device: other, pointer: m.pointer, length: 4096 }),
      ErrorCode.INVALID_ARGUMENT,
      /does not exist/,
    );
    if (other > 1) {
      expectCode(
        () => a.register({ kind: 'cuda', device: 1, pointer: m.pointer, length: 4096 }),
        ErrorCode.INVALID_ARGUMENT,
        /memory of CUDA device 0, not of device 1/,
      );
    }
    const gone = cuda.alloc(0, 1 << 20);
    const raw = { kind: 'cuda' as const, device: 0, pointer: gone.pointer, length: 4096 };
    gone.free();
    expectCode(() => a.register(gone), ErrorCode.INVALID_ARGUMENT, /freed/);
    expectCode(() => a.register(raw), ErrorCode.INVALID_ARGUMENT);
    expect(a.regions).toHaveLength(0);
  });
});

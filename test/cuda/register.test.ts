// Registering CUDA device memory, over the fake CUDA driver (a TEST DOUBLE, see fake-driver.ts)
// with two fake devices: what is accepted (allocations, foreign pointers inside larger
// allocations), what is refused and why, what the metadata says, and allocation lifetimes.
process.env.KVWIRE_FAKE_CUDA_DEVICES = '2';
import { FAKE_CUDA } from './fake-driver.js';

import { afterEach, describe, expect, it } from 'vitest';
import { Agent, cuda, decodeMetadata, ErrorCode } from '../../lib/index.js';
import type { CudaAllocation } from '../../lib/index.js';
import { decodeDeviceKey } from '../../lib/transport/device-key.js';
import { expectCode, expectRejectCode } from '../transport/helpers.js';

describe.skipIf(FAKE_CUDA.path === undefined)('registering device memory (fake CUDA driver, a test double)', () => {
  const agents: Agent[] = [];
  const allocations: CudaAllocation[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.close();
    for (const m of allocations.splice(0)) if (!m.freed) m.free();
  });
  async function agent(opts: Parameters<typeof Agent.create>[0] = {}): Promise<Agent> {
    const a = await Agent.create({ name: `reg-${agents.length}`, ...opts });
    agents.push(a);
    return a;
  }
  function alloc(device: number, bytes: number): CudaAllocation {
    const m = cuda.alloc(device, bytes);
    allocations.push(m);
    return m;
  }

  it('registers an allocation and a foreign pointer inside a larger one; metadata carries IPC handle and offset', async () => {
    const a = await agent();
    const big = alloc(1, 1 << 20);
    const whole = a.register(big, { access: 'read', label: 'whole' });
    expect(whole.kind).toBe('cuda');
    expect(whole.device).toBe(1);
    expect(whole.pointer).toBe(big.pointer);
    expect(whole.length).toBe(1 << 20);
    expectCode(() => whole.bytes, ErrorCode.UNSUPPORTED, /no host view/);
    const tensor = { kind: 'cuda' as const, device: 1, pointer: big.pointer + 65536n, length: 4096 };
    a.register(tensor, { access: 'readwrite', label: 'tensor' });
    a.register({ ...tensor, pointer: big.pointer + 8192n }, { label: 'private' }); // access none: not exported
    const d = decodeMetadata(a.metadata());
    expect(d.regions.map((r) => [r.label, r.memory])).toEqual([
      ['whole', 'cuda'],
      ['tensor', 'cuda'],
    ]);
    // Keys travel in the handshake's grant, not in metadata: with the IPC handle to a trusted
    // same-host peer, without it to anyone else.
    expect(d.regions[1]!.key).toBeUndefined();
    const region = a.regions.find((r) => r.label === 'tensor')!;
    const k = decodeDeviceKey(a.deviceGrantKey(region, true)!);
    expect(k.device).toBe(1);
    expect(k.ipcOffset).toBe(65536);
    expect(k.ipcHandle).toHaveLength(64);
    expect(k.busId).toBe('0000:11:00.0');
    expect(k.stagingChunk).toBe(16 << 20);
    const restricted = decodeDeviceKey(a.deviceGrantKey(region, false)!);
    expect(restricted.ipcHandle).toBeUndefined();
    expect([restricted.device, restricted.busId, restricted.stagingChunk]).toEqual([1, '0000:11:00.0', 16 << 20]);
  });

  it('refuses pointers the driver does not know, ranges past their allocation, and the wrong device', async () => {
    const a = await agent();
    const m = alloc(0, 4096);
    expectCode(
      () => a.register({ kind: 'cuda', device: 0, pointer: 0x1000n, length: 16 }),
      ErrorCode.INVALID_ARGUMENT,
      /not memory the CUDA driver knows/,
    );
    expectCode(
      () => a.register({ kind: 'cuda', device: 0, pointer: m.pointer + 4000n, length: 200 }),
      ErrorCode.INVALID_ARGUMENT,
      /runs 104 bytes past the end of its allocation/,
    );
    expectCode(
      () => a.register({ kind: 'cuda', device: 1, pointer: m.pointer, length: 16 }),
      ErrorCode.INVALID_ARGUMENT,
      /memory of CUDA device 0, not of device 1; pass device: 0/,
    );
    expectCode(
      () => a.register({ kind: 'cuda', device: 7, pointer: m.pointer, length: 16 }),
      ErrorCode.INVALID_ARGUMENT,
      /device 7 does not exist/,
    );
    expect(a.regions).toHaveLength(0);
  });

  it('refuses freed memory, and malformed descriptions of device memory', async () => {
    const a = await agent();
    const m = cuda.alloc(0, 4096);
    const raw = { kind: 'cuda' as const, device: 0, pointer: m.pointer, length: 4096 };
    m.free();
    expectCode(() => a.register(m), ErrorCode.INVALID_ARGUMENT, /was freed/);
    expectCode(() => a.register(raw), ErrorCode.INVALID_ARGUMENT, /not memory the CUDA driver knows/);
    const bad = [
      { kind: 'cuda', device: 0, pointer: 4096, length: 16 },
      { kind: 'cuda', device: 0, pointer: -1n, length: 16 },
      { kind: 'cuda', device: -1, pointer: 4096n, length: 16 },
      { kind: 'cuda', device: 0.5, pointer: 4096n, length: 16 },
      { kind: 'cuda', device: 0, pointer: 4096n, length: 0 },
      { kind: 'cuda', device: 0, pointer: 1n << 64n, length: 16 },
    ];
    for (const b of bad) expectCode(() => a.register(b as never), ErrorCode.INVALID_ARGUMENT);
  });

  it('keeps an allocation from being freed while a region on it may still be touched', async () => {
    const a = await agent();
    const m = alloc(0, 4096);
    const r = a.register(m, { access: 'read' });
    expectCode(() => m.free(), ErrorCode.REGION_BUSY, /deregister them and await region.released/);
    r.deregister();
    await r.released;
    m.free();
    expect(m.freed).toBe(true);
  });

  it('the loopback engine refuses device memory; bad cuda options are refused at creation', async () => {
    const lb = await agent({ engine: 'loopback' });
    expectCode(() => lb.register(alloc(0, 4096)), ErrorCode.UNSUPPORTED, /loopback engine moves host memory only/);
    await expect(Agent.create({ cuda: { path: 'nvlink' as never } })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
    await expect(Agent.create({ cuda: { stagingChunkBytes: 100 } })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
    await expect(Agent.create({ cuda: { stagingBuffers: 0 } })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
  });

  it('reports the CUDA path per peer, and refuses a forced path that cannot reach it', async () => {
    const target = await agent();
    target.register(alloc(0, 4096), { access: 'readwrite', label: 'kv' });
    const auto = await agent();
    const peer = await auto.connect(target.metadata());
    expect(peer.cudaPath).toBe('ipc'); // same host, this UCX has no CUDA transports
    const staging = await agent({ cuda: { path: 'staging' } });
    expect((await staging.connect(target.metadata())).cudaPath).toBe('staging');
    const ucx = await agent({ cuda: { path: 'ucx' } });
    await expectRejectCode(ucx.connect(target.metadata()), ErrorCode.UNSUPPORTED, /no CUDA transports/);
    const lb = await agent({ engine: 'loopback' });
    const lbTarget = await agent({ engine: 'loopback' });
    expect((await lb.connect(lbTarget.metadata())).cudaPath).toBeNull();
  });
});

// The cuda helpers against the fake CUDA driver (a TEST DOUBLE, see fake-driver.ts): devices,
// allocation, copies and memset, and the refusals that keep a bad pointer from ever reaching the
// driver's copy functions.
import { FAKE_CUDA } from './fake-driver.js';

import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { capabilities, cuda, CudaAllocation, ErrorCode } from '../../lib/index.js';
import { packageRoot } from '../../lib/native.js';
import { expectCode, fill } from '../transport/helpers.js';

describe.skipIf(FAKE_CUDA.path === undefined)('cuda helpers (fake CUDA driver, a test double)', () => {
  it('loads the fake driver, which exports every symbol kvwire loads', () => {
    const c = capabilities().cuda;
    expect(c.reason).toBeUndefined();
    expect(c.driver).toBe(true);
    expect(c.headers).toBe(true);
    expect(c.paths).toEqual({ ucx: capabilities().engines.ucx.cudaTransports, ipc: true, staging: true });
    expect(cuda.devices()[0]!.name).toMatch(/fake CUDA device 0 \(test double\)/);
    const loaded = [
      ...readFileSync(join(packageRoot(), 'native', 'cuda', 'driver.cc'), 'utf8').matchAll(/sym\(d->\w+, "(\w+)"\)/g),
    ].map((m) => m[1]!);
    expect(loaded.length).toBeGreaterThan(40);
    const exported = new Set(
      execFileSync('nm', ['-D', '--defined-only', FAKE_CUDA.path!], { encoding: 'utf8' })
        .split('\n')
        .map((l) => l.split(' ')[2]),
    );
    expect(loaded.filter((s) => !exported.has(s))).toEqual([]);
  });

  it('allocates, copies both ways, sets and frees device memory', () => {
    const mem = cuda.alloc(0, 1 << 20);
    expect(mem).toBeInstanceOf(CudaAllocation);
    expect(mem.kind).toBe('cuda');
    const src = fill(new Uint8Array(64 << 10), 7);
    cuda.copyToDevice(mem, src, 4096);
    const back = new Uint8Array(64 << 10);
    cuda.copyFromDevice(mem, back, 4096);
    expect(Buffer.from(back).equals(Buffer.from(src))).toBe(true);
    cuda.memset(mem, 0xab, 4096, 16);
    const head = new Uint8Array(32);
    cuda.copyFromDevice(mem, head, 4096);
    expect([...head.subarray(0, 16)].every((b) => b === 0xab)).toBe(true);
    expect([...head.subarray(16)]).toEqual([...src.subarray(16, 32)]);
    mem.free();
    expect(mem.freed).toBe(true);
    mem.free(); // idempotent
    expectCode(() => cuda.copyToDevice(mem, src), ErrorCode.INVALID_ARGUMENT, /freed/);
  });

  it('refuses ranges outside the memory, foreign and host pointers, and bad arguments', () => {
    const mem = cuda.alloc(0, 4096);
    try {
      expectCode(
        () => cuda.copyToDevice(mem, new Uint8Array(16), 4090),
        ErrorCode.OUT_OF_BOUNDS,
        /reaches past the 4,096 bytes/,
      );
      // A hand-made descriptor that lies about its length is caught by the driver's address range.
      const lying = { kind: 'cuda' as const, device: 0, pointer: mem.pointer, length: 8192 };
      expectCode(
        () => cuda.copyFromDevice(lying, new Uint8Array(8192)),
        ErrorCode.INVALID_ARGUMENT,
        /past the end of its allocation/,
      );
      const host = { kind: 'cuda' as const, device: 0, pointer: 0x1000n, length: 16 };
      expectCode(
        () => cuda.copyFromDevice(host, new Uint8Array(16)),
        ErrorCode.INVALID_ARGUMENT,
        /not memory the CUDA driver knows/,
      );
      expectCode(
        () => cuda.copyFromDevice({ ...lying, length: 16, device: 3 }, new Uint8Array(16)),
        ErrorCode.INVALID_ARGUMENT,
        /device 3 does not exist/,
      );
      expectCode(() => cuda.alloc(0, 0), ErrorCode.INVALID_ARGUMENT);
      expectCode(() => cuda.alloc(-1, 16), ErrorCode.INVALID_ARGUMENT);
      expectCode(() => cuda.memset(mem, 256), ErrorCode.INVALID_ARGUMENT);
      expectCode(
        () => cuda.free({ ...lying } as unknown as CudaAllocation),
        ErrorCode.INVALID_ARGUMENT,
        /returned by cuda.alloc/,
      );
    } finally {
      mem.free();
    }
  });

  it('measures copy baselines with CUDA events', async () => {
    for (const kind of ['dtod', 'htod', 'dtoh'] as const) {
      const b = await cuda.baseline(kind, 0, 1 << 20, 4);
      expect(b.seconds).toBeGreaterThan(0);
      expect(b.gbps).toBeGreaterThan(0);
    }
  });
});

// Two-process transfer scenarios with CUDA device memory, shared by the CPU suite (the fake CUDA
// driver, a test double: test/cuda/two-process.test.ts) and the GPU suite (the real driver:
// test/gpu/transfers.test.ts). Every byte is verified; notifications are checked to arrive after
// the data (the peer hashes its memory inside its notification handler).
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, cuda, ErrorCode } from '../../lib/index.js';
import type { CudaAllocation, CudaPath, Peer, Region } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { Child } from '../transport/child.js';
import { expectCode } from '../transport/helpers.js';

/** What a suite runs. */
export interface ScenarioOptions {
  /** CUDA paths forced on both agents. */
  readonly paths: readonly CudaPath[];
  /** UCX transports for each path. */
  readonly transports: (path: CudaPath) => readonly string[];
  /** Region size on each side (bytes). */
  readonly size: number;
  /** Staging chunk of this agent and of the peer (different, so the split follows the peer's). */
  readonly chunk: { readonly local: number; readonly peer: number };
  /** Largest descriptor (bytes): larger than both chunks, so descriptors are split. */
  readonly maxDescriptor: number;
}

const PEER_SEED = 42;
const SLACK = 12_288; // the peer registers its device memory 12 KiB into a larger allocation

/** Descriptors of mixed sizes (1 byte .. maxDescriptor), scattered and non-contiguous on both sides. */
export function scatter(size: number, maxDescriptor: number, count = 48): { l: number; r: number; len: number }[] {
  const out: { l: number; r: number; len: number }[] = [];
  let lo = 0;
  for (let i = 0; i < count; i++) {
    const len = i % 8 === 0 ? 1 + (i % 5) : ((i * 7919 * 13) % maxDescriptor) + 1;
    out.push({ l: lo, r: 0, len });
    lo += len + 13;
  }
  let ro = 0;
  for (let i = out.length - 1; i >= 0; i--) {
    out[i]!.r = ro;
    ro += out[i]!.len + 7;
  }
  expect(Math.max(lo, ro)).toBeLessThan(size);
  return out;
}

/** Reads a whole region (device memory through the driver, host memory as it is). */
export function regionBytes(r: Region): Buffer {
  if (r.kind === 'host') return Buffer.from(r.bytes);
  const out = Buffer.alloc(r.length);
  cuda.copyFromDevice({ kind: 'cuda', device: r.device!, pointer: r.pointer!, length: r.length }, out);
  return out;
}

/** Defines the scenarios for each path and transport. */
export function transferScenarios(o: ScenarioOptions): void {
  for (const path of o.paths) {
    describe.each(o.transports(path))(`CUDA path '${path}' between two processes over %s`, (tls) => {
      let child: Child | undefined;
      let agent: Agent | undefined;
      const allocations: CudaAllocation[] = [];

      afterEach(async () => {
        await agent?.close();
        agent = undefined;
        for (const a of allocations.splice(0)) a.free();
        if (child !== undefined) {
          child.kill('SIGKILL');
          await child.exited;
          child = undefined;
        }
      });

      async function start(peerMemory: 'cuda' | 'host', hashOnNotify?: string): Promise<{ peer: Peer; c: Child }> {
        child = new Child('cuda-peer.js');
        const m = await child.request(
          {
            cmd: 'init',
            engineOpts: {
              name: 'cuda-peer',
              transports: tls,
              cuda: { path, stagingChunkBytes: o.chunk.peer, stagingBuffers: 3 },
            },
            regions: [
              { label: 'kv', size: o.size, access: 'readwrite', seed: PEER_SEED, memory: peerMemory, slack: SLACK },
              { label: 'ro', size: 1 << 16, access: 'read', seed: 1, memory: peerMemory },
            ],
            ...(hashOnNotify !== undefined ? { hashOnNotify } : {}),
          },
          'metadata',
        );
        agent = await Agent.create({
          name: 'cuda-parent',
          transports: tls,
          cuda: { path, stagingChunkBytes: o.chunk.local, stagingBuffers: 2 },
        });
        const peer = await agent.connect(Uint8Array.from(m.metadata as number[]));
        expect(peer.cudaPath).toBe(path);
        expect(peer.region('kv').kind).toBe(peerMemory);
        return { peer, c: child };
      }

      function local(memory: 'cuda' | 'host', seed: number): Region {
        const pattern = fillPattern(Buffer.alloc(o.size), seed);
        if (memory === 'host') return agent!.register(pattern, { label: `local-${seed}` });
        const mem = cuda.alloc(0, o.size);
        allocations.push(mem);
        cuda.copyToDevice(mem, pattern);
        const r = agent!.register(mem, { label: `local-${seed}` });
        expect(r.kind).toBe('cuda');
        return r;
      }

      it.each([
        ['cuda', 'cuda'],
        ['host', 'cuda'],
        ['cuda', 'host'],
      ] as const)(
        "READs scattered descriptors into %s memory from the peer's %s memory, every byte verified",
        async (mine, theirs) => {
          const { peer, c } = await start(theirs);
          const dst = local(mine, 9);
          const d = scatter(o.size, o.maxDescriptor);
          const stats = await agent!.read(
            peer,
            d.map((x) => ({ region: dst, offset: x.l, length: x.len })),
            d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.len })),
            { notify: 'read-done' },
          ).done;
          expect(stats.bytes).toBe(d.reduce((s, x) => s + x.len, 0));
          const got = regionBytes(dst);
          const theirsBytes = fillPattern(Buffer.alloc(o.size), PEER_SEED);
          const before = fillPattern(Buffer.alloc(o.size), 9);
          for (const x of d)
            expect(got.subarray(x.l, x.l + x.len).equals(theirsBytes.subarray(x.r, x.r + x.len))).toBe(true);
          // Bytes between the descriptors are untouched.
          for (const x of d) expect(got[x.l + x.len]).toBe(before[x.l + x.len]);
          expect((await c.next('notification')).message).toBe('read-done');
        },
      );

      it.each([
        ['cuda', 'cuda'],
        ['host', 'cuda'],
        ['cuda', 'host'],
      ] as const)(
        "WRITEs scattered descriptors from %s memory into the peer's %s memory; the notification follows the data",
        async (mine, theirs) => {
          const { peer, c } = await start(theirs, 'kv');
          const src = local(mine, 777);
          const d = scatter(o.size, o.maxDescriptor);
          const expected = fillPattern(Buffer.alloc(o.size), PEER_SEED);
          const srcBytes = fillPattern(Buffer.alloc(o.size), 777);
          for (const x of d) srcBytes.copy(expected, x.r, x.l, x.l + x.len);
          await agent!.write(
            peer,
            d.map((x) => ({ region: src, offset: x.l, length: x.len })),
            d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.len })),
            { notify: 'write-done' },
          ).done;
          const n = await c.next('notification');
          expect(n.message).toBe('write-done');
          expect(n.sha).toBe(sha256(expected)); // hashed inside the peer's notification handler
          expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(expected));
        },
      );

      it('moves whole regions both ways, many times, with prepared lists', async () => {
        const { peer, c } = await start('cuda');
        const mine = local('cuda', 5);
        const blocks = 16;
        const block = o.size / blocks;
        const p = agent!.prepare(
          peer,
          Array.from({ length: blocks }, (_, i) => ({ region: mine, offset: i * block, length: block })),
          Array.from({ length: blocks }, (_, i) => ({
            region: peer.region('kv'),
            offset: (blocks - 1 - i) * block,
            length: block,
          })),
        );
        for (let round = 0; round < 3; round++) {
          await p.read().done;
          await p.write().done;
        }
        const mineBytes = regionBytes(mine);
        const theirs = fillPattern(Buffer.alloc(o.size), PEER_SEED);
        for (let i = 0; i < blocks; i++) {
          expect(
            mineBytes
              .subarray(i * block, (i + 1) * block)
              .equals(theirs.subarray((blocks - 1 - i) * block, (blocks - i) * block)),
          ).toBe(true);
        }
        expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(theirs));
      });

      it('refuses out-of-bounds and read-only descriptors of device regions before moving a byte', async () => {
        const { peer } = await start('cuda');
        const mine = local('cuda', 3);
        expectCode(
          () =>
            agent!.read(
              peer,
              [{ region: mine, offset: o.size - 8, length: 16 }],
              [{ region: peer.region('kv'), offset: 0, length: 16 }],
            ),
          ErrorCode.OUT_OF_BOUNDS,
        );
        expectCode(
          () =>
            agent!.read(
              peer,
              [{ region: mine, offset: 0, length: 16 }],
              [{ region: peer.region('kv'), offset: o.size, length: 16 }],
            ),
          ErrorCode.OUT_OF_BOUNDS,
        );
        expectCode(
          () =>
            agent!.write(
              peer,
              [{ region: mine, offset: 0, length: 16 }],
              [{ region: peer.region('ro'), offset: 0, length: 16 }],
            ),
          ErrorCode.ACCESS_DENIED,
        );
        expect(sha256(regionBytes(mine))).toBe(sha256(fillPattern(Buffer.alloc(o.size), 3)));
      });
    });
  }
}

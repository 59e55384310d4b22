// What goes wrong with device memory between two processes, over the fake CUDA driver (a TEST
// DOUBLE, see fake-driver.ts): IPC handles that cannot be opened, deadlines and cancellation with
// copies in flight, close() with copies in flight, and a peer killed during a staged transfer.
import { FAKE_CUDA } from './fake-driver.js';

import { afterEach, describe, expect, it } from 'vitest';
import { Agent, cuda, ErrorCode, KvwireError } from '../../lib/index.js';
import type { AgentOptions, CudaAllocation, Peer, Region } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { Child } from '../transport/child.js';
import { expectRejectCode } from '../transport/helpers.js';
import { regionBytes } from './scenarios.js';

const SIZE = 4 << 20;

describe.skipIf(FAKE_CUDA.path === undefined)(
  'CUDA failures between two processes (fake CUDA driver, a test double)',
  () => {
    let child: Child | undefined;
    let agent: Agent | undefined;
    const allocations: CudaAllocation[] = [];

    afterEach(async () => {
      delete process.env.KVWIRE_FAKE_CUDA_FAIL_IPC_OPEN;
      delete process.env.KVWIRE_FAKE_CUDA_DELAY_US;
      await agent?.close();
      agent = undefined;
      for (const a of allocations.splice(0)) a.free();
      if (child !== undefined) {
        child.kill('SIGKILL');
        await child.exited;
        child = undefined;
      }
    });

    async function start(opts: AgentOptions, tls = 'sm'): Promise<{ peer: Peer; c: Child; mine: Region }> {
      child = new Child('cuda-peer.js');
      const m = await child.request(
        {
          cmd: 'init',
          engineOpts: { name: 'cuda-peer', transports: tls, cuda: { stagingChunkBytes: 64 << 10 } },
          regions: [{ label: 'kv', size: SIZE, access: 'readwrite', seed: 42, memory: 'cuda' }],
        },
        'metadata',
      );
      agent = await Agent.create({ name: 'cuda-parent', transports: tls, ...opts });
      const peer = await agent.connect(Uint8Array.from(m.metadata as number[]));
      const mem = cuda.alloc(0, SIZE);
      allocations.push(mem);
      return { peer, c: child, mine: agent.register(mem, { label: 'mine' }) };
    }

    const blocks = <R extends Region | ReturnType<Peer['region']>>(r: R, n = 16) =>
      Array.from({ length: n }, (_, i) => ({ region: r, offset: i * (SIZE / n) + (i % 2), length: SIZE / n - 2 }));

    it("falls back to staging, with a warning, when the peer's IPC handles cannot be opened", async () => {
      process.env.KVWIRE_FAKE_CUDA_FAIL_IPC_OPEN = '1';
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const { peer, mine } = await start({});
        expect(peer.cudaPath).toBe('staging');
        await new Promise((r) => setImmediate(r));
        expect(
          warnings.some((w) =>
            /CUDA IPC is unavailable \(opening the peer's CUDA IPC handle: CUDA_ERROR_NOT_SUPPORTED/.test(w),
          ),
        ).toBe(true);
        await agent!.read(peer, blocks(mine), blocks(peer.region('kv'))).done;
        const got = regionBytes(mine);
        const theirs = fillPattern(Buffer.alloc(SIZE), 42);
        for (const b of blocks(mine))
          expect(
            got.subarray(b.offset, b.offset + b.length).equals(theirs.subarray(b.offset, b.offset + b.length)),
          ).toBe(true);
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('a forced ipc path fails to connect when the handles cannot be opened', async () => {
      child = new Child('cuda-peer.js');
      const m = await child.request(
        {
          cmd: 'init',
          engineOpts: { name: 'cuda-peer', transports: 'sm' },
          regions: [{ label: 'kv', size: 4096, access: 'readwrite', seed: 1, memory: 'cuda' }],
        },
        'metadata',
      );
      process.env.KVWIRE_FAKE_CUDA_FAIL_IPC_OPEN = '1';
      agent = await Agent.create({ name: 'forced', transports: 'sm', cuda: { path: 'ipc' } });
      await expectRejectCode(
        agent.connect(Uint8Array.from(m.metadata as number[])),
        ErrorCode.UNSUPPORTED,
        /cannot be mapped: opening the peer's CUDA IPC handle/,
      );
    });

    it.each(['ipc', 'staging'] as const)(
      'over %s, a deadline fails the transfer; its memory stays busy until the copies are done',
      async (path) => {
        const { peer, mine } = await start({ cuda: { path, stagingChunkBytes: 64 << 10 } });
        process.env.KVWIRE_FAKE_CUDA_DELAY_US = '100000'; // 100 ms per copy: far beyond the deadline
        const t = agent!.read(peer, blocks(mine), blocks(peer.region('kv')), { timeoutMs: 50 });
        await expectRejectCode(t.done, ErrorCode.TIMEOUT);
        let busy: KvwireError | undefined;
        try {
          mine.deregister();
        } catch (e) {
          busy = e as KvwireError;
        }
        expect(busy?.code).toBe(ErrorCode.REGION_BUSY);
        delete process.env.KVWIRE_FAKE_CUDA_DELAY_US;
        // Once every copy the transfer queued is done, the region can go (bounded wait, no timing claim).
        for (let i = 0; i < 600 && mine.registered; i++) {
          try {
            mine.deregister();
          } catch {
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        expect(mine.registered).toBe(false);
        await mine.released;
      },
    );

    it.each(['ipc', 'staging'] as const)(
      'over %s, an aborted transfer fails with CANCELLED and the next one succeeds',
      async (path) => {
        const { peer, mine } = await start({ cuda: { path, stagingChunkBytes: 64 << 10, stagingBuffers: 1 } });
        process.env.KVWIRE_FAKE_CUDA_DELAY_US = '20000';
        const ac = new AbortController();
        const t = agent!.write(peer, blocks(mine), blocks(peer.region('kv')), { signal: ac.signal });
        ac.abort();
        await expectRejectCode(t.done, ErrorCode.CANCELLED);
        delete process.env.KVWIRE_FAKE_CUDA_DELAY_US;
        cuda.copyToDevice(allocations[0]!, fillPattern(Buffer.alloc(SIZE), 5));
        await agent!.write(peer, blocks(mine), blocks(peer.region('kv'))).done;
        const expected = fillPattern(Buffer.alloc(SIZE), 42);
        const src = fillPattern(Buffer.alloc(SIZE), 5);
        for (const b of blocks(mine)) src.copy(expected, b.offset, b.offset, b.offset + b.length);
        expect((await child!.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(expected));
      },
    );

    it.each(['ipc', 'staging'] as const)(
      'over %s, close() with copies in flight fails them with CLOSED and returns',
      async (path) => {
        const { peer, mine } = await start({ cuda: { path, stagingChunkBytes: 64 << 10 } });
        process.env.KVWIRE_FAKE_CUDA_DELAY_US = '5000';
        const ts = Array.from({ length: 4 }, (_, i) =>
          i % 2
            ? agent!.write(peer, blocks(mine), blocks(peer.region('kv')))
            : agent!.read(peer, blocks(mine), blocks(peer.region('kv'))),
        );
        await agent!.close();
        const results = await Promise.allSettled(ts.map((t) => t.done));
        for (const r of results)
          if (r.status === 'rejected') expect((r.reason as KvwireError).code).toBe(ErrorCode.CLOSED);
        expect(ts.every((t) => t.status !== 'pending')).toBe(true);
      },
    );

    it.each(['sm', 'tcp'])('over %s, a staged transfer fails with PEER_LOST when the peer is killed', async (tls) => {
      const { peer, c, mine } = await start({ cuda: { path: 'staging', stagingChunkBytes: 64 << 10 } }, tls);
      process.env.KVWIRE_FAKE_CUDA_DELAY_US = '2000';
      let error: KvwireError | undefined;
      for (let i = 0; i < 1000 && error === undefined; i++) {
        const t =
          i % 2 === 0
            ? agent!.read(peer, blocks(mine), blocks(peer.region('kv')))
            : agent!.write(peer, blocks(mine), blocks(peer.region('kv')));
        if (i === 1) c.kill('SIGKILL');
        try {
          await t.done;
        } catch (e) {
          error = e as KvwireError;
        }
      }
      expect(error?.code).toBe(ErrorCode.PEER_LOST);
      await c.exited;
    });
  },
);

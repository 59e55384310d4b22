// The UCX engine between two processes, over tcp and over shared memory: bytes verified end to
// end, notifications ordered after data, and the failures a production data plane meets: a peer
// killed mid-transfer, close() with transfers in flight, a process exiting with transfers in
// flight.
import { tcpZeroCopyOff } from './tcp-zero-copy-off.js';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, ErrorCode, KvwireError } from '../../lib/index.js';
import type { Region, RemoteRegion } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { Child } from './child.js';
import { expectCode } from './helpers.js';

const SIZE = 8 << 20;
const SEED = 42;

describe.each(['tcp', 'sm'])('UCX between two processes over %s', (tls) => {
  tcpZeroCopyOff(tls);
  let child: Child | undefined;
  let agent: Agent | undefined;

  afterEach(async () => {
    await agent?.close();
    agent = undefined;
    if (child !== undefined) {
      child.proc.kill('SIGKILL');
      await child.exited;
      child = undefined;
    }
  });

  async function start(hashOnNotify?: string, tuning?: { batchBelow?: number; batchBytes?: number }) {
    child = new Child('transport-target.js');
    const m = await child.request(
      {
        cmd: 'init',
        engineOpts: { name: 'child-target', transports: tls, ...(tuning ? { tuning } : {}) },
        regions: [
          { label: 'kv', size: SIZE, access: 'readwrite', seed: SEED },
          { label: 'ro', size: 1 << 16, access: 'read', seed: 1 },
        ],
        ...(hashOnNotify ? { hashOnNotify } : {}),
      },
      'metadata',
    );
    agent = await Agent.create({ name: 'parent', transports: tls, ...(tuning ? { tuning } : {}) });
    const peer = await agent.connect(Uint8Array.from(m.metadata as number[]));
    return { peer, child, agent };
  }

  /** 200 descriptors of mixed sizes (1 byte to 60 KiB), scattered on both sides, non-overlapping. */
  function scatter() {
    const out: { l: number; r: number; len: number }[] = [];
    let lo = 0;
    for (let i = 0; i < 200; i++) {
      const len = i % 10 === 0 ? 1 : ((i * 7919) % (60 << 10)) + 1;
      out.push({ l: lo, r: 0, len });
      lo += len + 13;
    }
    // remote offsets: reverse order so nothing is contiguous
    let ro = 0;
    for (let i = out.length - 1; i >= 0; i--) {
      out[i]!.r = ro;
      ro += out[i]!.len + 7;
    }
    expect(lo).toBeLessThan(SIZE);
    expect(ro).toBeLessThan(SIZE);
    return out;
  }

  it('READs 200 scattered descriptors, every byte checked, and reports the transport UCX chose', async () => {
    const { peer } = await start();
    expect(peer.transport).toBe(tls);
    const expected = fillPattern(Buffer.alloc(SIZE), SEED);
    const dst = Buffer.alloc(SIZE, 0xee);
    const local = agent!.register(dst, { label: 'dst' });
    const d = scatter();
    const stats = await agent!.read(
      peer,
      d.map((x) => ({ region: local, offset: x.l, length: x.len })),
      d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.len })),
    ).done;
    expect(stats.descriptors).toBe(200);
    expect(stats.transport).toBe(tls);
    for (const x of d) {
      expect(dst.subarray(x.l, x.l + x.len).equals(expected.subarray(x.r, x.r + x.len))).toBe(true);
    }
    // Bytes between the descriptors were not touched.
    expect(dst[d[0]!.l + d[0]!.len]).toBe(0xee);
  });

  it('WRITEs 200 scattered descriptors; the notification arrives after every byte landed', async () => {
    const { peer, child: c } = await start('kv');
    const src = fillPattern(Buffer.alloc(SIZE), 777);
    const local = agent!.register(src, { label: 'src' });
    const d = scatter();
    const expected = fillPattern(Buffer.alloc(SIZE), SEED);
    for (const x of d) src.copy(expected, x.r, x.l, x.l + x.len);
    await agent!.write(
      peer,
      d.map((x) => ({ region: local, offset: x.l, length: x.len })),
      d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.len })),
      { notify: 'write-done' },
    ).done;
    const n = await c.next('notification');
    expect(n.from).toBe('parent');
    expect(n.message).toBe('write-done');
    expect(n.sha).toBe(sha256(expected)); // hashed inside the notification handler: data came first
    expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(expected));
  });

  // Over tcp, runs of descriptors below tuning.batchBelow travel packed (one message, scattered on
  // arrival); larger ones alone. Sizes straddle the threshold and the packed-message limit so runs
  // start and stop everywhere; with batchBelow 0 every descriptor goes alone. The bytes must not care.
  it.each([
    ['packed (defaults)', undefined],
    ['packed into small messages', { batchBelow: 65536, batchBytes: 100_000 }],
    ['one descriptor per message', { batchBelow: 0 }],
  ] as const)('READs and WRITEs small and large descriptors mixed, %s, every byte checked', async (_, tuning) => {
    const { peer, child: c } = await start(undefined, tuning);
    const sizes = [1, 4096, 200 << 10, 33 << 10, 128 << 10, (128 << 10) - 1, 1 << 20, 65535, 65536, 7, 512 << 10];
    const d: { l: number; r: number; len: number }[] = [];
    let lo = 0;
    for (let i = 0; i < 36; i++) {
      const len = sizes[(i * 7) % sizes.length]!;
      d.push({ l: lo, r: 0, len });
      lo += len + 5;
    }
    let ro = 0;
    for (const x of [...d].reverse()) {
      x.r = ro;
      ro += x.len + 3;
    }
    expect(Math.max(lo, ro)).toBeLessThan(SIZE);
    const remote = fillPattern(Buffer.alloc(SIZE), SEED);
    const dst = Buffer.alloc(SIZE, 0xee);
    const dstRegion = agent!.register(dst, { label: 'dst' });
    await agent!.read(
      peer,
      d.map((x) => ({ region: dstRegion, offset: x.l, length: x.len })),
      d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.len })),
    ).done;
    const expectDst = Buffer.alloc(SIZE, 0xee);
    for (const x of d) remote.copy(expectDst, x.l, x.r, x.r + x.len);
    expect(sha256(dst)).toBe(sha256(expectDst)); // every byte asked for, and nothing else
    const src = fillPattern(Buffer.alloc(SIZE), 99);
    const srcRegion = agent!.register(src, { label: 'src' });
    await agent!.write(
      peer,
      d.map((x) => ({ region: srcRegion, offset: x.l, length: x.len })),
      d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.len })),
    ).done;
    for (const x of d) src.copy(remote, x.r, x.l, x.l + x.len);
    expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(remote));
  });

  it('delivers a READ notification and standalone notifications, in order', async () => {
    const { peer, child: c } = await start();
    const local = agent!.register(Buffer.alloc(1 << 20), { label: 'dst' });
    await agent!.read(
      peer,
      [{ region: local, offset: 0, length: 1 << 20 }],
      [{ region: peer.region('kv'), offset: 0, length: 1 << 20 }],
      { notify: 'read-done' },
    ).done;
    expect((await c.next('notification')).message).toBe('read-done');
    for (let i = 0; i < 10; i++) await peer.notify(`n${i}`);
    for (let i = 0; i < 10; i++) expect((await c.next('notification')).message).toBe(`n${i}`);
  });

  it('lets the target refuse what the metadata no longer allows (deregistered region)', async () => {
    const { peer, child: c } = await start();
    const local = agent!.register(Buffer.alloc(4096), { label: 'dst' });
    await c.request({ cmd: 'deregister', label: 'kv' }, 'deregistered');
    let err: KvwireError | undefined;
    for (let i = 0; i < 50 && err === undefined; i++) {
      try {
        await agent!.write(
          peer,
          [{ region: local, offset: 0, length: 4096 }],
          [{ region: peer.region('kv'), offset: 0, length: 4096 }],
        ).done;
        await new Promise((r) => setTimeout(r, 20));
      } catch (e) {
        err = e as KvwireError;
      }
    }
    expect(err?.code).toBe(ErrorCode.DEREGISTERED);
  });

  /** n descriptors over the whole region: large and contiguous (coalesced), or small with gaps (packed over tcp). */
  function spread(local: Region, remote: RemoteRegion, n: number) {
    const len = n <= 64 ? SIZE / n : SIZE / n - 64;
    return {
      l: Array.from({ length: n }, (_, i) => ({ region: local, offset: i * (SIZE / n), length: len })),
      r: Array.from({ length: n }, (_, i) => ({ region: remote, offset: i * (SIZE / n), length: len })),
    };
  }

  it.each([64, 1024])(
    'fails with ERR_KVWIRE_PEER_LOST well before the deadline when the peer is SIGKILLed mid-transfer (%i descriptors)',
    async (n) => {
      const { peer, child: c } = await start();
      const local = agent!.register(Buffer.alloc(SIZE), { label: 'dst' });
      const { l, r } = spread(local, peer.region('kv'), n);
      const deadline = 30_000;
      const started = Date.now();
      let error: KvwireError | undefined;
      let killedAt = 0;
      // Keep transfers flowing; kill the peer once they are; the next failure must be PEER_LOST.
      for (let i = 0; i < 10_000 && error === undefined; i++) {
        const t =
          i % 2 === 0
            ? agent!.read(peer, l, r, { timeoutMs: deadline })
            : agent!.write(peer, l, r, { timeoutMs: deadline });
        if (i === 2) {
          c.kill('SIGKILL');
          killedAt = Date.now();
        }
        try {
          await t.done;
        } catch (e) {
          error = e as KvwireError;
        }
      }
      expect(killedAt).toBeGreaterThan(0);
      expect(error).toBeInstanceOf(KvwireError);
      expect(error!.code).toBe(ErrorCode.PEER_LOST);
      expect(Date.now() - started).toBeLessThan(deadline); // a typed error, not the deadline
      expect(peer.state).toBe('lost');
      expectCode(() => agent!.read(peer, l, r), ErrorCode.PEER_LOST);
      await c.exited;
    },
  );

  it.each([64, 1024])(
    'close() fails transfers in flight with ERR_KVWIRE_CLOSED and returns (%i descriptors)',
    async (n) => {
      const { peer } = await start();
      const local = agent!.register(Buffer.alloc(SIZE), { label: 'dst' });
      const { l, r } = spread(local, peer.region('kv'), n);
      const ts = Array.from({ length: 8 }, (_, i) => (i % 2 ? agent!.write(peer, l, r) : agent!.read(peer, l, r)));
      await agent!.close();
      const results = await Promise.allSettled(ts.map((t) => t.done));
      for (const res of results) {
        if (res.status === 'rejected') expect((res.reason as KvwireError).code).toBe(ErrorCode.CLOSED);
      }
      expect(ts.every((t) => t.status !== 'pending')).toBe(true);
    },
  );

  it.each(['exit', 'close-exit'])(
    'a child that calls process.exit with transfers in flight (%s) exits cleanly',
    async (mode) => {
      child = new Child('transport-target.js');
      const m = await child.request(
        {
          cmd: 'init',
          engineOpts: { name: 'child-target', transports: tls },
          regions: [{ label: 'kv', size: SIZE, access: 'readwrite', seed: SEED }],
        },
        'metadata',
      );
      const leaver = new Child('exit-initiator.js', [mode]);
      leaver.send({ metadata: m.metadata, transports: tls, label: 'kv', size: SIZE });
      const posted = await leaver.next('posted');
      expect(posted.inFlight).toBeGreaterThan(0);
      const { code, signal } = await leaver.exited;
      expect(leaver.stderr).not.toMatch(/Segmentation|Aborted|terminate called/);
      expect(signal).toBeNull();
      expect(code).toBe(0);
      // The target survives its initiator's exit.
      expect((await child.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toMatch(/^[0-9a-f]{64}$/);
    },
  );
});

// Small transfers moved by the calling thread (native/engine/submit.cc), between two
// processes: a same-host peer's registered memory by cross-memory attach and its allocated memory
// mapped here, over shared memory; over tcp the same calls go through the engine thread. Every
// byte is checked; what must not go inline (over the budget, a peer that exited) goes the engine
// way and reports what happened.
import { tcpZeroCopyOff } from './tcp-zero-copy-off.js';
import { readdirSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, ErrorCode, KvwireError } from '../../lib/index.js';
import type { Peer, Region } from '../../lib/index.js';
import { nowNs } from '../../lib/util/clock.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { Child } from './child.js';

const SIZE = 1 << 20;
const SEEDS = { kv: 7, al: 9 } as const;

describe.each(['tcp', 'sm'])('small transfers over %s', (tls) => {
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

  // The calling thread never waits for the engine thread's completions here (tuning.completionSpinUs
  // 0): what this file checks is which transfers the calling thread moves itself.
  async function start(
    tuning?: {
      inlineBytes?: number;
    },
    targetEnv: NodeJS.ProcessEnv = {},
  ): Promise<{ peer: Peer; c: Child; local: Region; mem: Buffer }> {
    const c = new Child('transport-target.js', [], targetEnv);
    child = c;
    const m = await c.request(
      {
        cmd: 'init',
        engineOpts: { name: 'inline-target', transports: tls },
        regions: [
          { label: 'kv', size: SIZE, access: 'readwrite', seed: SEEDS.kv },
          { label: 'al', size: SIZE, access: 'readwrite', seed: SEEDS.al, allocate: true },
        ],
      },
      'metadata',
    );
    agent = await Agent.create({
      name: 'inline-parent',
      transports: tls,
      tuning: { completionSpinUs: 0, ...tuning },
    });
    const peer = await agent.connect(Uint8Array.from(m.metadata as number[]));
    expect(peer.transport).toBe(tls);
    // Over sm the calling thread copies the peer's registered memory itself, checking that the
    // peer lives with one load of its liveness beacon (native/engine/liveness.h), or a poll of its
    // pidfd where it offers none.
    const offers = targetEnv.KVWIRE_LIVENESS_BEACON !== '0';
    expect(peer.liveness).toBe(tls === 'sm' ? (offers ? 'beacon' : 'pidfd') : null);
    const mem = Buffer.alloc(SIZE, 0xee);
    const local = agent.register(mem, { label: 'dst' });
    return { peer, c, local, mem };
  }

  /** `n` blocks of `len` bytes, scattered: block i of the local side is block n-1-i remotely. */
  function blocks(n: number, len: number) {
    return Array.from({ length: n }, (_, i) => ({ l: i * (len + 64), r: (n - 1 - i) * (len + 128) + 5 }));
  }

  it.each(['kv', 'al'] as const)(
    'READs 4 KiB and 64 x 4 KiB of %s: every byte right, done before the call returns over sm only',
    async (label) => {
      const { peer, local, mem } = await start();
      const expected = fillPattern(Buffer.alloc(SIZE), SEEDS[label]);
      // One descriptor of 4 KiB.
      const before = nowNs() / 1e6;
      const one = agent!.read(
        peer,
        [{ region: local, offset: 100, length: 4096 }],
        [{ region: peer.region(label), offset: 12_345, length: 4096 }],
      );
      const after = nowNs() / 1e6;
      // Over sm the bytes are in place when read() returns; over tcp the engine thread moves them.
      expect(one.status).toBe(tls === 'sm' ? 'done' : 'pending');
      // Its telemetry is there at once too (no await needed), the very object done resolves with.
      const early = one.stats;
      expect(early === undefined).toBe(tls !== 'sm');
      const oneStats = await one.done;
      expect(one.stats).toBe(oneStats);
      if (early !== undefined) {
        expect(oneStats).toBe(early);
        // Done inside the call: its timeline (the end from the engine's clock) lies within the
        // call, in order, with no time waiting for a completion.
        expect(early.startedAt).toBeGreaterThanOrEqual(before);
        expect(early.postedAt).toBeGreaterThanOrEqual(early.startedAt);
        expect(early.completedAt).toBeGreaterThanOrEqual(early.postedAt);
        expect(early.completedAt).toBeLessThanOrEqual(after);
        expect(early.completionMs).toBe(0);
        expect(early.prepMs + early.postMs).toBeCloseTo(early.durationMs, 9);
        expect(early.postMs).toBeGreaterThan(0);
      }
      await one.quiesced;
      expect(mem.subarray(100, 100 + 4096).equals(expected.subarray(12_345, 12_345 + 4096))).toBe(true);
      // 64 scattered descriptors of 4 KiB: 256 KiB, exactly the default inline budget.
      const b = blocks(64, 4096);
      const many = agent!.read(
        peer,
        b.map((x) => ({ region: local, offset: x.l, length: 4096 })),
        b.map((x) => ({ region: peer.region(label), offset: x.r, length: 4096 })),
        { coalesce: false },
      );
      expect(many.status).toBe(tls === 'sm' ? 'done' : 'pending');
      const stats = await many.done;
      expect(stats.descriptors).toBe(64);
      for (const x of b) {
        expect(mem.subarray(x.l, x.l + 4096).equals(expected.subarray(x.r, x.r + 4096))).toBe(true);
      }
    },
  );

  it.each(['kv', 'al'] as const)('WRITEs 64 x 1 KiB into %s: the target holds exactly those bytes', async (label) => {
    const { peer, c, local, mem } = await start();
    fillPattern(mem, 1234);
    const remote = fillPattern(Buffer.alloc(SIZE), SEEDS[label]);
    const b = blocks(64, 1024);
    const t = agent!.write(
      peer,
      b.map((x) => ({ region: local, offset: x.l, length: 1024 })),
      b.map((x) => ({ region: peer.region(label), offset: x.r, length: 1024 })),
      { coalesce: false },
    );
    expect(t.status).toBe(tls === 'sm' ? 'done' : 'pending');
    await t.done;
    for (const x of b) mem.copy(remote, x.r, x.l, x.l + 1024);
    expect((await c.request({ cmd: 'hash', label }, 'hash')).sha).toBe(sha256(remote));
  });

  it("moves one page or less through the peer's memory file over sm (READ and WRITE, across a page boundary, at the region's ends): every byte right", async () => {
    const { peer, c, local, mem } = await start();
    const memFiles = (): string[] =>
      readdirSync('/proc/self/fd').flatMap((fd) => {
        try {
          const to = readlinkSync(`/proc/self/fd/${fd}`);
          return to === `/proc/${c.proc.pid}/mem` ? [to] : [];
        } catch {
          return []; // closed since it was listed
        }
      });
    // Opened once the peer is connected for cross-memory attach (native/engine/cma.h), and only then.
    expect(memFiles().length).toBe(tls === 'sm' ? 1 : 0);
    const remote = fillPattern(Buffer.alloc(SIZE), SEEDS.kv);
    // [local offset, remote offset, length]: within a page, across one, the first and last bytes.
    const cases: [number, number, number][] = [
      [0, 0, 4096],
      [10, 4096 * 3 + 100, 4096],
      [5000, 4096 * 7 - 1, 2],
      [9000, 0, 1],
      [12_000, SIZE - 4096, 4096],
      [20_000, SIZE - 1, 1],
    ];
    // One descriptor of `len` bytes: done inside the call over sm, by the engine thread over tcp.
    const move = async (op: 'read' | 'write', l: number, r: number, len: number): Promise<void> => {
      const ls = [{ region: local, offset: l, length: len }];
      const rs = [{ region: peer.region('kv'), offset: r, length: len }];
      const t = op === 'read' ? agent!.read(peer, ls, rs) : agent!.write(peer, ls, rs);
      expect(t.status).toBe(tls === 'sm' ? 'done' : 'pending');
      await t.done;
    };
    for (const [l, r, len] of cases) {
      mem.fill(0xee);
      await move('read', l, r, len);
      expect(mem.subarray(l, l + len).equals(remote.subarray(r, r + len))).toBe(true);
      // Nothing around it touched.
      expect(mem.subarray(0, l).every((v) => v === 0xee)).toBe(true);
      expect(mem.subarray(l + len, l + len + 4096).every((v) => v === 0xee)).toBe(true);
    }
    fillPattern(mem, 4321);
    for (const [l, r, len] of cases) {
      await move('write', l, r, len);
      mem.copy(remote, r, l, l + len);
    }
    expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(remote));
  });

  it('goes through the engine thread above tuning.inlineBytes, with the same bytes', async () => {
    const { peer, local, mem } = await start({ inlineBytes: 1024 });
    const expected = fillPattern(Buffer.alloc(SIZE), SEEDS.kv);
    const t = agent!.read(
      peer,
      [{ region: local, offset: 0, length: 4096 }],
      [{ region: peer.region('kv'), offset: 777, length: 4096 }],
    );
    expect(t.status).toBe('pending');
    await t.done;
    expect(mem.subarray(0, 4096).equals(expected.subarray(777, 777 + 4096))).toBe(true);
    // Within the budget it is inline again (over sm).
    const small = agent!.read(
      peer,
      [{ region: local, offset: 0, length: 512 }],
      [{ region: peer.region('kv'), offset: 0, length: 512 }],
    );
    expect(small.status).toBe(tls === 'sm' ? 'done' : 'pending');
    await small.done;
  });

  it.each([
    ['its liveness beacon', {}],
    ['its pidfd (KVWIRE_LIVENESS_BEACON=0 in the peer)', { KVWIRE_LIVENESS_BEACON: '0' }],
  ] as const)(
    'fails a small READ with ERR_KVWIRE_PEER_LOST once the peer process is gone, never moving stale bytes (%s)',
    async (_, env) => {
      const { peer, c, local, mem } = await start(undefined, env);
      // Moved by the calling thread while the peer lives (over sm), whichever way it checks that.
      const live = agent!.read(
        peer,
        [{ region: local, offset: 0, length: 4096 }],
        [{ region: peer.region('kv'), offset: 0, length: 4096 }],
      );
      expect(live.status).toBe(tls === 'sm' ? 'done' : 'pending');
      await live.done;
      mem.fill(0xee, 0, 4096);
      c.kill('SIGKILL');
      await c.exited;
      let err: unknown;
      try {
        // The engine may not have noticed the death yet (then read() returns and the transfer
        // fails), or it has (then read() throws): either way PEER_LOST, and nothing was copied.
        await agent!.read(
          peer,
          [{ region: local, offset: 0, length: 4096 }],
          [{ region: peer.region('kv'), offset: 0, length: 4096 }],
          { timeoutMs: 30_000 },
        ).done;
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KvwireError);
      expect((err as KvwireError).code).toBe(ErrorCode.PEER_LOST);
      expect(mem.subarray(0, 4096).every((v) => v === 0xee)).toBe(true);
    },
  );

  it('READs 4 KiB again and again while the peer is killed: each is done with every byte right, until one fails with ERR_KVWIRE_PEER_LOST', async () => {
    const { peer, c, local, mem } = await start();
    const want = fillPattern(Buffer.alloc(SIZE), SEEDS.kv).subarray(4096, 8192);
    const list = agent!.prepare(
      peer,
      [{ region: local, offset: 0, length: 4096 }],
      [{ region: peer.region('kv'), offset: 4096, length: 4096 }],
    );
    let done = 0;
    let failure: unknown;
    for (let i = 0; i < 1_000_000 && failure === undefined; i++) {
      if (i === 500) c.kill('SIGKILL');
      mem.fill(0xee, 0, 4096);
      try {
        const t = list.read(undefined, { timeoutMs: 30_000 });
        await t.done;
        done++;
        // A READ done is the peer's bytes: never the sentinel, never another process's.
        if (!mem.subarray(0, 4096).equals(want))
          throw new Error(`READ ${i} is done with bytes that are not the peer's`);
      } catch (e) {
        failure = e;
      }
    }
    expect(done).toBeGreaterThanOrEqual(500);
    expect(failure).toBeInstanceOf(KvwireError);
    expect((failure as KvwireError).code).toBe(ErrorCode.PEER_LOST);
  });

  it.each([
    ['the calling thread', undefined],
    ['the engine thread', 1024],
  ] as const)(
    'moves no byte into or out of the memory of a peer whose agent closed while its process runs on (%s)',
    async (_, inlineBytes) => {
      const { peer, c, local, mem } = await start(inlineBytes === undefined ? undefined : { inlineBytes });
      const before = (await c.request({ cmd: 'hash-memory', label: 'kv' }, 'hash')).sha;
      await c.request({ cmd: 'close' }, 'closed');
      fillPattern(mem, 4321);
      const mine = sha256(mem);
      const one = (op: 'read' | 'write') => {
        const args = [
          peer,
          [{ region: local, offset: 0, length: 4096 }],
          [{ region: peer.region('kv'), offset: 0, length: 4096 }],
        ] as const;
        return op === 'read' ? agent!.read(...args) : agent!.write(...args);
      };
      for (const op of ['write', 'read'] as const) {
        let err: unknown;
        try {
          await one(op).done; // refused at once (the engine heard the goodbye) or failed
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(KvwireError);
        expect((err as KvwireError).code).toBe(ErrorCode.PEER_LOST);
      }
      expect((await c.request({ cmd: 'hash-memory', label: 'kv' }, 'hash')).sha).toBe(before);
      expect(sha256(mem)).toBe(mine);
    },
  );
});

// The calling thread's short wait for a small transfer's completion (tuning.completionSpinUs,
// native/engine/submit.cc AwaitCompletion): a transfer the engine thread moves (tcp here) that
// completes within the budget is returned completed by read()/write(), with its bytes in place;
// anything else (a failure, a budget of 0, a larger transfer) completes through the event loop as
// before. No assertion here depends on how fast the machine is: the budget is generous (10 ms),
// only "at least one of many" (or, one at a time, most) must complete inside the call, and the
// engine thread's CPU time is compared with the calling thread's over the same transfers.
import { readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Agent, ErrorCode } from '../../lib/index.js';
import type { Transfer } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import type { Child } from './child.js';
import { expectRejectCode, threadsNamed } from './helpers.js';
import { targetPairs } from './target-pair.js';

const SIZE = 1 << 20;
const SEED = 11;

/** Nanoseconds thread `tid` of this process has run on a CPU (schedstat's first field). */
function cpuNs(tid: number): number {
  return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
}

describe('waiting for small completions on the calling thread (tcp)', () => {
  const pairs = targetPairs();
  let agent: Agent | undefined;
  let child: Child | undefined;
  async function start(tuning: { completionSpinUs?: number; completionSpinBytes?: number }) {
    const p = await pairs('tcp', [{ label: 'kv', size: SIZE, access: 'readwrite', seed: SEED }], { tuning });
    agent = p.agent;
    child = p.child;
    return { peer: p.peer, c: p.child, local: p.local, mem: p.mem };
  }

  /** Posts `n` transfers one after the other; counts those complete when the call returned. */
  async function run(n: number, post: (i: number) => Transfer): Promise<number> {
    let inside = 0;
    for (let i = 0; i < n; i++) {
      const t = post(i);
      if (t.status === 'done') {
        inside++;
        // Completed inside the call: its telemetry is there at once, the object done resolves with.
        expect(t.stats).toBeDefined();
        expect(await t.done).toBe(t.stats);
        await t.quiesced;
      } else {
        await t.done;
      }
    }
    return inside;
  }

  it('returns small READs and WRITEs completed, every byte in place', async () => {
    const { peer, c, local, mem } = await start({ completionSpinUs: 10_000 });
    const expected = fillPattern(Buffer.alloc(SIZE), SEED);
    // READs of 4 KiB at scattered offsets: each lands where asked.
    const reads = await run(40, (i) =>
      agent!.read(
        peer,
        [{ region: local, offset: i * 4096, length: 4096 }],
        [{ region: peer.region('kv'), offset: (39 - i) * 4096 + 7, length: 4096 }],
      ),
    );
    for (let i = 0; i < 40; i++) {
      const at = (39 - i) * 4096 + 7;
      expect(mem.subarray(i * 4096, (i + 1) * 4096).equals(expected.subarray(at, at + 4096))).toBe(true);
    }
    expect(reads).toBeGreaterThan(0);
    // WRITEs of 1 KiB (one descriptor, and two: the last one carries the end of the transfer).
    fillPattern(mem, SEED + 1);
    const remote = Buffer.from(expected);
    const writes = await run(40, (i) => {
      const n = i % 2 === 0 ? 1 : 2;
      const ls = Array.from({ length: n }, (_, k) => ({ region: local, offset: i * 4096 + k * 1024, length: 1024 }));
      const rs = Array.from({ length: n }, (_, k) => ({
        region: peer.region('kv'),
        offset: 200_000 + i * 3000 + k * 1500,
        length: 1024,
      }));
      for (let k = 0; k < n; k++) mem.copy(remote, rs[k]!.offset, ls[k]!.offset, ls[k]!.offset + 1024);
      return agent!.write(peer, ls, rs, { coalesce: false });
    });
    expect(writes).toBeGreaterThan(0);
    expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(remote));
  });

  it('leaves a region free to deregister as soon as a transfer returned completed', async () => {
    const { peer } = await start({ completionSpinUs: 10_000 });
    let inside = 0;
    for (let i = 0; i < 20; i++) {
      const scratch = agent!.register(Buffer.alloc(4096), { label: `scratch-${i}` });
      const t = agent!.read(
        peer,
        [{ region: scratch, offset: 0, length: 4096 }],
        [{ region: peer.region('kv'), offset: 0, length: 4096 }],
      );
      if (t.status === 'done') {
        inside++;
        // The engine released its hold on the region before it handed the completion over.
        scratch.deregister();
      } else {
        await t.done;
        await t.quiesced;
        scratch.deregister();
      }
    }
    expect(inside).toBeGreaterThan(0);
  });

  it('reports a failure through done as before (the target deregistered the region)', async () => {
    const { peer, local } = await start({ completionSpinUs: 10_000 });
    // The grant lists the region's size, so the initiator checks it: refuse past it on the target
    // instead, by deregistering there first (the target answers ERR_KVWIRE_DEREGISTERED or revokes).
    await child!.request({ cmd: 'deregister', label: 'kv' }, 'deregistered');
    await expectRejectCode(
      Promise.resolve().then(
        () =>
          agent!.read(
            peer,
            [{ region: local, offset: 0, length: 4096 }],
            [{ region: peer.region('kv'), offset: 0, length: 4096 }],
            { timeoutMs: 30_000 },
          ).done,
      ),
      ErrorCode.DEREGISTERED,
    );
  });

  it('does not wait with a budget of 0, nor for a transfer above completionSpinBytes', async () => {
    const off = await start({ completionSpinUs: 0 });
    const a = agent!.read(
      off.peer,
      [{ region: off.local, offset: 0, length: 4096 }],
      [{ region: off.peer.region('kv'), offset: 0, length: 4096 }],
    );
    expect(a.status).toBe('pending');
    expect(a.stats).toBeUndefined();
    await a.done;

    const big = await start({ completionSpinUs: 10_000, completionSpinBytes: 4095 });
    const b = agent!.read(
      big.peer,
      [{ region: big.local, offset: 0, length: 4096 }],
      [{ region: big.peer.region('kv'), offset: 0, length: 4096 }],
    );
    expect(b.status).toBe('pending');
    await b.done;
  });

  it('does not wait for a transfer posted while another of the agent is pending (posts stay pipelined)', async () => {
    const { peer, local, mem } = await start({ completionSpinUs: 10_000 });
    const expected = fillPattern(Buffer.alloc(SIZE), SEED);
    // A READ above completionSpinBytes (not waited for), then small ones while it is in flight:
    // none of them holds the calling thread, though each alone would be waited for.
    const big = agent!.read(
      peer,
      [{ region: local, offset: 0, length: 512 << 10 }],
      [{ region: peer.region('kv'), offset: 0, length: 512 << 10 }],
    );
    expect(big.status).toBe('pending');
    const small = Array.from({ length: 8 }, (_, i) =>
      agent!.read(
        peer,
        [{ region: local, offset: (600 << 10) + i * 4096, length: 4096 }],
        [{ region: peer.region('kv'), offset: i * 4096 + 3, length: 4096 }],
      ),
    );
    for (const t of small) expect(t.status).toBe('pending');
    await Promise.all([big.done, ...small.map((t) => t.done)]);
    expect(mem.subarray(0, 512 << 10).equals(expected.subarray(0, 512 << 10))).toBe(true);
    for (let i = 0; i < 8; i++) {
      const at = (600 << 10) + i * 4096;
      expect(mem.subarray(at, at + 4096).equals(expected.subarray(i * 4096 + 3, i * 4096 + 4099))).toBe(true);
    }
    // Alone again: waited for (one of a few completes inside the call, as above).
    const inside = await run(10, () =>
      agent!.read(
        peer,
        [{ region: local, offset: 0, length: 4096 }],
        [{ region: peer.region('kv'), offset: 0, length: 4096 }],
      ),
    );
    expect(inside).toBeGreaterThan(0);
  });

  it('runs the transfers it waits for on the calling thread, the engine thread stepping aside', async () => {
    // This agent's engine thread: the one named kvwire-engine that start() added to this process.
    const before = threadsNamed('kvwire-engine');
    const { peer, local, mem } = await start({ completionSpinUs: 10_000 });
    const mine = threadsNamed('kvwire-engine').filter((t) => !before.includes(t));
    expect(mine).toHaveLength(1);
    const engine = mine[0]!;
    const caller = Number(readlinkSync('/proc/thread-self').split('/').pop());
    const expected = fillPattern(Buffer.alloc(SIZE), SEED);
    const reads = (n: number) =>
      run(n, (i) =>
        agent!.read(
          peer,
          [{ region: local, offset: (i % 64) * 4096, length: 4096 }],
          [{ region: peer.region('kv'), offset: (i % 200) * 4096 + 5, length: 4096 }],
        ),
      );
    await reads(50);
    const e0 = cpuNs(engine);
    const c0 = cpuNs(caller);
    const inside = await reads(1000);
    const engineNs = cpuNs(engine) - e0;
    const callerNs = cpuNs(caller) - c0;
    // Nearly all completed inside the call (the budget is 10 ms), and the engine thread, which
    // spun beside the caller for every one of them before, used a small share of what the caller
    // did (it looks in now and then: parked for 200 µs at a time while the waits keep coming).
    expect(inside).toBeGreaterThan(900);
    expect(engineNs).toBeLessThan(callerNs * 0.25);
    for (let i = 936; i < 1000; i++) {
      const at = (i % 200) * 4096 + 5;
      const got = mem.subarray((i % 64) * 4096, (i % 64) * 4096 + 4096);
      expect(got.equals(expected.subarray(at, at + 4096))).toBe(true);
    }
  });

  it('refuses a budget outside 0..10,000 µs and a negative size', async () => {
    for (const tuning of [{ completionSpinUs: -1 }, { completionSpinUs: 10_001 }, { completionSpinBytes: -1 }]) {
      await expect(Agent.create({ transports: 'tcp', tuning })).rejects.toMatchObject({
        code: ErrorCode.INVALID_ARGUMENT,
      });
    }
  });
});

// Large one-sided transfers over shared memory (native/engine/ucx_initiator.cc PostOneSided): the
// engine thread copies them in pieces of 4 MiB, and a piece of 2 MiB or more in two halves at once,
// the second by its copy helper thread (native/engine/copy_helper.h). The halves split descriptors
// in the middle, and one piece may hold the peer's registered memory (cross-memory attach) and its
// allocated memory (mapped here) together: every byte is checked, both ways. Transfers of 512 KiB to
// 1 MiB of registered memory are moved by the calling thread (inline) in two halves the same way.
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { targetPairs } from './target-pair.js';

const SIZE = 24 << 20;
const SEEDS = { kv: 21, al: 23 } as const;

describe('large one-sided transfers over sm', () => {
  const pairs = targetPairs();
  let agent: Agent | undefined;
  async function start() {
    const p = await pairs('sm', [
      { label: 'kv', size: SIZE, access: 'readwrite', seed: SEEDS.kv },
      { label: 'al', size: SIZE, access: 'readwrite', seed: SEEDS.al, allocate: true },
    ]);
    expect(p.peer.protocol).toBe('rma');
    agent = p.agent;
    return { peer: p.peer, c: p.child, local: p.local, mem: p.mem };
  }

  /** Descriptors: one of 9 MiB + 3 bytes at odd offsets, then `n` of `len` bytes, scattered. */
  function layout(n: number, len: number): { l: number; r: number; length: number }[] {
    const out = [{ l: 5, r: 1_000_003, length: (9 << 20) + 3 }];
    for (let i = 0; i < n; i++)
      out.push({ l: (10 << 20) + i * (len + 17), r: (12 << 20) + (n - 1 - i) * (len + 31), length: len });
    return out;
  }

  it.each(['kv', 'al', 'both'] as const)(
    'READs and WRITEs %s in pieces split in halves, every byte right',
    async (which) => {
      const { peer, c, local, mem } = await start();
      const label = (i: number) => (which === 'both' ? (i % 2 === 0 ? 'kv' : 'al') : which);
      const d = layout(37, 300_001);
      // READ: each range lands where asked.
      await agent!.read(
        peer,
        d.map((x) => ({ region: local, offset: x.l, length: x.length })),
        d.map((x, i) => ({ region: peer.region(label(i)), offset: x.r, length: x.length })),
        { coalesce: false },
      ).done;
      const remote = { kv: fillPattern(Buffer.alloc(SIZE), SEEDS.kv), al: fillPattern(Buffer.alloc(SIZE), SEEDS.al) };
      d.forEach((x, i) => {
        const src = remote[label(i)];
        expect(mem.subarray(x.l, x.l + x.length).equals(src.subarray(x.r, x.r + x.length))).toBe(true);
      });
      // WRITE: other bytes back to other places; the target's regions hash as expected.
      fillPattern(mem, 99);
      const w = d.map((x) => ({ ...x, r: x.r + 7 }));
      await agent!.write(
        peer,
        w.map((x) => ({ region: local, offset: x.l, length: x.length })),
        w.map((x, i) => ({ region: peer.region(label(i)), offset: x.r, length: x.length })),
        { coalesce: false },
      ).done;
      w.forEach((x, i) => mem.copy(remote[label(i)], x.r, x.l, x.l + x.length));
      for (const l of ['kv', 'al'] as const) {
        expect((await c.request({ cmd: 'hash', label: l }, 'hash')).sha).toBe(sha256(remote[l]));
      }
    },
  );

  it('moves 512 KiB to 1 MiB of registered memory inline, in halves, every byte right', async () => {
    const { peer, c, local, mem } = await start();
    const remote = fillPattern(Buffer.alloc(SIZE), SEEDS.kv);
    // Five descriptors, 900 KiB in all: the middle falls inside the third.
    const lens = [100_003, 250_001, 300_007, 99_999, 171_590];
    let l = 3;
    let r = 5_000_011;
    const d = lens.map((length) => {
      const x = { l, r, length };
      l += length + 13;
      r += length + 29;
      return x;
    });
    const t = agent!.read(
      peer,
      d.map((x) => ({ region: local, offset: x.l, length: x.length })),
      d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.length })),
      { coalesce: false },
    );
    expect(t.status).toBe('done'); // inline: complete when read() returned
    for (const x of d)
      expect(mem.subarray(x.l, x.l + x.length).equals(remote.subarray(x.r, x.r + x.length))).toBe(true);
    fillPattern(mem, 77);
    const w = agent!.write(
      peer,
      d.map((x) => ({ region: local, offset: x.l, length: x.length })),
      d.map((x) => ({ region: peer.region('kv'), offset: x.r + 1, length: x.length })),
      { coalesce: false },
    );
    expect(w.status).toBe('done');
    for (const x of d) mem.copy(remote, x.r + 1, x.l, x.l + x.length);
    expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(remote));
  });
});

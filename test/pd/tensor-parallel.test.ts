import { afterEach, describe, expect, it } from 'vitest';
import type { MhaModelShape, ModelShape } from '../../lib/kv/index.js';
import { SMALL, pair, prompt, until, type Pair } from './helpers.js';

const REPLICATED: ModelShape = { ...(SMALL as MhaModelShape), name: 'two-heads', kvHeads: 2 };
const MLA: ModelShape = {
  name: 'tiny-mla',
  attention: 'mla',
  layers: 2,
  kvLoraRank: 24,
  qkRopeHeadDim: 8,
  dtype: 'bf16',
};

describe('heterogeneous tensor parallelism (loopback, byte-exact)', () => {
  let p: Pair | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it.each([
    ['prefill TP 2 -> decode TP 1', 2, 1, SMALL, {}],
    ['prefill TP 1 -> decode TP 2', 1, 2, SMALL, {}],
    ['prefill TP 2 -> decode TP 4', 2, 4, SMALL, {}],
    ['prefill TP 4 -> decode TP 2, NHD order', 4, 2, SMALL, { order: 'NHD' as const }],
    [
      'prefill TP 2 -> decode TP 1, joint K/V, arena',
      2,
      1,
      SMALL,
      { kv: 'joint' as const, addressing: 'arena' as const },
    ],
    ['replicated heads: prefill TP 4 -> decode TP 1 (2 KV heads)', 4, 1, REPLICATED, {}],
    ['replicated heads: prefill TP 1 -> decode TP 4 (2 KV heads)', 1, 4, REPLICATED, {}],
    ['MLA: prefill TP 2 -> decode TP 1', 2, 1, MLA, {}],
  ])('%s', async (_name, prefillTp, decodeTp, model, layout) => {
    p = await pair({ prefillTp, decodeTp, model, prefill: layout, decode: layout });
    const shared = prompt(48, 11);
    const reqs = [
      { id: 'a', tokens: [...shared, ...prompt(21, 300)] },
      { id: 'b', tokens: [...shared, ...prompt(5, 600)] },
      { id: 'c', tokens: prompt(100, 900) },
    ];
    let bytes = 0;
    for (const r of reqs) {
      const out = await p.decode.decode(r, p.prefill.prefill(r));
      expect(out.status).toBe('ready');
      bytes += out.verifiedBytes;
    }
    // Every byte of every block of every decode rank was checked against what prefill wrote.
    const perBlock = p.decode.ranks.reduce((s, rank) => s + rank.layout.bytesPerBlock, 0);
    expect(bytes).toBe((5 + 4 + 7) * perBlock);
    for (const rank of p.decode.ranks) expect(rank.agent.peers.length).toBeGreaterThanOrEqual(1);
    await until(() => p!.prefill.coordinator.leases === 0, 'every lease to be released');
    p.decode.drain();
    expect(p.decode.pool.free).toBe(p.decode.pool.total);
    expect(p.prefill.pool.free).toBe(p.prefill.pool.total);
  });

  it('a decode rank reads each of its heads from the prefill rank that holds it', async () => {
    p = await pair({ prefillTp: 4, decodeTp: 1 });
    const r = { id: 'a', tokens: prompt(32) };
    await p.decode.decode(r, p.prefill.prefill(r));
    expect(p.decodeAgents[0]!.peers.map((x) => x.name).sort()).toEqual([
      'prefill-r0',
      'prefill-r1',
      'prefill-r2',
      'prefill-r3',
    ]);
  });
});

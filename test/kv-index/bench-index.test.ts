import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../bench/kv-index/bench-index.js';

/** Runs the bench, returning its exit code and what it printed. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '',
    err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out += String(s);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
    err += String(s);
    return true;
  });
  const code = await main(argv);
  vi.restoreAllMocks();
  return { code, out, err };
}

afterEach(() => {
  vi.restoreAllMocks();
});

const SMALL = ['--blocks', '20000', '--workers', '4', '--queries', '60', '--redis-queries', '30'];

describe('kvwire bench-index', () => {
  it('measures both backends against the Map baseline and reports JSON', async () => {
    const { code, out } = await run([...SMALL, '--json']);
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.config).toMatchObject({ blocks: 20_000, workers: 4, promptTokens: 4096, promptBlocks: 256 });
    expect(r.memory.keys).toBe(20_000);
    expect(r.redis.keys).toBe(20_000);
    expect(r.map.keys).toBe(20_000);
    for (const part of [r.hash, r.memory.score, r.map.score, r.redis.score]) {
      expect(part.medianUs).toBeGreaterThan(0);
      expect(part.p99Us).toBeGreaterThanOrEqual(part.medianUs);
    }
    expect(r.memory.bytesPerKey).toBeGreaterThan(0);
    expect(r.redis.bytesPerKey).toBeGreaterThan(0);
    expect(r.ratios.scoreMedian).toBeCloseTo(r.memory.score.medianUs / r.map.score.medianUs, 1);
    expect(r.checked).toBe(60 + 30);
    expect(r.mismatches).toBe(0);
  });

  it('prints a table by default', async () => {
    const { code, out } = await run([...SMALL, '--backends', 'memory']);
    expect(code).toBe(0);
    expect(out).toMatch(/^kvwire bench-index: 20,000 blocks over 4 workers/);
    expect(out).toMatch(/KvIndex, memory .* µs .* MiB/);
    expect(out).toMatch(/plain Map \(baseline\)/);
    expect(out).toMatch(/KvIndex \(memory\) \/ Map: score p50 [\d.]+x, p99 [\d.]+x, bytes per key [\d.]+x/);
    expect(out).toMatch(/all 60 scores matched the Map baseline/);
    expect(out).not.toMatch(/KvIndex, redis/);
  });

  it.each([
    [['--blocks', 'many'], '--blocks'],
    [['--frobnicate'], '--frobnicate'],
    [['--backends', 'disk'], '--backends'],
    [['--blocks', '10'], '--blocks'],
  ])('exits 2 naming the flag on bad arguments (%j)', async (argv, flag) => {
    const { code, err } = await run(argv);
    expect(code).toBe(2);
    expect(err).toMatch(new RegExp(`^kvwire bench-index: .*${flag}`));
    expect(err).toContain("(see 'kvwire bench-index --help')");
  });
});

import { describe, expect, it } from 'vitest';
import { scatteredBlockIds } from '../../bench/transfer/model.js';
import { runRegister } from '../../bench/transfer/register.js';
import { runIdle } from '../../bench/transfer/idle.js';
import { SILENT_PROGRESS } from '../../bench/transfer/progress.js';
import type { BenchReportJson } from '../../bench/transfer/schema.js';
import { hasUcx, runCli } from './helpers.js';

describe('kvwire bench modes', () => {
  it('scatters block ids without repeats, deterministically', () => {
    const a = scatteredBlockIds(256, 512, 1);
    expect(new Set(a).size).toBe(256);
    expect(Math.max(...a)).toBeLessThan(512);
    expect(scatteredBlockIds(256, 512, 1)).toEqual(a);
    expect(scatteredBlockIds(256, 512, 2)).not.toEqual(a);
  });

  it('--model moves a vLLM-shaped cache and counts descriptors before and after coalescing', async () => {
    const r = await runCli([
      '--engine',
      'loopback',
      '--model',
      'llama-3-8b',
      '--tokens',
      '256',
      '--iters',
      '2',
      '--check',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const m = (JSON.parse(r.stdout) as BenchReportJson).model!;
    expect(m).toMatchObject({
      preset: 'llama-3-8b',
      blocks: 16,
      bytesPerToken: 128 << 10,
      blockBytes: 32 << 10,
      bytesPerRequest: 256 * (128 << 10),
      regionsPerSide: 64,
    });
    for (const row of m.rows) {
      expect(row).toMatchObject({ status: 'ok', checked: true, descriptorsBefore: 16 * 64, iterations: 2 });
      expect(row.descriptorsAfter).toBeGreaterThan(16 * 64 * 0.9); // scattered ids hardly coalesce
      expect(row.jsSharePct).toBeGreaterThan(0);
    }
    const c = await runCli([
      '--engine',
      'loopback',
      '--model',
      'llama-3-8b',
      '--tokens',
      '256',
      '--iters',
      '1',
      '--contiguous',
      '--addressing',
      'arena',
      '--check',
      '--json',
    ]);
    expect(c.code, c.stderr).toBe(0);
    const cm = (JSON.parse(c.stdout) as BenchReportJson).model!;
    expect(cm.regionsPerSide).toBe(1);
    // Contiguous ids: one descriptor per tensor (64), as lib/kv documents.
    expect(cm.rows.map((x) => x.descriptorsAfter)).toEqual([64, 64]);
  });

  it('--register times single regions and 10,000 small ones', async () => {
    const notices: string[] = [];
    const r = await runRegister('loopback', ['loopback'], 1 << 20, (m) => notices.push(m), SILENT_PROGRESS);
    expect(r.rows.map((x) => x.bytes)).toEqual([4096, 16384, 65536, 262144, 1 << 20]);
    expect(notices[0]).toMatch(/skipped/);
    expect(r.many).toMatchObject({ count: 10_000, regionBytes: 4096 });
    expect(r.many.registerUsPerRegion).toBeGreaterThan(0);
  });

  it('--idle reports the CPU of a connected pair', async () => {
    const r = await runIdle(0.2, 'loopback', ['loopback'], () => {}, SILENT_PROGRESS);
    expect(r.rows[0]).toMatchObject({ transport: 'loopback', status: 'ok' });
    expect(r.rows[0]!.wallS).toBeGreaterThan(0.1);
  });

  it.runIf(hasUcx)('--idle measures both processes of a UCX pair', async () => {
    const r = await runIdle(0.3, 'ucx', ['tcp'], () => {}, SILENT_PROGRESS);
    expect(r.rows[0]).toMatchObject({ transport: 'tcp', category: 'tcp', status: 'ok' });
    expect(r.rows[0]!.totalPct).toBeCloseTo(r.rows[0]!.initiatorPct + r.rows[0]!.targetPct, 9);
  });
});

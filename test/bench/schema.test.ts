import { describe, expect, it } from 'vitest';
import {
  BENCH_JSON_PARTS,
  BENCH_JSON_SCHEMA,
  BENCH_SCHEMA_VERSION,
  benchReportErrors,
} from '../../bench/transfer/schema.js';
import type { BenchReportJson } from '../../bench/transfer/schema.js';
import { hasUcx, runCli } from './helpers.js';

function parse(stdout: string): BenchReportJson {
  return JSON.parse(stdout) as BenchReportJson;
}

describe('kvwire bench --json', () => {
  it('prints one document that matches the schema (loopback sweep, model, register, idle)', async () => {
    const r = await runCli([
      '--engine',
      'loopback',
      '--sizes',
      '4K,64K',
      '--batches',
      '1,4',
      '--iters',
      '5',
      '--check',
      '--sweep',
      '--model',
      'llama-3-8b',
      '--tokens',
      '64',
      '--register',
      '--max-region',
      '64M',
      '--idle',
      '0.2',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = parse(r.stdout);
    expect(benchReportErrors(doc)).toEqual([]);
    expect(doc.schema).toBe(BENCH_SCHEMA_VERSION);
    expect(doc.sweep!.rows).toHaveLength(2 * 2 * 2);
    for (const row of doc.sweep!.rows) {
      expect(row).toMatchObject({ status: 'ok', checked: true, iterations: 5, descriptors: row.batch });
      expect(row.verifiedBytes).toBe((row.iterations + row.warmup) * row.blockSize * row.batch);
      expect(row.gbps).toBeGreaterThan(0);
    }
    expect(doc.model!.rows.map((x) => x.op)).toEqual(['read', 'write']);
    expect(doc.model!.rows[0]!.descriptorsBefore).toBe(4 * 64); // 4 blocks x 32 layers x (K, V)
    expect(doc.register!.many.count).toBe(10_000);
    expect(doc.idle!.rows[0]!.status).toBe('ok');
  });

  it.runIf(hasUcx)('matches the schema for a two-process UCX sweep with baselines', async () => {
    const r = await runCli(['--sizes', '64K', '--batches', '1,4', '--iters', '20', '--check', '--baseline', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = parse(r.stdout);
    expect(benchReportErrors(doc)).toEqual([]);
    expect(doc.settings.engine).toBe('ucx');
    for (const t of doc.sweep!.transports) {
      expect(t.status).toBe('ok');
      expect(t.targetPid).not.toBe(process.pid);
    }
    expect(doc.sweep!.rows.every((x) => x.status === 'ok' && x.checked)).toBe(true);
    expect(doc.sweep!.memcpy[0]!.gbps).toBeGreaterThan(0);
  });

  it('rejects documents that do not match, saying where and why', () => {
    const good = { avg: 1, p50: 1, p99: 1, min: 1, max: 1 };
    const dist = BENCH_JSON_PARTS.Distribution;
    expect(benchReportErrors(good, dist)).toEqual([]);
    expect(benchReportErrors({ ...good, p50: 'fast' }, dist)).toEqual(['/p50: Expected number']);
    expect(benchReportErrors({ ...good, p50: NaN }, dist)).toEqual(['/p50: Expected number']);
    expect(benchReportErrors({ avg: 1, p50: 1, p99: 1, min: 1 }, dist)).toContain('/max: Expected required property');
    expect(benchReportErrors({ ...good, extra: 1 }, dist)).toEqual(['/extra: Unexpected property']);
    expect(
      benchReportErrors({ schema: 'kvwire-bench/0' }).some((e) => e.startsWith("/schema: Expected 'kvwire-bench/1'")),
    ).toBe(true);
    expect(benchReportErrors(null)).toEqual(['/: Expected object']);
  });

  it('is a JSON Schema document (draft 2020-12) that a JSON Schema reader can take as it is', () => {
    const json = JSON.parse(JSON.stringify(BENCH_JSON_SCHEMA)) as Record<string, unknown>;
    expect(json['$schema']).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(json['type']).toBe('object');
    expect(json['additionalProperties']).toBe(false);
    expect((json['required'] as string[]).sort()).toEqual(Object.keys(json['properties'] as object).sort());
  });
});

import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  findPerftest,
  memcpyBaseline,
  mibpsToGbps,
  parsePerftestFinal,
  perftestIterations,
  runPerftest,
} from '../../bench/transfer/baselines.js';
import type { BenchReportJson } from '../../bench/transfer/schema.js';
import { hasUcx, runCli } from './helpers.js';

// A captured ucx_perftest client output (UCX 1.13.1, ucp_put_bw over tcp, 64 KiB).
const SAMPLE = `+--------------+--------------+------------------------------+---------------------+-----------------------+
|    Stage     | # iterations | 50.0%ile | average | overall |  average |  overall |  average  |  overall  |
+--------------+--------------+----------+---------+---------+----------+----------+-----------+-----------+
Final:                  2000     14.362    39.977    39.977     1563.40    1563.40       25014       25014
`;

function fakePerftest(body: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvwire-fake-perftest-'));
  const path = join(dir, 'ucx_perftest');
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

describe('bench baselines', () => {
  it('reads the Final line of ucx_perftest and converts MiB/s to GB/s', () => {
    expect(parsePerftestFinal(SAMPLE)).toEqual({ mibps: 1563.4, latencyUs: 39.977 });
    expect(parsePerftestFinal('connect failed')).toBeUndefined();
    expect(mibpsToGbps(1000)).toBeCloseTo(1.048576, 9);
  });

  it('budgets iterations by bytes, and get over tcp down tenfold', () => {
    expect(perftestIterations('sm', 'ucp_put_bw', 65536, 64 << 20)).toBe(1024);
    expect(perftestIterations('tcp', 'ucp_get', 65536, 64 << 20)).toBe(102);
    expect(perftestIterations('sm', 'ucp_put_bw', 16 << 20, 64 << 20)).toBe(5);
    expect(perftestIterations('sm', 'ucp_put_bw', 4096, 1 << 30)).toBe(20_000);
  });

  it('finds ucx_perftest on PATH, or says it is not there', () => {
    expect(findPerftest({ PATH: '/nonexistent-dir' })).toBeUndefined();
    expect(findPerftest({ KVWIRE_UCX_PERFTEST: '/nonexistent/ucx_perftest' })).toBeUndefined();
    const fake = fakePerftest('exit 0');
    expect(findPerftest({ PATH: join(fake, '..') })).toBe(fake);
  });

  it('runs a server and a client, and reports a client without a result as failed', async () => {
    const ok = fakePerftest(
      `case "$1" in 127.0.0.1) printf '%s\\n' "Final: 10 1.0 2.0 2.0 1000.00 1000.00 10 10";; *) sleep 0.2;; esac`,
    );
    const r = await runPerftest(ok, 'tcp', 'tcp', 'ucp_put_bw', 65536, 10, 10);
    expect(r).toMatchObject({
      status: 'ok',
      mibps: 1000,
      latencyUs: 2,
      ucxTls: 'tcp,self',
      iterations: 10,
      error: null,
    });
    const bad = fakePerftest(`case "$1" in 127.0.0.1) echo "unsupported test" >&2; exit 1;; *) sleep 0.2;; esac`);
    const f = await runPerftest(bad, 'tcp', 'tcp', 'ucp_put_bw', 65536, 10, 10);
    expect(f.status).toBe('failed');
    expect(f.error).toMatch(/unsupported test/);
    const slow = fakePerftest('exec sleep 30');
    const t = await runPerftest(slow, 'tcp', 'tcp', 'ucp_put_bw', 65536, 10, 1);
    expect(t.status).toBe('timeout');
  });

  it('measures memcpy with the native addon', () => {
    const m = memcpyBaseline(1 << 20);
    if (m === undefined) return; // no addon in this build
    expect(m.size).toBe(1 << 20);
    expect(m.gbps).toBeGreaterThan(0);
  });

  it.runIf(hasUcx)('reports a missing ucx_perftest and goes on without ratios', async () => {
    const r = await runCli(
      ['--sizes', '64K', '--batches', '1', '--iters', '10', '--transports', 'tcp', '--baseline', '--json'],
      {
        KVWIRE_UCX_PERFTEST: '/nonexistent/ucx_perftest',
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/ucx_perftest was not found/);
    const doc = JSON.parse(r.stdout) as BenchReportJson;
    expect(doc.notices.some((n) => /ucx_perftest was not found/.test(n))).toBe(true);
    expect(doc.sweep!.perftest).toEqual([]);
    for (const row of doc.sweep!.rows) {
      expect(row.status).toBe('ok');
      expect(row.ratios?.put ?? null).toBeNull();
    }
  });
});

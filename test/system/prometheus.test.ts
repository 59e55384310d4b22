/**
 * A real Prometheus (Debian's `prometheus`) scrapes every component of the running system with
 * the configuration lib/system generates, and PromQL over its HTTP API answers what an operator
 * asks: the TTFT histogram, the KV bytes transferred, the prefix-cache hit rate, the P/D
 * decisions by reason.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driveWorkload, type RequestRecord } from '../../lib/system/client.js';
import { startLocalSystem, type LocalSystem } from '../../lib/system/local-system.js';
import { prometheusConfig } from '../../lib/system/prometheus-config.js';
import { demoWorkload } from '../../lib/system/workload.js';

const PROMETHEUS = '/usr/bin/prometheus';
const REQUESTS = 12;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

describe.skipIf(!existsSync(PROMETHEUS))('Prometheus scraping every component', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvwire-prometheus-'));
  let system: LocalSystem;
  let prometheus: ChildProcess;
  let api = '';
  let stderr = '';
  let records: RequestRecord[] = [];

  const query = async (promql: string): Promise<Sample[]> => {
    const r = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await r.json()) as { status: string; data: { result: Sample[] }; error?: string };
    if (body.status !== 'success') throw new Error(`${promql}: ${body.error}`);
    return body.data.result;
  };
  /** Polls a query until `ok` holds for its result (scrapes run every second; the machine is busy). */
  const until = async (promql: string, ok: (r: Sample[]) => boolean, ms = 90_000): Promise<Sample[]> => {
    const end = Date.now() + ms;
    for (;;) {
      const last = await query(promql).catch((): Sample[] => []);
      if (ok(last)) return last;
      if (Date.now() > end) throw new Error(`${promql} never held; last result ${JSON.stringify(last)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const value = (r: Sample[]): number => r.reduce((n, s) => n + Number(s.value[1]), 0);

  beforeAll(async () => {
    system = await startLocalSystem({ model: 'tiny', reference: false, routerListen: { host: '127.0.0.1', port: 0 } });
    writeFileSync(join(dir, 'prometheus.yml'), prometheusConfig(system));
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    prometheus.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-8192)));
    const end = Date.now() + 60_000;
    while (
      !(await fetch(`${api}/-/ready`)
        .then((r) => r.ok)
        .catch(() => false))
    ) {
      if (prometheus.exitCode !== null || Date.now() > end) throw new Error(`prometheus did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    records = await driveWorkload({
      baseUrl: system.router.url,
      model: system.model,
      workload: demoWorkload({ requests: REQUESTS }),
      concurrency: 3,
    });
  }, 300_000);

  afterAll(async () => {
    prometheus?.kill('SIGTERM');
    await system?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('scrapes all seven components', async () => {
    expect(records.filter((r) => r.error !== undefined)).toEqual([]);
    const up = await until('up', (r) => r.length === 7 && r.every((s) => s.value[1] === '1'));
    expect(up.map((s) => s.metric['component']).sort()).toEqual(
      ['decode-0', 'decode-1', 'prefill-0', 'prefill-1', 'router', 'sidecar-0', 'sidecar-1'].sort(),
    );
  }, 120_000);

  it('answers PromQL: TTFT histogram, KV bytes transferred, cache hit rate, P/D decisions', async () => {
    // Every request's first token was timed by the decode engine that served it.
    await until('sum(vllm:time_to_first_token_seconds_count{role="decode"})', (r) => value(r) === REQUESTS);
    const p50 = await query(
      'histogram_quantile(0.5, sum by (le) (vllm:time_to_first_token_seconds_bucket{role="decode"}))',
    );
    expect(value(p50)).toBeGreaterThan(0);
    // The KV bytes the decode engines pulled, as the requests' Server-Timing reported them one by one.
    const pulled = records.reduce(
      (n, r) => n + Number(r.timing.find((t) => t.name === 'decode-kv-pull')?.params['bytes'] ?? 0),
      0,
    );
    expect(pulled).toBeGreaterThan(0);
    await until('sum(kvwire_pd_transfer_bytes_total{role="decode"})', (r) => value(r) === pulled);
    const rate = await until(
      'sum(vllm:prefix_cache_hits_total{role="decode"}) / sum(vllm:prefix_cache_queries_total{role="decode"})',
      (r) => r.length === 1,
    );
    expect(value(rate)).toBeGreaterThan(0);
    expect(value(rate)).toBeLessThan(1);
    const decisions = await until(
      'sum by (decision, reason) (kvwire_scheduler_decisions_total)',
      (r) => value(r) === REQUESTS,
    );
    const kinds = new Set(decisions.map((s) => s.metric['decision']));
    expect(kinds).toEqual(new Set(['disaggregated', 'decode_only']));
    for (const s of decisions) expect(s.metric['reason']).toMatch(/^uncached_(at_least|below)_threshold$/);
    // The sidecars counted the P/D requests they ran.
    await until('sum(kvwire_sidecar_requests_total{route="pd"})', (r) => value(r) > 0);
  }, 180_000);
});

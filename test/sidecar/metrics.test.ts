// The sidecar's metrics on its own path: every family the issue lists, labelled as documented,
// and accepted by Prometheus' own linter (Debian's promtool).
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../lib/metrics.js';
import { createSidecar, type Sidecar } from '../../lib/sidecar/index.js';
import { decodeAnswer, prefillAnswer, request, sendJson, startFakeWorker, type FakeWorker } from './fake-workers.js';

let prefill: FakeWorker;
let flaky: FakeWorker;
let decode: FakeWorker;
let sidecar: Sidecar;

beforeAll(async () => {
  prefill = await startFakeWorker(prefillAnswer(4));
  flaky = await startFakeWorker((_req, res) => sendJson(res, 503, { error: 'busy' }));
  decode = await startFakeWorker(decodeAnswer());
  sidecar = await createSidecar({
    decode: decode.url,
    allow: [prefill.hostPort, flaky.hostPort],
    prefillRetryBackoffMs: 1,
    prefillMaxRetries: 1,
    registry: createRegistry(),
  });
  const body = JSON.stringify({ model: 'm', prompt: 'p', kv_transfer_params: { remote_host: 'x' } });
  const send = (target?: string) =>
    request(sidecar.url, {
      path: '/v1/completions',
      headers: target === undefined ? {} : { 'x-prefiller-host-port': target },
      body,
    });
  await send(prefill.hostPort);
  await send(flaky.hostPort);
  await send('169.254.169.254:80');
  await send();
  await request(sidecar.url, { method: 'GET', path: '/health' });
});

afterAll(async () => {
  await sidecar.close();
  for (const w of [prefill, flaky, decode]) await w.close();
});

describe('sidecar metrics', () => {
  it('counts requests, legs, refusals, retries and fallbacks with their labels', async () => {
    const text = (await request(sidecar.url, { method: 'GET', path: '/sidecar/metrics' })).body;
    for (const line of [
      'kvwire_sidecar_requests_total{route="pd",outcome="ok"} 1',
      'kvwire_sidecar_requests_total{route="decode_only",outcome="fallback_ok"} 1',
      'kvwire_sidecar_requests_total{route="pd",outcome="refused"} 1',
      'kvwire_sidecar_requests_total{route="decode_only",outcome="ok"} 1',
      'kvwire_sidecar_requests_total{route="passthrough",outcome="ok"} 1',
      'kvwire_sidecar_prefill_seconds_count{outcome="ok"} 1',
      'kvwire_sidecar_prefill_seconds_count{outcome="unavailable"} 1',
      'kvwire_sidecar_decode_first_byte_seconds_count{route="pd"} 1',
      'kvwire_sidecar_overhead_seconds_count{route="pd"} 1',
      'kvwire_sidecar_overhead_seconds_count{route="decode_only"} 2',
      'kvwire_sidecar_ssrf_refusals_total{reason="metadata"} 1',
      'kvwire_sidecar_prefill_retries_total{reason="unavailable"} 1',
      'kvwire_sidecar_decode_only_fallbacks_total{reason="unavailable"} 1',
      // The client's kv_transfer_params on the decode-only request (the P/D legs replace theirs).
      'kvwire_sidecar_client_kv_params_stripped_total 1',
    ]) {
      expect(text).toContain(line);
    }
  });

  it('passes promtool check metrics', async () => {
    const text = (await request(sidecar.url, { method: 'GET', path: '/sidecar/metrics' })).body;
    let problems = '';
    try {
      execFileSync('promtool', ['check', 'metrics'], {
        input: text,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    } catch (e) {
      problems = String((e as { stdout?: string }).stdout ?? '') + String((e as { stderr?: string }).stderr ?? e);
    }
    expect(problems).toBe('');
  });
});

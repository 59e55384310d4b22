import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, type MetricsRegistry } from '../../lib/metrics.js';
import { createSidecar, type ResolvedAddress, type Sidecar } from '../../lib/sidecar/index.js';
import { makeTestCerts, type TestCerts } from './certs.js';
import { decodeAnswer, prefillAnswer, request, startFakeWorker, type FakeWorker } from './fake-workers.js';

let certs: TestCerts;
let prefill: FakeWorker;
let impostor: FakeWorker;
let decode: FakeWorker;
let sidecar: Sidecar;
let registry: MetricsRegistry;

const resolve = async (name: string): Promise<readonly ResolvedAddress[]> => {
  if (name === 'prefill.test' || name === 'other.test') return [{ address: '127.0.0.1', family: 4 }];
  throw new Error(`ENOTFOUND ${name}`);
};

beforeAll(async () => {
  certs = makeTestCerts();
  prefill = await startFakeWorker(prefillAnswer(3), { tls: certs.leaf });
  impostor = await startFakeWorker(prefillAnswer(3), { tls: certs.untrusted });
  decode = await startFakeWorker(decodeAnswer());
  registry = createRegistry();
  sidecar = await createSidecar({
    decode: decode.url,
    allow: [prefill.hostPort, impostor.hostPort],
    tls: certs.leaf,
    prefillTls: { ca: certs.ca },
    resolve,
    prefillRetryBackoffMs: 1,
    registry,
  });
});

afterAll(async () => {
  await sidecar.close();
  for (const w of [prefill, impostor, decode]) await w.close();
});

const body = JSON.stringify({ model: 'm', prompt: 'p' });

describe('TLS', () => {
  it('listens with TLS: a client that trusts the CA gets through, plain HTTP does not', async () => {
    expect(sidecar.url.startsWith('https://')).toBe(true);
    const r = await request(sidecar.url, { path: '/v1/completions', body, ca: certs.ca });
    expect(r.status).toBe(200);
    await expect(request(sidecar.url.replace('https:', 'http:'), { path: '/v1/completions', body })).rejects.toThrow();
  });

  it('talks TLS to the prefill target, checking its certificate against the CA and the target name', async () => {
    for (const target of [prefill.hostPort, `prefill.test:${prefill.port}`]) {
      const before = prefill.received.length;
      const r = await request(sidecar.url, {
        path: '/v1/completions',
        headers: { 'x-prefiller-host-port': target },
        body,
        ca: certs.ca,
      });
      expect(r.status).toBe(200);
      expect(prefill.received.length).toBe(before + 1);
      expect(
        (r.json!.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens,
      ).toBe(3);
    }
  });

  it('refuses a certificate it does not trust, or one for another name, without retrying', async () => {
    const before = decode.received.length;
    const untrusted = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': impostor.hostPort },
      body,
      ca: certs.ca,
    });
    expect(untrusted.status).toBe(200); // decode-only fallback
    expect(impostor.received).toHaveLength(0);
    // other.test resolves to an allowed address, but the certificate does not name it.
    const allowOther = await createSidecar({
      decode: decode.url,
      allow: [prefill.hostPort],
      prefillTls: { ca: certs.ca },
      resolve,
      registry,
    });
    try {
      const before2 = prefill.received.length;
      const wrongName = await request(allowOther.url, {
        path: '/v1/completions',
        headers: { 'x-prefiller-host-port': `other.test:${prefill.port}` },
        body,
      });
      expect(wrongName.status).toBe(200);
      expect(prefill.received.length).toBe(before2);
    } finally {
      await allowOther.close();
    }
    expect(decode.received.length).toBe(before + 2);
    expect(decode.received.slice(-2).every((d) => d.json!.kv_transfer_params === undefined)).toBe(true);
    const text = await registry.metrics();
    expect(text).toMatch(/kvwire_sidecar_decode_only_fallbacks_total\{reason="tls"\} 2/);
    expect(text).not.toMatch(/kvwire_sidecar_prefill_retries_total\{/);
  });
});

/**
 * The sidecar adds its prefill leg to the answer's Server-Timing (W3C), after the decode worker's
 * own entries, with the prefill worker's entries; a decode-only fallback says why.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRegistry } from '../../lib/metrics.js';
import { createSidecar, type Sidecar } from '../../lib/sidecar/index.js';
import { parseServerTiming } from '../../lib/system/server-timing.js';
import { prefillParams, request, sendJson, startFakeWorker, type FakeWorker } from './fake-workers.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

const body = JSON.stringify({ model: 'm', prompt: 'The quick brown fox', max_tokens: 4, temperature: 0 });

async function setup(prefillTiming: string | undefined): Promise<{ prefill: FakeWorker; sidecar: Sidecar }> {
  const prefill = await startFakeWorker((req, res) =>
    sendJson(
      res,
      200,
      { id: 'cmpl-x', choices: [{ index: 0, text: 'x' }], kv_transfer_params: prefillParams('x', 5600) },
      prefillTiming === undefined ? {} : { 'server-timing': prefillTiming },
    ),
  );
  const decode = await startFakeWorker((req, res) =>
    sendJson(
      res,
      200,
      { id: 'cmpl-x', choices: [{ index: 0, text: 'abc' }] },
      {
        'server-timing': 'decode-queue;dur=0.1, decode-kv-pull;dur=3;bytes=4096;blocks=1',
      },
    ),
  );
  const sidecar = await createSidecar({ decode: decode.url, allow: [prefill.hostPort], registry: createRegistry() });
  open.push(sidecar, prefill, decode);
  return { prefill, sidecar };
}

describe('Server-Timing through the sidecar', () => {
  it("P/D: the decode worker's entries, then the prefill leg, then the prefill worker's", async () => {
    const { prefill, sidecar } = await setup('prefill-queue;dur=0.2, prefill-compute;dur=12.5');
    const r = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
      body,
    });
    expect(r.status).toBe(200);
    const t = parseServerTiming(String(r.headers['server-timing']));
    expect(t.map((e) => e.name)).toEqual([
      'decode-queue',
      'decode-kv-pull',
      'sidecar-prefill',
      'prefill-queue',
      'prefill-compute',
    ]);
    expect(t[2]!.dur).toBeGreaterThan(0);
    expect(t[1]!.params).toEqual({ bytes: '4096', blocks: '1' });
  });

  it('a prefill without Server-Timing still gets the leg; a failed prefill says why it ran decode-only', async () => {
    const { prefill, sidecar } = await setup(undefined);
    let r = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
      body,
    });
    expect(parseServerTiming(String(r.headers['server-timing'])).map((e) => e.name)).toEqual([
      'decode-queue',
      'decode-kv-pull',
      'sidecar-prefill',
    ]);
    const target = prefill.hostPort;
    await prefill.close();
    r = await request(sidecar.url, { path: '/v1/completions', headers: { 'x-prefiller-host-port': target }, body });
    expect(r.status).toBe(200);
    const t = parseServerTiming(String(r.headers['server-timing']));
    expect(t.find((e) => e.name === 'sidecar-fallback')?.desc).toBe('unreachable');
    expect(t.find((e) => e.name === 'sidecar-prefill')?.dur).toBeGreaterThan(0);
  });

  it("decode-only (no prefill target): the worker's header as it is", async () => {
    const { sidecar } = await setup(undefined);
    const r = await request(sidecar.url, { path: '/v1/completions', body });
    expect(r.headers['server-timing']).toBe('decode-queue;dur=0.1, decode-kv-pull;dur=3;bytes=4096;blocks=1');
  });
});

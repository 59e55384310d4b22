import http from 'node:http';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRegistry, type MetricsRegistry } from '../../lib/metrics.js';
import { createSidecar, type Sidecar, type SidecarOptions } from '../../lib/sidecar/index.js';
import {
  decodeAnswer,
  prefillAnswer,
  request,
  sendJson,
  startFakeWorker,
  until,
  type Answer,
  type FakeWorker,
} from './fake-workers.js';

let prefill: FakeWorker;
let decode: FakeWorker;
let sidecar: Sidecar;
let registry: MetricsRegistry;

async function start(options: Partial<SidecarOptions> = {}): Promise<void> {
  await sidecar?.close();
  registry = createRegistry();
  sidecar = await createSidecar({
    decode: decode.url,
    allow: [prefill.hostPort],
    prefillRetryBackoffMs: 1,
    registry,
    ...options,
  });
}

beforeEach(async () => {
  prefill = await startFakeWorker(prefillAnswer(0));
  decode = await startFakeWorker(decodeAnswer());
  await start();
});

afterEach(async () => {
  await sidecar.close();
  await prefill.close();
  await decode.close();
});

const body = JSON.stringify({ model: 'm', prompt: 'p', max_tokens: 4 });
const pd = (target = prefill.hostPort) =>
  request(sidecar.url, { path: '/v1/completions', headers: { 'x-prefiller-host-port': target }, body });

async function metric(pattern: RegExp): Promise<string | undefined> {
  return (await registry.metrics()).split('\n').find((l) => pattern.test(l));
}

/** Answers with `statuses` in turn, then as a prefill. */
function statuses(...codes: number[]): Answer {
  let i = 0;
  const ok = prefillAnswer(0);
  return (req, res, incoming) => {
    const code = codes[i++];
    if (code === undefined) return ok(req, res, incoming);
    sendJson(res, code, { error: { message: `status ${code}`, type: 'x', param: null, code } });
  };
}

const hang: Answer = () => {};

describe('prefill failures', () => {
  it('retries 502/503/504 with backoff, then succeeds', async () => {
    prefill.answer = statuses(503, 502, 504);
    await start({ prefillMaxRetries: 3 });
    const r = await pd();
    expect(r.status).toBe(200);
    expect(prefill.received).toHaveLength(4);
    expect(new Set(prefill.received.map((p) => p.headers['x-request-id'])).size).toBe(1);
    expect(decode.received[0]!.json!.kv_transfer_params).toMatchObject({ do_remote_prefill: true });
    expect(await metric(/^kvwire_sidecar_prefill_retries_total\{reason="unavailable"\}/)).toMatch(/ 3$/);
    expect(await metric(/^kvwire_sidecar_requests_total\{route="pd",outcome="ok"\}/)).toMatch(/ 1$/);
  });

  it('falls back to decode-only after the retries (default 2), counted by reason', async () => {
    prefill.answer = statuses(503, 503, 503, 503);
    const r = await pd();
    expect(r.status).toBe(200);
    expect(prefill.received).toHaveLength(3);
    const d = decode.received[0]!;
    expect(d.json).toEqual(JSON.parse(body));
    expect(d.headers['x-request-id']).toBe(prefill.received[0]!.headers['x-request-id']);
    expect(await metric(/^kvwire_sidecar_decode_only_fallbacks_total\{reason="unavailable"\}/)).toMatch(/ 1$/);
    expect(await metric(/^kvwire_sidecar_requests_total\{route="decode_only",outcome="fallback_ok"\}/)).toMatch(/ 1$/);
  });

  it('retries connection errors, then falls back (reason unreachable)', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await start({ allow: [`127.0.0.1:${port}`] });
    const r = await pd(`127.0.0.1:${port}`);
    expect(r.status).toBe(200);
    expect(decode.received).toHaveLength(1);
    expect(await metric(/^kvwire_sidecar_prefill_retries_total\{reason="unreachable"\}/)).toMatch(/ 2$/);
    expect(await metric(/^kvwire_sidecar_decode_only_fallbacks_total\{reason="unreachable"\}/)).toMatch(/ 1$/);
  });

  it("with onPrefillFailure 'fail', answers 502 and never calls decode", async () => {
    prefill.answer = statuses(502, 502, 502);
    await start({ onPrefillFailure: 'fail' });
    const r = await pd();
    expect(r.status).toBe(502);
    expect(r.json!.error).toMatchObject({ code: 'prefill_unavailable', type: 'api_error' });
    expect(decode.received).toHaveLength(0);
    expect(await metric(/^kvwire_sidecar_requests_total\{route="pd",outcome="prefill_failed"\}/)).toMatch(/ 1$/);
  });

  it('returns a prefill 4xx to the client as it is, without retry or decode', async () => {
    prefill.answer = (_req, res) =>
      sendJson(
        res,
        400,
        { error: { message: 'prompt too long', type: 'BadRequestError', param: 'prompt', code: 400 } },
        { 'x-why': 'len' },
      );
    const r = await pd();
    expect(r.status).toBe(400);
    expect(r.json).toEqual({
      error: { message: 'prompt too long', type: 'BadRequestError', param: 'prompt', code: 400 },
    });
    expect(r.headers['x-why']).toBe('len');
    expect(prefill.received).toHaveLength(1);
    expect(decode.received).toHaveLength(0);
  });

  it('does not retry other 5xx, nor an answer without kv_transfer_params; both fall back', async () => {
    prefill.answer = statuses(500);
    expect((await pd()).status).toBe(200);
    expect(prefill.received).toHaveLength(1);
    prefill.answer = (_req, res) => sendJson(res, 200, { choices: [] });
    expect((await pd()).status).toBe(200);
    expect(prefill.received).toHaveLength(2);
    prefill.answer = (_req, res) => sendJson(res, 200, { kv_transfer_params: { x: 'y'.repeat(2 << 20) } });
    expect((await pd()).status).toBe(200);
    expect(prefill.received).toHaveLength(3);
    expect(await metric(/fallbacks_total\{reason="server_error"\}/)).toMatch(/ 1$/);
    expect(await metric(/fallbacks_total\{reason="bad_response"\}/)).toMatch(/ 2$/);
    expect(decode.received.every((d) => d.json!.kv_transfer_params === undefined)).toBe(true);
  });

  it('times the whole prefill leg out (the worker sees its request cancelled), then falls back or fails', async () => {
    prefill.answer = hang;
    await start({ prefillTimeoutMs: 300 });
    const r = await pd();
    expect(r.status).toBe(200);
    await until(() => prefill.aborted === 1, 'the prefill worker to see the cancelled request');
    expect(await metric(/fallbacks_total\{reason="timeout"\}/)).toMatch(/ 1$/);

    await start({ prefillTimeoutMs: 300, onPrefillFailure: 'fail' });
    const f = await pd();
    expect(f.status).toBe(504);
    expect(f.json!.error).toMatchObject({ code: 'prefill_timeout' });
    expect(decode.received).toHaveLength(1);
  });
});

describe('decode failures and timeouts', () => {
  it('answers 502 when the decode worker is unreachable', async () => {
    await decode.close();
    const r = await request(sidecar.url, { path: '/v1/completions', body });
    expect(r.status).toBe(502);
    expect(r.json!.error).toMatchObject({ code: 'decode_unreachable' });
    const g = await request(sidecar.url, { method: 'GET', path: '/health' });
    expect(g.status).toBe(502);
  });

  it('answers 504 when the decode worker does not start answering in time, and cancels its request', async () => {
    decode.answer = hang;
    await start({ decodeTimeoutMs: 300 });
    const r = await pd();
    expect(r.status).toBe(504);
    expect(r.json!.error).toMatchObject({ code: 'decode_timeout' });
    await until(() => decode.aborted === 1, 'the decode worker to see the cancelled request');
  });

  it('cuts a stream that stalls longer than the decode timeout, but not one that keeps flowing', async () => {
    decode.answer = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < 6; i++) {
        res.write(`data: {"i":${i}}\n\n`);
        await new Promise((r) => setTimeout(r, 150));
      }
      res.end('data: [DONE]\n\n');
    };
    await start({ decodeTimeoutMs: 600 });
    // 6 x 150 ms is longer than the deadline, but no gap is.
    const flowing = await request(sidecar.url, { path: '/v1/completions', body: JSON.stringify({ stream: true }) });
    expect(flowing.body).toContain('data: [DONE]');

    decode.answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"i":0}\n\n');
    };
    await expect(
      request(sidecar.url, { path: '/v1/completions', body: JSON.stringify({ stream: true }) }),
    ).rejects.toThrow();
    await until(() => decode.aborted === 1, 'the stalled stream to be cancelled at the decode worker');
    expect(await metric(/requests_total\{route="decode_only",outcome="timeout"\}/)).toMatch(/ 1$/);
  });
});

describe('a client that goes away', () => {
  function startAndAbandon(
    path: string,
    headers: Record<string, string>,
    text: string,
    abandonWhen: () => boolean,
  ): Promise<void> {
    return new Promise((resolve) => {
      const req = http.request(`${sidecar.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        agent: false,
      });
      req.on('error', () => resolve());
      req.on('response', (res) => res.on('data', () => {}));
      req.end(text);
      void until(abandonWhen, 'the moment to abandon').then(() => {
        req.destroy();
        resolve();
      });
    });
  }

  it('during the prefill leg: the prefill request is cancelled and decode never called', async () => {
    prefill.answer = hang;
    await startAndAbandon(
      '/v1/completions',
      { 'x-prefiller-host-port': prefill.hostPort },
      body,
      () => prefill.received.length === 1,
    );
    await until(() => prefill.aborted === 1, 'the prefill worker to see the cancellation');
    let counted: string | undefined;
    for (let i = 0; i < 200 && counted === undefined; i++) {
      counted = await metric(/requests_total\{route="pd",outcome="client_closed"\} 1$/);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(counted).toBeDefined();
    expect(decode.received).toHaveLength(0);
  });

  it('during the decode stream: the decode request is cancelled', async () => {
    decode.answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"first":true}\n\n');
    };
    await startAndAbandon(
      '/v1/chat/completions',
      { 'x-prefiller-host-port': prefill.hostPort },
      JSON.stringify({ stream: true }),
      () => decode.received.length === 1,
    );
    await until(() => decode.aborted === 1, 'the decode worker to see the cancellation');
    expect(prefill.received).toHaveLength(1);
  });
});

describe('limits', () => {
  it('refuses bodies over the limit with 413 before any leg, declared or streamed', async () => {
    await start({ maxBodyBytes: 1024 });
    const big = JSON.stringify({ model: 'm', prompt: 'x'.repeat(2000) });
    const declared = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
      body: big,
    });
    expect(declared.status).toBe(413);
    expect(declared.json!.error).toMatchObject({ code: 'body_too_large', type: 'invalid_request_error' });
    const decodeOnly = await request(sidecar.url, { path: '/v1/chat/completions', body: big });
    expect(decodeOnly.status).toBe(413);
    // Chunked (no content-length): counted as it streams.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${sidecar.url}/v1/completions`,
        { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, agent: false },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.write(big.slice(0, 800));
      setTimeout(() => req.end(big.slice(800)), 50);
    });
    expect(chunked).toBe(413);
    // Relayed routes stream the body to decode, and stop it at the limit.
    decode.answer = (_req, res) => sendJson(res, 200, {});
    const relayed = await request(sidecar.url, { path: '/v1/embeddings', body: big });
    expect(relayed.status).toBe(413);
    expect(prefill.received).toHaveLength(0);
    expect(decode.received).toHaveLength(0);
  });

  it('refuses a header block over the limit with 431', async () => {
    await start({ maxHeaderBytes: 2048 });
    const r = await request(sidecar.url, { path: '/v1/completions', headers: { 'x-big': 'a'.repeat(4000) }, body });
    expect(r.status).toBe(431);
    expect(decode.received).toHaveLength(0);
  });

  it('answers 400 with OpenAI error JSON for a P/D body that is not a JSON object', async () => {
    for (const text of ['not json', '[1,2]', '"s"', '{"a":']) {
      const r = await request(sidecar.url, {
        path: '/v1/completions',
        headers: { 'x-prefiller-host-port': prefill.hostPort },
        body: text,
      });
      expect(r.status).toBe(400);
      expect(r.json!.error).toMatchObject({ code: 'invalid_json', type: 'invalid_request_error', param: null });
    }
  });
});

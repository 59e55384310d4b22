import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRegistry } from '../../lib/metrics.js';
import { createSidecar, type Sidecar } from '../../lib/sidecar/index.js';
import {
  decodeAnswer,
  Gates,
  prefillAnswer,
  prefillParams,
  request,
  sendJson,
  startFakeWorker,
  until,
  type FakeWorker,
} from './fake-workers.js';

let prefill: FakeWorker;
let decode: FakeWorker;
let sidecar: Sidecar;

beforeEach(async () => {
  prefill = await startFakeWorker(prefillAnswer(7));
  decode = await startFakeWorker(decodeAnswer({ ownCached: 2 }));
  sidecar = await createSidecar({ decode: decode.url, allow: [prefill.hostPort], registry: createRegistry() });
});

afterEach(async () => {
  await sidecar.close();
  await prefill.close();
  await decode.close();
});

const completion = {
  model: 'm',
  prompt: 'The quick brown fox',
  max_tokens: 16,
  min_tokens: 2,
  temperature: 0,
  stream_options: { include_usage: true },
};

describe('the nixlv2 flow (prefill leg, then decode leg)', () => {
  it('sends the prefill body, then the original body plus the prefill params, with one x-request-id', async () => {
    const r = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort, 'x-request-id': 'req-42', authorization: 'Bearer t0k' },
      body: JSON.stringify({ ...completion, stream: false }),
    });
    expect(r.status).toBe(200);

    expect(prefill.received).toHaveLength(1);
    const p = prefill.received[0]!;
    expect(p.method).toBe('POST');
    expect(p.path).toBe('/v1/completions');
    expect(p.json).toEqual({
      model: 'm',
      prompt: 'The quick brown fox',
      temperature: 0,
      max_tokens: 1,
      stream: false,
      kv_transfer_params: {
        do_remote_decode: true,
        do_remote_prefill: false,
        remote_engine_id: null,
        remote_request_id: null,
        remote_block_ids: null,
        remote_host: null,
        remote_port: null,
      },
    });
    expect(p.headers['x-request-id']).toBe('req-42');
    expect(p.headers.authorization).toBe('Bearer t0k');
    expect(p.headers['x-prefiller-host-port']).toBeUndefined();

    expect(decode.received).toHaveLength(1);
    const d = decode.received[0]!;
    expect(d.path).toBe('/v1/completions');
    expect(d.json).toEqual({ ...completion, stream: false, kv_transfer_params: prefillParams('req-42', 5600) });
    expect(d.headers['x-request-id']).toBe('req-42');
    expect(d.headers.authorization).toBe('Bearer t0k');
    expect(d.headers['x-prefiller-host-port']).toBeUndefined();

    // The prefill's 7 cached tokens replace the decode's own 2 (which count what it received).
    const usage = r.json!.usage as { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } };
    expect(usage.prompt_tokens_details.cached_tokens).toBe(7);
    expect(usage.prompt_tokens).toBe(12);
    expect((r.json!.choices as { text: string }[])[0]!.text).toBe('Hello, world');
    expect(r.headers['x-request-id']).toBe('req-42');
  });

  it('makes up one x-request-id for both legs when the client sent none (or an unusable one)', async () => {
    for (const given of [undefined, 'has space', 'x'.repeat(300)]) {
      prefill.received.length = 0;
      decode.received.length = 0;
      const headers: Record<string, string> = { 'x-prefiller-host-port': prefill.hostPort };
      if (given !== undefined) headers['x-request-id'] = given;
      const r = await request(sidecar.url, { path: '/v1/completions', headers, body: JSON.stringify(completion) });
      expect(r.status).toBe(200);
      const id = prefill.received[0]!.headers['x-request-id'];
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(decode.received[0]!.headers['x-request-id']).toBe(id);
      expect((decode.received[0]!.json!.kv_transfer_params as { remote_request_id: string }).remote_request_id).toBe(
        id,
      );
    }
  });

  it('streams chat chunks to the client as they come, and merges cached tokens into the usage chunk', async () => {
    const gates = new Gates();
    decode.answer = decodeAnswer({ ownCached: 1, tokens: ['A', 'B', 'C'], gate: gates.wait });
    const chat = {
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
    };
    let received = '';
    let ended = false;
    const done = new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${sidecar.url}/v1/chat/completions`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-prefiller-host-port': prefill.hostPort },
          agent: false,
        },
        (res) => {
          res.setEncoding('utf8');
          res.on('data', (c: string) => (received += c));
          res.on('end', () => {
            ended = true;
            resolve(res.statusCode ?? 0);
          });
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(chat));
    });
    gates.open(0);
    // The first token reaches the client while the decode worker still holds the rest back.
    await until(() => received.includes('"content":"A"'), 'the first chunk at the client');
    expect(ended).toBe(false);
    expect(received).not.toContain('"content":"B"');
    gates.open(1);
    await until(() => received.includes('"content":"B"'), 'the second chunk at the client');
    expect(ended).toBe(false);
    gates.open(2);
    expect(await done).toBe(200);

    const events = received.split('\n\n').filter((e) => e.startsWith('data: '));
    expect(events[events.length - 1]).toBe('data: [DONE]');
    const usageChunk = events
      .map((e) => e.slice(6))
      .filter((e) => e !== '[DONE]')
      .map((e) => JSON.parse(e) as { usage: unknown })
      .find((c) => c.usage !== null);
    expect(usageChunk!.usage).toEqual({
      prompt_tokens: 12,
      completion_tokens: 3,
      total_tokens: 15,
      prompt_tokens_details: { cached_tokens: 7 },
    });

    const p = prefill.received[0]!.json!;
    expect(p.stream).toBe(false);
    expect(p.max_tokens).toBe(1);
    expect(p.max_completion_tokens).toBe(1);
    expect(p.stream_options).toBeUndefined();
    const d = decode.received[0]!.json!;
    expect(d.stream).toBe(true);
    expect(d.max_completion_tokens).toBe(8);
    expect(d.max_tokens).toBeUndefined();
    expect(d.stream_options).toEqual({ include_usage: true });
  });

  it("reports the prefill's 0 cached tokens, and passes a stream through byte for byte when the prefill reports no usage", async () => {
    prefill.answer = prefillAnswer(0);
    const zero = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
      body: JSON.stringify({ ...completion, stream: false }),
    });
    expect((zero.json!.usage as { prompt_tokens_details: unknown }).prompt_tokens_details).toEqual({
      cached_tokens: 0,
    });
    prefill.answer = prefillAnswer(undefined);
    let sent = '';
    decode.answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      sent = 'data: {"usage": {"prompt_tokens": 3}, "x": "\\u00e9"}\n\ndata: [DONE]\n\n';
      res.end(sent);
    };
    const r = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
      body: JSON.stringify({ ...completion, stream: true }),
    });
    expect(r.body).toBe(sent);
  });

  it('picks the first listed target, or a random one with prefillerSampling; every listed target is checked', async () => {
    const second = await startFakeWorker(prefillAnswer(0));
    const both = [prefill.hostPort, second.hostPort];
    const first = await createSidecar({ decode: decode.url, allow: both, registry: createRegistry() });
    const sampling = await createSidecar({
      decode: decode.url,
      allow: both,
      prefillerSampling: true,
      random: () => 0.99,
      registry: createRegistry(),
    });
    try {
      const list = `${prefill.hostPort}, ${second.hostPort}`;
      const body = JSON.stringify(completion);
      expect(
        (await request(first.url, { path: '/v1/completions', headers: { 'x-prefiller-host-port': list }, body }))
          .status,
      ).toBe(200);
      expect(prefill.received).toHaveLength(1);
      expect(
        (await request(sampling.url, { path: '/v1/completions', headers: { 'x-prefiller-host-port': list }, body }))
          .status,
      ).toBe(200);
      expect(second.received).toHaveLength(1);
      // Repeated header lines are one list.
      await request(first.url, { path: '/v1/completions', headers: { 'x-prefiller-host-port': both }, body });
      expect(prefill.received).toHaveLength(2);
      // The beforeEach sidecar admits only the first: a list naming the second too is refused,
      // whichever entry would have been used.
      const refused = await request(sidecar.url, {
        path: '/v1/completions',
        headers: { 'x-prefiller-host-port': list },
        body,
      });
      expect(refused.status).toBe(403);
      expect(prefill.received).toHaveLength(2);
      expect(second.received).toHaveLength(1);
    } finally {
      await first.close();
      await sampling.close();
      await second.close();
    }
  });
});

describe('requests without a prefill target, and other routes', () => {
  it('sends a P/D route without x-prefiller-host-port straight to decode, with an x-request-id', async () => {
    const body = JSON.stringify({ ...completion, stream: false });
    const r = await request(sidecar.url, { path: '/v1/completions', body });
    expect(r.status).toBe(200);
    expect(prefill.received).toHaveLength(0);
    expect(decode.received[0]!.raw.toString()).toBe(body);
    expect(decode.received[0]!.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // Nothing to merge: the decode's own usage.
    expect(
      (r.json!.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens,
    ).toBe(2);
  });

  it('removes kv_transfer_params a client sent (they would point the decode worker at any host), escaped or not', async () => {
    const evil = { host: '169.254.169.254' };
    for (const text of [
      JSON.stringify({
        ...completion,
        kv_transfer_params: { do_remote_prefill: true, remote_host: evil.host, remote_port: 80 },
      }),
      `{"model":"m","prompt":"p","kv_transfer_param\\u0073":{"do_remote_prefill":true,"remote_host":"${evil.host}"}}`,
    ]) {
      decode.received.length = 0;
      const r = await request(sidecar.url, { path: '/v1/completions', body: text });
      expect(r.status).toBe(200);
      expect(decode.received[0]!.json!.kv_transfer_params).toBeUndefined();
      expect(decode.received[0]!.raw.toString()).not.toContain(evil.host);
    }
    // With a prefill target, the client's params are replaced on both legs.
    decode.received.length = 0;
    await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
      body: JSON.stringify({ ...completion, kv_transfer_params: { remote_host: evil.host } }),
    });
    expect(JSON.stringify(prefill.received[0]!.json)).not.toContain(evil.host);
    expect(JSON.stringify(decode.received[0]!.json)).not.toContain(evil.host);
    // A body the sidecar cannot parse that might carry the field is refused, not forwarded.
    const bad = await request(sidecar.url, { path: '/v1/completions', body: '{"kv_transfer_params": NaN}' });
    expect(bad.status).toBe(400);
    expect((bad.json!.error as { code: string }).code).toBe('invalid_json');
  });

  it("relays every other path and method unchanged, and serves its own metrics beside the worker's /metrics", async () => {
    decode.answer = (req, res) => {
      if (req.path === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end('vllm:num_requests_running 3\n');
      } else
        sendJson(res, 201, { path: req.path, method: req.method, body: req.raw.toString() }, { 'x-worker': 'decode' });
    };
    const metrics = await request(sidecar.url, { method: 'GET', path: '/metrics' });
    expect(metrics.status).toBe(200);
    expect(metrics.body).toBe('vllm:num_requests_running 3\n');

    const embed = await request(sidecar.url, {
      path: '/v1/embeddings?x=1',
      body: '{"input":"a"}',
      headers: { 'x-prefiller-host-port': prefill.hostPort },
    });
    expect(embed.status).toBe(201);
    expect(embed.headers['x-worker']).toBe('decode');
    expect(embed.json).toEqual({ path: '/v1/embeddings?x=1', method: 'POST', body: '{"input":"a"}' });
    expect(decode.received.at(-1)!.headers['x-prefiller-host-port']).toBeUndefined();

    const put = await request(sidecar.url, { method: 'PUT', path: '/v1/completions', body: '{}' });
    expect(put.json).toEqual({ path: '/v1/completions', method: 'PUT', body: '{}' });
    expect(prefill.received).toHaveLength(0);

    const own = await request(sidecar.url, { method: 'GET', path: '/sidecar/metrics' });
    expect(own.status).toBe(200);
    expect(own.body).toContain('kvwire_sidecar_requests_total{route="passthrough",outcome="ok"} 3');
    expect(decode.received.map((r) => r.path)).not.toContain('/sidecar/metrics');
  });

  it('treats spellings a worker would route as completions (percent-encoded, trailing slash) as P/D routes', async () => {
    for (const path of ['/v1/%63ompletions', '/v1/completions/', '/v1/chat%2Fcompletions?x=1']) {
      prefill.received.length = 0;
      decode.received.length = 0;
      const r = await request(sidecar.url, {
        path,
        headers: { 'x-prefiller-host-port': prefill.hostPort },
        body: JSON.stringify({ model: 'm', prompt: 'p', messages: [] }),
      });
      expect({ path, status: r.status }).toEqual({ path, status: 200 });
      expect(prefill.received).toHaveLength(1);
      expect(decode.received[0]!.path).toBe(path.includes('chat') ? '/v1/chat/completions?x=1' : '/v1/completions');
      expect(decode.received[0]!.json!.kv_transfer_params).toMatchObject({ do_remote_prefill: true });
    }
  });

  it('removes client kv_transfer_params from JSON bodies on every route, and streams other bodies untouched', async () => {
    decode.answer = (req, res) => sendJson(res, 200, { got: req.raw.toString() });
    const responses = await request(sidecar.url, {
      path: '/v1/responses',
      body: JSON.stringify({ input: 'hi', kv_transfer_params: { remote_host: '169.254.169.254' } }),
    });
    expect(JSON.parse(responses.json!.got as string)).toEqual({ input: 'hi' });
    const upload = '--b\r\ncontent-disposition: form-data; name="kv_transfer_params"\r\n\r\nx\r\n--b--\r\n';
    const form = await request(sidecar.url, {
      path: '/v1/audio/transcriptions',
      headers: { 'content-type': 'multipart/form-data; boundary=b' },
      body: upload,
    });
    expect(form.json!.got).toBe(upload);
    const own = await request(sidecar.url, { method: 'GET', path: '/sidecar/metrics' });
    expect(own.body).toContain('kvwire_sidecar_client_kv_params_stripped_total 1');
  });

  it('relays HEAD answers with their headers as they are', async () => {
    decode.answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1234' });
      res.end();
    };
    const r = await request(sidecar.url, { method: 'HEAD', path: '/v1/models' });
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe('1234');
  });

  it('strips hop-by-hop headers and the headers a Connection header names, both ways', async () => {
    decode.answer = (_req, res) => {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'x-private': 'p',
        connection: 'x-private',
        'keep-alive': 'timeout=5',
        trailer: 'x-t',
      });
      res.end('ok');
    };
    const r = await request(sidecar.url, {
      method: 'GET',
      path: '/v1/models',
      headers: {
        connection: 'x-secret, keep-alive',
        'x-secret': 's',
        'keep-alive': 'timeout=99',
        te: 'trailers',
        'proxy-authorization': 'Basic x',
        'x-kept': 'k',
      },
    });
    expect(r.body).toBe('ok');
    const h = decode.received[0]!.headers;
    expect(h['x-secret']).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h.te).toBeUndefined();
    expect(h['keep-alive']).toBeUndefined();
    expect(h['x-kept']).toBe('k');
    expect(r.headers['x-private']).toBeUndefined();
    expect(r.headers.trailer).toBeUndefined();
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { createRegistry } from '../../lib/metrics.js';
import { startEpp, type Epp, type EppOptions } from '../../lib/scheduler/epp/server.js';
import { sessionToken } from '../../lib/scheduler/scorers/session-affinity.js';
import {
  bodyMessage,
  envoyClient,
  exchange,
  headersMessage,
  healthClient,
  setHeadersOf,
  subsetMetadata,
} from './envoy-client.js';
import { FakeEngine } from './fake-engine.js';

const FAST = { healthIntervalMs: 100, healthTimeoutMs: 500, scrapeIntervalMs: 100 };

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const completions = (body: unknown): [Record<string, string>, Buffer] => {
  const b = Buffer.from(JSON.stringify(body));
  return [
    {
      ':method': 'POST',
      ':path': '/v1/completions',
      'content-type': 'application/json',
      'content-length': String(b.length),
    },
    b,
  ];
};

describe('kvwire epp (Envoy ext_proc endpoint picker)', () => {
  const engines: FakeEngine[] = [];
  let epp: Epp | undefined;
  const clients: { close(): void }[] = [];
  afterEach(async () => {
    clients.splice(0).forEach((c) => c.close());
    await epp?.close();
    epp = undefined;
    for (const e of engines.splice(0)) await e.close();
  });

  async function engine(name: string, events = false): Promise<FakeEngine> {
    const e = await new FakeEngine(name).start(events);
    engines.push(e);
    return e;
  }
  async function start(o: Partial<EppOptions>): Promise<Epp> {
    epp = await startEpp({ registry: createRegistry(), pool: FAST, log: () => {}, ...o } as EppOptions);
    return epp;
  }
  function client(): ReturnType<typeof envoyClient> {
    const c = envoyClient(epp!.address);
    clients.push(c);
    return c;
  }

  it('picks the decode worker holding the prefix: header, dynamic metadata, route cache cleared, body streamed back', async () => {
    const d0 = await engine('d0', true);
    const d1 = await engine('d1', true);
    await start({
      endpoints: [d0, d1].map((e) => ({
        name: e.name,
        role: 'decode',
        url: e.url,
        models: ['m'],
        kvEvents: e.publisher!.endpoint,
        kvReplay: e.publisher!.replayEndpoint,
      })),
      scheduler: { pdThreshold: 100_000 },
    });
    const system = 'You are a careful assistant. '.repeat(10);
    // d1's engine announces it cached the system prompt.
    await d1.cache([...Buffer.from(system)]);
    await until(
      'the index to hold it',
      async () => ((await epp!.service.index.score([...Buffer.from(system)], ['d1'])).get('d1') ?? 0) > 0,
    );
    const [h, body] = completions({ model: 'm', prompt: `${system} What is 2+2?`, max_tokens: 4 });
    const x = exchange(client());
    x.send(headersMessage({ ...h, 'x-kvwire-explain': '1', 'x-prefiller-host-port': '10.0.0.1:1' }));
    x.send(bodyMessage(body.subarray(0, 10), false));
    x.send(bodyMessage(body.subarray(10), true));
    const [headers, bodyAnswer] = await x.next(2);
    const set = setHeadersOf(headers);
    expect(set['x-gateway-destination-endpoint']).toBe(`127.0.0.1:${d1.port}`);
    expect(set['content-length']).toBe(String(body.length));
    expect(set['x-kvwire-decision']).toMatch(/^decode=d1 .*won_by=prefix-cache/);
    expect(headers!.request_headers!.response.clear_route_cache).toBe(true);
    expect(headers!.request_headers!.response.header_mutation!.remove_headers).toContain('x-prefiller-host-port');
    // Struct values come back camelCased (proto-loader's bundled google.protobuf descriptors).
    expect(
      headers!.dynamic_metadata!.fields!['envoy.lb']!.structValue!.fields!['x-gateway-destination-endpoint']!
        .stringValue,
    ).toBe(`127.0.0.1:${d1.port}`);
    const sr = bodyAnswer!.request_body!.response.body_mutation!.streamed_response;
    expect(Buffer.from(sr.body).equals(body)).toBe(true);
    expect(sr.end_of_stream).toBe(true);
    // The response path: session token on the headers, body chunks straight back.
    x.send({ response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('200') }] } } });
    expect(setHeadersOf((await x.next())[0])['x-session-token']).toBe(sessionToken('d1'));
    x.send({ response_body: { body: Buffer.from('data: one\n\n'), end_of_stream: false } });
    x.send({ response_body: { body: Buffer.from('data: [DONE]\n\n'), end_of_stream: true } });
    const chunks = await x.next(2);
    expect(
      chunks.map((c) => Buffer.from(c.response_body!.response.body_mutation!.streamed_response.body).toString()),
    ).toEqual(['data: one\n\n', 'data: [DONE]\n\n']);
    expect(chunks[1]!.response_body!.response.body_mutation!.streamed_response.end_of_stream).toBe(true);
    await x.finish();
    await until('no stream left', () => epp!.activeStreams() === 0);
  });

  it('sets x-prefiller-host-port when it disaggregates', async () => {
    const d0 = await engine('d0');
    const p0 = await engine('p0');
    await start({
      endpoints: [
        { name: 'd0', role: 'decode', url: d0.url },
        { name: 'p0', role: 'prefill', url: p0.url },
      ],
      scheduler: { pdThreshold: 32 },
    });
    const [h, body] = completions({ model: 'm', prompt: 'x'.repeat(100) });
    const x = exchange(client());
    x.send(headersMessage(h));
    x.send(bodyMessage(body, true));
    const set = setHeadersOf((await x.next(2))[0]);
    expect(set['x-prefiller-host-port']).toBe(`127.0.0.1:${p0.port}`);
    expect(set['x-gateway-destination-endpoint']).toBe(`127.0.0.1:${d0.port}`);
    await x.finish();
  });

  it('honours the subset hint, and answers 503 when nothing in it fits', async () => {
    const d0 = await engine('d0');
    const d1 = await engine('d1');
    await start({
      endpoints: [
        { name: 'd0', role: 'decode', url: d0.url },
        { name: 'd1', role: 'decode', url: d1.url },
      ],
    });
    for (let i = 0; i < 3; i++) {
      const [h, body] = completions({ model: 'm', prompt: `p${i}` });
      const x = exchange(client());
      x.send(headersMessage(h, false, subsetMetadata([`127.0.0.1:${d1.port}`])));
      x.send(bodyMessage(body, true));
      expect(setHeadersOf((await x.next(2))[0])['x-gateway-destination-endpoint']).toBe(`127.0.0.1:${d1.port}`);
      await x.finish();
    }
    for (const subset of [[], ['10.9.9.9:80']]) {
      const [h, body] = completions({ model: 'm', prompt: 'q' });
      const x = exchange(client());
      x.send(headersMessage(h, false, subsetMetadata(subset)));
      x.send(bodyMessage(body, true));
      const [r] = await x.next();
      expect(
        Number(r!.immediate_response!.status.code === 'ServiceUnavailable' ? 503 : r!.immediate_response!.status.code),
      ).toBe(503);
      await x.finish();
    }
  });

  it('answers ImmediateResponse 400 / 404 / 413 / 429 with OpenAI error JSON, and keeps serving', async () => {
    const d0 = await engine('d0');
    d0.metrics.waiting = 50;
    await start({
      endpoints: [{ name: 'd0', role: 'decode', url: d0.url, models: ['m'] }],
      maxBodyBytes: 4096,
      scheduler: { shedQueueDepth: 10 },
    });
    const statusName: Record<string, number> = {
      BadRequest: 400,
      NotFound: 404,
      PayloadTooLarge: 413,
      TooManyRequests: 429,
      ServiceUnavailable: 503,
    };
    const ask = async (body: Buffer | string): Promise<{ status: number; message: string }> => {
      const x = exchange(client());
      x.send(headersMessage({ ':method': 'POST', ':path': '/v1/completions' }));
      x.send(bodyMessage(body, true));
      const [r] = await x.next();
      await x.finish();
      const ir = r!.immediate_response!;
      return {
        status: statusName[String(ir.status.code)] ?? Number(ir.status.code),
        message: (JSON.parse(Buffer.from(ir.body!).toString()) as { error: { message: string } }).error.message,
      };
    };
    expect(await ask(JSON.stringify({ model: 'm' }))).toMatchObject({
      status: 400,
      message: expect.stringMatching(/prompt/),
    });
    expect(await ask('{broken')).toMatchObject({ status: 400 });
    expect(await ask(JSON.stringify({ model: 'zz', prompt: 'x' }))).toMatchObject({ status: 404 });
    expect(await ask(Buffer.alloc(5000, 32))).toMatchObject({ status: 413 });
    await until('the load scraped', () => (epp!.service.pool.candidates('decode')[0]!.load?.waiting ?? 0) === 50);
    expect(await ask(JSON.stringify({ model: 'm', prompt: 'x' }))).toMatchObject({
      status: 429,
      message: expect.stringMatching(/shedding/),
    });
    d0.metrics.waiting = 0;
    await until('the load scraped again', () => epp!.service.pool.candidates('decode')[0]!.load?.waiting === 0);
    const [h, body] = completions({ model: 'm', prompt: 'fine' });
    const x = exchange(client());
    x.send(headersMessage(h));
    x.send(bodyMessage(body, true));
    expect(setHeadersOf((await x.next(2))[0])['x-gateway-destination-endpoint']).toBe(`127.0.0.1:${d0.port}`);
    await x.finish();
  });

  it('survives a stream cut mid-request and releases what it held', async () => {
    const d0 = await engine('d0');
    await start({ endpoints: [{ name: 'd0', role: 'decode', url: d0.url }] });
    const [h, body] = completions({ model: 'm', prompt: 'cut' });
    const cut = exchange(client());
    cut.send(headersMessage(h));
    cut.send(bodyMessage(body.subarray(0, 5), false));
    await until('the stream open', () => epp!.activeStreams() === 1);
    cut.call.cancel();
    await until('the stream released', () => epp!.activeStreams() === 0);
    // A stream cut after the choice releases its in-flight count too.
    const placed = exchange(client());
    placed.send(headersMessage(h));
    placed.send(bodyMessage(body, true));
    await placed.next(2);
    expect(epp!.service.pool.candidates('decode')[0]!.inflight).toBe(1);
    placed.call.cancel();
    await until('in flight released', () => epp!.service.pool.candidates('decode')[0]!.inflight === 0);
    // A bodiless request (GET) goes to a healthy endpoint at once.
    const get = exchange(client());
    get.send(headersMessage({ ':method': 'GET', ':path': '/v1/models' }, true));
    const [r] = await get.next();
    expect(setHeadersOf(r)['x-gateway-destination-endpoint']).toBe(`127.0.0.1:${d0.port}`);
    await get.finish();
  });

  it('answers endpoints named by DNS with their resolved ip:port, and matches the subset hint by it', async () => {
    const d0 = await engine('d0');
    await start({ endpoints: [{ name: 'd0', role: 'decode', url: `http://localhost:${d0.port}` }] });
    await until('d0 resolved', () => epp!.service.pool.candidates('decode')[0]!.address !== undefined);
    const [h, body] = completions({ model: 'm', prompt: 'dns' });
    const x = exchange(client());
    x.send(headersMessage(h, false, subsetMetadata([`127.0.0.1:${d0.port}`])));
    x.send(bodyMessage(body, true));
    const [r] = await x.next(2);
    expect(setHeadersOf(r)['x-gateway-destination-endpoint']).toBe(`127.0.0.1:${d0.port}`);
    expect(
      r!.dynamic_metadata!.fields!['envoy.lb']!.structValue!.fields!['x-gateway-destination-endpoint']!.stringValue,
    ).toBe(`127.0.0.1:${d0.port}`);
    await x.finish();
  });

  it('serves the gRPC health service', async () => {
    const d0 = await engine('d0');
    await start({ endpoints: [{ name: 'd0', role: 'decode', url: d0.url }] });
    const hc = healthClient(epp!.address);
    clients.push(hc);
    const check = (service: string): Promise<{ status: string }> =>
      new Promise((resolve, reject) =>
        (hc as unknown as { Check(r: unknown, cb: (e: Error | null, v: { status: string }) => void): void }).Check(
          { service },
          (e, v) => (e ? reject(e) : resolve(v)),
        ),
      );
    expect((await check('')).status).toBe('SERVING');
    expect((await check('envoy.service.ext_proc.v3.ExternalProcessor')).status).toBe('SERVING');
    await expect(check('nope')).rejects.toThrow(/unknown service/);
    d0.healthy = false;
    await until('d0 ejected', () => epp!.service.pool.healthy('d0') === false);
    expect((await check('readiness')).status).toBe('NOT_SERVING');
    expect((await check('liveness')).status).toBe('SERVING');
  });
});

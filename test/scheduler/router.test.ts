import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createRegistry } from '../../lib/metrics.js';
import { startRouter, type Router, type RouterOptions } from '../../lib/scheduler/router/router.js';
import { sessionToken } from '../../lib/scheduler/scorers/session-affinity.js';
import { FakeEngine } from './fake-engine.js';

const FAST = { healthIntervalMs: 100, healthTimeoutMs: 500, scrapeIntervalMs: 100, ejectAfter: 2, restoreAfter: 1 };

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const long = (tag: string, n = 200): string => `${tag} `.repeat(Math.ceil(n / (tag.length + 1))).slice(0, n);

describe('kvwire router (HTTP gateway)', () => {
  const engines: FakeEngine[] = [];
  let router: Router | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await router?.close();
    router = undefined;
    for (const e of engines.splice(0)) await e.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  async function engine(name: string, events = false): Promise<FakeEngine> {
    const e = await new FakeEngine(name).start(events);
    engines.push(e);
    return e;
  }

  async function start(o: Partial<RouterOptions>): Promise<Router> {
    router = await startRouter({ registry: createRegistry(), pool: FAST, log: () => {}, ...o } as RouterOptions);
    return router;
  }

  const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${router!.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  it('routes a prompt to the decode worker whose KV events say it holds the prefix', async () => {
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
    const system = long('You are a helpful assistant who answers in French.', 256);
    const first = await post(
      '/v1/completions',
      { model: 'm', prompt: `${system} Q1`, max_tokens: 1 },
      { 'x-kvwire-explain': '1' },
    );
    expect(first.status).toBe(200);
    const owner = ((await first.json()) as { served_by: string }).served_by;
    const owned = owner === 'd0' ? d0 : d1;
    expect(first.headers.get('x-session-token')).toBe(sessionToken(owner));
    // The owner's engine announced the prompt's 16 full blocks; wait until the index has them.
    await until(
      'the index to hold the prefix',
      async () => ((await router!.service.index.score([...Buffer.from(system)], [owner])).get(owner) ?? 0) >= 16,
    );
    for (let i = 0; i < 4; i++) {
      const r = await post(
        '/v1/completions',
        { model: 'm', prompt: `${system} question ${i}`, max_tokens: 1 },
        { 'x-kvwire-explain': '1' },
      );
      expect(((await r.json()) as { served_by: string }).served_by).toBe(owner);
      expect(r.headers.get('x-kvwire-decision')).toMatch(new RegExp(`^decode=${owner} .*won_by=prefix-cache`));
    }
    expect(owned.seen.length).toBe(5);
    // Without the explain header, no explanation.
    const quiet = await post('/v1/completions', { model: 'm', prompt: `${system} again` });
    expect(quiet.headers.get('x-kvwire-decision')).toBeNull();
  });

  it("names the prefill worker to the sidecar when the uncached part reaches --pd-threshold, and never passes a client's own", async () => {
    const d0 = await engine('d0');
    const p0 = await engine('p0');
    await start({
      endpoints: [
        { name: 'd0', role: 'decode', url: d0.url },
        { name: 'p0', role: 'prefill', url: p0.url },
      ],
      scheduler: { pdThreshold: 64 },
    });
    await post(
      '/v1/completions',
      { model: 'm', prompt: long('x', 300) },
      { 'x-prefiller-host-port': '169.254.169.254:80' },
    );
    expect(d0.seen.at(-1)!.headers['x-prefiller-host-port']).toBe(`127.0.0.1:${p0.port}`);
    await post(
      '/v1/completions',
      { model: 'm', prompt: 'short' },
      { 'x-prefiller-host-port': '169.254.169.254:80', 'x-request-id': 'req-7' },
    );
    const last = d0.seen.at(-1)!;
    expect(last.headers['x-prefiller-host-port']).toBeUndefined();
    expect(last.headers['x-request-id']).toBe('req-7');
    expect(p0.seen.length).toBe(0); // the router never calls prefill itself: the sidecar does
    // Chat requests are tokenized with their messages.
    const chat = await post(
      '/v1/chat/completions',
      { model: 'm', messages: [{ role: 'user', content: long('y', 200) }] },
      { 'x-kvwire-explain': '1' },
    );
    expect(chat.headers.get('x-kvwire-decision')).toMatch(/pd=disaggregated .*prompt=21\d/);
  });

  it('streams the answer back as it comes', async () => {
    const d0 = await engine('d0');
    let release!: () => void;
    d0.holdStream = new Promise<void>((r) => (release = r));
    await start({ endpoints: [{ role: 'decode', url: d0.url }] });
    const r = await post('/v1/completions', { model: 'm', prompt: 'hello', stream: true });
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const reader = r.body!.getReader();
    const first = Buffer.from((await reader.read()).value!).toString();
    expect(first).toContain('d0-1'); // arrived while the engine still holds the stream open
    release();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += Buffer.from(value).toString();
    }
    expect(rest).toContain('d0-2');
    expect(rest).toContain('[DONE]');
  });

  it("puts its own time first in the answer's Server-Timing, before the upstream's entries", async () => {
    const d0 = await engine('d0');
    await start({ endpoints: [{ role: 'decode', url: d0.url }] });
    let r = await post('/v1/completions', { model: 'm', prompt: 'hello', max_tokens: 1 });
    expect(r.headers.get('server-timing')).toMatch(/^router;dur=\d+(\.\d+)?$/);
    d0.serverTiming = 'sidecar-prefill;dur=12, decode-kv-pull;dur=3;bytes=4096';
    r = await post('/v1/completions', { model: 'm', prompt: 'hello', max_tokens: 1 });
    expect(r.headers.get('server-timing')).toMatch(
      /^router;dur=\d+(\.\d+)?, sidecar-prefill;dur=12, decode-kv-pull;dur=3;bytes=4096$/,
    );
  });

  it('answers bad requests with OpenAI error JSON and keeps serving', async () => {
    const d0 = await engine('d0');
    await start({ endpoints: [{ role: 'decode', url: d0.url, models: ['m'] }], maxBodyBytes: 1024 });
    const cases: [unknown, number, RegExp][] = [
      [{ model: 'm' }, 400, /prompt is undefined/],
      [{ model: 'm', prompt: '' }, 400, /non-empty prompt/],
      [{ prompt: 'x' }, 400, /model is undefined/],
      ['{not json', 400, /not valid JSON/],
      [[1, 2], 400, /JSON object/],
      [{ model: 'nope', prompt: 'x' }, 404, /no decode endpoint serves model "nope"/],
      [{ model: 'm', prompt: 'x'.repeat(2000) }, 413, /over the limit/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await post('/v1/completions', body);
      expect(r.status).toBe(status);
      const doc = (await r.json()) as { error: { message: string; type: string; code: string } };
      expect(doc.error.message).toMatch(msg);
      expect(typeof doc.error.type).toBe('string');
    }
    const chat = await post('/v1/chat/completions', { model: 'm', messages: [] });
    expect(chat.status).toBe(400);
    expect((await fetch(`${router!.url}/v1/completions`)).status).toBe(405);
    expect((await post('/v1/completions', { model: 'm', prompt: 'fine' })).status).toBe(200);
    expect(d0.seen.length).toBe(1);
  });

  it('sends around a dead endpoint at once, ejects it, and brings it back when it answers again', async () => {
    const d0 = await engine('d0');
    const d1 = await engine('d1');
    await start({
      endpoints: [
        { name: 'd0', role: 'decode', url: d0.url },
        { name: 'd1', role: 'decode', url: d1.url },
      ],
    });
    const port = d0.port;
    await d0.close();
    engines.splice(engines.indexOf(d0), 1);
    for (let i = 0; i < 4; i++) {
      const r = await post('/v1/completions', { model: 'm', prompt: `p${i}` });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { served_by: string }).served_by).toBe('d1');
    }
    await until('d0 ejected', () => router!.service.pool.healthy('d0') === false);
    const back = await new FakeEngine('d0').start(false, port);
    engines.push(back);
    await until('d0 back', () => router!.service.pool.healthy('d0') === true);
    expect(await (await fetch(`${router!.url}/metrics`)).text()).toMatch(
      /kvwire_scheduler_endpoint_healthy\{endpoint="d0",role="decode"\} 1/,
    );
  });

  it('answers 503 when no decode endpoint is healthy, and falls back to decode-only when /tokenize fails', async () => {
    const d0 = await engine('d0');
    d0.healthy = false;
    await start({ endpoints: [{ name: 'd0', role: 'decode', url: d0.url }] });
    await until('d0 ejected', () => router!.service.pool.healthy('d0') === false);
    const r = await post('/v1/completions', { model: 'm', prompt: 'x' });
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect((await fetch(`${router!.url}/health`)).status).toBe(503);
  });

  it('reloads the endpoints file when it changes, and keeps the old set when the new one is bad', async () => {
    const d0 = await engine('d0');
    const d1 = await engine('d1');
    dir = mkdtempSync(join(tmpdir(), 'kvwire-router-'));
    const file = join(dir, 'endpoints.yaml');
    writeFileSync(file, `endpoints:\n  - { name: d0, role: decode, url: ${d0.url}, models: [m] }\n`);
    const logs: string[] = [];
    await start({ endpointsFile: file, log: (l) => logs.push(l) });
    const served = async (): Promise<string> =>
      ((await (await post('/v1/completions', { model: 'm', prompt: 'z' })).json()) as { served_by: string }).served_by;
    expect(await served()).toBe('d0');
    writeFileSync(file, JSON.stringify({ endpoints: [{ name: 'd1', role: 'decode', url: d1.url, models: ['m'] }] }));
    await until('d1 in use', async () => (await served()) === 'd1');
    writeFileSync(file, 'endpoints: [ { role: nope } ]');
    await until('the bad file reported', () => logs.some((l) => /endpoints file ignored/.test(l)));
    expect(await served()).toBe('d1');
    const models = (await (await fetch(`${router!.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['m']);
  });

  it('keeps the HTTP KV events endpoint', async () => {
    const d0 = await engine('d0');
    await start({ endpoints: [{ name: 'd0', role: 'decode', url: d0.url }] });
    const keys = router!.service.index.blockKeys([...Buffer.from(long('k', 64))]);
    const r = await post('/v1/kv-events', { worker: 'd0', events: [{ type: 'stored', keys }] });
    expect(r.status).toBe(200);
    expect((await router!.service.index.score([...Buffer.from(long('k', 64))], ['d0'])).get('d0')).toBe(4);
  });
});

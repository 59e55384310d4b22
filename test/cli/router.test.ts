// `kvwire router` and `kvwire epp` as a user runs them: a real process (the compiled CLI), a ready
// line, a request through it, SIGTERM; bad command lines exit 2 naming the flag.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { bodyMessage, envoyClient, exchange, headersMessage, setHeadersOf } from '../scheduler/envoy-client.js';
import { FakeEngine } from '../scheduler/fake-engine.js';

const BIN = new URL('../../bin/kvwire.js', import.meta.url).pathname;

interface Run {
  child: ChildProcess;
  ready: Promise<Record<string, unknown>>;
  exit: Promise<{ code: number | null; stderr: string }>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /kvwire-(?:router|epp)-ready (\{.*\})\n/.exec(out);
      if (m) resolve(JSON.parse(m[1]!) as Record<string, unknown>);
    });
    child.once('exit', (code) => reject(new Error(`exited ${String(code)} before ready: ${err}`)));
  });
  ready.catch(() => {});
  const exit = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, stderr: err })),
  );
  return { child, ready, exit };
}

describe('kvwire router / kvwire epp (CLI)', () => {
  const engines: FakeEngine[] = [];
  const children: ChildProcess[] = [];
  let blocker: Server | undefined;
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
    for (const e of engines.splice(0)) await e.close();
    blocker?.close();
    blocker = undefined;
  });

  it('router: serves from flags, routes a request, stops on SIGTERM with exit 0', async () => {
    const d0 = await new FakeEngine('d0').start();
    engines.push(d0);
    const r = run([
      'router',
      '--listen',
      '127.0.0.1:0',
      '--decode',
      d0.url,
      '--model',
      'm',
      '--explain',
      'always',
      '--weights',
      'prefix-cache=2,load=1',
    ]);
    children.push(r.child);
    const { url } = (await r.ready) as { url: string };
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: 'hi' }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-kvwire-decision')).toMatch(/^decode=127\.0\.0\.1:\d+ /);
    r.child.kill('SIGTERM');
    expect((await r.exit).code).toBe(0);
  }, 30_000);

  it("router from flags: --pod names the engine's events pod; without it the events are dropped, and it says so", async () => {
    // kvwire engine names its events topic kv@<pod>@<model> with its own pod name (by default
    // <hostname>-<port>), not the endpoint's host:port; the fake engine uses its name ('pod-a').
    const d0 = await new FakeEngine('pod-a').start(true);
    const d1 = await new FakeEngine('pod-b').start(true);
    engines.push(d0, d1);
    const system = 'You are an assistant who knows every river of Europe by heart. '.repeat(8);
    const endpoint = (e: FakeEngine, pod: boolean) => [
      '--decode',
      e.url,
      '--kv-events',
      e.publisher!.endpoint,
      '--kv-replay',
      e.publisher!.replayEndpoint,
      ...(pod ? ['--pod', e.name] : []),
    ];
    const ask = async (url: string) => {
      await d0.cache(d0.promptTokens({ prompt: system }));
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', prompt: `${system} Which is longest?` }),
      });
      expect(res.status).toBe(200);
      return res.headers.get('x-kvwire-decision') ?? '';
    };
    const common = ['router', '--listen', '127.0.0.1:0', '--explain', 'always', '--pd-threshold', '100000'];
    const named = run([...common, ...endpoint(d0, true), ...endpoint(d1, true)]);
    children.push(named.child);
    const { url } = (await named.ready) as { url: string };
    const end = Date.now() + 30_000;
    let decision = await ask(url);
    while (!/won_by=prefix-cache/.test(decision) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      decision = await ask(url);
    }
    expect(decision).toMatch(new RegExp(`^decode=127\\.0\\.0\\.1:${d0.port} .*won_by=prefix-cache`));
    named.child.kill('SIGTERM');
    expect((await named.exit).code).toBe(0);

    const unnamed = run([...common, ...endpoint(d0, false), ...endpoint(d1, false)]);
    children.push(unnamed.child);
    const u = ((await unnamed.ready) as { url: string }).url;
    let stderr = '';
    unnamed.child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    while (!/KV events of 127\.0\.0\.1:\d+ are dropped/.test(stderr) && Date.now() < end + 30_000) {
      expect(await ask(u)).not.toMatch(/won_by=prefix-cache/);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(stderr).toMatch(/topic names pod 'pod-a'.*--pod, or pod: in the endpoints file/);
    expect(stderr.match(/are dropped/g)).toHaveLength(1); // once per endpoint, not per message
    unnamed.child.kill('SIGTERM');
    expect((await unnamed.exit).code).toBe(0);
  }, 90_000);

  it('epp: serves ext_proc from flags and stops on SIGTERM', async () => {
    const d0 = await new FakeEngine('d0').start();
    engines.push(d0);
    const r = run(['epp', '--listen', '127.0.0.1:0', '--decode', d0.url, '--metrics-listen', '127.0.0.1:0']);
    children.push(r.child);
    const { address, metrics } = (await r.ready) as { address: string; metrics: string };
    const c = envoyClient(address);
    const x = exchange(c);
    const body = Buffer.from(JSON.stringify({ model: 'm', prompt: 'hi' }));
    x.send(headersMessage({ ':method': 'POST', ':path': '/v1/completions' }));
    x.send(bodyMessage(body, true));
    expect(setHeadersOf((await x.next(2))[0])['x-gateway-destination-endpoint']).toBe(`127.0.0.1:${d0.port}`);
    await x.finish();
    c.close();
    const scraped = await (await fetch(`${metrics}/metrics`)).text();
    expect(scraped).toMatch(
      /kvwire_scheduler_decisions_total\{decision="decode_only",reason="uncached_below_threshold"\} 1/,
    );
    expect((await fetch(`${metrics}/health`)).status).toBe(200);
    r.child.kill('SIGTERM');
    expect((await r.exit).code).toBe(0);
  }, 30_000);

  it('bad command lines exit 2 and name the flag', async () => {
    blocker = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker!.once('listening', r));
    const taken = (blocker.address() as { port: number }).port;
    const cases: [string[], RegExp][] = [
      [['router'], /--decode\/--prefill or with --endpoints FILE/],
      [
        [
          'router',
          '--decode',
          'http://127.0.0.1:1',
          '--kv-events',
          'tcp://127.0.0.1:2',
          '--kv-events',
          'tcp://127.0.0.1:3',
        ],
        /--kv-events is given 2 times for 1 --decode/,
      ],
      [['router', '--decode', 'ftp://x'], /use http:\/\/ or https:\/\//],
      [['router', '--decode', 'http://127.0.0.1:1', '--weights', 'nope=1'], /--weights must be SCORER=WEIGHT/],
      [['router', '--decode', 'http://127.0.0.1:1', '--index', 'redis'], /--index redis needs --redis-url/],
      [
        ['router', '--decode', 'http://127.0.0.1:1', '--listen', `127.0.0.1:${taken}`],
        /--listen 127\.0\.0\.1:\d+: the port is in use/,
      ],
      [
        ['epp', '--decode', 'http://127.0.0.1:1', '--listen', `127.0.0.1:${taken}`],
        /--listen 127\.0\.0\.1:\d+: the port is in use/,
      ],
      [['epp', '--endpoints', '/nonexistent/endpoints.yaml'], /cannot read the --endpoints file \/nonexistent/],
      [
        ['router', '--decode', 'http://127.0.0.1:1', '--pod', 'a', '--pod', 'b'],
        /--pod is given 2 times for 1 --decode/,
      ],
      [['router', '--decode', 'http://127.0.0.1:1', '--pod', 'a@b'], /pod name of the KV events topic/],
    ];
    for (const [args, msg] of cases) {
      const r = run(args);
      children.push(r.child);
      const { code, stderr } = await r.exit;
      expect({ args, code }).toEqual({ args, code: 2 });
      expect(stderr).toMatch(msg);
    }
  }, 60_000);
});

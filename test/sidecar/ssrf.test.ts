import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, type MetricsRegistry } from '../../lib/metrics.js';
import { createSidecar, type ResolvedAddress, type Sidecar } from '../../lib/sidecar/index.js';
import { decodeAnswer, prefillAnswer, request, startFakeWorker, type FakeWorker } from './fake-workers.js';

// The allowlist admits exactly one prefill worker: 127.0.0.1:<prefill.port>. Traps listen where a
// sloppy check would let a request through: another port of the same host (llm-d bug #979), the
// same port on another loopback address, and on IPv6 loopback. None may ever see a connection.
let prefill: FakeWorker;
let decode: FakeWorker;
let trap: FakeWorker;
let aliasTrap: FakeWorker | undefined;
let v6Trap: FakeWorker | undefined;
let sidecar: Sidecar;
let registry: MetricsRegistry;
const lookups: string[] = [];

// Names resolve through this table, never through real DNS.
const names = new Map<string, () => ResolvedAddress[]>();
async function resolve(name: string): Promise<readonly ResolvedAddress[]> {
  lookups.push(name);
  const answer = names.get(name);
  if (answer === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  return answer();
}

beforeAll(async () => {
  prefill = await startFakeWorker(prefillAnswer(0));
  decode = await startFakeWorker(decodeAnswer());
  trap = await startFakeWorker(prefillAnswer(0));
  aliasTrap = await startFakeWorkerOn('127.0.0.2', prefill.port);
  v6Trap = await startFakeWorkerOn('::1', prefill.port);
  registry = createRegistry();
  sidecar = await createSidecar({ decode: decode.url, allow: [`127.0.0.1:${prefill.port}`], resolve, registry });
  names.set('localhost', () => [
    { address: '127.0.0.1', family: 4 },
    { address: '::1', family: 6 },
  ]);
  names.set('mixed.test', () => [
    { address: '127.0.0.1', family: 4 },
    { address: '169.254.169.254', family: 4 },
  ]);
  names.set('two.test', () => [
    { address: '127.0.0.1', family: 4 },
    { address: '127.0.0.2', family: 4 },
  ]);
  names.set('mapped.test', () => [{ address: '::ffff:127.0.0.1', family: 6 }]);
  names.set('trap.test', () => [{ address: '127.0.0.1', family: 4 }]);
  names.set('nothing.test', () => []);
});

afterAll(async () => {
  await sidecar.close();
  for (const w of [prefill, decode, trap, aliasTrap, v6Trap]) await w?.close();
});

/**
 * A trap bound to `host:port` that counts connections; undefined where the address cannot be bound
 * (a machine without a second loopback address or IPv6: the other traps still count).
 */
async function startFakeWorkerOn(host: string, port: number): Promise<FakeWorker | undefined> {
  const { createServer } = await import('node:http');
  return new Promise((resolveStart) => {
    const w = { connections: 0, received: [] as unknown[], close: async () => {} } as unknown as FakeWorker;
    const server = createServer((_req, res) => {
      (w.received as unknown[]).push(1);
      res.end('{}');
    });
    server.on('connection', () => w.connections++);
    server.once('error', () => resolveStart(undefined));
    server.listen(port, host, () => {
      (w as { close: () => Promise<void> }).close = () => new Promise<void>((r) => server.close(() => r()));
      resolveStart(w);
    });
  });
}

function forms(p: number, t: number): [string, string][] {
  return [
    // llm-d bug #979: the allowed host, another port.
    [`127.0.0.1:${t}`, 'port_not_allowed'],
    [`127.0.0.1:${p + 1 > 65535 ? p - 1 : p + 1}`, 'port_not_allowed'],
    // Loopback aliases and other spellings of 127.0.0.1.
    [`127.0.0.2:${p}`, 'loopback'],
    [`127.255.255.254:${p}`, 'loopback'],
    [`localhost:${p}`, 'loopback'],
    [`127.1:${p}`, 'non_canonical_ip'],
    [`127.0.1:${p}`, 'non_canonical_ip'],
    [`2130706433:${p}`, 'non_canonical_ip'],
    [`0x7f000001:${p}`, 'non_canonical_ip'],
    [`0x7f.0.0.1:${p}`, 'non_canonical_ip'],
    [`0177.0.0.1:${p}`, 'non_canonical_ip'],
    [`127.000.000.001:${p}`, 'non_canonical_ip'],
    [`0:${p}`, 'non_canonical_ip'],
    [`0.0.0.0:${p}`, 'unspecified'],
    [`0.1.2.3:${p}`, 'unspecified'],
    // IPv6 and IPv4-mapped forms.
    [`[::1]:${p}`, 'loopback'],
    [`[0:0:0:0:0:0:0:1]:${p}`, 'loopback'],
    [`[::]:${p}`, 'unspecified'],
    [`[::ffff:127.0.0.1]:${p}`, 'ipv4_embedded'],
    [`[::ffff:7f00:1]:${p}`, 'ipv4_embedded'],
    [`[0:0:0:0:0:ffff:7f00:1]:${p}`, 'ipv4_embedded'],
    [`[::127.0.0.1]:${p}`, 'ipv4_embedded'],
    [`[64:ff9b::7f00:1]:${p}`, 'ipv4_embedded'],
    [`[2002:7f00:1::]:${p}`, 'ipv4_embedded'],
    [`::1:${p}`, 'malformed'],
    [`[::1]`, 'missing_port'],
    [`[fe80::1%25lo]:${p}`, 'malformed'],
    // Link-local and cloud metadata.
    [`169.254.169.254:80`, 'metadata'],
    [`169.254.169.254:${p}`, 'metadata'],
    [`169.254.170.2:80`, 'metadata'],
    [`100.100.100.200:80`, 'metadata'],
    [`[fd00:ec2::254]:80`, 'metadata'],
    [`169.254.1.1:${p}`, 'link_local'],
    [`[fe80::1]:${p}`, 'link_local'],
    [`metadata.google.internal:80`, 'metadata'],
    [`METADATA.google.internal.:80`, 'metadata'],
    [`metadata:80`, 'metadata'],
    [`224.0.0.1:${p}`, 'multicast'],
    [`255.255.255.255:${p}`, 'reserved'],
    // Userinfo and schemes.
    [`user@127.0.0.1:${p}`, 'userinfo'],
    [`127.0.0.1:${p}@evil.test:80`, 'userinfo'],
    [`http://127.0.0.1:${p}`, 'scheme'],
    [`https://127.0.0.1:${p}`, 'scheme'],
    [`//127.0.0.1:${p}`, 'scheme'],
    [`127.0.0.1:${p}/v1/completions`, 'malformed'],
    [`127.0.0.1:${p}?x=1`, 'malformed'],
    [`127.0.0.1:${p}#x`, 'malformed'],
    [`127.0.0.1%3a${p}`, 'malformed'],
    [`127.0.0.1\\@:${p}`, 'userinfo'],
    // Whitespace and empty entries.
    [`127.0.0.1 :${p}`, 'whitespace'],
    [`127.0.0.1:\t${p}`, 'whitespace'],
    [`127.0.0.1:\u00a0${p}`, 'whitespace'],
    ['', 'empty'],
    [',', 'empty'],
    [`127.0.0.1:${p},`, 'empty'],
    [`, 127.0.0.1:${p}`, 'empty'],
    // Ports.
    [`127.0.0.1`, 'missing_port'],
    [`127.0.0.1:`, 'bad_port'],
    [`127.0.0.1:0`, 'bad_port'],
    [`127.0.0.1:0${p}`, 'bad_port'],
    [`127.0.0.1:+${p}`, 'bad_port'],
    [`127.0.0.1:${p + 65536}`, 'bad_port'],
    [`127.0.0.1:0x${p.toString(16)}`, 'bad_port'],
    // Names: every resolved address is checked.
    [`mixed.test:${p}`, 'metadata'],
    [`two.test:${p}`, 'loopback'],
    [`mapped.test:${p}`, 'ipv4_embedded'],
    [`trap.test:${t}`, 'port_not_allowed'],
    [`nowhere.test:${p}`, 'resolve_failed'],
    [`nothing.test:${p}`, 'resolve_failed'],
    [`bad_name.test:${p}`, 'malformed'],
    // A list with one bad entry is refused whole.
    [`127.0.0.1:${p}, 127.0.0.1:${t}`, 'port_not_allowed'],
    [Array.from({ length: 17 }, () => `127.0.0.1:${p}`).join(','), 'too_many'],
  ];
}

describe('SSRF: x-prefiller-host-port is checked before any connection', () => {
  it('refuses every form with 403 and a JSON error, and no trap sees a connection', async () => {
    const p = prefill.port;
    const t = trap.port;
    const list = forms(p, t);
    for (const [target, reason] of list) {
      const r = await request(sidecar.url, {
        path: '/v1/chat/completions',
        headers: { 'x-prefiller-host-port': target },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect({ target, status: r.status }).toEqual({ target, status: 403 });
      const error = r.json!.error as { type: string; code: string; reason: string; message: string; param: string };
      expect({ target, reason: error.reason }).toEqual({ target, reason });
      expect(error.code).toBe('prefill_target_refused');
      expect(error.type).toBe('permission_error');
      expect(error.param).toBe('x-prefiller-host-port');
      expect(error.message.length).toBeGreaterThan(20);
    }
    expect(trap.connections).toBe(0);
    expect(aliasTrap?.connections ?? 0).toBe(0);
    expect(v6Trap?.connections ?? 0).toBe(0);
    expect(prefill.connections).toBe(0);
    expect(decode.received).toHaveLength(0);
    // Syntax is refused before any lookup: only the name forms reached the resolver.
    expect(new Set(lookups)).toEqual(
      new Set(['localhost', 'mixed.test', 'two.test', 'mapped.test', 'trap.test', 'nowhere.test', 'nothing.test']),
    );
    const text = await registry.metrics();
    expect(text).toMatch(/kvwire_sidecar_ssrf_refusals_total\{reason="non_canonical_ip"\} 8/);
    expect(text).toMatch(new RegExp(`kvwire_sidecar_requests_total\\{route="pd",outcome="refused"\\} ${list.length}`));
  });

  it('admits the allowed address and port, and connects to the address it checked (no second lookup)', async () => {
    const r = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': `127.0.0.1:${prefill.port}` },
      body: JSON.stringify({ model: 'm', prompt: 'p' }),
    });
    expect(r.status).toBe(200);
    expect(prefill.received).toHaveLength(1);

    // DNS rebinding: the name answers the allowed address once, then a trap's. The sidecar looks
    // it up once per request and dials the checked address, so the trap is never reached.
    let calls = 0;
    names.set('rebind.test', () => [{ address: calls++ === 0 ? '127.0.0.1' : '127.0.0.2', family: 4 }]);
    const before = lookups.length;
    const r2 = await request(sidecar.url, {
      path: '/v1/completions',
      headers: { 'x-prefiller-host-port': `rebind.test:${prefill.port}` },
      body: JSON.stringify({ model: 'm', prompt: 'p' }),
    });
    expect(r2.status).toBe(200);
    expect(lookups.length - before).toBe(1);
    expect(prefill.received).toHaveLength(2);
    // The worker sees the name the scheduler used as its Host.
    expect(prefill.received[1]!.headers.host).toBe(`rebind.test:${prefill.port}`);
    expect(aliasTrap?.connections ?? 0).toBe(0);
    expect(trap.connections).toBe(0);
  });

  it('admits a name entry on its port, and --allow-any admits neither loopback nor metadata', async () => {
    names.set('prefill.test', () => [{ address: '127.0.0.1', family: 4 }]);
    const byName = await createSidecar({
      decode: decode.url,
      allow: [`prefill.test:${prefill.port}`, `localhost:${prefill.port}`],
      resolve,
      registry: createRegistry(),
    });
    const any = await createSidecar({ decode: decode.url, allowAny: true, resolve, registry: createRegistry() });
    try {
      const body = JSON.stringify({ model: 'm', prompt: 'p' });
      const go = (s: Sidecar, target: string) =>
        request(s.url, { path: '/v1/completions', headers: { 'x-prefiller-host-port': target }, body });
      // A name entry trusts DNS for that name, but not to point at this host's loopback...
      expect((await go(byName, `prefill.test:${prefill.port}`)).json!.error).toMatchObject({ reason: 'loopback' });
      // ...except for localhost itself, which always means loopback (RFC 6761); here with ::1 too.
      names.set('localhost', () => [{ address: '127.0.0.1', family: 4 }]);
      expect((await go(byName, `localhost:${prefill.port}`)).status).toBe(200);
      expect((await go(byName, `localhost:${trap.port}`)).json!.error).toMatchObject({ reason: 'port_not_allowed' });
      expect((await go(byName, `prefill.test:${trap.port}`)).json!.error).toMatchObject({ reason: 'loopback' });
      expect((await go(any, `127.0.0.1:${prefill.port}`)).json!.error).toMatchObject({ reason: 'loopback' });
      expect((await go(any, '169.254.169.254:80')).json!.error).toMatchObject({ reason: 'metadata' });
      expect((await go(any, `mixed.test:${prefill.port}`)).json!.error).toMatchObject({ reason: 'metadata' });
      expect(trap.connections).toBe(0);
    } finally {
      await byName.close();
      await any.close();
    }
  });
});

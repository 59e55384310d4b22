import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { KvLayout, compatibilityFields, kvPreset } from '../../lib/kv/index.js';
import { createRegistry } from '../../lib/metrics.js';
import { DecodeCoordinator, type HandshakeOutcome, type KvTransferParams } from '../../lib/pd/index.js';
import { secretKey, signRequest } from '../../lib/pd/handshake-auth.js';
import { buildHandshakeRequest, parseCompatFields, pdCompatibilityFields } from '../../lib/pd/handshake.js';
import { FakeDecodeEngine } from '../../lib/engine/runtimes/synthetic/fake-decode.js';
import { SECRET, SMALL, loopbackAgents, pair, prompt, type Pair } from './helpers.js';

interface Reply {
  status: number;
  body: Buffer;
  headers: Record<string, unknown>;
}

function post(
  port: number,
  body: Buffer,
  headers: Record<string, string> = {},
  method = 'POST',
  path = '/kvwire/v1/handshake',
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers: { 'content-length': body.byteLength, ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('handshake', () => {
  let p: Pair | undefined;
  const extra: { close(): Promise<void> | void }[] = [];
  afterEach(async () => {
    for (const x of extra.splice(0)) await x.close();
    await p?.close();
    p = undefined;
  });

  function signedRequest(secret = SECRET, compat = pdCompatibilityFields(p!.prefill.ranks[0]!.layout)) {
    const { body, nonce } = buildHandshakeRequest('decode-x', compat);
    return { body, nonce, sig: signRequest(secretKey(secret), body) };
  }

  it('serves metadata only to a caller that signed with the secret, and signs its answer', async () => {
    p = await pair();
    const outcomes: HandshakeOutcome[] = [];
    p.prefill.coordinator.on('handshake', (o: HandshakeOutcome) => outcomes.push(o));
    const port = p.prefill.coordinator.port;
    const ok = signedRequest();
    const r = await post(port, ok.body, { 'x-kvwire-signature': ok.sig });
    expect(r.status).toBe(200);
    expect(r.headers['x-kvwire-signature']).toMatch(/^v1=[0-9a-f]{64}$/);
    const answer = JSON.parse(r.body.toString()) as { engineId: string; ranks: { metadata: string }[] };
    expect(answer.engineId).toBe('prefill-0');
    expect(answer.ranks).toHaveLength(1);

    const wrong = signedRequest('another-secret-of-enough-length');
    for (const [body, headers] of [
      [wrong.body, { 'x-kvwire-signature': wrong.sig }],
      [ok.body, {}],
      [Buffer.from('{"v":1}'), { 'x-kvwire-signature': `v1=${'0'.repeat(64)}` }],
      [Buffer.from('not json at all'), { 'x-kvwire-signature': 'garbage' }],
    ] as [Buffer, Record<string, string>][]) {
      const refused = await post(port, body, headers);
      expect(refused.status).toBe(401);
      expect(refused.body.byteLength).toBe(0);
      expect(refused.headers['x-kvwire-signature']).toBeUndefined();
    }
    expect(outcomes.map((o) => o.status)).toEqual([200, 401, 401, 401, 401]);
  });

  it('refuses a replayed request, however valid its signature', async () => {
    p = await pair();
    const port = p.prefill.coordinator.port;
    const ok = signedRequest();
    expect((await post(port, ok.body, { 'x-kvwire-signature': ok.sig })).status).toBe(200);
    const replay = await post(port, ok.body, { 'x-kvwire-signature': ok.sig });
    expect(replay.status).toBe(401);
    expect(replay.body.byteLength).toBe(0);
  });

  it('answers nothing on other paths and methods, and refuses oversized bodies', async () => {
    p = await pair();
    const port = p.prefill.coordinator.port;
    const notFound = await post(port, Buffer.alloc(0), {}, 'GET', '/');
    expect([notFound.status, notFound.body.byteLength]).toEqual([404, 0]);
    const get = await post(port, Buffer.alloc(0), {}, 'GET');
    expect([get.status, get.body.byteLength]).toEqual([405, 0]);
    const big = await post(port, Buffer.alloc(70_000), {}).catch((e: Error) => ({
      status: 413,
      body: Buffer.alloc(0),
      error: e,
    }));
    expect(big.status).toBe(413);
    expect(big.body.byteLength).toBe(0);
  });

  it('a decode worker with the wrong secret is UNAUTHORIZED and gets nothing', async () => {
    p = await pair();
    const agents = await loopbackAgents('intruder', 1);
    const intruder = await FakeDecodeEngine.create({
      engineId: 'intruder',
      agents,
      model: SMALL,
      numBlocks: 16,
      secret: 'not-the-shared-secret!!',
      registry: createRegistry(),
    });
    extra.push(intruder, agents[0]!);
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const e = await intruder.decode({ id: 'r1', tokens: prompt(20) }, params).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.UNAUTHORIZED)).toBe(true);
    expect((e as Error).message).toMatch(/shared secret/);
    expect(agents[0]!.peers).toHaveLength(0); // never learned the prefill's metadata
    expect(intruder.pool.free).toBe(16);
  });

  it.each([
    ['dtype', { ...SMALL, dtype: 'fp16' as const }, {}],
    ['layers', { ...SMALL, layers: 3 }, {}],
    ['model', { ...SMALL, name: 'other' }, {}],
    ['blockTokens', SMALL, { blockTokens: 32 }],
    ['order', SMALL, { order: 'NHD' as const }],
  ])('an incompatible decode worker gets ERR_KVWIRE_INCOMPATIBLE naming %s', async (field, model, layoutOpts) => {
    p = await pair();
    const agents = await loopbackAgents('odd', 1);
    const odd = await FakeDecodeEngine.create({
      engineId: 'odd',
      agents,
      model,
      numBlocks: 16,
      secret: SECRET,
      registry: createRegistry(),
      ...layoutOpts,
    });
    extra.push(odd, agents[0]!);
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const e = await odd.decode({ id: 'r1', tokens: prompt(20) }, params).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.INCOMPATIBLE)).toBe(true);
    expect((e as KvwireError).details.field).toBe(field);
    expect((e as Error).message).toContain(`${field} differs`);
    expect(agents[0]!.peers).toHaveLength(0);
  });

  it('with policy recompute, a refused handshake asks the caller to prefill locally', async () => {
    p = await pair();
    const agents = await loopbackAgents('intruder', 1);
    const intruder = await FakeDecodeEngine.create({
      engineId: 'intruder',
      agents,
      model: SMALL,
      numBlocks: 16,
      secret: 'not-the-shared-secret!!',
      registry: createRegistry(),
      policy: 'recompute',
    });
    extra.push(intruder, agents[0]!);
    const req = { id: 'r1', tokens: prompt(20) };
    const r = await intruder.decode(req, p.prefill.prefill(req));
    expect(r.status).toBe('recompute');
    expect(r.reason?.code).toBe(ErrorCode.UNAUTHORIZED);
    expect(r.verifiedBytes).toBeGreaterThan(0); // recomputed locally and checked
  });

  async function decodeWith(params: KvTransferParams, options: { handshakeTimeoutMs?: number } = {}) {
    const agents = await loopbackAgents('d', 1);
    const d = await FakeDecodeEngine.create({
      engineId: 'd',
      agents,
      model: SMALL,
      numBlocks: 16,
      secret: SECRET,
      registry: createRegistry(),
      ...options,
    });
    extra.push(d, agents[0]!);
    return d.decode({ id: 'r', tokens: prompt(20) }, params).catch((x: unknown) => x);
  }

  it('does not trust an answer that is not signed with the secret', async () => {
    p = await pair();
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const impostor: Server = createServer((_req, res) => {
      _req.resume();
      res.writeHead(200, { 'x-kvwire-signature': `v1=${'a'.repeat(64)}` });
      res.end('{"v":1}');
    });
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
    extra.push({ close: () => new Promise<void>((r) => impostor.close(() => r())) });
    const e = await decodeWith({ ...params, remote_port: (impostor.address() as AddressInfo).port });
    expect(KvwireError.is(e, ErrorCode.UNAUTHORIZED)).toBe(true);
  });

  it('times out on a side channel that never answers, and reports one that is not there', async () => {
    p = await pair();
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const silent: Server = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    extra.push({
      close: () =>
        new Promise<void>((r) => {
          silent.closeAllConnections();
          silent.close(() => r());
        }),
    });
    const slow = await decodeWith(
      { ...params, remote_port: (silent.address() as AddressInfo).port },
      { handshakeTimeoutMs: 100 },
    );
    expect(KvwireError.is(slow, ErrorCode.TIMEOUT)).toBe(true);
    const port = (silent.address() as AddressInfo).port;
    await new Promise<void>((r) => {
      silent.closeAllConnections();
      silent.close(() => r());
    });
    const gone = await decodeWith({ ...params, remote_port: port });
    expect(KvwireError.is(gone, ErrorCode.PEER_UNREACHABLE)).toBe(true);
  });

  it('refuses params whose engine id is not the engine behind the side channel', async () => {
    p = await pair();
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const e = await decodeWith({ ...params, remote_engine_id: 'prefill-9' });
    expect(KvwireError.is(e, ErrorCode.BAD_METADATA)).toBe(true);
    expect((e as KvwireError).details.field).toBe('remote_engine_id');
  });

  it('shares one handshake among concurrent pulls', async () => {
    p = await pair();
    const handshakes: unknown[] = [];
    p.decode.coordinator.on('handshake', (h) => handshakes.push(h));
    const reqs = Array.from({ length: 5 }, (_, i) => ({ id: `r${i}`, tokens: prompt(20 + i, 100 * i) }));
    const results = await Promise.all(reqs.map((r) => p!.decode.decode(r, p!.prefill.prefill(r))));
    expect(results.every((r) => r.status === 'ready')).toBe(true);
    expect(handshakes).toHaveLength(1);
    expect(p.decode.coordinator.remoteEngines).toBe(1);
    const again = { id: 'r5', tokens: prompt(30, 5000) };
    await p.decode.decode(again, p.prefill.prefill(again));
    expect(handshakes).toHaveLength(1);
  });

  it('redoes the handshake after a transfer failure', async () => {
    p = await pair();
    let handshakes = 0;
    p.decode.coordinator.on('handshake', () => handshakes++);
    const a = { id: 'a', tokens: prompt(40, 1) };
    await p.decode.decode(a, p.prefill.prefill(a));
    p.decodeAgents[0]!.faults!.set({ fail: { code: ErrorCode.TRANSPORT, count: 1 } });
    const b = { id: 'b', tokens: prompt(40, 2000) };
    await expect(p.decode.decode(b, p.prefill.prefill(b))).rejects.toMatchObject({ code: ErrorCode.TRANSPORT });
    expect(p.decode.coordinator.remoteEngines).toBe(0);
    const c = { id: 'c', tokens: prompt(40, 4000) };
    expect((await p.decode.decode(c, p.prefill.prefill(c))).status).toBe('ready');
    expect(handshakes).toBe(2);
  });

  it('drops a cached engine whose peer died', async () => {
    p = await pair();
    const a = { id: 'a', tokens: prompt(40, 1) };
    await p.decode.decode(a, p.prefill.prefill(a));
    const b = { id: 'b', tokens: prompt(40, 2000) };
    const params = p.prefill.prefill(b);
    p.prefillAgents[0]!.faults!.kill();
    await expect(p.decode.decode(b, params)).rejects.toMatchObject({ code: ErrorCode.PEER_LOST });
    expect(p.decode.coordinator.remoteEngines).toBe(0);
    expect(p.decode.pool.free + p.decode.prefixes.size).toBe(p.decode.pool.total);
  });

  it('rejects bad coordinator options with typed errors', async () => {
    const agents = await loopbackAgents('x', 1);
    extra.push(agents[0]!);
    await expect(DecodeCoordinator.create({ engineId: 'd', ranks: [], secret: SECRET })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      details: { field: 'ranks' },
    });
    await expect(DecodeCoordinator.create({ engineId: '', ranks: [], secret: SECRET })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
    });
    await expect(DecodeCoordinator.create({ engineId: 'd', ranks: [], secret: 'short' })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      details: { field: 'secret' },
    });
  });
});

describe('compatibility fields from a peer', () => {
  const genuine = (): Record<string, unknown> => ({
    ...compatibilityFields(new KvLayout({ model: kvPreset('llama-3-8b'), numBlocks: 4 })),
  });

  it('accepts real model dimensions', () => {
    expect(parseCompatFields(genuine()).layers).toBe(32);
  });

  it.each([
    ['layers', 2 ** 31],
    ['layers', 4097],
    ['kvHeads', 2 ** 21],
    ['blockTokens', 2 ** 40],
  ])('refuses %s = %d at once, typed (finding F9: 2^31 layers hung the decode side)', (field, value) => {
    let error: unknown;
    try {
      parseCompatFields({ ...genuine(), [field]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KvwireError);
    expect((error as KvwireError).code).toBe(ErrorCode.BAD_METADATA);
    expect((error as KvwireError).message).toContain(field);
  });
});

/**
 * Lease heartbeats (lib/pd/heartbeat.ts, lib/pd/lease-keeper.ts): a pull that heartbeats keeps its
 * prefill lease past the base lease; without heartbeats the same pull loses it; forged, stale,
 * replayed or malformed heartbeats extend nothing and get typed refusals; a lease found gone ends
 * the pull early.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import type { BlocksFreedEvent, HeartbeatOutcome, HeartbeatSentEvent, KvTransferParams } from '../../lib/pd/index.js';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_LEASE_EXTENSION_MS, DEFAULT_LEASE_MS } from '../../lib/pd/index.js';
import { secretKey, signRequest, signResponse, verifyResponse } from '../../lib/pd/handshake-auth.js';
import {
  buildHeartbeat,
  parseHeartbeat,
  parseHeartbeatAnswer,
  prefillHeartbeatHandler,
} from '../../lib/pd/heartbeat.js';
import { NonceWindow } from '../../lib/pd/handshake-auth.js';
import { HEARTBEAT_PATH } from '../../lib/pd/protocol.js';
import { postHandshake, type SideChannelReply } from '../../lib/pd/side-channel-client.js';
import { SECRET, metricValue, pair, prompt, until, type Pair } from './helpers.js';

const KEY = secretKey(SECRET);

/** POSTs a heartbeat body to the prefill's side channel, signed with `key` (or the given header). */
function post(params: KvTransferParams, body: Buffer, signature = signRequest(KEY, body, 'heartbeat')) {
  return postHandshake({
    host: params.remote_host,
    port: params.remote_port,
    path: HEARTBEAT_PATH,
    body,
    signature,
    timeoutMs: 10_000,
  });
}

function heartbeatFor(params: KvTransferParams, token = params.remote_lease_token, prefill = params.remote_engine_id) {
  return buildHeartbeat('decode-x', prefill, [{ requestId: params.remote_request_id, token }]);
}

/** The wire JSON of a heartbeat request (for tests that alter fields). */
function wire(body: Buffer, change: Record<string, unknown> = {}): Buffer {
  const h = parseHeartbeat(body);
  const leases = h.leases.map((l) => ({ req: l.requestId, lease: l.token }));
  return Buffer.from(JSON.stringify({ ...h, leases, ...change }));
}

function answer(reply: SideChannelReply, nonce: string): (number | null)[] {
  expect(verifyResponse(KEY, nonce, reply.body, reply.signature, 'heartbeat')).toBe(true);
  return [...parseHeartbeatAnswer(reply.body, 1).expiresInMs];
}

describe('lease heartbeats', () => {
  let p: Pair | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('defaults: a 30 s lease, extended by 30 s per heartbeat, heartbeats every 5 s', async () => {
    expect([DEFAULT_LEASE_MS, DEFAULT_LEASE_EXTENSION_MS, DEFAULT_HEARTBEAT_INTERVAL_MS]).toEqual([
      30_000, 30_000, 5_000,
    ]);
    p = await pair();
    expect(p.prefill.coordinator.leaseMs).toBe(30_000);
    expect(p.prefill.coordinator.leaseExtensionMs).toBe(30_000);
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const lease = p.prefill.coordinator.lease('r1')!;
    expect(lease.expiresAt - lease.heldAt).toBe(30_000);
    expect(params.remote_lease_token).toBe(lease.token);
  });

  it('a slow pull that heartbeats is not cut off past its base lease; without heartbeats it is', async () => {
    // Every READ of the decode agent takes 1.2 s: block reads, then the fence, ~2.4 s in all,
    // six base leases of 400 ms.
    p = await pair({ prefill: { leaseMs: 400, leaseExtensionMs: 400 }, decode: { heartbeatIntervalMs: 50 } });
    p.decodeAgents[0]!.faults!.set({ delayMs: 1200 });
    const extended: HeartbeatOutcome[] = [];
    p.prefill.coordinator.on('heartbeat', (o: HeartbeatOutcome) => extended.push(o));
    const req = { id: 'slow', tokens: prompt(40) };
    const params = p.prefill.prefill(req);
    const r = await p.decode.decode(req, params);
    expect(r.status).toBe('ready');
    expect(r.verifiedBytes).toBe(3 * p.decode.ranks[0]!.layout.bytesPerBlock);
    const freed = p.prefill.freed;
    await until(() => p!.prefill.coordinator.leases === 0, 'the done notification');
    expect(freed.notified).toBe(3);
    expect(freed.expired).toBe(0);
    expect(extended.length).toBeGreaterThan(0);
    expect(extended.every((o) => o.status === 200 && o.decodeEngineId === 'decode-0')).toBe(true);
    expect(await metricValue(p.registry, 'kvwire_pd_lease_extensions_total')).toBeGreaterThan(0);
    expect(await metricValue(p.registry, 'kvwire_pd_lease_heartbeats_received_total', { result: 'accepted' })).toBe(
      extended.length,
    );
    expect(await metricValue(p.registry, 'kvwire_pd_lease_heartbeats_sent_total', { result: 'ok' })).toBeGreaterThan(0);
    expect(await metricValue(p.registry, 'kvwire_pd_lease_expirations_total')).toBe(0);
    expect(await metricValue(p.registry, 'kvwire_pd_leases_kept_alive')).toBe(0);
    await p.close();

    // The control: the same pull with heartbeats off loses its lease at the base lease.
    p = await pair({ prefill: { leaseMs: 400, leaseExtensionMs: 400 }, decode: { heartbeatIntervalMs: 0 } });
    p.decodeAgents[0]!.faults!.set({ delayMs: 1200 });
    const e = await p.decode.decode(req, p.prefill.prefill(req)).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.LEASE_EXPIRED)).toBe(true);
    expect(p.prefill.freed.expired).toBe(3);
  });

  it('keepLeaseAlive holds a queued request past its base lease, and lets go when stopped', async () => {
    p = await pair({ prefill: { leaseMs: 300, leaseExtensionMs: 300 }, decode: { heartbeatIntervalMs: 40 } });
    const expired: BlocksFreedEvent[] = [];
    p.prefill.coordinator.on('lease-expired', (e: BlocksFreedEvent) => expired.push(e));
    const req = { id: 'queued', tokens: prompt(20) };
    const params = p.prefill.prefill(req);
    const c = p.decode.coordinator;
    const stop = c.keepLeaseAlive(params);
    expect(c.leasesKeptAlive).toBe(1);
    expect(await metricValue(p.registry, 'kvwire_pd_leases_kept_alive')).toBe(1);
    const heldAt = p.prefill.coordinator.lease('queued')!.heldAt;
    // Wait well past the base lease (by the lease's own clock), still held.
    await until(() => p!.prefill.coordinator.lease('queued')!.expiresAt - heldAt > 1500, 'heartbeats', 20_000);
    expect(expired).toEqual([]);
    // The queued request finally pulls: its bytes are good.
    const r = await p.decode.decode(req, params);
    expect(r.status).toBe('ready');
    stop();
    stop(); // idempotent
    expect(c.leasesKeptAlive).toBe(0);

    // A lease nobody keeps alive expires at its base lease.
    const other = { id: 'abandoned', tokens: prompt(20, 4000) };
    const stopOther = c.keepLeaseAlive(p.prefill.prefill(other));
    stopOther();
    await until(() => expired.length === 1, 'the abandoned lease to expire', 20_000);
    expect(expired[0]).toMatchObject({ requestId: 'abandoned', reason: 'expired' });
  });

  it('a lease found gone ends a queued pull at once (LEASE_EXPIRED) and tells keepLeaseAlive', async () => {
    p = await pair({ decode: { heartbeatIntervalMs: 30, maxConcurrentRequests: 1 } });
    p.decodeAgents[0]!.faults!.set({ delayMs: 30_000 });
    const blocker = { id: 'blocker', tokens: prompt(20) };
    const blocking = p.decode.decode(blocker, p.prefill.prefill(blocker)).catch((x: unknown) => x);
    await until(() => p!.decode.coordinator.activeRequests === 1, 'the first pull to hold the only slot');
    const req = { id: 'victim', tokens: prompt(20, 3000) };
    const params = p.prefill.prefill(req);
    const lost: KvwireError[] = [];
    p.decode.coordinator.keepLeaseAlive(params, (e) => lost.push(e));
    const queued = p.decode.decode(req, params).catch((x: unknown) => x);
    await until(() => p!.decode.coordinator.queueDepth === 1, 'the second pull to queue');
    p.prefill.coordinator.release('victim'); // the prefill gives the request up
    const e = await queued;
    expect(KvwireError.is(e, ErrorCode.LEASE_EXPIRED)).toBe(true);
    expect((e as Error).message).toMatch(/no longer holds/);
    await until(() => lost.length === 1, 'keepLeaseAlive to hear of it');
    expect(lost[0]!.code).toBe(ErrorCode.LEASE_EXPIRED);
    expect(await metricValue(p.registry, 'kvwire_pd_leases_lost_total')).toBe(2);
    p.decodeAgents[0]!.faults!.set({ delayMs: 0 });
    await p.decode.coordinator.close();
    expect(KvwireError.is(await blocking, ErrorCode.CLOSED)).toBe(true);
  });

  it('forged, stale, replayed, malformed and mistargeted heartbeats extend nothing and are refused typed', async () => {
    p = await pair({ prefill: { leaseMs: 60_000 } });
    const outcomes: HeartbeatOutcome[] = [];
    p.prefill.coordinator.on('heartbeat', (o: HeartbeatOutcome) => outcomes.push(o));
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const before = p.prefill.coordinator.lease('r1')!.expiresAt;
    const lease = () => p!.prefill.coordinator.lease('r1')!.expiresAt;

    // Another secret: 401, empty body.
    let hb = heartbeatFor(params);
    let reply = await post(
      params,
      hb.body,
      signRequest(secretKey('another-secret-0123456789abcdef'), hb.body, 'heartbeat'),
    );
    expect([reply.status, reply.body.byteLength]).toEqual([401, 0]);
    // A handshake signature over the same bytes is not a heartbeat signature.
    reply = await post(params, hb.body, signRequest(KEY, hb.body, 'handshake'));
    expect(reply.status).toBe(401);
    // No signature at all; a garbage one.
    reply = await post(params, hb.body, '');
    expect(reply.status).toBe(401);
    reply = await post(params, hb.body, `v1=${'0'.repeat(64)}`);
    expect(reply.status).toBe(401);
    // Signed but malformed: 400, empty body.
    for (const bad of [
      Buffer.from('{'),
      Buffer.from('[]'),
      Buffer.from('{"v":1}'),
      wire(hb.body, { leases: [{ req: 'r1', lease: -1 }] }),
      wire(hb.body, { leases: [] }),
    ]) {
      reply = await post(params, bad);
      expect([reply.status, reply.body.byteLength]).toEqual([400, 0]);
    }
    // Stale: a timestamp outside the clock-skew window (60 s).
    const stale = wire(hb.body, { ts: Date.now() - 10 * 60_000 });
    reply = await post(params, stale);
    expect(reply.status).toBe(401);
    expect(lease()).toBe(before);

    // A genuine one works once; its replay is refused.
    hb = heartbeatFor(params);
    reply = await post(params, hb.body);
    expect(reply.status).toBe(200);
    expect(answer(reply, hb.nonce)[0]).toBeGreaterThan(59_000);
    reply = await post(params, hb.body);
    expect([reply.status, reply.body.byteLength]).toEqual([401, 0]);

    // Authenticated, but another lease token (a stale heartbeat about an earlier lease) or another
    // prefill engine id: answered, null, nothing extended.
    const t = lease();
    hb = heartbeatFor(params, params.remote_lease_token === 1 ? 2 : params.remote_lease_token - 1);
    expect(answer(await post(params, hb.body), hb.nonce)).toEqual([null]);
    hb = heartbeatFor(params, params.remote_lease_token, 'prefill-other');
    expect(answer(await post(params, hb.body), hb.nonce)).toEqual([null]);
    expect(lease()).toBe(t);

    expect(outcomes.map((o) => o.refused ?? o.status)).toEqual([
      'unauthorized',
      'unauthorized',
      'unauthorized',
      'unauthorized',
      'malformed',
      'malformed',
      'malformed',
      'malformed',
      'malformed',
      'replayed',
      200,
      'replayed',
      200,
      200,
    ]);
    const m = (result: string) => metricValue(p!.registry, 'kvwire_pd_lease_heartbeats_received_total', { result });
    expect([await m('unauthorized'), await m('malformed'), await m('replayed'), await m('accepted')]).toEqual([
      4, 5, 2, 3,
    ]);
    expect(await metricValue(p.registry, 'kvwire_pd_lease_extensions_refused_total')).toBe(2);
    expect(p.prefill.coordinator.leases).toBe(1); // nothing crashed, nothing freed
  });

  it('forged, malformed or missing heartbeat answers are typed results, and give no lease up', async () => {
    // A "prefill side channel" that answers heartbeats as the test says: unsigned, signed but
    // malformed, signed with another secret, or never.
    let mode: 'unsigned' | 'malformed' | 'foreign' | 'hang' = 'unsigned';
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (mode === 'hang') return;
        const nonce = (JSON.parse(Buffer.concat(chunks).toString()) as { nonce: string }).nonce;
        const gone = Buffer.from(JSON.stringify({ v: 1, engineId: 'prefill-0', expiresInMs: [null] }));
        const body = mode === 'malformed' ? Buffer.from('{"v":1}') : gone;
        const key = mode === 'foreign' ? secretKey('another-secret-0123456789abcdef') : KEY;
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (mode !== 'unsigned') headers['x-kvwire-signature'] = signResponse(key, nonce, body, 'heartbeat');
        res.writeHead(200, headers);
        res.end(body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      p = await pair({ decode: { heartbeatIntervalMs: 20 } });
      const sent: HeartbeatSentEvent[] = [];
      p.decode.coordinator.on('heartbeat', (e: HeartbeatSentEvent) => sent.push(e));
      const real = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
      const params = { ...real, remote_port: (server.address() as AddressInfo).port };
      const lost: KvwireError[] = [];
      const stop = p.decode.coordinator.keepLeaseAlive(params, (e) => lost.push(e));
      const expect1 = async (m: typeof mode, result: string, code: string) => {
        mode = m;
        sent.length = 0;
        await until(() => sent.some((e) => e.result === result), `a '${result}' heartbeat (${m})`, 20_000);
        const e = sent.find((x) => x.result === result)!;
        expect({ m, code: e.error?.code, lost: e.lost }).toEqual({ m, code, lost: 0 });
      };
      await expect1('unsigned', 'unauthorized', ErrorCode.UNAUTHORIZED);
      await expect1('foreign', 'unauthorized', ErrorCode.UNAUTHORIZED);
      await expect1('malformed', 'bad_answer', ErrorCode.BAD_METADATA);
      await expect1('hang', 'timeout', ErrorCode.TIMEOUT);
      // Not one forged "gone" was believed: the lease is still tracked, nothing was given up.
      expect(lost).toEqual([]);
      expect(p.decode.coordinator.leasesKeptAlive).toBe(1);
      expect(await metricValue(p.registry, 'kvwire_pd_leases_lost_total')).toBe(0);
      stop();
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('a decode worker whose heartbeats are refused counts them and carries on', async () => {
    p = await pair({ decode: { heartbeatIntervalMs: 30, secret: 'another-secret-0123456789abcdef' } });
    const sent: HeartbeatSentEvent[] = [];
    p.decode.coordinator.on('heartbeat', (e: HeartbeatSentEvent) => sent.push(e));
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const stop = p.decode.coordinator.keepLeaseAlive(params);
    await until(() => sent.length >= 2, 'two heartbeats');
    expect(sent[0]).toMatchObject({ prefill: 'prefill-0', result: 'unauthorized', leases: 1, lost: 0 });
    expect(sent[0]!.error?.code).toBe(ErrorCode.UNAUTHORIZED);
    // A side channel that is gone: unreachable, counted, no crash.
    await p.prefill.coordinator.close();
    sent.length = 0;
    await until(() => sent.length >= 1, 'a heartbeat to a closed side channel');
    expect(sent[0]!.result).toBe('unreachable');
    stop();
    expect(
      await metricValue(p.registry, 'kvwire_pd_lease_heartbeats_sent_total', { result: 'unauthorized' }),
    ).toBeGreaterThan(0);
    expect(() => p!.decode.coordinator.keepLeaseAlive({ do_remote_prefill: true })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
  });

  it('never crashes on mutated heartbeats or answers: typed refusals, and only an exact token extends', () => {
    // Seeded mutations of a genuine heartbeat, each signed (so it passes the signature and reaches
    // the parser), fed to the prefill's handler; and of a genuine answer, fed to the decode's parser.
    let x = 0x9e3779b9;
    const rnd = (n: number) => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    const held = { requestId: 'req-1', token: 123_456_789 };
    const extended: string[] = [];
    const handler = prefillHeartbeatHandler(
      KEY,
      new NonceWindow(60_000),
      {
        engineId: 'prefill-0',
        extend: (requestId, token) => {
          if (requestId !== held.requestId || token !== held.token) return undefined;
          extended.push(`${requestId}/${token}`);
          return 1000;
        },
      },
      () => {},
    );
    const junk = [null, -1, 0, 1.5, 2 ** 48, 2 ** 53, '', 'x'.repeat(2000), [], {}, true, '\u0000', 1e300];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 3000; i++) {
      const { body } = buildHeartbeat('decode-0', 'prefill-0', [
        held,
        { requestId: `other-${i}`, token: 1 + rnd(1000) },
      ]);
      const v = JSON.parse(body.toString()) as Record<string, unknown> & { leases: Record<string, unknown>[] };
      let bytes: Buffer;
      switch (rnd(5)) {
        case 4: {
          // Well formed, but a near-miss: another token for the held id, another engine, repeats.
          const r = rnd(3);
          if (r === 0) v.leases[0]!.lease = held.token + 1 + rnd(5);
          else if (r === 1) v.prefill = 'prefill-1';
          else v.leases.push(v.leases[0]!, { req: held.requestId.toUpperCase(), lease: held.token });
          bytes = Buffer.from(JSON.stringify(v));
          break;
        }
        case 0: {
          const keys = ['v', 'engineId', 'nonce', 'ts', 'prefill', 'leases'];
          v[keys[rnd(keys.length)]!] = junk[rnd(junk.length)];
          bytes = Buffer.from(JSON.stringify(v));
          break;
        }
        case 1: {
          const l = v.leases[rnd(2)]!;
          l[rnd(2) === 0 ? 'req' : 'lease'] = junk[rnd(junk.length)];
          if (rnd(3) === 0) v.leases.push(junk[rnd(junk.length)] as Record<string, unknown>);
          bytes = Buffer.from(JSON.stringify(v));
          break;
        }
        case 2: {
          bytes = Buffer.from(body);
          for (let k = 1 + rnd(4); k > 0; k--) bytes[rnd(bytes.length)] = rnd(256);
          break;
        }
        default:
          bytes = body.subarray(0, rnd(body.length));
      }
      const before = extended.length;
      const a = handler({ body: bytes, signature: signRequest(KEY, bytes, 'heartbeat'), remoteAddress: undefined });
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      expect([200, 400, 401]).toContain(a.status);
      if (a.status !== 200) {
        expect(a.body).toBeUndefined();
        expect(extended.length).toBe(before);
      } else {
        expect(parseHeartbeatAnswer(a.body!, parseHeartbeat(bytes).leases.length).engineId).toBe('prefill-0');
      }
      // The same bytes signed for a handshake extend nothing.
      const n = extended.length;
      expect(handler({ body: bytes, signature: signRequest(KEY, bytes), remoteAddress: undefined }).status).toBe(401);
      expect(extended.length).toBe(n);
    }
    expect(statuses.get(400)).toBeGreaterThan(100);
    expect(statuses.get(200)).toBeGreaterThan(400);
    // Only the held lease's exact (request id, token) ever extended.
    expect(new Set(extended)).toEqual(new Set([`${held.requestId}/${held.token}`]));

    const answerBody = Buffer.from(JSON.stringify({ v: 1, engineId: 'prefill-0', expiresInMs: [1000, null] }));
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(answerBody);
      for (let k = 1 + rnd(4); k > 0; k--) b[rnd(b.length)] = rnd(256);
      try {
        const a = parseHeartbeatAnswer(b.subarray(0, rnd(b.length + 1)), 2);
        expect(a.expiresInMs).toHaveLength(2);
      } catch (e) {
        expect(e).toBeInstanceOf(KvwireError);
      }
    }
  });
});

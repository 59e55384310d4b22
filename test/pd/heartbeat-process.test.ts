/**
 * Lease heartbeats across two processes over UCX: this process runs the prefill (a fake engine,
 * its lease 1.5 s), test/fixtures/lease-decode-worker.ts (from dist/) a decode worker whose pull
 * waits on its allocator while it heartbeats. A slow pull keeps its blocks well past the base
 * lease and reads them intact; a decode worker SIGKILLed with its pull pending strands the
 * prefill's blocks for about one lease, not minutes.
 */
import { tcpZeroCopyOff } from '../transport/tcp-zero-copy-off.js';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../lib/transport/index.js';
import { ucxUnavailableReason } from '../../lib/transport/native-engine.js';
import { createRegistry } from '../../lib/metrics.js';
import type { BlocksFreedEvent, HeartbeatOutcome } from '../../lib/pd/index.js';
import { FakePrefillEngine } from '../../lib/engine/runtimes/synthetic/fake-engine.js';
import type { LeaseDecodeConfig } from '../fixtures/lease-decode-worker.js';
import { SMALL, metricValue, prompt, until } from './helpers.js';

const WORKER = new URL('../../dist/test/fixtures/lease-decode-worker.js', import.meta.url);
const LEASE_MS = 1500;
const HEARTBEAT_MS = 200;
const noUcx = ucxUnavailableReason();
if (noUcx !== undefined) console.log(`lease heartbeat two-process tests skipped: ${noUcx}`);

interface Pulled {
  op: 'pulled';
  id: string;
  status: string;
  verifiedBytes: number;
  code?: string;
  message?: string;
}

/** The decode worker process. */
class DecodeWorker {
  readonly child: ChildProcess;
  readonly pulled: Pulled[] = [];
  readonly exited: Promise<NodeJS.Signals | null>;
  #stderr = '';

  constructor() {
    this.child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    this.child.stderr!.on('data', (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-4000)));
    this.child.on('message', (m: Pulled) => {
      if (m.op === 'pulled') this.pulled.push(m);
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (_code, signal) => resolve(signal)));
  }

  async init(config: LeaseDecodeConfig): Promise<void> {
    const answer = new Promise<{ op: string; message?: string }>((resolve, reject) => {
      this.child.once('message', resolve);
      this.child.once('exit', () => reject(new Error(`the decode worker exited during init: ${this.#stderr}`)));
    });
    this.child.send({ op: 'init', config });
    const a = await answer;
    if (a.op !== 'ready') throw new Error(`the decode worker failed to start: ${a.message}`);
  }

  send(m: unknown): void {
    this.child.send(m as object);
  }
}

describe.skipIf(noUcx !== undefined)('lease heartbeats across two processes over UCX', () => {
  tcpZeroCopyOff('tcp');
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function start() {
    const secret = randomBytes(32);
    const registry = createRegistry();
    const agent = await Agent.create({ name: 'lease-prefill', engine: 'ucx', auth: { secret }, transports: 'tcp' });
    cleanup.push(() => agent.close());
    const prefill = await FakePrefillEngine.create({
      engineId: 'prefill-0',
      agents: [agent],
      model: SMALL,
      numBlocks: 64,
      secret,
      registry,
      leaseMs: LEASE_MS,
      leaseExtensionMs: LEASE_MS,
    });
    cleanup.push(() => prefill.close());
    const freed: (BlocksFreedEvent & { at: number })[] = [];
    prefill.coordinator.on('blocks-freed', (e: BlocksFreedEvent) => freed.push({ ...e, at: performance.now() }));
    const heartbeats: HeartbeatOutcome[] = [];
    prefill.coordinator.on('heartbeat', (o: HeartbeatOutcome) => heartbeats.push(o));
    const decode = new DecodeWorker();
    cleanup.push(async () => {
      decode.child.kill('SIGKILL');
      await decode.exited;
    });
    await decode.init({
      secret: secret.toString('hex'),
      model: SMALL,
      numBlocks: 64,
      transports: 'tcp',
      heartbeatIntervalMs: HEARTBEAT_MS,
    });
    return { prefill, decode, freed, heartbeats, registry };
  }

  /** Waits until the lease of `id` was extended to more than `factor` base leases after its hold. */
  async function extendedPast(prefill: FakePrefillEngine, id: string, factor: number): Promise<void> {
    const heldAt = prefill.coordinator.lease(id)!.heldAt;
    await until(
      () => (prefill.coordinator.lease(id)?.expiresAt ?? 0) - heldAt > factor * LEASE_MS,
      `heartbeats to extend the lease of ${id} past ${factor} base leases`,
      60_000,
    );
  }

  it('a slow pull that heartbeats keeps its blocks past the base lease and reads them intact', async () => {
    const { prefill, decode, freed, registry } = await start();
    const req = { id: 'slow', tokens: prompt(40) };
    const params = prefill.prefill(req);
    decode.send({ op: 'pull', id: req.id, tokens: req.tokens, params });
    // Three base leases pass with the pull pending: the lease is still held.
    await extendedPast(prefill, 'slow', 3);
    expect(prefill.coordinator.leases).toBe(1);
    expect(freed).toEqual([]);
    decode.send({ op: 'release' });
    await until(() => decode.pulled.length === 1, 'the pull to finish', 60_000);
    expect(decode.pulled[0]).toMatchObject({ id: 'slow', status: 'ready' });
    expect(decode.pulled[0]!.verifiedBytes).toBe(3 * prefill.ranks[0]!.layout.bytesPerBlock);
    await until(() => freed.length === 1, 'the done notification', 30_000);
    expect(freed[0]).toMatchObject({ requestId: 'slow', reason: 'notified' });
    expect(await metricValue(registry, 'kvwire_pd_lease_extensions_total')).toBeGreaterThan(3);
    expect(await metricValue(registry, 'kvwire_pd_lease_expirations_total')).toBe(0);
  }, 180_000);

  it('a decode worker SIGKILLed with a pull pending frees the prefill blocks within about a lease', async () => {
    const { prefill, decode, freed, heartbeats, registry } = await start();
    const req = { id: 'orphan', tokens: prompt(40, 9000) };
    const params = prefill.prefill(req);
    decode.send({ op: 'pull', id: req.id, tokens: req.tokens, params });
    await extendedPast(prefill, 'orphan', 2);
    const beats = heartbeats.length;
    decode.child.kill('SIGKILL');
    expect(await decode.exited).toBe('SIGKILL');
    const killedAt = performance.now();
    // No decode worker any more: the lease runs out one extension after the last heartbeat.
    await until(() => freed.length === 1, 'the orphaned lease to expire', LEASE_MS + 30_000);
    const strandedMs = freed[0]!.at - killedAt;
    console.log(
      `blocks of a SIGKILLed decode worker freed ${strandedMs.toFixed(0)} ms after the kill (lease ${LEASE_MS} ms, heartbeats every ${HEARTBEAT_MS} ms, ${beats} heartbeats before)`,
    );
    expect(freed[0]).toMatchObject({ requestId: 'orphan', reason: 'expired', blockIds: params.remote_block_ids });
    // Held well past the base lease while the worker lived, freed within a lease (plus scheduling
    // slack on a busy machine) once it died: seconds, where a fixed 480 s lease took 8 minutes.
    expect(freed[0]!.heldMs).toBeGreaterThan(2 * LEASE_MS);
    expect(strandedMs).toBeLessThan(LEASE_MS + 10_000);
    expect(prefill.pool.free).toBe(prefill.pool.total);
    expect(prefill.coordinator.leases).toBe(0);
    expect(await metricValue(registry, 'kvwire_pd_lease_expirations_total')).toBe(1);
    expect(await metricValue(registry, 'kvwire_pd_blocks_freed_total', { reason: 'expired' })).toBe(3);
  }, 180_000);
});

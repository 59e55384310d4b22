// Stranded KV blocks (issue 10, defect 10): decode workers SIGKILLed at random points of their
// pulls, with lib/pd's defaults (a 30 s prefill lease extended by the decode side's heartbeats every
// 5 s). Every lease the dead workers held must run out and free the prefill's blocks within about
// one lease of the kill (seconds, where the old fixed lease of 480 s stranded them for 8 minutes),
// the prefill's pool must end whole, and the prefill must go on serving a live decode worker.
//
// The prefill is a FakePrefillEngine (synthetic KV bytes, a real PrefillCoordinator on a UCX agent)
// in this process; each decode worker is test/fixtures/lease-decode-worker.ts (from dist/): a real
// DecodeCoordinator whose pull waits on its block allocator, heartbeating, until it is told to go
// on (or killed).
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakePrefillEngine } from '../../lib/engine/runtimes/synthetic/fake-engine.js';
import { packageRoot } from '../../lib/native.js';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_LEASE_MS } from '../../lib/pd/index.js';
import type { BlocksFreedEvent } from '../../lib/pd/index.js';
import { Agent } from '../../lib/transport/index.js';
import { mulberry32 } from '../../lib/util/mulberry32.js';
import { summarize } from '../../bench/stats.js';
import type { ModelShape } from '../../lib/kv/index.js';
import { record, scale } from './harness.js';

const WORKER = join(packageRoot(), 'dist/test/fixtures/lease-decode-worker.js');
const MODEL: ModelShape = { name: 'small', attention: 'mha', layers: 2, kvHeads: 4, headDim: 16, dtype: 'bf16' };
const WORKERS = scale(4, 12);
/** How late past one lease a freed block may be (timers, heartbeats in flight, a busy machine). */
const SLACK_MS = 10_000;

/** One decode worker process. */
class DecodeWorker {
  readonly child: ChildProcess;
  readonly pulled: { id: string; status: string; verifiedBytes: number; code?: string }[] = [];
  readonly exited: Promise<NodeJS.Signals | null>;
  stderr = '';

  constructor() {
    this.child = fork(WORKER, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    this.child.on('message', (m: { op: string; id: string; status: string; verifiedBytes: number }) => {
      if (m.op === 'pulled') this.pulled.push(m);
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (_c, signal) => resolve(signal)));
  }

  async init(secret: Buffer): Promise<void> {
    const answer = new Promise<{ op: string; message?: string }>((resolve, reject) => {
      this.child.once('message', resolve);
      this.child.once('exit', () => reject(new Error(`a decode worker exited during init: ${this.stderr}`)));
    });
    this.child.send({
      op: 'init',
      config: {
        secret: secret.toString('hex'),
        model: MODEL,
        numBlocks: 64,
        transports: 'tcp',
        heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
      },
    });
    const a = await answer;
    if (a.op !== 'ready') throw new Error(`a decode worker failed to start: ${a.message}`);
  }
}

function tokens(n: number, start: number): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}

async function until(cond: () => boolean, what: string, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

describe('decode workers SIGKILLed with pulls pending, lib/pd defaults', () => {
  it(`${WORKERS} dead workers strand the prefill's blocks for about one ${DEFAULT_LEASE_MS / 1000} s lease, not minutes`, async () => {
    const secret = randomBytes(32);
    const agent = await Agent.create({ name: 'stranded-prefill', engine: 'ucx', auth: { secret }, transports: 'tcp' });
    cleanup.push(() => agent.close());
    // No lease option: lib/pd's default lease and extension.
    const prefill = await FakePrefillEngine.create({
      engineId: 'prefill-0',
      agents: [agent],
      model: MODEL,
      numBlocks: 256,
      secret,
    });
    cleanup.push(() => prefill.close());
    const freed = new Map<string, BlocksFreedEvent & { at: number }>();
    prefill.coordinator.on('blocks-freed', (e: BlocksFreedEvent) =>
      freed.set(e.requestId, { ...e, at: performance.now() }),
    );

    const workers = Array.from({ length: WORKERS + 1 }, () => new DecodeWorker());
    for (const w of workers) {
      cleanup.push(async () => {
        w.child.kill('SIGKILL');
        await w.exited;
      });
    }
    await Promise.all(workers.map((w) => w.init(secret)));
    const [live, ...doomed] = workers as [DecodeWorker, ...DecodeWorker[]];

    // Every doomed worker pulls and is killed at a random point: at once, while its first
    // heartbeats fly, or after its lease was extended a few times.
    const rng = mulberry32(0x5743);
    const killedAt = new Map<string, number>();
    await Promise.all(
      doomed.map(async (w, i) => {
        const id = `doomed-${i}`;
        const toks = tokens(40, 1000 + i * 100);
        const params = prefill.prefill({ id, tokens: toks });
        w.child.send({ op: 'pull', id, tokens: toks, params });
        await new Promise((r) => setTimeout(r, Math.floor(rng() * 3 * DEFAULT_HEARTBEAT_INTERVAL_MS)));
        w.child.kill('SIGKILL');
        await w.exited;
        killedAt.set(id, performance.now());
      }),
    );
    expect(prefill.coordinator.leases).toBe(WORKERS);

    // A live worker is served meanwhile, and its blocks come back by its notification.
    const liveId = 'live';
    const liveTokens = tokens(40, 90_000);
    live.child.send({
      op: 'pull',
      id: liveId,
      tokens: liveTokens,
      params: prefill.prefill({ id: liveId, tokens: liveTokens }),
    });
    live.child.send({ op: 'release' });
    await until(() => live.pulled.length === 1, 'the live pull', 60_000);
    expect(live.pulled[0]).toMatchObject({ id: liveId, status: 'ready' });
    expect(live.pulled[0]!.verifiedBytes).toBeGreaterThan(0);

    await until(
      () => freed.size === WORKERS + 1,
      "the dead workers' leases to run out",
      DEFAULT_LEASE_MS * 2 + SLACK_MS * 2,
    );
    const stranded = doomed.map((_, i) => {
      const id = `doomed-${i}`;
      return { id, reason: freed.get(id)!.reason, strandedMs: freed.get(id)!.at - killedAt.get(id)! };
    });
    record('stranded-blocks', {
      workers: WORKERS,
      leaseMs: DEFAULT_LEASE_MS,
      heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
      strandedMs: summarize(stranded.map((s) => s.strandedMs)),
      reasons: stranded.map((s) => s.reason),
      liveFreedBy: freed.get(liveId)?.reason,
    });
    for (const s of stranded) {
      expect(s.reason, s.id).toBe('expired');
      expect(s.strandedMs, s.id).toBeLessThan(DEFAULT_LEASE_MS + SLACK_MS);
    }
    expect(freed.get(liveId)?.reason).toBe('notified');
    expect(prefill.coordinator.leases).toBe(0);
    expect(prefill.pool.free).toBe(prefill.pool.total);
  });
});

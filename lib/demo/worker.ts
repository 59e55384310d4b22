/**
 * A demo worker process: one fake engine (prefill or decode) on UCX agents, driven over the
 * child-process IPC channel by `runDemo`. The messages (JSON) are in {@link ToWorker} and
 * {@link FromWorker}; every request carries a sequence number its answer repeats.
 *
 * The secret arrives over IPC, never in argv or the environment.
 *
 * @packageDocumentation
 */
import { KvwireError } from '../errors.js';
import type { KvSplit, KvOrder, ModelShape } from '../kv/index.js';
import { createRegistry } from '../metrics.js';
import type { FailurePolicy } from '../pd/index.js';
import { Agent } from '../transport/index.js';
import { FakeDecodeEngine } from '../engine/runtimes/synthetic/fake-decode.js';
import { FakePrefillEngine, type FakeRequest } from '../engine/runtimes/synthetic/fake-engine.js';

/** Configuration of a worker. */
export interface WorkerConfig {
  /** Which half of the engine. */
  readonly role: 'prefill' | 'decode';
  /** Engine id. */
  readonly engineId: string;
  /** Shared secret (hex). */
  readonly secret: string;
  /** Model KV shape. */
  readonly model: ModelShape;
  /** Blocks per rank. */
  readonly numBlocks: number;
  /** Tokens per block. */
  readonly blockTokens: number;
  /** TP size (agents in this process). */
  readonly tp: number;
  /** K/V storage and order. */
  readonly kv?: KvSplit;
  /** Block order. */
  readonly order?: KvOrder;
  /** UCX transports (UCX_TLS syntax). */
  readonly transports?: string;
  /** Decode: pulls transferring at once. */
  readonly maxConcurrentRequests?: number;
  /** Decode: failure policy. */
  readonly policy?: FailurePolicy;
  /** Prefill: lease duration (ms). */
  readonly leaseMs?: number;
}

/** Messages to a worker. */
export type ToWorker =
  | { readonly op: 'init'; readonly seq: number; readonly config: WorkerConfig }
  | { readonly op: 'prefill'; readonly seq: number; readonly request: FakeRequest }
  | { readonly op: 'decode'; readonly seq: number; readonly request: FakeRequest; readonly params: unknown }
  | { readonly op: 'drain'; readonly seq: number }
  | { readonly op: 'close'; readonly seq: number };

/** Messages from a worker. */
export type FromWorker =
  | { readonly op: 'result'; readonly seq: number; readonly value: unknown }
  | { readonly op: 'error'; readonly seq: number; readonly code: string; readonly message: string };

/** What a decode request answers. */
export interface DecodeSummary {
  /** Pulled, or recomputed after a failed pull. */
  readonly status: 'ready' | 'recompute';
  /** Generated tokens. */
  readonly tokens: number[];
  /** Bytes checked. */
  readonly verifiedBytes: number;
  /** Blocks of the request. */
  readonly blocks: number;
  /** Blocks from the prefix cache. */
  readonly blocksCached: number;
  /** Bytes read. */
  readonly bytes: number;
  /** Descriptors before coalescing. */
  readonly uncoalesced: number;
  /** Descriptors posted. */
  readonly posted: number;
  /** Transfer time of the pull (ms). */
  readonly transferMs: number;
  /** Transport category. */
  readonly transport: string;
  /** Why the pull failed (code: message). */
  readonly reason?: string;
}

/** What drain answers: the pool, and on the prefill side the leases. */
export interface DrainSummary {
  /** Free blocks. */
  readonly free: number;
  /** Blocks in the pool. */
  readonly total: number;
  /** Leases held (prefill; 0 on decode). */
  readonly leases: number;
  /** The transports of this worker's peers. */
  readonly transports: string;
}

interface Engines {
  agents: Agent[];
  prefill?: FakePrefillEngine;
  decode?: FakeDecodeEngine;
}

async function init(c: WorkerConfig, e: Engines): Promise<unknown> {
  for (let r = 0; r < c.tp; r++) {
    e.agents.push(
      await Agent.create({
        name: `${c.engineId}-r${r}`,
        engine: 'ucx',
        auth: { secret: Buffer.from(c.secret, 'hex') }, // the workers' shared secret authenticates the agents too
        ...(c.transports ? { transports: c.transports } : {}),
      }),
    );
  }
  const common = {
    engineId: c.engineId,
    agents: e.agents,
    model: c.model,
    numBlocks: c.numBlocks,
    blockTokens: c.blockTokens,
    secret: Buffer.from(c.secret, 'hex'),
    registry: createRegistry(),
    ...(c.kv ? { kv: c.kv } : {}),
    ...(c.order ? { order: c.order } : {}),
  };
  if (c.role === 'prefill') {
    e.prefill = await FakePrefillEngine.create({ ...common, ...(c.leaseMs ? { leaseMs: c.leaseMs } : {}) });
    return { host: e.prefill.coordinator.host, port: e.prefill.coordinator.port };
  }
  e.decode = await FakeDecodeEngine.create({
    ...common,
    quarantineMs: 1000,
    ...(c.maxConcurrentRequests ? { maxConcurrentRequests: c.maxConcurrentRequests } : {}),
    ...(c.policy ? { policy: c.policy } : {}),
  });
  return {};
}

async function handle(m: ToWorker, e: Engines): Promise<unknown> {
  switch (m.op) {
    case 'init':
      return init(m.config, e);
    case 'prefill':
      return e.prefill!.prefill(m.request);
    case 'decode': {
      const r = await e.decode!.decode(m.request, m.params);
      return {
        status: r.status,
        tokens: r.tokens,
        verifiedBytes: r.verifiedBytes,
        blocks: r.blocks,
        blocksCached: r.blocksCached,
        bytes: r.pull?.bytes ?? 0,
        uncoalesced: r.pull?.descriptors.uncoalesced ?? 0,
        posted: r.pull?.descriptors.posted ?? 0,
        transferMs: r.pull?.timings.transferMs ?? 0,
        transport: r.pull?.transport ?? 'none',
        ...(r.reason ? { reason: `${r.reason.code}: ${r.reason.message}` } : {}),
      } satisfies DecodeSummary;
    }
    case 'drain': {
      const transports = [...new Set(e.agents.flatMap((a) => a.peers.map((p) => `${p.transport} (${p.lanes})`)))].join(
        ', ',
      );
      if (e.decode) {
        e.decode.drain();
        return { free: e.decode.pool.free, total: e.decode.pool.total, leases: 0, transports } satisfies DrainSummary;
      }
      const p = e.prefill!;
      return {
        free: p.pool.free,
        total: p.pool.total,
        leases: p.coordinator.leases,
        transports,
      } satisfies DrainSummary;
    }
    case 'close':
      await e.decode?.close();
      await e.prefill?.close();
      for (const a of e.agents) await a.close();
      return {};
    default:
      throw new Error(`unknown op ${(m as { op: string }).op}`);
  }
}

/** Serves the demo worker protocol on this process's IPC channel (call once, in a forked child). */
export function serveDemoWorker(): void {
  if (process.send === undefined)
    throw new Error('the demo worker must be started with child_process.fork (it talks over IPC)');
  const engines: Engines = { agents: [] };
  const reply = (msg: FromWorker) => process.send!(msg);
  process.on('message', (m: ToWorker) => {
    handle(m, engines).then(
      (value) => {
        reply({ op: 'result', seq: m.seq, value });
        if (m.op === 'close') process.disconnect();
      },
      (err: unknown) =>
        reply({
          op: 'error',
          seq: m.seq,
          code: err instanceof KvwireError ? err.code : 'ERR_DEMO_WORKER',
          message: (err as Error)?.message ?? String(err),
        }),
    );
  });
  process.on('disconnect', () => {
    // The parent went away: nothing is left to serve.
    setTimeout(() => process.exit(0), 2000).unref();
  });
}

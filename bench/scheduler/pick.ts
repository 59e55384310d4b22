/**
 * Pick latency: how long the scheduler takes to place one 4,096-token prompt among `pods` decode
 * endpoints when the KV block index holds `blocks` blocks, hashing, index lookup, every scorer and
 * the P/D decider included (the whole `Scheduler.schedule()` call), for one backend.
 *
 * The index is shaped like serving traffic: 64 system prompts of a quarter prompt (64 blocks), each
 * cached on 16 pods, and conversations of 192 more blocks each on one of its system prompt's pods,
 * until `blocks` keys are stored. Queries: half returning conversations (their owner holds all 256 blocks), half new ones
 * on a known system prompt (16 pods hold the first 64 blocks). Every returning conversation must go
 * to its owner: the bench counts it.
 *
 * @packageDocumentation
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BlockHasher } from '../../lib/kv-index/hash.js';
import { KvIndex, type KvIndexOptions } from '../../lib/kv-index/kv-index.js';
import { createRegistry } from '../../lib/metrics.js';
import { checkEndpoint } from '../../lib/scheduler/endpoint.js';
import { Scheduler, type CandidateSource } from '../../lib/scheduler/scheduler.js';
import type { Candidate } from '../../lib/scheduler/types.js';
import { mulberry32 } from '../../lib/util/mulberry32.js';

/** Options of {@link benchPick}. */
export interface PickBenchOptions {
  readonly pods: number;
  readonly blocks: number;
  readonly queries: number;
  readonly index: KvIndexOptions;
  /** Called with progress lines. */
  readonly log?: (line: string) => void;
}

/** What {@link benchPick} measured. */
export interface PickBenchResult {
  readonly backend: string;
  readonly pods: number;
  readonly blocks: number;
  readonly keys: number;
  readonly queries: number;
  readonly loadSeconds: number;
  /** `Scheduler.schedule()` latency, µs. */
  readonly pickP50Us: number;
  readonly pickP99Us: number;
  /** `KvIndex.score()` alone over the same candidates, µs (for context). */
  readonly scoreP50Us: number;
  readonly scoreP99Us: number;
  /**
   * The machine's own noise, measured between the queries: a busy loop of {@link SPIN_US} µs timed
   * like a query. Its p99 far above its length means the process was preempted (a shared machine).
   */
  readonly spinP50Us: number;
  readonly spinP99Us: number;
  /** Garbage collections during the queries, and the longest pause, ms (to tell GC from a busy machine in p99). */
  readonly gcCount: number;
  readonly gcMaxMs: number;
  /** Returning conversations sent to the pod that holds them, of all returning ones. */
  readonly ownerHits: number;
  readonly returning: number;
}

/** Length of the busy loop that measures the machine's noise, µs (about a pick's median). */
export const SPIN_US = 300;

const PROMPT_BLOCKS = 256;
const SHARED_BLOCKS = 64;
const GROUPS = 64;
const GROUP_PODS = 16;
const BS = 16;

/** Token ids of block `b` of stream `s` (distinct streams never share a block). */
function blockTokens(out: Uint32Array, at: number, stream: number, b: number): void {
  for (let t = 0; t < BS; t++) out[at + t] = (stream * 7_919 + b * 104_729 + t * 31) >>> 0;
}

function promptOf(group: number, conv: number | undefined): Uint32Array {
  const p = new Uint32Array(PROMPT_BLOCKS * BS);
  for (let b = 0; b < SHARED_BLOCKS; b++) blockTokens(p, b * BS, group, b);
  // A new conversation gets a stream nobody stored (negative ids map far away).
  const stream = conv === undefined ? 1_000_000_000 + Math.floor(Math.random() * 1e6) : 1_000_000 + conv;
  for (let b = SHARED_BLOCKS; b < PROMPT_BLOCKS; b++) blockTokens(p, b * BS, stream, b);
  return p;
}

const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;

/** Runs the pick benchmark (see the module documentation). */
export async function benchPick(o: PickBenchOptions): Promise<PickBenchResult> {
  const log = o.log ?? (() => {});
  const registry = createRegistry();
  const index = await KvIndex.create({ registry, maxKeys: Math.ceil(o.blocks * 1.2) + 1_000, ...o.index });
  try {
    const hasher = new BlockHasher();
    const pods = Array.from({ length: o.pods }, (_, i) => `pod-${i}`);
    const t0 = performance.now();
    // System prompts on GROUP_PODS pods each.
    for (let g = 0; g < GROUPS; g++) {
      const keys = hasher.keys(promptOf(g, 0).subarray(0, SHARED_BLOCKS * BS));
      for (let k = 0; k < GROUP_PODS; k++) await index.stored(pods[(g * 37 + k * 61) % o.pods]!, keys);
      // (the same pods as groupPod below)
    }
    const convs = Math.max(1, Math.floor((o.blocks - GROUPS * SHARED_BLOCKS) / (PROMPT_BLOCKS - SHARED_BLOCKS)));
    const group = (c: number): number => c % GROUPS;
    const groupPod = (g: number, k: number): string => pods[(g * 37 + k * 61) % o.pods]!;
    // A conversation stays on a pod that holds its system prompt (as prefix-aware routing makes it).
    const owner = (c: number): string => groupPod(group(c), Math.floor(c / GROUPS) % GROUP_PODS);
    const batch: Promise<unknown>[] = [];
    for (let c = 0; c < convs; c++) {
      batch.push(index.stored(owner(c), hasher.keys(promptOf(group(c), c))));
      if (batch.length >= 64) await Promise.all(batch.splice(0));
      if (c % 10_000 === 0 && c > 0) log(`  ${o.index.backend ?? 'memory'}: ${((c / convs) * 100).toFixed(0)}% loaded`);
    }
    await Promise.all(batch);
    const loadSeconds = (performance.now() - t0) / 1000;
    const keys = (await index.stats()).keys;
    log(
      `  ${o.index.backend ?? 'memory'}: ${keys.toLocaleString('en-US')} keys over ${o.pods} pods in ${loadSeconds.toFixed(1)} s`,
    );

    // Measure the steady state, not the load's garbage.
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
    const rnd = mulberry32(42);
    const candidates: Candidate[] = pods.map((name, i) => ({
      spec: checkEndpoint(
        { name, role: 'decode', url: `http://10.${(i >> 8) & 255}.${i & 255}.1:8000`, models: ['m'] },
        name,
      ),
      healthy: true,
      load: {
        waiting: Math.floor(rnd() * 8),
        running: Math.floor(rnd() * 32),
        kvUsage: rnd(),
        at: Date.now() + 3_600_000,
        source: 'reported',
      },
      inflight: 0,
    }));
    const source: CandidateSource = { candidates: (role) => (role === 'decode' ? candidates : []) };
    const scheduler = new Scheduler({ index, endpoints: source, registry, pdThreshold: 256 });
    const picks: number[] = [];
    const scores: number[] = [];
    const spins: number[] = [];
    let ownerHits = 0,
      returning = 0;
    const names = pods;
    const warm = Math.min(200, o.queries);
    const gcs: number[] = [];
    const gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcs.push(e.duration);
    });
    for (let q = 0; q < o.queries + warm; q++) {
      const back = q % 2 === 0;
      const c = Math.floor(rnd() * convs);
      const prompt = promptOf(group(c), back ? c : undefined);
      const a = performance.now();
      const d = await scheduler.schedule({ model: 'm', tokens: prompt, headers: {} });
      const b = performance.now();
      await index.score(prompt, names);
      const e = performance.now();
      while (performance.now() - e < SPIN_US / 1000) {
        // spin: the noise baseline
      }
      const f = performance.now();
      if (q === warm - 1) gcObserver.observe({ entryTypes: ['gc'] });
      if (q < warm) continue;
      picks.push((b - a) * 1000);
      scores.push((e - b) * 1000);
      spins.push((f - e) * 1000);
      if (back) {
        returning++;
        if (d.decode.name === owner(c)) ownerHits++;
      }
    }
    await new Promise((r) => setImmediate(r)); // observer entries are delivered asynchronously
    gcObserver.disconnect();
    picks.sort((x, y) => x - y);
    scores.sort((x, y) => x - y);
    spins.sort((x, y) => x - y);
    const r1 = (x: number): number => Math.round(x * 10) / 10;
    return {
      backend: index.backend,
      pods: o.pods,
      blocks: o.blocks,
      keys,
      queries: o.queries,
      loadSeconds: r1(loadSeconds),
      pickP50Us: r1(pct(picks, 0.5)),
      pickP99Us: r1(pct(picks, 0.99)),
      scoreP50Us: r1(pct(scores, 0.5)),
      scoreP99Us: r1(pct(scores, 0.99)),
      spinP50Us: r1(pct(spins, 0.5)),
      spinP99Us: r1(pct(spins, 0.99)),
      gcCount: gcs.length,
      gcMaxMs: r1(Math.max(0, ...gcs)),
      ownerHits,
      returning,
    };
  } finally {
    await index.close();
  }
}

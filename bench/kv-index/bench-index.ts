/**
 * `kvwire bench-index`: how fast the KV block index scores a prompt, and what a key costs in memory,
 * for both backends, against a plain `Map` of the same keys measured in the same run.
 *
 * The index holds `--blocks` distinct block keys (default 1,000,000) over `--workers` workers
 * (default 16), shaped like serving traffic: a few system prompts (a quarter of a prompt each,
 * replicated on 4 workers) followed by per-conversation blocks on one worker. Queries are 4,096-token
 * prompts (256 blocks): half a returning conversation (a full hit), half a new one on a known system
 * prompt (a partial hit). Score latency includes hashing the prompt. Memory per key: heap + external
 * deltas of `process.memoryUsage()` around the load, after full GCs (for the index and the Map);
 * `INFO memory` used_memory delta (for Redis). Every query's scores are checked against the Map's.
 *
 * @packageDocumentation
 */
import { cpus } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { InvalidArgumentError, type Command } from 'commander';
import { Redis } from 'ioredis';
import { kvwireCommand, runCommand, UsageError } from '../../cli/kit/command.js';
import { integer, list } from '../../cli/kit/values.js';
import { BlockHasher } from '../../lib/kv-index/hash.js';
import { KvIndex } from '../../lib/kv-index/kv-index.js';
import { startRedisServer, type RedisServerHandle } from '../../tools/redis-server.js';
import { createRegistry } from '../../lib/metrics.js';
import { mulberry32 } from '../../lib/util/mulberry32.js';
import { summarize } from '../stats.js';

/** Latency summary in microseconds. */
interface Latency {
  readonly medianUs: number;
  readonly p99Us: number;
}

/** Median and p99 (nearest rank, bench/stats.ts) of samples in ns, in µs. */
function latency(samplesNs: number[]): Latency {
  const d = summarize(samplesNs);
  return { medianUs: round(d.p50 / 1000), p99Us: round(d.p99 / 1000) };
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

/** The synthetic data set (see the module documentation); prompts are regenerated on demand. */
class DataSet {
  readonly groups: number;
  readonly sharedBlocks: number;
  readonly ownBlocks: number;
  readonly conversations: number;
  private readonly lastOwnBlocks: number;

  constructor(
    readonly blocks: number,
    readonly workers: number,
    readonly promptBlocks: number,
    readonly blockSize: number,
  ) {
    this.sharedBlocks = Math.max(1, Math.floor(promptBlocks / 4));
    this.ownBlocks = promptBlocks - this.sharedBlocks;
    this.groups = Math.max(1, Math.min(64, Math.floor(blocks / (this.sharedBlocks * 16))));
    const rest = blocks - this.groups * this.sharedBlocks;
    if (rest <= 0 || this.ownBlocks <= 0) {
      throw new UsageError(
        `--blocks ${blocks} is too small for ${promptBlocks}-block prompts: use at least ${this.groups * this.sharedBlocks + 1}`,
      );
    }
    this.conversations = Math.ceil(rest / this.ownBlocks);
    this.lastOwnBlocks = rest - (this.conversations - 1) * this.ownBlocks;
  }

  private fill(out: Uint32Array, from: number, count: number, seed: number): void {
    const r = mulberry32(seed);
    for (let i = 0; i < count * this.blockSize; i++) out[from + i] = Math.floor(r() * 128_000);
  }

  /** Tokens of system prompt `g`. */
  shared(g: number): Uint32Array {
    const t = new Uint32Array(this.sharedBlocks * this.blockSize);
    this.fill(t, 0, this.sharedBlocks, 1_000_003 * (g + 1));
    return t;
  }

  /** Group, worker and tokens of conversation `c` (`fresh`: an unseen one on the same system prompt). */
  conversation(c: number, fresh = false): { group: number; worker: string; tokens: Uint32Array; ownBlocks: number } {
    const group = c % this.groups;
    const own = !fresh && c === this.conversations - 1 ? this.lastOwnBlocks : this.ownBlocks;
    const t = new Uint32Array((this.sharedBlocks + own) * this.blockSize);
    t.set(this.shared(group));
    this.fill(t, this.sharedBlocks * this.blockSize, own, fresh ? 7_777_777 + c : 2_000_029 * (c + 1));
    return { group, worker: `decode-${Math.floor(mulberry32(c + 17)() * this.workers)}`, tokens: t, ownBlocks: own };
  }

  /** The 4 workers holding system prompt `g`. */
  sharedHolders(g: number): string[] {
    return [0, 1, 2, 3].map((i) => `decode-${(g * 5 + i * 3) % this.workers}`);
  }

  /** Query `q`: a returning conversation (even q) or a new one (odd q). */
  query(q: number): Uint32Array {
    const c = Math.floor(mulberry32(q + 99)() * this.conversations);
    return this.conversation(c, q % 2 === 1).tokens;
  }
}

type Gc = () => void;

function exposeGc(): Gc | undefined {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as Gc;
  } catch {
    return undefined;
  }
}

function heapBytes(gc: Gc | undefined): number {
  if (gc !== undefined) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** The baseline: a plain Map from key to the workers holding it, scored by the obvious loop. */
function mapScore(map: Map<string, string[]>, keys: string[]): Map<string, number> {
  const out = new Map<string, number>();
  let active: string[] | undefined;
  for (let i = 0; i < keys.length; i++) {
    const hs = map.get(keys[i]!);
    if (hs === undefined) break;
    active = active === undefined ? hs.slice() : active.filter((w) => hs.includes(w));
    if (active.length === 0) break;
    for (const w of active) out.set(w, i + 1);
  }
  return out;
}

function sameScores(a: Map<string, number>, b: Map<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [w, s] of a) if (b.get(w) !== s) return false;
  return true;
}

async function load(index: KvIndex, data: DataSet, concurrency: number): Promise<number> {
  const t0 = performance.now();
  const inflight: Promise<unknown>[] = [];
  const push = async (p: Promise<unknown>): Promise<void> => {
    inflight.push(p);
    if (inflight.length >= concurrency) await Promise.all(inflight.splice(0));
  };
  for (let g = 0; g < data.groups; g++) {
    const keys = index.blockKeys(data.shared(g));
    for (const w of data.sharedHolders(g)) await push(index.stored(w, keys));
  }
  for (let c = 0; c < data.conversations; c++) {
    const conv = data.conversation(c);
    await push(index.stored(conv.worker, index.blockKeys(conv.tokens).slice(data.sharedBlocks)));
  }
  await Promise.all(inflight);
  return (performance.now() - t0) / 1000;
}

function loadMap(data: DataSet, hasher: BlockHasher): Map<string, string[]> {
  const map = new Map<string, string[]>();
  const add = (k: string, w: string): void => {
    const hs = map.get(k);
    if (hs === undefined) map.set(k, [w]);
    else if (!hs.includes(w)) hs.push(w);
  };
  for (let g = 0; g < data.groups; g++) {
    const keys = hasher.keys(data.shared(g));
    for (const w of data.sharedHolders(g)) for (const k of keys) add(k, w);
  }
  for (let c = 0; c < data.conversations; c++) {
    const conv = data.conversation(c);
    for (const k of hasher.keys(conv.tokens).slice(data.sharedBlocks)) add(k, conv.worker);
  }
  return map;
}

const num = (x: number): string => x.toLocaleString('en-US', { maximumFractionDigits: 1 });

/** What `kvwire bench-index`'s flags parse to. */
interface IndexBenchFlags {
  blocks: number;
  workers: number;
  promptTokens: number;
  blockSize: number;
  queries: number;
  redisQueries: number;
  backends: string[];
  redisUrl?: string;
  json?: boolean;
}

function backendList(text: string): string[] {
  const items = list(text);
  if (items.some((b) => b !== 'memory' && b !== 'redis'))
    throw new InvalidArgumentError('must be memory, redis or memory,redis');
  return items;
}

/**
 * Declares `kvwire bench-index`: it prints a table (or JSON with `--json`) and exits 0, 1 when a
 * score differed from the Map baseline, 2 on bad arguments or a missing Redis.
 */
export function command(): Command {
  const positive = integer(1);
  return kvwireCommand('bench-index')
    .addHelpText(
      'after',
      `
Scores prompts against an index of N blocks (default 1,000,000 over 16 workers) in memory and in
Redis (a throwaway redis-server unless --redis-url), against a plain Map of the same keys.`,
    )
    .option('--blocks <n>', 'distinct block keys in the index', positive, 1_000_000)
    .option('--workers <n>', 'workers holding them', positive, 16)
    .option('--prompt-tokens <n>', 'tokens per query prompt', positive, 4096)
    .option('--block-size <n>', 'tokens per block', positive, 16)
    .option('--queries <n>', 'queries against the in-memory index', positive, 2000)
    .option('--redis-queries <n>', 'queries against the Redis index', positive, 1000)
    .option('--backends <list>', 'memory, redis or memory,redis', backendList, ['memory', 'redis'])
    .option('--redis-url <url>', 'an existing Redis to use (default: start a throwaway redis-server)')
    .option('--json', 'print the report as JSON')
    .run(async (f: IndexBenchFlags) => {
      return run(f, new DataSet(f.blocks, f.workers, Math.floor(f.promptTokens / f.blockSize), f.blockSize));
    });
}

/** Runs `kvwire bench-index` with `argv` (the arguments after its name); returns the exit code. */
export function main(argv: string[]): Promise<number> {
  return runCommand(command(), argv);
}

async function run(f: IndexBenchFlags, data: DataSet): Promise<number> {
  const { blocks, workers, promptTokens, blockSize, queries, redisQueries, backends } = f;
  const gc = exposeGc();
  const hasher = new BlockHasher({ blockSize });
  const report: Record<string, unknown> = {
    config: {
      blocks,
      workers,
      promptTokens,
      blockSize,
      promptBlocks: data.promptBlocks,
      queries,
      redisQueries,
      systemPrompts: data.groups,
      conversations: data.conversations,
      node: process.version,
      cpus: cpus().length,
      memoryMethod:
        gc === undefined
          ? 'process.memoryUsage() heapUsed+external deltas (no gc available: approximate)'
          : 'process.memoryUsage() heapUsed+external deltas after full GCs',
      redisMemoryMethod: 'INFO memory used_memory delta',
    },
  };
  let mismatches = 0;
  const hashNs: number[] = [];
  for (let q = -200; q < Math.min(queries, 1000); q++) {
    const t = data.query(Math.abs(q));
    const t0 = process.hrtime.bigint();
    hasher.keyList(t);
    if (q >= 0) hashNs.push(Number(process.hrtime.bigint() - t0));
  }
  report.hash = latency(hashNs);

  // The Map baseline: built first, and always (every backend's scores are checked against it).
  const m0 = heapBytes(gc);
  const map = loadMap(data, hasher);
  const mapBytes = heapBytes(gc) - m0;
  let checked = 0;
  if (backends.includes('memory')) {
    const i0 = heapBytes(gc);
    const index = await KvIndex.create({
      registry: createRegistry(),
      blockSize,
      maxKeys: blocks,
      maxWorkersPerKey: Math.min(255, workers),
    });
    const loadSeconds = await load(index, data, 1);
    const indexBytes = heapBytes(gc) - i0;
    const keys = (await index.stats()).keys;
    const ixNs: number[] = [],
      mapNs: number[] = [];
    for (let q = -200; q < queries; q++) {
      const t = data.query(Math.abs(q));
      const a0 = process.hrtime.bigint();
      const got = await index.score(t);
      const a1 = process.hrtime.bigint();
      const want = mapScore(map, hasher.keys(t));
      const a2 = process.hrtime.bigint();
      if (q < 0) continue; // warm-up
      ixNs.push(Number(a1 - a0));
      mapNs.push(Number(a2 - a1));
      checked++;
      if (!sameScores(got, want)) mismatches++;
    }
    const ix = latency(ixNs),
      base = latency(mapNs);
    report.memory = {
      keys,
      loadSeconds: round(loadSeconds, 2),
      bytesPerKey: round(indexBytes / keys),
      mibPerMillionKeys: round(((indexBytes / keys) * 1e6) / 2 ** 20),
      score: ix,
    };
    report.map = {
      keys: map.size,
      bytesPerKey: round(mapBytes / map.size),
      mibPerMillionKeys: round(((mapBytes / map.size) * 1e6) / 2 ** 20),
      score: base,
    };
    report.ratios = {
      scoreMedian: round(ix.medianUs / base.medianUs, 2),
      scoreP99: round(ix.p99Us / base.p99Us, 2),
      bytesPerKey: round(indexBytes / keys / (mapBytes / map.size), 2),
      note: 'KvIndex (memory) / plain Map; below 1 is better',
    };
    await index.close();
  }

  if (backends.includes('redis')) {
    let server: RedisServerHandle | undefined;
    let probe: Redis | undefined;
    try {
      const url = f.redisUrl ?? (server = await startRedisServer()).url;
      const prefix = `bench-${process.pid}-${Date.now()}:`;
      const index = await KvIndex.create({
        backend: 'redis',
        registry: createRegistry(),
        blockSize,
        maxKeys: blocks,
        maxWorkersPerKey: Math.min(255, workers),
        redis: { url, prefix, commandTimeoutMs: 30_000 },
      });
      const p = (probe = new Redis(url, { lazyConnect: true, commandTimeout: 30_000, maxRetriesPerRequest: 0 }));
      const usedMemory = async (): Promise<number> =>
        Number(/used_memory:(\d+)/.exec(await p.info('memory'))?.[1] ?? NaN);
      await p.connect();
      const u0 = await usedMemory();
      const loadSeconds = await load(index, data, 32);
      const used = (await usedMemory()) - u0;
      const keys = (await index.stats()).keys;
      const ns: number[] = [];
      for (let q = -50; q < redisQueries; q++) {
        const t = data.query(Math.abs(q));
        const t0 = process.hrtime.bigint();
        const got = await index.score(t);
        if (q >= 0) ns.push(Number(process.hrtime.bigint() - t0));
        if (q < 0) continue;
        checked++;
        if (!sameScores(got, mapScore(map, hasher.keys(t)))) mismatches++;
      }
      report.redis = {
        keys,
        loadSeconds: round(loadSeconds, 2),
        bytesPerKey: round(used / keys),
        mibPerMillionKeys: round(((used / keys) * 1e6) / 2 ** 20),
        score: latency(ns),
      };
      await index.close();
    } catch (e) {
      process.stderr.write(
        `kvwire bench-index: the Redis backend could not run: ${(e as Error).message}\n(pass --backends memory to skip it)\n`,
      );
      return 2;
    } finally {
      probe?.disconnect();
      await server?.stop();
    }
  }
  report.checked = checked;
  report.mismatches = mismatches;

  if (f.json === true) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const r = report as {
      hash: Latency;
      memory?: { score: Latency; mibPerMillionKeys: number; loadSeconds: number };
      map?: { score: Latency; mibPerMillionKeys: number };
      redis?: { score: Latency; mibPerMillionKeys: number; loadSeconds: number };
      ratios?: { scoreMedian: number; scoreP99: number; bytesPerKey: number };
    };
    const row = (name: string, l: Latency, mib?: number, load?: number): string =>
      `${name.padEnd(26)}${`${num(l.medianUs)} µs`.padStart(12)}${`${num(l.p99Us)} µs`.padStart(12)}${(mib === undefined ? '' : `${num(mib)} MiB`).padStart(18)}${(load === undefined ? '' : `${num(load)} s`).padStart(10)}`;
    const lines = [
      `kvwire bench-index: ${num(blocks)} blocks over ${workers} workers; ${num(promptTokens)}-token prompts (${data.promptBlocks} blocks of ${blockSize}); ${num(queries)} queries (${num(redisQueries)} on Redis)`,
      `${''.padEnd(26)}${'score p50'.padStart(12)}${'score p99'.padStart(12)}${'per 1M keys'.padStart(18)}${'load'.padStart(10)}`,
      row(`hash only (${data.promptBlocks} blocks)`, r.hash),
    ];
    if (r.memory && r.map)
      lines.push(
        row('KvIndex, memory', r.memory.score, r.memory.mibPerMillionKeys, r.memory.loadSeconds),
        row('plain Map (baseline)', r.map.score, r.map.mibPerMillionKeys),
      );
    if (r.redis) lines.push(row('KvIndex, redis', r.redis.score, r.redis.mibPerMillionKeys, r.redis.loadSeconds));
    if (r.ratios)
      lines.push(
        `KvIndex (memory) / Map: score p50 ${r.ratios.scoreMedian}x, p99 ${r.ratios.scoreP99}x, bytes per key ${r.ratios.bytesPerKey}x`,
      );
    lines.push(
      `score latency includes hashing the prompt; memory: ${(report.config as { memoryMethod: string }).memoryMethod}; Redis: INFO used_memory delta`,
    );
    lines.push(
      mismatches === 0
        ? `all ${num(checked)} scores matched the Map baseline`
        : `${mismatches} of ${num(checked)} scores differed from the Map baseline`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return mismatches === 0 ? 0 : 1;
}

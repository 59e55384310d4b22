/**
 * `kvwire bench-router`: the scheduler's speed (not a test; numbers for bench/RESULTS-scheduler.md).
 *
 * - **pick**: `Scheduler.schedule()` latency p50/p99 for 4,096-token prompts among `--pods` decode
 *   endpoints with `--blocks` blocks indexed, per backend (memory; Redis and Redis Cluster, started
 *   here as throwaway `redis-server` processes, with `--redis-blocks`), and the index's `score()`
 *   alone for reference (see `pick.ts`);
 * - **ingest**: KV block events per second from a ZMQ publisher process into the index (`ingest.ts`);
 * - **routing** (`--routing`, needs `kvwire engine`): prefix cache hit rate and time to first token
 *   of prefix-aware routing against round-robin through real engines (`routing.ts`).
 *
 * Runs are interleaved (`--rounds`) and each figure is the median over rounds, so a busy shared
 * machine hurts all of them alike.
 *
 * @packageDocumentation
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { Option } from 'commander';
import { checkOutputFile } from '../../cli/kit/checks.js';
import { kvwireCommand, type KvwireCommand } from '../../cli/kit/command.js';
import { integer, list } from '../../cli/kit/values.js';
import type { KvIndexOptions } from '../../lib/kv-index/kv-index.js';
import { startRedisCluster } from '../../tools/redis-cluster.js';
import { startRedisServer } from '../../tools/redis-server.js';
import { benchIngest, type IngestBenchResult } from './ingest.js';
import { benchPick, type PickBenchResult } from './pick.js';
import { runRouting, startEngineProcess, type EngineHandle, type RoutingRunResult } from './routing.js';

function routingMarkdown(rs: RoutingRunResult[], f: Flags): string {
  const by = (m: RoutingRunResult['mode']): RoutingRunResult[] => rs.filter((r) => r.mode === m);
  const row = (m: RoutingRunResult['mode']): { hit: number; p50: number; p99: number; line: string } => {
    const runs = by(m);
    const prompt = runs.reduce((a, r) => a + r.promptTokens, 0);
    const cachedT = runs.reduce((a, r) => a + r.cachedTokens, 0);
    const hit = prompt === 0 ? 0 : cachedT / prompt;
    const p50 = median(runs.map((r) => r.ttftP50Ms));
    const p99 = median(runs.map((r) => r.ttftP99Ms));
    const failed = runs.reduce((a, r) => a + r.failed, 0);
    const spread = runs.map((r) => Object.values(r.spread).join('/')).join(', ');
    return {
      hit,
      p50,
      p99,
      line: `| ${m} | ${runs.length} × ${f.routingRequests} | ${failed} | ${(hit * 100).toFixed(1)}% | ${p50} | ${p99} | ${spread} |`,
    };
  };
  const pa = row('prefix-aware');
  const rr = row('round-robin');
  return [
    `## Prefix-aware routing against round-robin, through ${f.engines} \`kvwire engine\` workers (--model ${f.engineModel}, --num-blocks ${f.engineBlocks})`,
    '',
    `Workload: ${f.systems} system prompts of ${f.systemWords} words, ${f.routingRequests} short questions on them per run (system prompt drawn at random), ${f.concurrency} at a time, streamed; runs alternate between the modes, each on fresh system prompts.`,
    '',
    '| routing | runs × requests | failed | prefix cache hit rate | TTFT p50 ms | TTFT p99 ms | requests per worker |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    pa.line,
    rr.line,
    '',
    `Prefix-aware / round-robin: hit rate ${(rr.hit === 0 ? Infinity : pa.hit / rr.hit).toFixed(2)}×, TTFT p50 ${(pa.p50 / rr.p50).toFixed(2)}×, TTFT p99 ${(pa.p99 / rr.p99).toFixed(2)}× (below 1: faster).`,
    '',
  ].join('\n');
}

interface Flags {
  pods: number;
  blocks: number;
  redisBlocks: number;
  queries: number;
  backends: string[];
  ingestBatches: number;
  rounds: number;
  json?: boolean;
  markdown?: string;
  parts: string[];
  engines: number;
  engineModel: string;
  engineBlocks: number;
  systems: number;
  systemWords: number;
  routingRequests: number;
  concurrency: number;
}

/** The median (the mean of the middle two for an even count). */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : Math.round(((s[m - 1]! + s[m]!) / 2) * 10) / 10;
}

function medianPick(rs: PickBenchResult[]): PickBenchResult {
  return {
    ...rs[0]!,
    pickP50Us: median(rs.map((r) => r.pickP50Us)),
    pickP99Us: median(rs.map((r) => r.pickP99Us)),
    scoreP50Us: median(rs.map((r) => r.scoreP50Us)),
    scoreP99Us: median(rs.map((r) => r.scoreP99Us)),
    ownerHits: rs.reduce((a, r) => a + r.ownerHits, 0),
    spinP50Us: median(rs.map((r) => r.spinP50Us)),
    spinP99Us: median(rs.map((r) => r.spinP99Us)),
    gcCount: rs.reduce((a, r) => a + r.gcCount, 0),
    gcMaxMs: Math.max(...rs.map((r) => r.gcMaxMs)),
    returning: rs.reduce((a, r) => a + r.returning, 0),
    loadSeconds: median(rs.map((r) => r.loadSeconds)),
  };
}

function markdown(picks: PickBenchResult[], ingests: IngestBenchResult[], f: Flags, load: number[]): string {
  const rows = picks.map(
    (p) =>
      `| ${p.backend} | ${p.pods.toLocaleString('en-US')} | ${p.keys.toLocaleString('en-US')} | ${p.pickP50Us} | ${p.pickP99Us} | ${p.scoreP50Us} | ${p.scoreP99Us} | ${p.ownerHits}/${p.returning} | ${p.gcCount} / ${p.gcMaxMs} | ${p.spinP50Us} / ${p.spinP99Us} | ${p.loadSeconds} |`,
  );
  const ing = ingests.map(
    (r) =>
      `| ${r.backend} | ${r.blockEvents.toLocaleString('en-US')} | ${r.seconds} | ${r.blockEventsPerSecond.toLocaleString('en-US')} | ${r.replayed} | ${r.gapsSkipped} |`,
  );
  return [
    '# Scheduler benchmark (`kvwire bench-router`)',
    '',
    `Command: \`kvwire bench-router --pods ${f.pods} --blocks ${f.blocks} --redis-blocks ${f.redisBlocks} --queries ${f.queries} --backends ${f.backends.join(',')} --ingest-batches ${f.ingestBatches} --rounds ${f.rounds} --parts ${f.parts.join(',')}${f.parts.includes('routing') ? ` --engines ${f.engines} --engine-model ${f.engineModel} --engine-blocks ${f.engineBlocks} --systems ${f.systems} --system-words ${f.systemWords} --routing-requests ${f.routingRequests} --concurrency ${f.concurrency}` : ''}\``,
    `Machine: shared with other agents' builds and tests (load average ${load.map((x) => x.toFixed(1)).join(' / ')} at the end); medians over ${f.rounds} interleaved rounds.`,
    '',
    ...(picks.length === 0
      ? []
      : [
          '## Pick latency, 4,096-token prompts (256 blocks)',
          '',
          '`schedule` is the whole decision (hashing, index lookup, four scorers over every pod, P/D decider); `score` the index lookup alone. Owner hits: returning conversations sent to the pod that holds them. GCs: collections during the queries and the longest pause. Noise: a 300 µs busy loop timed between the queries, the same way; its p99 is what the machine adds (preemption by other processes), not the scheduler.',
          '',
          '| backend | pods | blocks indexed | schedule p50 µs | schedule p99 µs | score p50 µs | score p99 µs | owner hits | GCs / longest ms | noise: 300 µs spin p50 / p99 µs | load s |',
          '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
          ...rows,
          '',
        ]),
    ...(ingests.length === 0
      ? []
      : [
          '## KV event ingestion (ZMQ, vLLM format, from a publisher process)',
          '',
          '| backend | block events | seconds | block events / s | replayed | gaps skipped |',
          '| --- | ---: | ---: | ---: | ---: | ---: |',
          ...ing,
          '',
        ]),
  ].join('\n');
}

/** Declares `kvwire bench-router`. */
export function command(): KvwireCommand {
  return kvwireCommand('bench-router')
    .addOption(
      new Option('--pods <n>', 'decode endpoints to choose among').argParser(integer(2, 100_000)).default(1_000),
    )
    .addOption(
      new Option('--blocks <n>', 'blocks indexed (memory backend)')
        .argParser(integer(10_000, 100_000_000))
        .default(10_000_000),
    )
    .addOption(
      new Option('--redis-blocks <n>', 'blocks indexed on Redis and Redis Cluster')
        .argParser(integer(10_000, 100_000_000))
        .default(1_000_000),
    )
    .addOption(
      new Option('--queries <n>', 'prompts placed per backend and round')
        .argParser(integer(10, 1_000_000))
        .default(2_000),
    )
    .addOption(
      new Option('--backends <list>', 'memory, redis, redis-cluster')
        .argParser(list)
        .default(['memory', 'redis', 'redis-cluster']),
    )
    .addOption(
      new Option('--ingest-batches <n>', 'event batches of 256 blocks to ingest (0: skip)')
        .argParser(integer(0, 1_000_000))
        .default(2_000),
    )
    .addOption(new Option('--rounds <n>', 'interleaved rounds (medians reported)').argParser(integer(1, 20)).default(3))
    .addOption(
      new Option(
        '--parts <list>',
        'what to run: pick, ingest, routing (routing: prefix-aware against round-robin through kvwire engine workers)',
      )
        .argParser(list)
        .default(['pick', 'ingest']),
    )
    .addOption(new Option('--engines <n>', 'engine workers for --routing').argParser(integer(2, 16)).default(2))
    .addOption(new Option('--engine-model <name>', 'their generated model').default('small'))
    .addOption(
      new Option(
        '--engine-blocks <n>',
        'KV blocks per engine (less than every system prompt needs: caches must choose)',
      )
        .argParser(integer(16, 1_000_000))
        .default(160),
    )
    .addOption(new Option('--systems <n>', 'system prompts').argParser(integer(1, 1000)).default(8))
    .addOption(new Option('--system-words <n>', 'words per system prompt').argParser(integer(1, 10_000)).default(60))
    .addOption(new Option('--routing-requests <n>', 'requests per run').argParser(integer(1, 100_000)).default(48))
    .addOption(new Option('--concurrency <n>', 'requests at a time').argParser(integer(1, 256)).default(4))
    .option('--json', 'print the results as JSON')
    .option('--markdown <file>', 'write the results as Markdown')
    .run(async (f: Flags) => {
      if (f.markdown !== undefined) checkOutputFile('--markdown', f.markdown);
      const log = (l: string): void => void process.stderr.write(`${l}\n`);
      const redis = f.parts.includes('pick') && f.backends.includes('redis') ? await startRedisServer() : undefined;
      const cluster =
        f.parts.includes('pick') && f.backends.includes('redis-cluster')
          ? await startRedisCluster({ masters: 3 })
          : undefined;
      try {
        const picks = new Map<string, PickBenchResult[]>();
        const ingests: IngestBenchResult[] = [];
        let n = 0;
        for (let round = 0; round < f.rounds; round++) {
          for (const backend of f.parts.includes('pick') ? f.backends : []) {
            const index: KvIndexOptions =
              backend === 'redis'
                ? { backend: 'redis', redis: { url: redis!.url, prefix: `bench${n++}:`, commandTimeoutMs: 60_000 } }
                : backend === 'redis-cluster'
                  ? {
                      backend: 'redis-cluster',
                      redis: { nodes: cluster!.nodes, prefix: `{bench${n++}}:`, commandTimeoutMs: 60_000 },
                    }
                  : {};
            const blocks = backend === 'memory' ? f.blocks : f.redisBlocks;
            log(
              `round ${round + 1}/${f.rounds}: pick, ${backend}, ${blocks.toLocaleString('en-US')} blocks, ${f.pods} pods`,
            );
            const r = await benchPick({ pods: f.pods, blocks, queries: f.queries, index, log });
            log(
              `  schedule p50 ${r.pickP50Us} µs, p99 ${r.pickP99Us} µs; score p50 ${r.scoreP50Us} µs; owner hits ${r.ownerHits}/${r.returning}; ${r.gcCount} GCs, longest ${r.gcMaxMs} ms`,
            );
            picks.set(backend, [...(picks.get(backend) ?? []), r]);
            if (redis !== undefined && backend === 'redis') {
              const { Redis } = await import('ioredis');
              const c = new Redis(redis.url);
              await c.flushall();
              c.disconnect();
            }
          }
          if (f.ingestBatches > 0 && f.parts.includes('ingest')) {
            log(`round ${round + 1}/${f.rounds}: ingest, ${f.ingestBatches} batches`);
            const r = await benchIngest({ batches: f.ingestBatches, index: {} });
            log(`  ${r.blockEventsPerSecond.toLocaleString('en-US')} block events/s`);
            ingests.push(r);
          }
        }
        const routing: RoutingRunResult[] = [];
        if (f.parts.includes('routing')) {
          const engines: EngineHandle[] = [];
          try {
            for (let i = 0; i < f.engines; i++)
              engines.push(await startEngineProcess(`decode-${i}`, f.engineModel, f.engineBlocks));
            for (let round = 0; round < f.rounds; round++) {
              const order =
                round % 2 === 0
                  ? (['prefix-aware', 'round-robin'] as const)
                  : (['round-robin', 'prefix-aware'] as const);
              for (const mode of order) {
                log(`round ${round + 1}/${f.rounds}: routing, ${mode}`);
                const r = await runRouting({
                  engines,
                  mode,
                  systems: f.systems,
                  systemWords: f.systemWords,
                  requests: f.routingRequests,
                  concurrency: f.concurrency,
                  maxTokens: 8,
                  salt: 1000 + routing.length,
                });
                log(
                  `  hit rate ${(r.hitRate * 100).toFixed(1)}%, TTFT p50 ${r.ttftP50Ms} ms, p99 ${r.ttftP99Ms} ms, failed ${r.failed}, spread ${JSON.stringify(r.spread)}`,
                );
                routing.push(r);
              }
            }
          } finally {
            for (const e of engines) e.child.kill('SIGTERM');
          }
        }
        const pickRows = [...picks.values()].map(medianPick);
        const ingestRow =
          ingests.length === 0
            ? []
            : [
                {
                  ...ingests[0]!,
                  seconds: median(ingests.map((r) => r.seconds)),
                  blockEventsPerSecond: median(ingests.map((r) => r.blockEventsPerSecond)),
                  replayed: ingests.reduce((a, r) => a + r.replayed, 0),
                  gapsSkipped: ingests.reduce((a, r) => a + r.gapsSkipped, 0),
                },
              ];
        const result = {
          pick: pickRows,
          ingest: ingestRow,
          routing,
          rounds: { pick: Object.fromEntries(picks), ingest: ingests },
          loadavg: loadavg(),
        };
        if (f.json === true) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        const md =
          markdown(pickRows, ingestRow, f, loadavg()) + (routing.length > 0 ? `\n${routingMarkdown(routing, f)}` : '');
        if (f.markdown !== undefined) writeFileSync(f.markdown, md);
        if (f.json !== true) process.stdout.write(md);
        return 0;
      } finally {
        await redis?.stop();
        await cluster?.stop();
      }
    });
}

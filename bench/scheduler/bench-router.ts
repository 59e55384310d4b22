/**
 * `kvwire bench-router`: the scheduler's speed (not a test; numbers for bench/RESULTS-scheduler.md).
 *
 * - **pick**: `Scheduler.schedule()` latency p50/p99 for 4,096-token prompts among `--pods` decode
 *   endpoints with `--blocks` blocks indexed, per backend (memory; Redis and Redis Cluster, started
 *   here as throwaway `redis-server` processes, with `--redis-blocks`), and the index's `score()`
 *   alone for reference (see `pick.ts`);
 * - **ingest**: KV block events per second from a ZMQ publisher process into the index (`ingest.ts`).
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
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

function medianPick(rs: PickBenchResult[]): PickBenchResult {
  return {
    ...rs[0]!,
    pickP50Us: median(rs.map((r) => r.pickP50Us)),
    pickP99Us: median(rs.map((r) => r.pickP99Us)),
    scoreP50Us: median(rs.map((r) => r.scoreP50Us)),
    scoreP99Us: median(rs.map((r) => r.scoreP99Us)),
    ownerHits: rs.reduce((a, r) => a + r.ownerHits, 0),
    gcCount: rs.reduce((a, r) => a + r.gcCount, 0),
    gcMaxMs: Math.max(...rs.map((r) => r.gcMaxMs)),
    returning: rs.reduce((a, r) => a + r.returning, 0),
    loadSeconds: median(rs.map((r) => r.loadSeconds)),
  };
}

function markdown(picks: PickBenchResult[], ingests: IngestBenchResult[], f: Flags, load: number[]): string {
  const rows = picks.map(
    (p) =>
      `| ${p.backend} | ${p.pods.toLocaleString('en-US')} | ${p.keys.toLocaleString('en-US')} | ${p.pickP50Us} | ${p.pickP99Us} | ${p.scoreP50Us} | ${p.scoreP99Us} | ${p.ownerHits}/${p.returning} | ${p.gcCount} / ${p.gcMaxMs} | ${p.loadSeconds} |`,
  );
  const ing = ingests.map(
    (r) =>
      `| ${r.backend} | ${r.blockEvents.toLocaleString('en-US')} | ${r.seconds} | ${r.blockEventsPerSecond.toLocaleString('en-US')} | ${r.replayed} | ${r.gapsSkipped} |`,
  );
  return [
    '# Scheduler benchmark (`kvwire bench-router`)',
    '',
    `Command: \`kvwire bench-router --pods ${f.pods} --blocks ${f.blocks} --redis-blocks ${f.redisBlocks} --queries ${f.queries} --backends ${f.backends.join(',')} --ingest-batches ${f.ingestBatches} --rounds ${f.rounds}\``,
    `Machine: shared with other agents' builds and tests (load average ${load.map((x) => x.toFixed(1)).join(' / ')} at the end); medians over ${f.rounds} interleaved rounds.`,
    '',
    '## Pick latency, 4,096-token prompts (256 blocks)',
    '',
    '`schedule` is the whole decision (hashing, index lookup, four scorers over every pod, P/D decider); `score` the index lookup alone. Owner hits: returning conversations sent to the pod that holds them.',
    '',
    '| backend | pods | blocks indexed | schedule p50 µs | schedule p99 µs | score p50 µs | score p99 µs | owner hits | GCs / longest ms | load s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    '## KV event ingestion (ZMQ, vLLM format, from a publisher process)',
    '',
    '| backend | block events | seconds | block events / s | replayed | gaps skipped |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...ing,
    '',
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
    .option('--json', 'print the results as JSON')
    .option('--markdown <file>', 'write the results as Markdown')
    .run(async (f: Flags) => {
      if (f.markdown !== undefined) checkOutputFile('--markdown', f.markdown);
      const log = (l: string): void => void process.stderr.write(`${l}\n`);
      const redis = f.backends.includes('redis') ? await startRedisServer() : undefined;
      const cluster = f.backends.includes('redis-cluster') ? await startRedisCluster({ masters: 3 }) : undefined;
      try {
        const picks = new Map<string, PickBenchResult[]>();
        const ingests: IngestBenchResult[] = [];
        let n = 0;
        for (let round = 0; round < f.rounds; round++) {
          for (const backend of f.backends) {
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
          if (f.ingestBatches > 0) {
            log(`round ${round + 1}/${f.rounds}: ingest, ${f.ingestBatches} batches`);
            const r = await benchIngest({ batches: f.ingestBatches, index: {} });
            log(`  ${r.blockEventsPerSecond.toLocaleString('en-US')} block events/s`);
            ingests.push(r);
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
          rounds: { pick: Object.fromEntries(picks), ingest: ingests },
          loadavg: loadavg(),
        };
        if (f.json === true) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        const md = markdown(pickRows, ingestRow, f, loadavg());
        if (f.markdown !== undefined) writeFileSync(f.markdown, md);
        if (f.json !== true) process.stdout.write(md);
        return 0;
      } finally {
        await redis?.stop();
        await cluster?.stop();
      }
    });
}

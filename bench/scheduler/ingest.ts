/**
 * KV event ingestion rate: block events per second from an engine's ZMQ publisher into the index,
 * through the whole path (SUB socket, msgpack decode, vLLM event translation with its chained
 * hashing, index apply with sequence checks). The publisher runs in a child process, as an engine
 * would, sending vLLM-shaped batches (map form, 16 BlockStored events of 16 chained blocks each =
 * 256 block events per batch, a 4,096-token prompt's worth) as fast as ZMQ takes them; the rate is
 * blocks applied over the time from the first message received to the last batch applied.
 *
 * @packageDocumentation
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KvIndex, type KvIndexOptions } from '../../lib/kv-index/kv-index.js';
import { KvEventsSubscriber } from '../../lib/kv-index/zmq-subscriber.js';
import { createRegistry } from '../../lib/metrics.js';

/** Options of {@link benchIngest}. */
export interface IngestBenchOptions {
  /** Batches to publish. */
  readonly batches: number;
  readonly index: KvIndexOptions;
}

/** What {@link benchIngest} measured. */
export interface IngestBenchResult {
  readonly backend: string;
  readonly batches: number;
  readonly blockEvents: number;
  readonly seconds: number;
  readonly blockEventsPerSecond: number;
  /** Batches the subscriber had to replay or skip (it should keep up). */
  readonly replayed: number;
  readonly gapsSkipped: number;
}

/** Runs the ingestion benchmark (see the module documentation). */
export async function benchIngest(o: IngestBenchOptions): Promise<IngestBenchResult> {
  const registry = createRegistry();
  const index = await KvIndex.create({ registry, maxKeys: o.batches * 256 + 10_000, ...o.index });
  const sub = new KvEventsSubscriber(index, { registry, replayTimeoutMs: 10_000 });
  const child = fork(fileURLToPath(new URL('./ingest-publisher.js', import.meta.url)), [String(o.batches)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const { endpoint, replay } = await new Promise<{ endpoint: string; replay: string }>((resolve, reject) => {
      child.once('message', (m) => resolve(m as { endpoint: string; replay: string }));
      child.once('exit', (c) => reject(new Error(`the publisher exited with ${String(c)} before binding`)));
    });
    let first = 0;
    let lastAt = 0;
    const done = new Promise<void>((resolve) => {
      sub.on('batch', (_w, seq) => {
        if (first === 0) first = performance.now();
        if (seq === o.batches - 1) {
          lastAt = performance.now();
          resolve();
        }
      });
    });
    sub.add({ worker: 'pod-0', pod: 'pod-0', endpoint, replay });
    // Let the SUB connect before the publisher starts (a late join would be replayed, not measured).
    await new Promise((r) => setTimeout(r, 500));
    child.send('go');
    await done;
    const s = sub.stats('pod-0')!;
    const seconds = (lastAt - first) / 1000;
    const blockEvents = o.batches * 256;
    return {
      backend: index.backend,
      batches: o.batches,
      blockEvents,
      seconds: Math.round(seconds * 1000) / 1000,
      blockEventsPerSecond: Math.round(blockEvents / seconds),
      replayed: s.outcomes.replayed,
      gapsSkipped: s.gapsSkipped,
    };
  } finally {
    child.kill();
    await sub.close();
    await index.close();
  }
}

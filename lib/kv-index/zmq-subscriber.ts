/**
 * {@link KvEventsSubscriber}: engines' KV events over ZMQ, in vLLM's format, into a {@link KvIndex}.
 *
 * As with vLLM, the engine binds its PUB socket and the scheduler connects a SUB socket to it, one
 * per engine (`kvEvents`, tied to the decode endpoint whose worker the events describe). For each
 * message (see `vllm-wire.ts` for the framing):
 *
 * - **Topic**: `kv@<pod>@<model>` must name the source's pod; another pod is dropped and counted
 *   (`unknown_pod`). Any other topic (vLLM's default is empty) is taken as the source's.
 * - **Order**: the sequence number must be the next one. A **gap** (a higher number: messages lost
 *   to the high-water mark or a reconnect) is filled from the engine's **replay** socket (vLLM's
 *   ROUTER: an 8-byte big-endian start sequence in; `(seq, payload)` messages out; seq -1 ends),
 *   through a DEALER with a deadline. What replay cannot fill is skipped and counted; the batch after
 *   it then applies at once (`force`). The first message after connecting counts as a gap from 0,
 *   so a scheduler that starts after the engine catches up on what the replay buffer still holds.
 * - **Restart**: a number at or below the last one on the live stream means the engine restarted
 *   (its counter starts again at 0): the pod's blocks are dropped (`removeWorker`) and its stream
 *   starts over.
 * - **Payload**: decoded and translated by {@link VllmEventTranslator} (both event shapes);
 *   a malformed one is counted and skipped (its sequence number still advances the stream), never a
 *   crash.
 *
 * Batches apply with their sequence number, so several scheduler replicas sharing a Redis index
 * apply each batch once.
 *
 * @packageDocumentation
 */
import { EventEmitter } from 'node:events';
import { Dealer, Subscriber } from 'zeromq';
import { ErrorCode, KvwireError } from '../errors.js';
import { counter, defaultRegistry, type MetricsRegistry } from '../metrics.js';
import type { KvEvent, KvIndex } from './kv-index.js';
import { VllmEventTranslator } from './vllm-events.js';
import { decodeVllmBatch, parseTopic, readSeq, seqFrame } from './vllm-wire.js';

/** One engine's KV events stream. */
export interface KvEventsSource {
  /** The index worker the events describe (the decode endpoint's name). */
  readonly worker: string;
  /** The pod name expected in the topic `kv@<pod>@<model>`. */
  readonly pod: string;
  /** The engine's PUB socket, `tcp://host:port`. */
  readonly endpoint: string;
  /** The engine's replay ROUTER socket, `tcp://host:port`; without it gaps are skipped. */
  readonly replay?: string;
}

/** Options of {@link KvEventsSubscriber}. */
export interface KvEventsSubscriberOptions {
  /** Deadline of one replay request, in ms. Default 2,000. */
  readonly replayTimeoutMs?: number;
  /** Engine block hashes remembered, over all workers. Default 1,048,576. */
  readonly maxVllmBlocks?: number;
  /** Metrics registry. Default prom-client's global registry. */
  readonly registry?: MetricsRegistry;
}

/** What happened to one message. */
export type BatchOutcome = 'applied' | 'duplicate' | 'replayed' | 'malformed' | 'unknown_pod' | 'failed';

/** Counters of one source. */
export interface SourceStats {
  /** The last sequence number taken from the stream. */
  lastSeq: number | undefined;
  /** Messages by outcome. */
  readonly outcomes: Record<BatchOutcome, number>;
  /** Gaps filled from the replay socket, and skipped. */
  gapsFilled: number;
  gapsSkipped: number;
  /** Engine restarts seen. */
  restarts: number;
  /** Blocks the translator could not key (unknown parent) and ignored on purpose. */
  unresolved: number;
  ignored: number;
  /** The last error, for diagnosis. */
  lastError: string | undefined;
}

/** Events of {@link KvEventsSubscriber}. */
export interface KvEventsSubscriberEvents {
  /** A message was handled. */
  batch: [worker: string, seq: number, outcome: BatchOutcome];
  /** An engine restart was detected and its worker's blocks dropped. */
  restart: [worker: string];
}

interface Source {
  readonly spec: KvEventsSource;
  readonly sub: Subscriber;
  dealer: Dealer | undefined;
  readonly stats: SourceStats;
  closed: boolean;
  done: Promise<void>;
}

const emptyOutcomes = (): Record<BatchOutcome, number> => ({
  applied: 0,
  duplicate: 0,
  replayed: 0,
  malformed: 0,
  unknown_pod: 0,
  failed: 0,
});

/** See the module documentation. */
export class KvEventsSubscriber extends EventEmitter<KvEventsSubscriberEvents> {
  private readonly sources = new Map<string, Source>();
  private readonly translator: VllmEventTranslator;
  private readonly replayTimeoutMs: number;
  private readonly batches;
  private readonly gaps;
  private readonly restarts;

  /**
   * @param index - where events go.
   * @param options - deadlines, bounds, metrics.
   */
  constructor(
    private readonly index: KvIndex,
    options: KvEventsSubscriberOptions = {},
  ) {
    super();
    this.translator = new VllmEventTranslator(index.hasher, options.maxVllmBlocks);
    this.replayTimeoutMs = options.replayTimeoutMs ?? 2_000;
    const r = options.registry ?? defaultRegistry();
    this.batches = counter(
      r,
      'kvwire_kv_events_messages_total',
      'KV event messages received over ZMQ, by worker and outcome',
      ['worker', 'outcome'],
    );
    this.gaps = counter(
      r,
      'kvwire_kv_events_gaps_total',
      'Sequence gaps in a KV events stream, by worker and result (filled by replay, or skipped)',
      ['worker', 'result'],
    );
    this.restarts = counter(
      r,
      'kvwire_kv_events_restarts_total',
      'Engine restarts detected from a sequence that started over, by worker',
      ['worker'],
    );
  }

  /** The workers subscribed. */
  get workers(): string[] {
    return [...this.sources.keys()];
  }

  /** Counters of `worker`'s stream. */
  stats(worker: string): SourceStats | undefined {
    return this.sources.get(worker)?.stats;
  }

  /**
   * Connects to an engine's publisher (ZMQ connects in the background and reconnects by itself).
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when `worker` is already subscribed or an endpoint is malformed.
   */
  add(spec: KvEventsSource): void {
    if (this.sources.has(spec.worker)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `worker '${spec.worker}' already has a KV events subscription: remove it first`,
        { field: 'worker' },
      );
    }
    const sub = new Subscriber({ linger: 0, receiveHighWaterMark: 100_000 });
    try {
      sub.connect(spec.endpoint);
    } catch (e) {
      sub.close();
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `cannot connect to KV events at ${spec.endpoint}: ${(e as Error).message}`,
        { field: 'kvEvents' },
      );
    }
    sub.subscribe();
    const src: Source = {
      spec,
      sub,
      dealer: undefined,
      closed: false,
      done: Promise.resolve(),
      stats: {
        lastSeq: undefined,
        outcomes: emptyOutcomes(),
        gapsFilled: 0,
        gapsSkipped: 0,
        restarts: 0,
        unresolved: 0,
        ignored: 0,
        lastError: undefined,
      },
    };
    this.sources.set(spec.worker, src);
    src.done = this.run(src);
  }

  /** Disconnects from `worker`'s engine; with `forget`, also drops its blocks from the index. */
  async remove(worker: string, forget = false): Promise<void> {
    const src = this.sources.get(worker);
    if (src === undefined) return;
    this.sources.delete(worker);
    this.stop(src);
    await src.done;
    this.translator.translate(worker, { type: 'AllBlocksCleared' }, 'remove');
    if (forget) await this.index.removeWorker(worker);
  }

  /** Disconnects from every engine. */
  async close(): Promise<void> {
    const all = [...this.sources.values()];
    this.sources.clear();
    for (const s of all) this.stop(s);
    await Promise.all(all.map((s) => s.done));
  }

  private stop(src: Source): void {
    src.closed = true;
    src.sub.close();
    src.dealer?.close();
    src.dealer = undefined;
  }

  private async run(src: Source): Promise<void> {
    try {
      for await (const frames of src.sub) {
        if (src.closed) break;
        await this.onMessage(src, frames);
      }
    } catch (e) {
      if (!src.closed) src.stats.lastError = `the subscription stopped: ${(e as Error).message}`;
    }
  }

  private count(src: Source, seq: number, outcome: BatchOutcome): void {
    src.stats.outcomes[outcome]++;
    this.batches.inc({ worker: src.spec.worker, outcome });
    this.emit('batch', src.spec.worker, seq, outcome);
  }

  private async onMessage(src: Source, frames: Buffer[]): Promise<void> {
    const worker = src.spec.worker;
    let seq: number;
    try {
      if (frames.length !== 3)
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `a KV events message has ${frames.length} frames: vLLM sends 3 (topic, seq, payload)`,
        );
      seq = readSeq(frames[1]!);
      if (seq < 0) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'the live stream carried the replay end marker');
    } catch (e) {
      src.stats.lastError = (e as Error).message;
      this.count(src, -1, 'malformed');
      return;
    }
    const topic = parseTopic(frames[0]!.toString('utf8'));
    if (topic !== undefined && topic.pod !== src.spec.pod) {
      src.stats.lastError = `topic names pod '${topic.pod}', this stream is '${src.spec.pod}' (worker '${worker}'): message dropped`;
      this.count(src, seq, 'unknown_pod');
      return;
    }
    const last = src.stats.lastSeq;
    if (last !== undefined && seq <= last) {
      // The engine's counter started over: it restarted, and its cache with it.
      src.stats.restarts++;
      this.restarts.inc({ worker });
      src.stats.lastSeq = undefined;
      this.translator.translate(worker, { type: 'AllBlocksCleared' }, 'restart');
      await this.index.removeWorker(worker).catch((e: unknown) => {
        src.stats.lastError = (e as Error).message;
      });
      this.emit('restart', worker);
    }
    const expected = src.stats.lastSeq === undefined ? 0 : src.stats.lastSeq + 1;
    let force = false;
    if (seq > expected) {
      const filled = await this.replay(src, expected, seq);
      if (!filled) {
        src.stats.gapsSkipped++;
        this.gaps.inc({ worker, result: 'skipped' });
        force = true;
      } else {
        src.stats.gapsFilled++;
        this.gaps.inc({ worker, result: 'filled' });
      }
    }
    await this.apply(src, seq, frames[2]!, force, 'applied');
  }

  /** Replays [from, before) into the index; true when every one of them was replayed. */
  private async replay(src: Source, from: number, before: number): Promise<boolean> {
    let last = from - 1;
    let whole = true;
    if (src.spec.replay === undefined || src.closed) return false;
    if (src.dealer === undefined) {
      src.dealer = new Dealer({ linger: 0, receiveTimeout: this.replayTimeoutMs, sendTimeout: this.replayTimeoutMs });
      src.dealer.connect(src.spec.replay);
    }
    const dealer = src.dealer;
    try {
      // As a REQ socket would: an empty delimiter frame, then the start sequence.
      await dealer.send(['', seqFrame(from)]);
      for (;;) {
        const frames = await dealer.receive();
        const body = frames[0]?.length === 0 ? frames.slice(1) : frames;
        const seq = readSeq(body[0] ?? Buffer.alloc(0));
        if (seq === -1) break;
        // The buffer may no longer start at `from`: its first batch applies anyway, then in order.
        if (seq < from || seq >= before || (last >= from && seq !== last + 1)) continue;
        if (seq !== last + 1) whole = false;
        await this.apply(src, seq, body[1] ?? Buffer.alloc(0), seq !== last + 1, 'replayed');
        last = seq;
      }
    } catch (e) {
      src.stats.lastError = `replay from ${src.spec.replay} failed: ${(e as Error).message}`;
      // A late answer to this request must not be read as the answer to the next one.
      dealer.close();
      if (src.dealer === dealer) src.dealer = undefined;
    }
    return whole && last === before - 1;
  }

  private async apply(
    src: Source,
    seq: number,
    payload: Buffer,
    force: boolean,
    ok: 'applied' | 'replayed',
  ): Promise<void> {
    const worker = src.spec.worker;
    src.stats.lastSeq = seq;
    const events: KvEvent[] = [];
    let malformed = false;
    try {
      const batch = decodeVllmBatch(payload);
      batch.events.forEach((ev, i) => {
        const t = this.translator.translate(worker, ev, `events[${i}]`);
        events.push(...t.events);
        src.stats.unresolved += t.unresolved;
        src.stats.ignored += t.ignored;
      });
    } catch (e) {
      src.stats.lastError = `batch ${seq} of worker '${worker}': ${(e as Error).message}`;
      malformed = true;
      events.length = 0; // nothing of it applies, but its number still advances the stream below
    }
    try {
      const r = await this.index.apply(worker, events, { seq, force });
      this.count(src, seq, malformed ? 'malformed' : r.status === 'duplicate' ? 'duplicate' : ok);
    } catch (e) {
      src.stats.lastError = `applying batch ${seq} of worker '${worker}': ${(e as Error).message}`;
      this.count(src, seq, 'failed');
    }
  }
}

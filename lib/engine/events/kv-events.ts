/**
 * KV cache events in vLLM's wire format (`vllm/distributed/kv_events.py`, `ZmqEventPublisher`),
 * so kvwire's scheduler and llm-d's kv-cache indexer consume them alike:
 * - a ZMQ PUB socket bound at `--kv-events-endpoint`; each message is three frames
 *   `[topic, sequence (8-byte big-endian), msgpack payload]`, topic `kv@<pod>@<model>`;
 * - payload: `[ts (float seconds), events, data_parallel_rank]`;
 * - events in the map form (`{"type": "BlockStored", "block_hashes": [...], ...}`, vLLM's msgspec
 *   structs tagged with "type") or, with `format: 'array'`, the older array form
 *   (`["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium, lora_name]`);
 * - a ROUTER socket at `--kv-events-replay-endpoint`: a request `[identity, "", start (8-byte BE)]`
 *   is answered with `[identity, "", seq, payload]` for each buffered batch with seq >= start, then
 *   `[identity, "", -1 (8-byte BE, signed), ""]`.
 *
 * Events raised in one tick of the event loop go out as one batch. zeromq.js allows one send in
 * flight per socket, so sends are chained.
 *
 * @packageDocumentation
 */
import { encode } from '@msgpack/msgpack';
import type { Publisher, Router } from 'zeromq';
import type { StoredBlock } from '../kv/block-cache.js';

/** Event encoding: vLLM's current map form, or its older array form. */
export type KvEventsFormat = 'map' | 'array';

/** Options of {@link KvEventPublisher.create}. */
export interface KvEventPublisherOptions {
  /** PUB bind endpoint, e.g. `tcp://127.0.0.1:5557` or `tcp://127.0.0.1:*` (any port). */
  readonly endpoint: string;
  /** ROUTER bind endpoint for replay; none when omitted. */
  readonly replayEndpoint?: string;
  /** Pod name (topic). */
  readonly pod: string;
  /** Served model name (topic). */
  readonly model: string;
  /** Tokens per block. */
  readonly blockSize: number;
  /** Event encoding; default 'map'. */
  readonly format?: KvEventsFormat;
  /** Batches kept for replay; default 10 000 (vLLM's buffer_steps). */
  readonly bufferSteps?: number;
  /** Data-parallel rank in every batch; default 0. */
  readonly dpRank?: number;
}

type Event = Record<string, unknown> | unknown[];

function seqBytes(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(seq));
  return b;
}

/** A publisher of one engine's KV events. */
export class KvEventPublisher {
  /** The PUB socket's bound endpoint (the real port when bound to `*`). */
  readonly endpoint: string;
  /** The ROUTER socket's bound endpoint, if any. */
  readonly replayEndpoint: string | undefined;
  /** The topic. */
  readonly topic: string;
  readonly #pub: Publisher;
  readonly #router: Router | undefined;
  readonly #o: KvEventPublisherOptions;
  readonly #buffer: { seq: number; payload: Uint8Array }[] = [];
  #pending: Event[] = [];
  #scheduled = false;
  #seq = 0;
  #pubChain: Promise<void> = Promise.resolve();
  #routerChain: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(pub: Publisher, router: Router | undefined, o: KvEventPublisherOptions) {
    this.#pub = pub;
    this.#router = router;
    this.#o = o;
    this.endpoint = pub.lastEndpoint ?? o.endpoint;
    this.replayEndpoint = router?.lastEndpoint ?? undefined;
    this.topic = `kv@${o.pod}@${o.model}`;
    if (router !== undefined) void this.#serveReplay(router);
  }

  /** Binds the sockets. */
  static async create(o: KvEventPublisherOptions): Promise<KvEventPublisher> {
    const zmq = await import('zeromq');
    const pub = new zmq.Publisher({ sendHighWaterMark: 100_000, linger: 0 });
    let router: Router | undefined;
    try {
      await pub.bind(o.endpoint);
      if (o.replayEndpoint !== undefined) {
        router = new zmq.Router({ linger: 0 });
        await router.bind(o.replayEndpoint);
      }
    } catch (e) {
      pub.close();
      router?.close();
      throw e;
    }
    return new KvEventPublisher(pub, router, o);
  }

  /** Sequence number the next batch gets. */
  get nextSeq(): number {
    return this.#seq;
  }

  /** Blocks entered the cache. */
  stored(blocks: readonly StoredBlock[]): void {
    if (blocks.length === 0) return;
    // One event per run of chained blocks, as vLLM emits one per request step.
    let run: StoredBlock[] = [];
    const flush = (): void => {
      if (run.length > 0) this.#push(this.#storedEvent(run));
      run = [];
    };
    for (const b of blocks) {
      const last = run[run.length - 1];
      if (last !== undefined && b.parent !== last.hash) flush();
      run.push(b);
    }
    flush();
  }

  /** Blocks left the cache. */
  removed(hashes: readonly number[]): void {
    if (hashes.length === 0) return;
    this.#push(
      this.#o.format === 'array'
        ? ['BlockRemoved', [...hashes], 'GPU']
        : { type: 'BlockRemoved', block_hashes: [...hashes], medium: 'GPU' },
    );
  }

  /** The whole cache was cleared. */
  allCleared(): void {
    this.#push(this.#o.format === 'array' ? ['AllBlocksCleared'] : { type: 'AllBlocksCleared' });
  }

  #storedEvent(run: readonly StoredBlock[]): Event {
    const hashes = run.map((b) => b.hash);
    const tokens = run.flatMap((b) => [...b.tokens]);
    const parent = run[0]!.parent;
    if (this.#o.format === 'array') {
      return ['BlockStored', hashes, parent, tokens, this.#o.blockSize, null, 'GPU', null];
    }
    return {
      type: 'BlockStored',
      block_hashes: hashes,
      parent_block_hash: parent,
      token_ids: tokens,
      block_size: this.#o.blockSize,
      lora_id: null,
      medium: 'GPU',
      lora_name: null,
    };
  }

  #push(ev: Event): void {
    if (this.#closed) return;
    this.#pending.push(ev);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    const events = this.#pending;
    this.#pending = [];
    if (events.length === 0) return;
    const seq = this.#seq++;
    // vLLM's ts is a float; msgpack would encode a whole number of seconds as an integer.
    const now = Date.now() / 1000;
    const payload = encode([Number.isInteger(now) ? now + 1e-6 : now, events, this.#o.dpRank ?? 0]);
    this.#buffer.push({ seq, payload });
    if (this.#buffer.length > (this.#o.bufferSteps ?? 10_000)) this.#buffer.shift();
    const frames = [Buffer.from(this.topic, 'utf8'), seqBytes(seq), payload];
    this.#pubChain = this.#pubChain.then(() => this.#pub.send(frames)).catch(() => undefined);
  }

  async #serveReplay(router: Router): Promise<void> {
    try {
      for await (const frames of router) {
        // [identity, "", start]: anything else is ignored, as vLLM does.
        if (frames.length !== 3 || frames[2]!.length !== 8) continue;
        const [id] = frames;
        const start = Number(frames[2]!.readBigInt64BE(0));
        const replies = this.#buffer
          .filter((b) => b.seq >= start)
          .map((b) => [id!, Buffer.alloc(0), seqBytes(b.seq), b.payload]);
        replies.push([id!, Buffer.alloc(0), seqBytes(-1), Buffer.alloc(0)]);
        this.#routerChain = this.#routerChain
          .then(async () => {
            for (const r of replies) await router.send(r);
          })
          .catch(() => undefined);
      }
    } catch {
      // socket closed
    }
  }

  /** Sends what is pending, then closes both sockets. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    await this.#pubChain;
    await this.#routerChain;
    this.#pub.close();
    this.#router?.close();
  }
}

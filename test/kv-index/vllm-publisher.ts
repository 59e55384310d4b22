/**
 * A KV events publisher that behaves as vLLM's `ZmqEventPublisher` does on the wire: a PUB socket
 * sending [topic, 8-byte big-endian seq, msgpack KVEventBatch], the sequence counting from 0, a
 * buffer of the last `bufferSteps` batches, and a ROUTER replay socket that answers an 8-byte
 * start sequence with every buffered (seq, payload) from it, then (-1, empty). Test helper; the
 * tests can also hold a batch back (a gap) or start the counter over (a restart).
 */
import { encode } from '@msgpack/msgpack';
import { Publisher, Router } from 'zeromq';

export type Shape = 'array' | 'map';

export class FakeVllmPublisher {
  readonly pub = new Publisher({ linger: 0 });
  readonly router = new Router({ linger: 0 });
  endpoint = '';
  replayEndpoint = '';
  private seq = 0;
  private readonly buffer: [number, Buffer][] = [];
  private serving: Promise<void> = Promise.resolve();

  constructor(
    public topic: string,
    readonly shape: Shape = 'array',
    readonly bufferSteps = 10_000,
  ) {}

  async start(): Promise<void> {
    await this.pub.bind('tcp://127.0.0.1:0');
    await this.router.bind('tcp://127.0.0.1:0');
    this.endpoint = this.pub.lastEndpoint!;
    this.replayEndpoint = this.router.lastEndpoint!;
    this.serving = this.serveReplay();
  }

  private async serveReplay(): Promise<void> {
    try {
      for await (const frames of this.router) {
        if (frames.length !== 3) continue;
        const [id, , start] = frames;
        const from = Number(start!.readBigInt64BE());
        for (const [s, p] of this.buffer) if (s >= from) await this.router.send([id!, '', seqBytes(s), p]);
        await this.router.send([id!, '', seqBytes(-1), '']);
      }
    } catch {
      // closed
    }
  }

  /** Encodes a batch of events in this publisher's shape. */
  payload(events: unknown[]): Buffer {
    const ts = Date.now() / 1000;
    return Buffer.from(
      encode(this.shape === 'array' ? [ts, events, 0] : { ts, events, data_parallel_rank: 0 }, { useBigInt64: true }),
    );
  }

  /** Publishes a batch (or, with `drop`, only buffers it: subscribers see a gap). Returns its seq. */
  async publish(events: unknown[], drop = false): Promise<number> {
    return this.publishRaw(this.payload(events), drop);
  }

  async publishRaw(payload: Buffer, drop = false): Promise<number> {
    const s = this.seq++;
    this.buffer.push([s, payload]);
    if (this.buffer.length > this.bufferSteps) this.buffer.shift();
    if (!drop) await this.pub.send([this.topic, seqBytes(s), payload]);
    return s;
  }

  /** Sends arbitrary frames (malformed input). */
  async sendFrames(frames: (string | Buffer)[]): Promise<void> {
    await this.pub.send(frames);
  }

  /** The engine restarted: its counter and buffer start over. */
  restart(): void {
    this.seq = 0;
    this.buffer.length = 0;
  }

  get nextSeq(): number {
    return this.seq;
  }

  async close(): Promise<void> {
    this.pub.close();
    this.router.close();
    await this.serving;
  }
}

export function seqBytes(s: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(s));
  return b;
}

/** A vLLM BlockStored event in either shape. */
export function blockStored(
  shape: Shape,
  hashes: unknown[],
  parent: unknown,
  tokens: number[],
  blockSize = 16,
): unknown {
  return shape === 'array'
    ? ['BlockStored', hashes, parent, tokens, blockSize, null, 'GPU']
    : {
        type: 'BlockStored',
        block_hashes: hashes,
        parent_block_hash: parent,
        token_ids: tokens,
        block_size: blockSize,
        lora_id: null,
        medium: 'GPU',
        lora_name: null,
      };
}

export function blockRemoved(shape: Shape, hashes: unknown[]): unknown {
  return shape === 'array'
    ? ['BlockRemoved', hashes, 'GPU']
    : { type: 'BlockRemoved', block_hashes: hashes, medium: 'GPU' };
}

export function allCleared(shape: Shape): unknown {
  return shape === 'array' ? ['AllBlocksCleared'] : { type: 'AllBlocksCleared' };
}

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KvIndex } from '../../lib/kv-index/kv-index.js';
import { KvEventsSubscriber } from '../../lib/kv-index/zmq-subscriber.js';
import { decodeVllmBatch, parseTopic, readSeq } from '../../lib/kv-index/vllm-wire.js';
import { createRegistry } from '../../lib/metrics.js';
import { FakeVllmPublisher, allCleared, blockRemoved, blockStored, seqBytes, type Shape } from './vllm-publisher.js';

const tokens = (n: number, seed = 1): number[] => Array.from({ length: n }, (_, i) => (seed * 1009 + i * 7) % 32_000);

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('KvEventsSubscriber (vLLM ZMQ events)', () => {
  let index: KvIndex;
  let sub: KvEventsSubscriber;
  const pubs: FakeVllmPublisher[] = [];

  beforeEach(async () => {
    const registry = createRegistry();
    index = await KvIndex.create({ registry });
    sub = new KvEventsSubscriber(index, { registry, replayTimeoutMs: 3_000 });
  });
  afterEach(async () => {
    await sub.close();
    for (const p of pubs.splice(0)) await p.close();
    await index.close();
  });

  async function publisher(shape: Shape, pod = 'decode-0', replay = true): Promise<FakeVllmPublisher> {
    const p = new FakeVllmPublisher(`kv@${pod}@m`, shape);
    await p.start();
    pubs.push(p);
    sub.add({
      worker: 'decode-0',
      pod: 'decode-0',
      endpoint: p.endpoint,
      ...(replay ? { replay: p.replayEndpoint } : {}),
    });
    return p;
  }

  /** Publishes empty batches until the subscriber has taken the newest: connected and caught up. */
  async function sync(p: FakeVllmPublisher): Promise<void> {
    await until('the subscriber to catch up', async () => {
      const last = await p.publish([]);
      await new Promise((r) => setTimeout(r, 30));
      return (sub.stats('decode-0')?.lastSeq ?? -1) >= last;
    });
  }

  const cached = async (t: number[]): Promise<number> => (await index.score(t, ['decode-0'])).get('decode-0')!;

  for (const shape of ['array', 'map'] as const) {
    it(`indexes BlockStored / BlockRemoved / AllBlocksCleared in the ${shape} form`, async () => {
      const p = await publisher(shape);
      await sync(p);
      const t = tokens(64);
      // Hashes as vLLM sends them: small ints, 64-bit ints beyond 2^53, and bytes.
      const h = [7, 2n ** 63n + 5n, new Uint8Array([1, 2, 3, 4]), 99];
      await p.publish([blockStored(shape, h.slice(0, 2), null, t.slice(0, 32))]);
      await p.publish([blockStored(shape, h.slice(2), h[1], t.slice(32))]);
      await until('4 blocks', async () => (await cached(t)) === 4);
      await p.publish([blockRemoved(shape, [h[2]])]);
      await until('2 blocks', async () => (await cached(t)) === 2);
      await p.publish([allCleared(shape)]);
      await until('no block', async () => (await cached(t)) === 0);
      expect(sub.stats('decode-0')!.outcomes.malformed).toBe(0);
    });
  }

  it('fills a sequence gap from the replay socket', async () => {
    const p = await publisher('array');
    await sync(p);
    const t = tokens(48, 2);
    await p.publish([blockStored('array', [1], null, t.slice(0, 16))]);
    await p.publish([blockStored('array', [2], 1, t.slice(16, 32))], true); // lost
    await p.publish([blockStored('array', [3], 2, t.slice(32, 48))]);
    await until('3 blocks', async () => (await cached(t)) === 3);
    const s = sub.stats('decode-0')!;
    expect(s.gapsFilled).toBeGreaterThanOrEqual(1);
    expect(s.outcomes.replayed).toBeGreaterThanOrEqual(1);
    expect(s.gapsSkipped).toBe(0);
  });

  it('skips a gap it cannot fill (no replay socket) and goes on', async () => {
    const p = await publisher('array', 'decode-0', false);
    await sync(p);
    const t = tokens(32, 3);
    await p.publish([blockStored('array', [5], null, t.slice(0, 16))], true); // lost for good
    await p.publish([blockStored('array', [6], null, tokens(16, 9))]);
    await until('the later batch', async () => (await index.score(tokens(16, 9), ['decode-0'])).get('decode-0') === 1);
    expect(sub.stats('decode-0')!.gapsSkipped).toBeGreaterThanOrEqual(1);
    expect(await cached(t)).toBe(0);
  });

  it('catches up on batches published before it connected (first message is a gap from 0)', async () => {
    const p = new FakeVllmPublisher('kv@decode-0@m', 'map');
    await p.start();
    pubs.push(p);
    const t = tokens(32, 4);
    await p.publish([blockStored('map', [11], null, t.slice(0, 16))]); // nobody listening yet
    await p.publish([blockStored('map', [12], 11, t.slice(16))]);
    sub.add({ worker: 'decode-0', pod: 'decode-0', endpoint: p.endpoint, replay: p.replayEndpoint });
    await sync(p);
    expect(await cached(t)).toBe(2);
  });

  it("treats a sequence that starts over as an engine restart and drops the pod's blocks", async () => {
    const p = await publisher('array');
    await sync(p);
    const old = tokens(32, 5);
    await p.publish([blockStored('array', [21, 22], null, old)]);
    await until('old blocks', async () => (await cached(old)) === 2);
    p.restart();
    const fresh = tokens(16, 6);
    await p.publish([blockStored('array', [31], null, fresh)]);
    await until('the restart', () => sub.stats('decode-0')!.restarts === 1);
    await until('fresh block', async () => (await index.score(fresh, ['decode-0'])).get('decode-0') === 1);
    expect(await cached(old)).toBe(0);
  });

  it("counts malformed messages and other pods' topics, and keeps going", async () => {
    const p = await publisher('array');
    await sync(p);
    await p.sendFrames(['kv@decode-0@m', seqBytes(p.nextSeq)]); // two frames
    await p.sendFrames(['kv@decode-0@m', Buffer.from([1, 2, 3]), Buffer.from([0x90])]); // 3-byte seq
    await p.publishRaw(Buffer.from([0xc1, 0xff, 0x00])); // not msgpack
    await p.publish([['BlockStored', 'not a list', null, [], 16, null, 'GPU']]); // bad event
    await p.publish([['NoSuchEvent']]);
    // The same socket, a foreign topic: dropped.
    await p.sendFrames(['kv@someone-else@m', seqBytes(p.nextSeq), p.payload([])]);
    await sync(p);
    const t = tokens(16, 7);
    await p.publish([blockStored('array', [41], null, t)]);
    await until('a good batch after the bad ones', async () => (await cached(t)) === 1);
    const s = sub.stats('decode-0')!;
    expect(s.outcomes.malformed).toBe(5);
    expect(s.outcomes.unknown_pod).toBe(1);
    expect(s.lastError).toBeDefined();
  });

  it("decodes vLLM's framing helpers exactly", () => {
    expect(parseTopic('kv@pod-1@meta-llama/Llama-3-8B')).toEqual({ pod: 'pod-1', model: 'meta-llama/Llama-3-8B' });
    expect(parseTopic('')).toBeUndefined();
    expect(readSeq(seqBytes(2 ** 40))).toBe(2 ** 40);
    expect(readSeq(seqBytes(-1))).toBe(-1);
    expect(() => readSeq(Buffer.alloc(4))).toThrow(/8 \(big-endian\)/);
    expect(() => decodeVllmBatch(Buffer.from([0xc1]))).toThrow(/not msgpack/);
  });

  it('removes a source, optionally forgetting its blocks', async () => {
    const p = await publisher('array');
    await sync(p);
    const t = tokens(16, 8);
    await p.publish([blockStored('array', [51], null, t)]);
    await until('block', async () => (await cached(t)) === 1);
    await sub.remove('decode-0', true);
    expect(sub.workers).toEqual([]);
    expect(await cached(t)).toBe(0);
  });
});

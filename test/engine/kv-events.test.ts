import { decode } from '@msgpack/msgpack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dealer, Subscriber } from 'zeromq';
import { blockHashes, eventHash } from '../../lib/engine/index.js';
import { startEngine, type EngineProcess } from '../fixtures/engine-process.js';
import { post } from './helpers.js';

// KV events in vLLM's wire format, decoded by a test subscriber; a gap filled from the replay socket.
/** An event as decoded, map form (the array-form test casts). */
type MapEvent = Record<string, unknown> & { type: string; block_hashes: number[] };

interface Frame {
  topic: string;
  seq: number;
  batch: [number, MapEvent[], number];
}

async function next(sub: Subscriber, timeoutMs = 20_000): Promise<Frame> {
  const timer = setTimeout(() => sub.close(), timeoutMs);
  try {
    const [topic, seq, payload] = await sub.receive();
    return {
      topic: topic!.toString(),
      seq: Number(seq!.readBigUInt64BE(0)),
      batch: decode(payload!) as Frame['batch'],
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Sends requests (prompt i) until the subscriber receives a frame; returns it and the prompt that made it. */
async function firstFrame(
  sub: Subscriber,
  url: string,
  prompt: (i: number) => string,
): Promise<{ frame: Frame; prompt: string }> {
  for (let i = 0; i < 60; i++) {
    const p = prompt(i);
    expect((await post(`${url}/v1/completions`, { model: 'tiny', prompt: p, max_tokens: 1 })).status).toBe(200);
    try {
      const [topic, seq, payload] = await sub.receive();
      return {
        frame: {
          topic: topic!.toString(),
          seq: Number(seq!.readBigUInt64BE(0)),
          batch: decode(payload!) as Frame['batch'],
        },
        prompt: p,
      };
    } catch {
      // receive timed out: not subscribed yet
    }
  }
  throw new Error('no KV event frame arrived');
}

async function tokenize(url: string, prompt: string): Promise<number[]> {
  return (await post(`${url}/tokenize`, { prompt })).body.tokens;
}

const PROMPT_A = 'A long shared system prompt that fills a few blocks of sixteen tokens each, then a question.';
const PROMPT_B = 'Another prompt, different from the first one, long enough to fill at least two blocks.';

describe('KV events (map form)', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngine({
      role: 'both',
      args: [
        '--kv-events-endpoint',
        'tcp://127.0.0.1:*',
        '--kv-events-replay-endpoint',
        'tcp://127.0.0.1:*',
        '--num-blocks',
        '12',
        '--pod-name',
        'pod-a',
      ],
    });
  });
  afterAll(async () => expect(await engine.stop()).toBe(0));

  it("BlockStored for a prompt's full blocks, hashed as the contract says; BlockRemoved on eviction; replay fills a gap", async () => {
    // A request before anyone subscribes: its batch is the gap.
    expect(
      (await post(`${engine.url}/v1/completions`, { model: 'tiny', prompt: PROMPT_A, max_tokens: 2 })).status,
    ).toBe(200);
    const sub = new Subscriber({ receiveTimeout: 500 });
    sub.connect(engine.kvEvents!);
    sub.subscribe('kv@');
    // ZMQ's slow joiner: publish until the subscription has reached the publisher.
    const { frame: f, prompt: sent } = await firstFrame(sub, engine.url, (i) => `${i} ${PROMPT_B}`);
    const [ts, events, dp] = f.batch;
    expect(typeof ts).toBe('number');
    expect(dp).toBe(0);
    const stored = events.find((e) => e.type === 'BlockStored');
    const tokens = await tokenize(engine.url, sent);
    const hashes = blockHashes(tokens, 16).filter((h) => h.full);
    expect(stored).toEqual({
      type: 'BlockStored',
      block_hashes: hashes.map((h) => eventHash(h.key)),
      parent_block_hash: null,
      token_ids: tokens.slice(0, hashes.length * 16),
      block_size: 16,
      lora_id: null,
      medium: 'GPU',
      lora_name: null,
    });

    // The gap: ask the replay socket for everything from seq 0.
    const dealer = new Dealer();
    dealer.connect(engine.kvEventsReplay!);
    const start = Buffer.alloc(8);
    await dealer.send([Buffer.alloc(0), start]);
    const replayed: { seq: number; batch: Frame['batch'] }[] = [];
    for (;;) {
      const [, seq, payload] = await dealer.receive();
      const s = Number(seq!.readBigInt64BE(0));
      if (s === -1) break;
      replayed.push({ seq: s, batch: decode(payload!) as Frame['batch'] });
    }
    dealer.close();
    expect(replayed[0]!.seq).toBe(0);
    const first = replayed[0]!.batch[1].find((e) => e.type === 'BlockStored')!;
    const tokensA = await tokenize(engine.url, PROMPT_A);
    expect(first.block_hashes[0]).toBe(eventHash(blockHashes(tokensA, 16)[0]!.key));
    expect(replayed.map((r) => r.seq)).toContain(f.seq);

    // 12 blocks in all: more prompts evict the oldest cached blocks.
    for (let i = 0; i < 4; i++) {
      await post(`${engine.url}/v1/completions`, {
        model: 'tiny',
        prompt: `${i} ${PROMPT_B} ${PROMPT_A}`,
        max_tokens: 2,
      });
    }
    let removed: MapEvent | undefined;
    for (let i = 0; i < 10 && removed === undefined; i++)
      removed = (await next(sub)).batch[1].find((e) => e.type === 'BlockRemoved');
    expect(removed).toMatchObject({ type: 'BlockRemoved', medium: 'GPU' });
    expect(removed?.block_hashes.length).toBeGreaterThan(0);
    sub.close();
  });
});

describe('KV events (array form)', () => {
  it("vLLM's older array form, and AllBlocksCleared at shutdown", async () => {
    const engine = await startEngine({
      role: 'both',
      args: ['--kv-events-endpoint', 'tcp://127.0.0.1:*', '--kv-events-format', 'array'],
    });
    const sub = new Subscriber({ receiveTimeout: 500 });
    sub.connect(engine.kvEvents!);
    sub.subscribe();
    const { frame: f } = await firstFrame(sub, engine.url, (i) => `${i} ${PROMPT_A}`);
    const ev = f.batch[1][0] as unknown as unknown[];
    expect(ev[0]).toBe('BlockStored');
    const [, hashes, parent, tokens, blockSize, loraId, medium] = ev;
    expect(parent).toBeNull();
    expect(tokens).toHaveLength((hashes as number[]).length * 16);
    expect([blockSize, loraId, medium]).toEqual([16, null, 'GPU']);
    expect(await engine.stop()).toBe(0);
    let cleared = false;
    for (let i = 0; i < 5 && !cleared; i++)
      cleared = (await next(sub, 5_000)).batch[1].some((e) => (e as unknown as unknown[])[0] === 'AllBlocksCleared');
    expect(cleared).toBe(true);
    sub.close();
  });
});

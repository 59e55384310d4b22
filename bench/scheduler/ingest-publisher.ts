/**
 * The publisher side of the ingestion bench, run in its own process (see `ingest.ts`): binds a PUB
 * and a replay ROUTER like vLLM's ZmqEventPublisher, reports their endpoints to its parent, and on
 * "go" publishes `argv[2]` batches of 16 BlockStored events × 16 chained blocks (map form).
 *
 * @packageDocumentation
 */
import { encode } from '@msgpack/msgpack';
import { Publisher, Router } from 'zeromq';

const batches = Number(process.argv[2]);
const BS = 16;
const pub = new Publisher({ linger: 0, sendHighWaterMark: 1_000_000 });
const router = new Router({ linger: 0 });
await pub.bind('tcp://127.0.0.1:0');
await router.bind('tcp://127.0.0.1:0');
const buffer: [number, Uint8Array][] = [];
const seqBytes = (s: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(s));
  return b;
};
void (async () => {
  for await (const [id, , start] of router) {
    const from = Number(start!.readBigInt64BE());
    for (const [s, p] of buffer) if (s >= from) await router.send([id!, '', seqBytes(s), p]);
    await router.send([id!, '', seqBytes(-1), '']);
  }
})();

// Pre-encode every payload, so the measure is the subscriber's, not msgpack's encoder here.
let hash = 1;
const payloads: Uint8Array[] = [];
for (let b = 0; b < batches; b++) {
  const events = [];
  for (let e = 0; e < 16; e++) {
    const hashes: number[] = [];
    const tokens: number[] = [];
    for (let k = 0; k < 16; k++) {
      hashes.push(hash++);
      for (let t = 0; t < BS; t++) tokens.push((b * 65_537 + e * 4_099 + k * 257 + t) % 128_000);
    }
    events.push({
      type: 'BlockStored',
      block_hashes: hashes,
      parent_block_hash: null, // each event starts its own chain
      token_ids: tokens,
      block_size: BS,
      lora_id: null,
      medium: 'GPU',
      lora_name: null,
    });
  }
  payloads.push(encode({ ts: Date.now() / 1000, events, data_parallel_rank: 0 }));
}
process.send!({ endpoint: pub.lastEndpoint, replay: router.lastEndpoint });
process.once('message', () => {
  void (async () => {
    for (let s = 0; s < batches; s++) {
      buffer.push([s, payloads[s]!]);
      await pub.send(['kv@pod-0@m', seqBytes(s), payloads[s]!]);
    }
  })();
});

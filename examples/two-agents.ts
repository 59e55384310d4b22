// Two agents moving KV blocks (README, "Two agents moving blocks"): a prefill side registers its KV
// cache for peers to READ, a decode side connects with its metadata, READs four 1 MiB blocks and
// notifies; the prefill side hears the notification only after every byte landed.
// Run: npm run compile && node dist/examples/two-agents.js
import { Agent } from 'kvwire';

// Prefill side: register the KV cache so peers may READ it, publish the metadata.
const prefill = await Agent.create({ name: 'prefill-0' });
const cache = Buffer.alloc(64 << 20);
for (let b = 0; b < 64; b++) cache.fill(b, b << 20, (b + 1) << 20); // block b holds the byte b
prefill.register(cache, { access: 'read', label: 'kv' });
const metadata = prefill.metadata(); // send this to the decode side (lib/pd does it for you)

// Decode side: connect, READ 4 blocks of 1 MiB into its own cache, notify the prefill side.
const decode = await Agent.create({ name: 'decode-0' });
const mine = Buffer.alloc(64 << 20);
const local = decode.register(mine, { label: 'kv' });
const peer = await decode.connect(metadata);
console.log(`transport: ${peer.transport}`); // 'sm' on one host, 'tcp' across hosts: what UCX chose

const blocks = [3, 7, 8, 9];
const transfer = decode.read(
  peer,
  blocks.map((_, i) => ({ region: local, offset: i << 20, length: 1 << 20 })),
  blocks.map((b) => ({ region: peer.region('kv'), offset: b << 20, length: 1 << 20 })),
  { notify: 'req-42:done', timeoutMs: 5000 },
);
const stats = await transfer.done;
console.log(`read ${stats.bytes} bytes in ${stats.descriptors} descriptors, ${stats.postedDescriptors} posted`);

// Prefill side: the notification arrives only after every byte landed on the decode side.
await prefill.waitForNotification('req-42:done');
const landed = blocks.every((b, i) => mine[i << 20] === b && mine[((i + 1) << 20) - 1] === b);
console.log(landed ? 'every block landed' : 'WRONG BYTES');

await decode.close();
await prefill.close();
process.exitCode = landed ? 0 : 1;

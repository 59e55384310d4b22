// The KV block index (docs/kv-index.md): a coordinator reports the blocks a worker holds; a router
// asks which worker holds the longest prefix of the next prompt, or for a choice with load.
// Run: npm run compile && node dist/examples/kv-index.js
import { KvIndex, startKvEventsServer } from 'kvwire';

const promptTokens = Uint32Array.from({ length: 4096 }, (_, i) => (i * 7919) % 128_000);
const nextPrompt = promptTokens.slice(0, 3840); // the same conversation, shorter

const index = await KvIndex.create(); // in memory; { backend: 'redis', redis: { url } } to share
await index.stored('decode-0', index.blockKeys(promptTokens)); // from a coordinator
const events = await startKvEventsServer(index, { port: 0 }); // from engines, over HTTP

const scores = await index.score(nextPrompt); // Map { 'decode-0' => 240 }
const { worker, reason } = await index.pick(nextPrompt, {
  'decode-0': { queue: 3, inflightTokens: 9_000 },
  'decode-1': { queue: 0 },
});
console.log(`scores: ${JSON.stringify([...scores])}; pick: ${worker} (${reason})`);

await events.close();
await index.close();

// A KV cache layout (docs/kv-layout.md): a model's shape becomes the regions to register and the
// descriptors of any list of blocks, contiguous blocks coalesced.
// Run: npm run compile && node dist/examples/kv-layout.js
import { KvLayout, kvPreset } from 'kvwire';

const layout = new KvLayout({
  model: kvPreset('llama-3-8b'), // or { layers, kvHeads, headDim, dtype } / MLA shape
  numBlocks: 8192, // vLLM's num_gpu_blocks
  blockTokens: 16, // default 16
  tp: { size: 2, rank: 0 }, // default { size: 1, rank: 0 }
  kv: 'split', // 'split' (default) | 'joint'; omit for MLA
  order: 'HND', // 'HND' (default) | 'NHD'
});
console.log(`${layout.tensors.length} tensors, first ${layout.tensors[0]!.label} of ${layout.tensors[0]!.bytes} bytes`);
console.log(`${layout.regions().length} regions to register (or one arena of ${layout.arenaBytes} bytes)`);

/**
 * How the engine names blocks: the chained SHA-256 of `synthetic/content.ts` (`blockHashes`: block
 * i covers block i-1's digest, its token ids as u32 little-endian and its token count), and, for
 * KV events, the first 8 bytes of that digest read big-endian and masked to 53 bits — a safe
 * integer, so JSON and msgpack consumers never lose precision (vLLM's `ExternalBlockHash` may be
 * an int or bytes; llm-d reads ints as uint64).
 *
 * @packageDocumentation
 */
import { blockHashes, type BlockHash } from '../runtimes/synthetic/content.js';

export { blockHashes, type BlockHash };

/** The KV-event hash of a block (see the module documentation). */
export function eventHash(key: string): number {
  const hi = parseInt(key.slice(0, 6), 16); // top 24 bits
  const lo = parseInt(key.slice(6, 14), 16); // next 32 bits
  return (hi % 2 ** 21) * 2 ** 32 + lo; // 21 + 32 = 53 bits
}

/**
 * Two processes over UCX: a prefill worker and a decode worker (test/fixtures/pd-worker.ts, run
 * from dist/), this process playing the sidecar between them.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import type { ModelShape } from '../../lib/kv/index.js';
import { runPdPair } from '../fixtures/pd-pair/run.js';
import { WorkerHandle } from '../fixtures/pd-pair/worker-handle.js';
import type { DecodeSummary, DrainSummary, WorkerConfig } from '../fixtures/pd-pair/worker.js';
import { ucxUnavailableReason } from '../../lib/transport/native-engine.js';

const WORKER = new URL('../../dist/test/fixtures/pd-worker.js', import.meta.url);
// Llama-3-8B's KV shape (8 KV heads of 128, bf16) with 4 layers: 256 KiB per 16-token block.
const MODEL: ModelShape = {
  name: 'llama-3-8b-4L',
  attention: 'mha',
  layers: 4,
  kvHeads: 8,
  headDim: 128,
  dtype: 'bf16',
};
const noUcx = ucxUnavailableReason();
if (noUcx !== undefined) console.log(`two-process tests skipped: ${noUcx}`);

describe.skipIf(noUcx !== undefined)('P/D across two processes over UCX', () => {
  it('moves 100 requests of mixed lengths with shared prefixes, every byte verified, every block back', async () => {
    const r = await runPdPair({
      requests: 100,
      concurrency: 4,
      model: MODEL,
      minTokens: 16,
      maxTokens: 1024,
      workerUrl: WORKER,
    });
    console.log(
      [
        `two-process UCX run (${r.transports}): ${r.requests} requests in ${r.wallSeconds.toFixed(2)} s = ${r.requestsPerSecond.toFixed(1)} requests/s`,
        `KV read ${(r.bytesRead / 1e9).toFixed(3)} GB: ${r.wallGBps.toFixed(3)} GB/s over wall time, ${r.transferGBps.toFixed(3)} GB/s per pull`,
        `blocks read ${r.blocksRead}, prefix-cached ${r.blocksCached}; descriptors ${r.descriptorsUncoalesced} before coalescing, ${r.descriptorsPosted} posted (${r.descriptorsUncoalesced - r.descriptorsPosted} saved)`,
        `verified ${(r.verifiedBytes / 1e9).toFixed(3)} GB; pools: prefill ${r.prefill.free}/${r.prefill.total} (${r.prefill.leases} leases), decode ${r.decode.free}/${r.decode.total}`,
      ].join('\n'),
    );
    expect(r.failures).toEqual([]);
    expect(r.ready).toBe(100);
    expect(r.recomputed).toBe(0);
    expect(r.blocksCached).toBeGreaterThan(0); // shared prefixes gave partial hits
    expect(r.blocksRead + r.blocksCached).toBe(r.blocks);
    expect(r.bytesRead).toBe(r.blocksRead * 4 * 2 * 16 * 8 * 128 * 2);
    expect(r.verifiedBytes).toBe(r.blocks * 4 * 2 * 16 * 8 * 128 * 2);
    expect(r.descriptorsPosted).toBeLessThan(r.descriptorsUncoalesced);
    expect(r.prefill).toMatchObject({ free: r.prefill.total, leases: 0 });
    expect(r.decode.free).toBe(r.decode.total);
    expect(r.ok).toBe(true);
  }, 240_000);

  it('reads across tensor-parallel sizes: prefill TP 2 into decode TP 1, byte-exact', async () => {
    const r = await runPdPair({
      requests: 12,
      concurrency: 2,
      model: MODEL,
      maxTokens: 256,
      prefillTp: 2,
      decodeTp: 1,
      workerUrl: WORKER,
    });
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(true);
  }, 120_000);

  it('a decode pull from a prefill process that died fails with a typed error and frees its blocks', async () => {
    const base = { secret: 'ab'.repeat(32), model: MODEL, numBlocks: 64, blockTokens: 16 };
    const prefill = new WorkerHandle('prefill', WORKER);
    const decode = new WorkerHandle('decode', WORKER);
    try {
      await prefill.call('init', { config: { ...base, role: 'prefill', engineId: 'p', tp: 1 } satisfies WorkerConfig });
      await decode.call('init', { config: { ...base, role: 'decode', engineId: 'd', tp: 1 } satisfies WorkerConfig });
      const first = { id: 'a', tokens: Array.from({ length: 100 }, (_, i) => i + 1) };
      const ok = await decode.call<'decode', DecodeSummary>('decode', {
        request: first,
        params: await prefill.call('prefill', { request: first }),
      });
      expect(ok.status).toBe('ready');
      const second = { id: 'b', tokens: Array.from({ length: 300 }, (_, i) => i + 7) };
      const params = await prefill.call('prefill', { request: second });
      prefill.kill();
      const e = await decode.call('decode', { request: second, params }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(KvwireError);
      // PEER_LOST when the death is noticed during the pull; PEER_UNREACHABLE when it was noticed
      // first (the cached engine is dropped, and the new handshake finds no side channel).
      expect([ErrorCode.PEER_LOST, ErrorCode.PEER_UNREACHABLE]).toContain((e as KvwireError).code);
      console.log(`decode pull after the prefill process died: ${(e as KvwireError).code}: ${(e as Error).message}`);
      // Its blocks come back after the quarantine (operations may still have been in flight).
      let pool: DrainSummary = await decode.call('drain', {});
      for (let i = 0; i < 50 && pool.free !== pool.total; i++) {
        await new Promise((res) => setTimeout(res, 100));
        pool = await decode.call('drain', {});
      }
      expect(pool.free).toBe(pool.total);
    } finally {
      await Promise.all([decode.close(), prefill.close()]);
    }
  }, 60_000);
});

/**
 * `runDemo`: the P/D hand-off end to end across two processes over UCX. It plays the sidecar:
 * forks a prefill worker and a decode worker, sends each request to the prefill, forwards its
 * `kv_transfer_params` to the decode, and checks what comes back — every byte verified by the
 * decode worker, the generated tokens equal to what the prompt implies, and at the end every block
 * back in its pool on both sides with no lease left.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import { KvLayout, type ModelShape } from '../kv/index.js';
import { blockCount, blockHashes, generateTokens } from '../engine/runtimes/synthetic/content.js';
import { WorkerHandle } from './worker-handle.js';
import type { DecodeSummary, DrainSummary, WorkerConfig } from './worker.js';
import { demoWorkload } from './workload.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Requests; default 100. */
  readonly requests?: number;
  /** Requests in flight at once (prefill → decode pipelines); default 4. */
  readonly concurrency?: number;
  /** Model KV shape. */
  readonly model: ModelShape;
  /** Tokens per block; default 16. */
  readonly blockTokens?: number;
  /** Prompt lengths (tokens); defaults 16 and 1024. */
  readonly minTokens?: number;
  /** Longest prompt. */
  readonly maxTokens?: number;
  /** Blocks per rank on each side; default (concurrency + 2) × blocks of the longest prompt. */
  readonly numBlocks?: number;
  /** TP sizes; default 1 each. */
  readonly prefillTp?: number;
  /** Decode TP size. */
  readonly decodeTp?: number;
  /** UCX transports (UCX_TLS syntax); default UCX's choice. */
  readonly transports?: string;
  /** Workload seed; default 1. */
  readonly seed?: number;
  /** The worker entry module; default `worker-entry.js` next to this module. */
  readonly workerUrl?: URL;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** What {@link runDemo} measured and checked. */
export interface DemoReport {
  /** Requests sent. */
  readonly requests: number;
  /** Requests whose KV was pulled. */
  readonly ready: number;
  /** Requests whose pull failed and were recomputed (a failure here). */
  readonly recomputed: number;
  /** What went wrong, one line each. */
  readonly failures: string[];
  /** Bytes the decode worker checked (every block of every request). */
  readonly verifiedBytes: number;
  /** Bytes read from the prefill worker. */
  readonly bytesRead: number;
  /** Blocks of all requests. */
  readonly blocks: number;
  /** Blocks read from the prefill. */
  readonly blocksRead: number;
  /** Blocks served from the decode's prefix cache. */
  readonly blocksCached: number;
  /** Descriptors before coalescing. */
  readonly descriptorsUncoalesced: number;
  /** Descriptors posted. */
  readonly descriptorsPosted: number;
  /** Wall time of the requests (workers started before). */
  readonly wallSeconds: number;
  /** requests ÷ wallSeconds. */
  readonly requestsPerSecond: number;
  /** Bytes read ÷ wall time of the whole run (prefill and verification included). */
  readonly wallGBps: number;
  /** Bytes read ÷ the summed transfer time of the pulls. */
  readonly transferGBps: number;
  /** How the bytes travelled (peer transport and lanes). */
  readonly transports: string;
  /** The prefill pool and leases at the end. */
  readonly prefill: DrainSummary;
  /** The decode pool at the end (prefix cache emptied). */
  readonly decode: DrainSummary;
  /** True when every request was pulled and verified and every block is back. */
  readonly ok: boolean;
}

function positive(v: number, field: string): number {
  if (!Number.isSafeInteger(v) || v < 1)
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${field} must be a positive integer, got ${String(v)}`, {
      field,
    });
  return v;
}

/** Runs the two-process demo. Rejects only when the workers cannot be started or die; check `ok`. */
export async function runDemo(o: DemoOptions): Promise<DemoReport> {
  const requests = positive(o.requests ?? 100, 'requests');
  const concurrency = positive(o.concurrency ?? 4, 'concurrency');
  const blockTokens = positive(o.blockTokens ?? 16, 'blockTokens');
  const maxTokens = positive(o.maxTokens ?? 1024, 'maxTokens');
  const minTokens = Math.min(positive(o.minTokens ?? 16, 'minTokens'), maxTokens);
  const maxBlocks = blockCount(maxTokens, blockTokens);
  const numBlocks = positive(o.numBlocks ?? (concurrency + 2) * maxBlocks, 'numBlocks');
  if (numBlocks < concurrency * maxBlocks) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `numBlocks ${numBlocks} cannot hold ${concurrency} prompts of ${maxTokens} tokens; raise numBlocks to ${concurrency * maxBlocks} or lower concurrency`,
      { field: 'numBlocks' },
    );
  }
  const log = o.log ?? (() => {});
  const layout = new KvLayout({ model: o.model, numBlocks, blockTokens });
  log(
    `model ${o.model.name ?? '(unnamed)'}: ${layout.bytesPerBlock.toLocaleString('en-US')} bytes per block (TP 1), ${numBlocks} blocks per side`,
  );
  const base = {
    secret: randomBytes(32).toString('hex'),
    model: o.model,
    numBlocks,
    blockTokens,
    ...(o.transports ? { transports: o.transports } : {}),
  };
  const prefillConfig: WorkerConfig = { ...base, role: 'prefill', engineId: 'demo-prefill', tp: o.prefillTp ?? 1 };
  const decodeConfig: WorkerConfig = {
    ...base,
    role: 'decode',
    engineId: 'demo-decode',
    tp: o.decodeTp ?? 1,
    maxConcurrentRequests: concurrency,
  };
  const entry = o.workerUrl ?? new URL('./worker-entry.js', import.meta.url);
  const prefill = new WorkerHandle('prefill', entry);
  const decode = new WorkerHandle('decode', entry);
  try {
    await Promise.all([prefill.call('init', { config: prefillConfig }), decode.call('init', { config: decodeConfig })]);
    const workload = demoWorkload({
      requests,
      minTokens,
      maxTokens,
      ...(o.seed === undefined ? {} : { seed: o.seed }),
    });
    const results: DecodeSummary[] = [];
    const failures: string[] = [];
    let next = 0;
    const t0 = performance.now();
    const pipeline = async () => {
      while (next < workload.length) {
        const request = workload[next++]!;
        try {
          const params = await prefill.call('prefill', { request });
          const r = await decode.call<'decode', DecodeSummary>('decode', { request, params });
          const expected = generateTokens(blockHashes(request.tokens, blockTokens).at(-1)!.seed, r.tokens.length);
          if (r.tokens.length === 0 || r.tokens.some((t, i) => t !== expected[i]))
            failures.push(`${request.id}: generated tokens differ from the prompt's`);
          if (r.status !== 'ready') failures.push(`${request.id}: pull failed (${r.reason}), recomputed`);
          results.push(r);
        } catch (e) {
          failures.push(`${request.id}: ${(e as Error).message}`);
        }
        if (results.length % 25 === 0 && results.length > 0) log(`${results.length}/${requests} requests verified`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, pipeline));
    const wallSeconds = (performance.now() - t0) / 1000;
    // Leases end when the done notification arrives, just after the pull resolved: give it a moment.
    let prefillPool = await prefill.call<'drain', DrainSummary>('drain', {});
    for (let i = 0; i < 100 && prefillPool.leases > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      prefillPool = await prefill.call<'drain', DrainSummary>('drain', {});
    }
    const decodePool = await decode.call<'drain', DrainSummary>('drain', {});
    const sum = (f: (r: DecodeSummary) => number) => results.reduce((s, r) => s + f(r), 0);
    const bytesRead = sum((r) => r.bytes);
    const transferMs = sum((r) => r.transferMs);
    const ready = results.filter((r) => r.status === 'ready').length;
    const back =
      prefillPool.free === prefillPool.total && prefillPool.leases === 0 && decodePool.free === decodePool.total;
    if (!back)
      failures.push(
        `blocks not back in their pools: prefill ${prefillPool.free}/${prefillPool.total} free with ${prefillPool.leases} leases, decode ${decodePool.free}/${decodePool.total} free`,
      );
    return {
      requests,
      ready,
      recomputed: results.length - ready,
      failures,
      verifiedBytes: sum((r) => r.verifiedBytes),
      bytesRead,
      blocks: sum((r) => r.blocks),
      blocksRead: sum((r) => r.blocks - r.blocksCached),
      blocksCached: sum((r) => r.blocksCached),
      descriptorsUncoalesced: sum((r) => r.uncoalesced),
      descriptorsPosted: sum((r) => r.posted),
      wallSeconds,
      requestsPerSecond: requests / wallSeconds,
      wallGBps: bytesRead / wallSeconds / 1e9,
      transferGBps: transferMs > 0 ? bytesRead / (transferMs * 1e6) : 0,
      transports: decodePool.transports,
      prefill: prefillPool,
      decode: decodePool,
      ok: failures.length === 0 && ready === requests && back,
    };
  } finally {
    await Promise.all([decode.close(), prefill.close()]);
  }
}

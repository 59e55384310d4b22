/**
 * The model workload: one P/D request's KV cache, laid out as vLLM lays it out (16-token blocks;
 * per layer a K and a V tensor; one descriptor per layer, K/V and block), moved between two
 * processes per request the way a decode worker would: pair the block ids with lib/kv
 * (`pairBlockDescriptors`, which coalesces runs contiguous on both sides), `agent.prepare`, post,
 * wait for completion.
 *
 * Llama-3-8B: 32 layers × (K, V) × 8 KV heads × 128 dims × 2 bytes = 128 KiB per token, 32 KiB
 * per layer-K-block; 4,096 tokens = 256 blocks = 16,384 descriptors = 512 MiB per request.
 *
 * Reported per (transport, op): time per request, GB/s, descriptors before and after coalescing
 * (and as posted), and the prep+post time (pairing + prepare + marshalling + engine post) as a
 * share of the request's time. The engine's post runs on its own thread, so the time the JS
 * thread itself was busy (pairing, prepare, and the synchronous `post()` call) is reported too.
 *
 * @packageDocumentation
 */
import { KvLayout } from '../../lib/kv/layout.js';
import { pairBlockDescriptors } from '../../lib/kv/pairing.js';
import { kvPreset } from '../../lib/kv/presets.js';
import { KvwireError } from '../../lib/errors.js';
import type { BenchOptions } from './options.js';
import { failedTransport, openPair } from './pair.js';
import type { BenchPair } from './pair.js';
import { BytePattern, ENTRY_STRIDE, regionSalt } from './pattern.js';
import type { Progress } from './progress.js';
import type { SweepHooks } from './sweep.js';
import { benchAgentExtras, poisonIn, verifyIn } from './memory.js';
import { describe, transferTimeoutMs } from './runner.js';
import type { MismatchJson, ModelJson, ModelRowJson, TransportJson } from './schema.js';
import { EMPTY_DISTRIBUTION, Samples } from '../stats.js';
import { fmtBinary } from './units.js';
import { mulberry32 } from '../../lib/util/mulberry32.js';

/** `count` distinct ids from [0, numBlocks) in a seeded pseudo-random order (mulberry32 shuffle). */
export function scatteredBlockIds(count: number, numBlocks: number, seed: number): Uint32Array {
  const all = new Uint32Array(numBlocks).map((_, i) => i);
  const rand = mulberry32(seed);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rand() * (numBlocks - i));
    const x = all[i]!;
    all[i] = all[j]!;
    all[j] = x;
  }
  return all.slice(0, count);
}

/** The layout of a request: model, block count, cache size. */
export function modelLayout(opts: BenchOptions, regionCap: number): { layout: KvLayout; blocks: number } {
  const model = kvPreset(opts.model!);
  const probe = new KvLayout({ model, numBlocks: 1 });
  const blocks = Math.ceil(opts.tokens / probe.blockTokens);
  const fit = Math.floor(regionCap / probe.bytesPerBlock);
  const numBlocks = opts.cacheBlocks ?? Math.max(blocks, Math.min(2 * blocks, fit));
  if (numBlocks < blocks) {
    throw new KvwireError(
      'ERR_KVWIRE_INVALID_ARGUMENT',
      `--cache-blocks ${numBlocks} is smaller than the request's ${blocks} blocks`,
    );
  }
  if (numBlocks * probe.bytesPerBlock > regionCap) {
    throw new KvwireError(
      'ERR_KVWIRE_CAPACITY',
      `a ${numBlocks}-block cache of ${opts.model} needs ${fmtBinary(numBlocks * probe.bytesPerBlock)} per side, over the ${fmtBinary(regionCap)} limit; lower --tokens or --cache-blocks, or raise --max-region`,
    );
  }
  return { layout: new KvLayout({ model, numBlocks }), blocks };
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Runs the model workload over every transport; failures become failed rows. */
export async function runModel(
  opts: BenchOptions,
  engine: 'ucx' | 'loopback',
  transports: readonly string[],
  regionCap: number,
  notice: (m: string) => void,
  progress: Progress,
  hooks: SweepHooks = {},
): Promise<ModelJson> {
  const { layout, blocks } = modelLayout(opts, regionCap);
  const specs = layout.regions(opts.addressing);
  const targetSalts = specs.map((_, i) => regionSalt('target', i));
  const localSalts = specs.map((_, i) => regionSalt('initiator', i));
  const localIds = opts.contiguous
    ? new Uint32Array(blocks).map((_, i) => i)
    : scatteredBlockIds(blocks, layout.numBlocks, 1);
  const remoteIds = opts.contiguous
    ? new Uint32Array(blocks).map((_, i) => i)
    : scatteredBlockIds(blocks, layout.numBlocks, 2);
  const bytesPerRequest = blocks * layout.bytesPerBlock;
  // Steady state, as a serving process that has posted thousands of requests: a few warm-up
  // requests let V8 optimize the descriptor code (the first calls run 3-5x slower, interpreted).
  const iterations = opts.iters ?? 20;
  const warmup = opts.warmup ?? 5;
  const pattern = new BytePattern();
  const rows: ModelRowJson[] = [];
  const infos: TransportJson[] = [];
  if (opts.durationS !== undefined)
    notice('--duration does not apply to --model; it runs --iters requests (default 20)');
  progress.addTotal(transports.length * opts.ops.length);

  for (const transport of transports) {
    let pair: BenchPair;
    progress.begin(
      `model ${opts.model}: ${transport}: starting the target and registering ${specs.length} region(s) per side`,
    );
    try {
      pair = await openPair(
        engine,
        transport,
        specs.map((s, i) => ({ label: s.label, bytes: s.bytes, salt: targetSalts[i]!, memory: opts.targetMemory })),
        specs.map((s, i) => ({
          label: `local-${s.label}`,
          bytes: s.bytes,
          salt: localSalts[i]!,
          memory: opts.initiatorMemory,
        })),
        pattern,
        benchAgentExtras(opts),
      );
    } catch (e) {
      const msg = `could not open a ${transport} pair: ${(e as Error).message}`;
      notice(msg);
      infos.push(failedTransport(engine, transport, layout.arenaBytes, msg));
      for (const op of opts.ops) {
        rows.push(failedRow(transport, op, msg));
        progress.end();
      }
      continue;
    }
    infos.push(pair.info);
    hooks.onConnected?.({ initiator: pair.agent, target: pair.target });
    try {
      for (const op of opts.ops) {
        progress.begin(`model ${opts.model} ${op} ${transport}: ${blocks} blocks`);
        rows.push(await runModelOp(pair, op, transport));
        progress.end();
      }
    } finally {
      await pair.close();
    }
  }

  async function runModelOp(pair: BenchPair, op: 'read' | 'write', transport: string): Promise<ModelRowJson> {
    const request = new Samples(iterations);
    const js = new Samples(iterations);
    let pairMs = 0;
    let prepareMs = 0;
    let callMs = 0;
    const thread = new Samples(iterations);
    let prepMs = 0;
    let postMs = 0;
    let before = 0;
    let after = 0;
    let posted = 0;
    let mismatch: MismatchJson | null = null;
    const timeoutMs = transferTimeoutMs(bytesPerRequest);
    try {
      for (let k = 0; k < warmup + iterations && mismatch === null; k++) {
        const record = k >= warmup;
        let entries: Float64Array | undefined;
        if (opts.check) {
          // The same pairing as below, computed outside the timed part, to know the destination ranges.
          const p = pairBlockDescriptors(layout, localIds, layout, remoteIds, {
            localAddressing: opts.addressing,
            remoteAddressing: opts.addressing,
          });
          entries = new Float64Array(p.count * ENTRY_STRIDE);
          for (let i = 0; i < p.count; i++) {
            const lr = p.local.region[i]!;
            const rr = p.remote.region[i]!;
            entries.set(
              op === 'read'
                ? [lr, p.local.offset[i]!, p.local.length[i]!, targetSalts[rr]!, p.remote.offset[i]!]
                : [rr, p.remote.offset[i]!, p.local.length[i]!, localSalts[lr]!, p.local.offset[i]!],
              i * ENTRY_STRIDE,
            );
          }
          if (op === 'read') poisonIn(pattern, pair.local, entries);
          else await pair.target.poison(entries);
        }
        const t0 = nowMs();
        const d = pairBlockDescriptors(layout, localIds, layout, remoteIds, {
          localAddressing: opts.addressing,
          remoteAddressing: opts.addressing,
        });
        const t1 = nowMs();
        // Block ids change with every request, so the descriptors go straight to read()/write(),
        // which validates, coalesces and posts them in one pass (no separate prepared list).
        const lcols = {
          regions: pair.local,
          region: d.local.region,
          offset: d.local.offset,
          length: d.local.length,
          count: d.count,
        };
        const rcols = {
          regions: pair.remote,
          region: d.remote.region,
          offset: d.remote.offset,
          length: d.remote.length,
          count: d.count,
        };
        const t2 = nowMs();
        const transfer =
          op === 'read'
            ? pair.agent.read(pair.peer, lcols, rcols, { timeoutMs })
            : pair.agent.write(pair.peer, lcols, rcols, { timeoutMs });
        const t2b = nowMs();
        const s = await transfer.done;
        const t3 = nowMs();
        before = d.before;
        after = d.after;
        posted = s.postedDescriptors;
        if (record) {
          request.add(t3 - t0);
          const jsTime = t1 - t0 + (t2 - t1) + s.prepMs + s.postMs;
          js.add(jsTime);
          pairMs += t1 - t0;
          prepareMs += t2 - t1;
          callMs += t2b - t2;
          thread.add(t2b - t0);
          prepMs += s.prepMs;
          postMs += s.postMs;
        }
        if (entries !== undefined) {
          const m =
            op === 'read'
              ? verifyIn(pattern, pair.local, entries, localSalts)
              : await pair.target.verify(entries, true);
          if (m) mismatch = { side: op === 'read' ? 'initiator' : 'target', ...m, transfer: k };
        }
        progress.partial((k + 1) / (warmup + iterations));
      }
    } catch (e) {
      return failedRow(transport, op, (e as Error).message);
    }
    const n = request.length;
    const req = request.summary();
    const jsd = js.summary();
    return {
      transport,
      op,
      status: mismatch === null ? 'ok' : 'failed',
      error: mismatch === null ? null : `corrupted at ${describe(mismatch)}`,
      iterations: n,
      requestMs: req,
      gbps: req.avg > 0 ? bytesPerRequest / (req.avg / 1000) / 1e9 : 0,
      descriptorsBefore: before,
      descriptorsAfter: after,
      descriptorsPosted: posted,
      jsMs: jsd,
      jsBreakdownMs: {
        pair: n ? pairMs / n : 0,
        prepare: n ? prepareMs / n : 0,
        prep: n ? prepMs / n : 0,
        post: n ? postMs / n : 0,
        call: n ? callMs / n : 0,
      },
      jsSharePct: req.avg > 0 ? (jsd.avg / req.avg) * 100 : 0,
      jsThreadMs: thread.summary(),
      jsThreadSharePct: req.avg > 0 ? (thread.summary().avg / req.avg) * 100 : 0,
      checked: opts.check,
      mismatch,
    };
  }

  function failedRow(transport: string, op: 'read' | 'write', error: string): ModelRowJson {
    return {
      transport,
      op,
      status: 'failed',
      error,
      iterations: 0,
      requestMs: EMPTY_DISTRIBUTION,
      gbps: 0,
      descriptorsBefore: 0,
      descriptorsAfter: 0,
      descriptorsPosted: 0,
      jsMs: EMPTY_DISTRIBUTION,
      jsBreakdownMs: { pair: 0, prepare: 0, prep: 0, post: 0, call: 0 },
      jsSharePct: 0,
      jsThreadMs: EMPTY_DISTRIBUTION,
      jsThreadSharePct: 0,
      checked: opts.check,
      mismatch: null,
    };
  }

  return {
    preset: opts.model!,
    tokens: opts.tokens,
    blockTokens: layout.blockTokens,
    blocks,
    bytesPerToken: layout.bytesPerToken,
    bytesPerRequest,
    blockBytes: layout.blockBytes,
    addressing: opts.addressing,
    contiguous: opts.contiguous,
    cacheBlocks: layout.numBlocks,
    regionsPerSide: specs.length,
    transports: infos,
    rows,
  };
}

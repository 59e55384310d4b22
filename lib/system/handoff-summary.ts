/**
 * The KV hand-offs of a run, and why their speed is what it is.
 *
 * Totals come from the decode engines' counters (`kvwire_pd_transfer_*`, scraped at the end);
 * the breakdown of a pull (handshake, waiting for pull capacity, the READs themselves, the rest)
 * from each request's `decode-kv-pull` Server-Timing entry; the copies through llama.cpp's state
 * files from `kvwire_engine_kv_handoff_seconds{stage}`. The yardstick is this machine's memory
 * copy speed measured in the same run: on one host a READ over shared memory is a copy.
 *
 * @packageDocumentation
 */
import { cpus } from 'node:os';
import type { RequestRecord } from './client.js';
import { sumOf, type ScrapedMetrics } from './metrics-scrape.js';
import { pullOf } from './request-path.js';

/** The KV hand-offs of the run. */
export interface HandoffSummary {
  /** Pulls that completed (decode engines' `kvwire_pd_transfer_latency_seconds_count`). */
  readonly handoffs: number;
  /** Bytes READ from prefill workers. */
  readonly bytes: number;
  /** Summed time of the pulls, s. */
  readonly transferSeconds: number;
  /** bytes / transferSeconds / 1e9: one hand-off's speed, end to end. */
  readonly gbpsPerHandoff: number;
  /** Mean bytes per hand-off. */
  readonly bytesPerHandoff: number;
  /** Mean time of a hand-off's READs (post to the last byte in place), ms. */
  readonly msPerHandoff: number;
  /** Mean time of a whole pull (the decode's request to the blocks in place: handshake, queue, READs, done), ms. */
  readonly msPerPull: number;
  /** Descriptors posted per hand-off after coalescing. */
  readonly descriptorsPerHandoff: number;
  /** KV bytes per block (bytes / blocks READ). */
  readonly bytesPerBlock: number;
  /** Per pull, mean ms: the READs themselves, handshakes (spread over all pulls), waiting for capacity. */
  readonly breakdownMs: { readonly reads: number; readonly handshake: number; readonly queue: number };
  /** bytes / time of the READs themselves, GB/s (0 when the engines did not report it). */
  readonly readGbps: number;
  /** How the bytes travelled (UCX transport per pull). */
  readonly transports: readonly string[];
  /** Side-channel handshakes. */
  readonly handshakes: number;
  /** Mean handshake, ms. */
  readonly msPerHandshake: number;
  /** Mean time to copy a request's KV out of llama.cpp into blocks on the prefill, ms. */
  readonly msStore: number;
  /** Mean time to load pulled blocks into llama.cpp on the decode, ms. */
  readonly msLoad: number;
  /** This machine's memory copy speed measured in the same run, GB/s. */
  readonly copyGbps: number;
  /** The same into memory touched for the first time (page faults included), GB/s; 0 when not measured. */
  readonly freshCopyGbps: number;
  /** The machine's load average at the end of the requests. */
  readonly loadAverage: number;
  /** Why the figure is what it is, one sentence each. */
  readonly why: readonly string[];
}

const GB = 1e9;

/** `1.23 MB` (decimal, as GB/s is). */
export function mb(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  return `${(bytes / 1e3).toFixed(1)} kB`;
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

/** Summarizes the hand-offs of a run. */
export function handoffOf(
  records: readonly RequestRecord[],
  metrics: readonly ScrapedMetrics[],
  machine: {
    /** Warm memory copy speed, GB/s. */
    readonly copyGbps: number;
    /** Copy into freshly mapped memory, GB/s (0: not measured). */
    readonly freshCopyGbps?: number;
    /** 1-minute load average at the end of the requests. */
    readonly loadAverage: number;
    /** `llama` or `synthetic`: what the engines do around the pull. */
    readonly runtime: string;
  },
): HandoffSummary {
  const { copyGbps, loadAverage, runtime } = machine;
  const freshCopyGbps = machine.freshCopyGbps ?? 0;
  const m = metrics;
  const handoffs = sumOf(m, ['decode'], 'kvwire_pd_transfer_latency_seconds_count');
  const transferSeconds = sumOf(m, ['decode'], 'kvwire_pd_transfer_latency_seconds_sum');
  const bytes = sumOf(m, ['decode'], 'kvwire_pd_transfer_bytes_total');
  const blocks = sumOf(m, ['decode'], 'kvwire_pd_blocks_total', { source: 'remote' });
  const handshakes = sumOf(m, ['decode'], 'kvwire_pd_handshake_latency_seconds_count');
  const handshakeSeconds = sumOf(m, ['decode'], 'kvwire_pd_handshake_latency_seconds_sum');
  const stage = (role: 'decode' | 'prefill', s: string): number => {
    const n = sumOf(m, [role], 'kvwire_engine_kv_handoff_seconds_count', { stage: s });
    return n > 0 ? (1000 * sumOf(m, [role], 'kvwire_engine_kv_handoff_seconds_sum', { stage: s })) / n : 0;
  };
  const msStore = stage('prefill', 'store');
  const msLoad = stage('decode', 'load');
  const pulls = records.map(pullOf).filter((p) => p !== undefined && p.bytes > 0);
  const mean = (f: (p: NonNullable<(typeof pulls)[number]>) => number): number =>
    pulls.length > 0 ? pulls.reduce((s, p) => s + f(p!), 0) / pulls.length : 0;
  const reads = mean((p) => p.transferMs ?? 0);
  const readBytes = pulls.reduce((s, p) => s + p!.bytes, 0);
  const readMs = pulls.reduce((s, p) => s + (p!.transferMs ?? 0), 0);
  const readGbps = readMs > 0 ? readBytes / (readMs * 1e6) : 0;
  const breakdownMs = { reads, handshake: mean((p) => p.handshakeMs ?? 0), queue: mean((p) => p.queueMs ?? 0) };
  const transports = [...new Set(pulls.map((p) => p!.transport ?? 'unknown'))];
  const gbps = transferSeconds > 0 ? bytes / transferSeconds / GB : 0;
  const perHandoff = handoffs > 0 ? bytes / handoffs : 0;
  const msPer = handoffs > 0 ? (1000 * transferSeconds) / handoffs : 0;
  const bytesPerBlock = blocks > 0 ? bytes / blocks : 0;
  const copyMs = (1000 * perHandoff) / (copyGbps * GB);
  const msPerPull = mean((p) => p.ms);
  const posted = sumOf(m, ['decode'], 'kvwire_pd_descriptors_total', { stage: 'posted' });
  const descriptorsPerHandoff = handoffs > 0 ? posted / handoffs : 0;
  const why: string[] = [];
  if (handoffs === 0) {
    why.push('No KV was handed off: every request ran decode-only (short uncached parts, or no prefill worker).');
  } else {
    const via = transports.length > 0 ? ` over UCX ${transports.join('/')}` : '';
    why.push(
      `Each hand-off READ ${mb(perHandoff)} on average (${int(bytesPerBlock)} bytes per 16-token block of this model, ${int(descriptorsPerHandoff)} descriptors posted after coalescing)${via} in ${msPer.toFixed(1)} ms, from posting the READs to the last byte in place: ${gbps.toFixed(2)} GB/s, ${((100 * gbps) / Math.max(copyGbps, 1e-9)).toFixed(0)}% of a plain memory copy on this machine (${copyGbps.toFixed(1)} GB/s measured in the same run; ${copyMs.toFixed(2)} ms for that size).`,
    );
    if (freshCopyGbps > 0 && transports.every((t) => t === 'sm'))
      why.push(
        `Over shared memory a READ is a copy into the decode's KV-cache blocks, and in a run this short most blocks are used for the first time: every 4 KiB page faults in on the way. A copy into memory touched for the first time runs at ${freshCopyGbps.toFixed(2)} GB/s on this machine (measured in the same run): the READs reach ${((100 * gbps) / freshCopyGbps).toFixed(0)}% of that.`,
      );
    if (pulls.length > 0) {
      const rest = Math.max(0, msPerPull - reads - breakdownMs.handshake - breakdownMs.queue);
      why.push(
        `The whole pull, from the decode's request to the blocks in place, took ${msPerPull.toFixed(1)} ms on average: the READs ${reads.toFixed(1)} ms, handshakes ${breakdownMs.handshake.toFixed(1)} ms (${handshakes} of them, ${handshakes > 0 ? ((1000 * handshakeSeconds) / handshakes).toFixed(1) : '0'} ms each, once per decode-prefill pair, spread over the pulls), waiting for pull capacity ${breakdownMs.queue.toFixed(1)} ms, and ${rest.toFixed(1)} ms taking blocks, the lease fence and the done notification to the prefill. Every process also waits for a CPU: load average ${loadAverage.toFixed(1)} on ${cpus().length} cores${loadAverage > cpus().length ? ' (the machine is shared and busy)' : ''}.`,
      );
    }
    if (perHandoff < 64e6)
      why.push(
        `At ${mb(perHandoff)} per request the fixed costs of a pull (per descriptor, per message, the event loop of two busy processes) outweigh the bytes; the throughput of the data plane shows with bigger KV (--runtime synthetic --model llama-3-8b: 2 MiB per block) and in kvwire bench.`,
      );
    if ((msStore > 0 || msLoad > 0) && runtime === 'llama')
      why.push(
        `Outside the pull but inside the hand-off: llama.cpp has no in-memory KV API, so the prefill writes the sequence state to a file on tmpfs and copies its rows into registered blocks (${msStore.toFixed(1)} ms per request) and the decode rebuilds the file and loads it (${msLoad.toFixed(1)} ms): ${((msStore + msLoad) / Math.max(msPerPull, msPer, 1e-9)).toFixed(1)}x the pull.`,
      );
    else if (msStore > 0 || msLoad > 0)
      why.push(
        `Outside the pull but inside the hand-off: the synthetic prefill writes every KV byte as a function of its token and position (${msStore.toFixed(1)} ms per request) and the decode checks every byte it pulled (${msLoad.toFixed(1)} ms).`,
      );
  }
  return {
    handoffs,
    bytes,
    transferSeconds,
    gbpsPerHandoff: gbps,
    bytesPerHandoff: perHandoff,
    msPerHandoff: msPer,
    msPerPull,
    descriptorsPerHandoff,
    bytesPerBlock,
    breakdownMs,
    readGbps,
    transports,
    handshakes,
    msPerHandshake: handshakes > 0 ? (1000 * handshakeSeconds) / handshakes : 0,
    msStore,
    msLoad,
    copyGbps,
    freshCopyGbps,
    loadAverage,
    why,
  };
}

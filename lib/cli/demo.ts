/**
 * `kvwire demo`: the P/D hand-off end to end — a prefill process and a decode process over UCX,
 * N requests of mixed lengths with shared prefixes, every byte verified, every block back.
 *
 * @packageDocumentation
 */
import { parseArgs } from 'node:util';
import { KV_PRESET_NAMES, kvPreset, type KvPresetName, type ModelShape } from '../kv/index.js';
import { runDemo, type DemoReport } from '../demo/run.js';
import { ucxUnavailableReason } from '../transport/native-engine.js';
import { renderTable } from './table.js';

const USAGE = `usage: kvwire demo [options]

Starts a prefill process and a decode process (UCX), sends requests of mixed prompt lengths with
shared prefixes through the P/D hand-off (handshake, block leases, READ of the missing blocks,
done notification), verifies every byte on the decode side, and checks that every block is back in
its pool on both sides. Exits 0 only if everything verified.

options:
  --requests N        requests to run (default 100)
  --concurrency N     requests in flight at once (default 4)
  --model NAME        KV preset: ${KV_PRESET_NAMES.join(', ')} (default llama-3-8b)
  --layers N          keep only N layers of the preset (smaller blocks, same shape otherwise)
  --max-tokens N      longest prompt (default 1024); --min-tokens N shortest (default 16)
  --blocks N          KV blocks per side (default: (concurrency + 2) x blocks of the longest prompt)
  --block-tokens N    tokens per block (default 16)
  --prefill-tp N      prefill tensor-parallel ranks, one agent each (default 1)
  --decode-tp N       decode tensor-parallel ranks (default 1)
  --transports T      UCX transports, UCX_TLS syntax: tcp, sm, ... (default: UCX's choice)
  --seed N            workload seed (default 1)
  --json              print the report as JSON`;

function int(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got '${v}'`);
  return n;
}

function modelOf(name: string, layers: number | undefined): ModelShape {
  const preset = kvPreset(name as KvPresetName);
  return layers === undefined ? preset : { ...preset, name: `${preset.name}-${layers}L`, layers };
}

function print(r: DemoReport): void {
  const gb = (b: number) => (b / 1e9).toFixed(3);
  console.log(
    renderTable(
      ['measure', 'value'],
      [
        ['requests (ready / recomputed)', `${r.ready} / ${r.recomputed} of ${r.requests}`],
        ['requests per second', r.requestsPerSecond.toFixed(1)],
        ['KV read (GB)', gb(r.bytesRead)],
        ['GB/s, bytes read / wall time', r.wallGBps.toFixed(3)],
        ['GB/s, per pull (bytes / transfer time)', r.transferGBps.toFixed(3)],
        ['bytes verified (GB)', gb(r.verifiedBytes)],
        ['blocks read / prefix-cached', `${r.blocksRead} / ${r.blocksCached}`],
        ['descriptors before / after coalescing', `${r.descriptorsUncoalesced} / ${r.descriptorsPosted}`],
        ['transport', r.transports || 'none'],
        ['prefill blocks back in pool', `${r.prefill.free} / ${r.prefill.total} (${r.prefill.leases} leases held)`],
        ['decode blocks back in pool', `${r.decode.free} / ${r.decode.total}`],
      ],
    ),
  );
  for (const f of r.failures.slice(0, 20)) console.log(`FAILED ${f}`);
  console.log(
    r.ok ? '\nOK: every byte verified, every block back in its pool' : `\nFAILED: ${r.failures.length} problem(s)`,
  );
}

/** Runs `kvwire demo`. */
export async function main(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        requests: { type: 'string' },
        concurrency: { type: 'string' },
        model: { type: 'string' },
        layers: { type: 'string' },
        'max-tokens': { type: 'string' },
        'min-tokens': { type: 'string' },
        blocks: { type: 'string' },
        'block-tokens': { type: 'string' },
        'prefill-tp': { type: 'string' },
        'decode-tp': { type: 'string' },
        transports: { type: 'string' },
        seed: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    console.error(`kvwire demo: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const s = (k: string) => values[k] as string | undefined;
  let options: Parameters<typeof runDemo>[0];
  try {
    const opt = (k: string, name: string) => {
      const v = int(s(k), k);
      return v === undefined ? {} : { [name]: v };
    };
    options = {
      model: modelOf(s('model') ?? 'llama-3-8b', int(s('layers'), 'layers')),
      ...opt('requests', 'requests'),
      ...opt('concurrency', 'concurrency'),
      ...opt('max-tokens', 'maxTokens'),
      ...opt('min-tokens', 'minTokens'),
      ...opt('blocks', 'numBlocks'),
      ...opt('block-tokens', 'blockTokens'),
      ...opt('prefill-tp', 'prefillTp'),
      ...opt('decode-tp', 'decodeTp'),
      ...opt('seed', 'seed'),
      ...(s('transports') ? { transports: s('transports')! } : {}),
      ...(values.json ? {} : { log: (line: string) => console.log(line) }),
    };
  } catch (e) {
    console.error(`kvwire demo: ${(e as Error).message}`);
    return 2;
  }
  const why = ucxUnavailableReason();
  if (why !== undefined) {
    console.error(`kvwire demo: needs the UCX engine, which is unavailable: ${why}`);
    return 1;
  }
  let report: DemoReport;
  try {
    report = await runDemo(options);
  } catch (e) {
    console.error(`kvwire demo: ${(e as Error).message}`);
    return 1;
  }
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else print(report);
  return report.ok ? 0 : 1;
}

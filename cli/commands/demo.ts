/**
 * `kvwire demo`: the P/D hand-off end to end — a prefill process and a decode process over UCX,
 * N requests of mixed lengths with shared prefixes, every byte verified, every block back.
 *
 * @packageDocumentation
 */
import type { Command } from 'commander';
import { KV_PRESET_NAMES, kvPreset, type KvPresetName, type ModelShape } from '../../lib/kv/index.js';
import { runDemo, type DemoOptions, type DemoReport } from '../../lib/demo/run.js';
import { ucxUnavailableReason } from '../../lib/transport/native-engine.js';
import { checkTransports } from '../kit/checks.js';
import { asUsageError, kvwireCommand, UsageError } from '../kit/command.js';
import { renderTable } from '../kit/table.js';
import { integer } from '../kit/values.js';

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

/** The API option behind each flag, for the library's errors (`numBlocks` is `--blocks` here). */
const FLAGS = {
  requests: '--requests',
  concurrency: '--concurrency',
  maxTokens: '--max-tokens',
  minTokens: '--min-tokens',
  numBlocks: '--blocks',
  blockTokens: '--block-tokens',
  prefillTp: '--prefill-tp',
  decodeTp: '--decode-tp',
  layers: '--layers',
  transports: '--transports',
  seed: '--seed',
};

/** What the demo's flags parse to. */
interface DemoFlags {
  requests?: number;
  concurrency?: number;
  model: string;
  layers?: number;
  maxTokens?: number;
  minTokens?: number;
  blocks?: number;
  blockTokens?: number;
  prefillTp?: number;
  decodeTp?: number;
  transports?: string;
  seed?: number;
  json?: boolean;
}

function preset(text: string): string {
  try {
    kvPreset(text as KvPresetName);
  } catch (e) {
    throw new UsageError(`--model: ${(e as Error).message}`);
  }
  return text;
}

/** Declares `kvwire demo`. */
export function command(): Command {
  const positive = integer(1);
  return kvwireCommand('demo')
    .addHelpText(
      'after',
      `
Starts a prefill process and a decode process (UCX), sends requests of mixed prompt lengths with
shared prefixes through the P/D hand-off (handshake, block leases, READ of the missing blocks,
done notification), verifies every byte on the decode side, and checks that every block is back in
its pool on both sides. Exits 0 only if everything verified.`,
    )
    .option('--requests <n>', 'requests to run (default 100)', positive)
    .option('--concurrency <n>', 'requests in flight at once (default 4)', positive)
    .option('--model <name>', `KV preset: ${KV_PRESET_NAMES.join(', ')}`, preset, 'llama-3-8b')
    .option('--layers <n>', 'keep only N layers of the preset (smaller blocks, same shape otherwise)', positive)
    .option('--max-tokens <n>', 'longest prompt (default 1024)', positive)
    .option('--min-tokens <n>', 'shortest prompt (default 16)', positive)
    .option('--blocks <n>', 'KV blocks per side (default: (concurrency + 2) x blocks of the longest prompt)', positive)
    .option('--block-tokens <n>', 'tokens per block (default 16)', positive)
    .option('--prefill-tp <n>', 'prefill tensor-parallel ranks, one agent each (default 1)', positive)
    .option('--decode-tp <n>', 'decode tensor-parallel ranks (default 1)', positive)
    .option('--transports <list>', "UCX transports, UCX_TLS syntax: tcp, sm, ... (default: UCX's choice)")
    .option('--seed <n>', 'workload seed (default 1)', positive)
    .option('--json', 'print the report as JSON')
    .run(async (f: DemoFlags) => {
      const why = ucxUnavailableReason();
      if (why !== undefined) {
        console.error(`kvwire demo: needs the UCX engine, which is unavailable: ${why}`);
        return 1;
      }
      if (f.transports !== undefined) checkTransports('--transports', [f.transports]);
      const options: DemoOptions = {
        model: modelOf(f.model, f.layers),
        requests: f.requests,
        concurrency: f.concurrency,
        maxTokens: f.maxTokens,
        minTokens: f.minTokens,
        numBlocks: f.blocks,
        blockTokens: f.blockTokens,
        prefillTp: f.prefillTp,
        decodeTp: f.decodeTp,
        seed: f.seed,
        transports: f.transports,
        ...(f.json === true ? {} : { log: (line: string) => console.log(line) }),
      };
      let report: DemoReport;
      try {
        report = await runDemo(options);
      } catch (e) {
        throw asUsageError(e, FLAGS);
      }
      if (f.json === true) console.log(JSON.stringify(report, null, 2));
      else print(report);
      return report.ok ? 0 : 1;
    });
}

/**
 * `kvwire bench`: the transfer-throughput benchmark, side by side with raw UCX. Options and
 * output are described by `kvwire bench --help`, `docs/bench.md` and `lib/bench/schema.ts`.
 *
 * stdout carries the result only (tables, JSON or CSV); notices and the progress bar go to
 * stderr. Exit code: 0 when every row passed, 1 when one failed (or the run could not start),
 * 2 for bad options.
 *
 * @packageDocumentation
 */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { installInterruptHandlers, killChildren } from '../bench/children.js';
import { renderMarkdown } from '../bench/markdown.js';
import { benchUsage, parseBenchArgs, UsageError } from '../bench/options.js';
import type { BenchOptions } from '../bench/options.js';
import { renderPlot } from '../bench/plot.js';
import { progressFor } from '../bench/progress.js';
import { renderCsv, renderSweep, renderText } from '../bench/render.js';
import { runBench } from '../bench/run.js';
import type { SweepHooks } from '../bench/sweep.js';

/** Runs `kvwire bench` with `argv` (the arguments after `bench`); returns the exit code. */
export async function main(argv: string[], hooks: SweepHooks = {}): Promise<number> {
  // UCX logs to stdout unless told otherwise, and stdout carries our JSON/CSV: send its warnings
  // to stderr. Only effective before the addon loads (UCX reads it at load); children inherit it.
  process.env['UCX_LOG_FILE'] ??= 'stderr';
  let opts: BenchOptions;
  try {
    opts = parseBenchArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`kvwire bench: ${e.message}\n\n${benchUsage()}`);
      return 2;
    }
    throw e;
  }
  if (opts.help) {
    console.log(benchUsage());
    return 0;
  }
  const progress = progressFor(opts.quiet);
  const uninstall = installInterruptHandlers(() => progress.finish());
  const table = !opts.json && !opts.csv;
  let printedSweep = false;
  try {
    const report = await runBench(
      opts,
      argv,
      {
        notice: (m) => {
          progress.clear();
          process.stderr.write(`kvwire bench: ${m}\n`);
        },
        progress,
        // Tables appear as each transport completes, not only at the end of a long run.
        onSweepTransport: table
          ? (t, _rows, sweep) => {
              progress.clear();
              process.stdout.write(`${printedSweep ? '\n' : ''}${renderSweep(sweep, [t.name])}\n`);
              printedSweep = true;
            }
          : undefined,
      },
      hooks,
    );
    if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else if (opts.csv) process.stdout.write(`${renderCsv(report)}\n`);
    else {
      const rest = renderText(report, printedSweep);
      const legend = printedSweep
        ? 'GB/s = 10^9 bytes/s; times in µs per transfer; x put = ours / ucp_put_bw, x best = ours / max(put_bw, am_bw) (see docs/bench.md)\n'
        : '';
      process.stdout.write(printedSweep ? `\n${legend}${rest ? `\n${rest}\n` : ''}` : `${rest}\n`);
    }
    if (opts.plot !== undefined) {
      writeFileSync(opts.plot, renderPlot(report, opts.plotBatch));
      process.stderr.write(`kvwire bench: plot written to ${opts.plot}\n`);
    }
    if (opts.markdown !== undefined) {
      writeFileSync(opts.markdown, renderMarkdown(report, opts.plot !== undefined ? basename(opts.plot) : undefined));
      process.stderr.write(`kvwire bench: report written to ${opts.markdown}\n`);
    }
    return report.exitCode;
  } catch (e) {
    progress.finish();
    if (e instanceof UsageError) {
      console.error(`kvwire bench: ${e.message}\n\n${benchUsage()}`);
      return 2;
    }
    const code = (e as { code?: unknown }).code;
    console.error(`kvwire bench: ${(e as Error).message}${typeof code === 'string' ? ` (${code})` : ''}`);
    return 1;
  } finally {
    uninstall();
    killChildren();
  }
}

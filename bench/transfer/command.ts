/**
 * `kvwire bench`: the transfer-throughput benchmark, side by side with raw UCX. Options and
 * output are described by `kvwire bench --help`, `docs/bench.md` and `schema.ts`.
 *
 * stdout carries the result only (tables, JSON or CSV); notices and the progress bar go to
 * stderr. Exit code: 0 when every row passed, 1 when one failed (or the run could not start),
 * 2 for bad options.
 *
 * @packageDocumentation
 */
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { checkOutputFile, checkTransports } from '../../cli/kit/checks.js';
import { argvOf, kvwireCommand, runCommand } from '../../cli/kit/command.js';
import { installInterruptHandlers, killChildren } from './children.js';
import { renderMarkdown } from './markdown.js';
import { declareBenchOptions, resolveBenchOptions } from './options.js';
import type { BenchOptions } from './options.js';
import { renderPlot } from './plot.js';
import { progressFor } from './progress.js';
import { renderCsv, renderSweep, renderText } from './render.js';
import { runBench } from './run.js';
import type { SweepHooks } from './sweep.js';

/** Declares `kvwire bench`; `hooks` let tests reach into the sweep. */
export function command(hooks: SweepHooks = {}): Command {
  const cmd = kvwireCommand('bench');
  return declareBenchOptions(cmd).run(async () => {
    const opts = resolveBenchOptions(cmd.opts());
    if (opts.transports !== undefined && opts.engine !== 'loopback') checkTransports('--transports', opts.transports);
    if (opts.plot !== undefined) checkOutputFile('--plot', opts.plot);
    if (opts.markdown !== undefined) checkOutputFile('--markdown', opts.markdown);
    return run(opts, argvOf(cmd), hooks);
  });
}

/** Runs `kvwire bench` with `argv` (the arguments after `bench`); returns the exit code. */
export function main(argv: string[], hooks: SweepHooks = {}): Promise<number> {
  return runCommand(command(hooks), argv);
}

async function run(opts: BenchOptions, argv: readonly string[], hooks: SweepHooks): Promise<number> {
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
    throw e; // runCommand prints it: exit 2 for a UsageError, else 1 with the error's code
  } finally {
    uninstall();
    killChildren();
  }
}

/**
 * `kvwire demo` (`npm start`): the whole P/D serving path on this machine, as real processes — a
 * router, two decode workers behind their sidecars, two prefill workers, KV events into the
 * router's index — driven by the openai client; every output checked against a single worker; a
 * summary on the terminal and an HTML report (lib/system).
 *
 * Ctrl-C stops every process it started (a second Ctrl-C kills them at once) and exits 130.
 *
 * @packageDocumentation
 */
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { Option } from 'commander';
import { KvwireError, ErrorCode } from '../../lib/errors.js';
import { KV_PRESET_NAMES } from '../../lib/kv/index.js';
import type { LocalSystem } from '../../lib/system/local-system.js';
import { checkOutputFile, checkTransports, listenError } from '../kit/checks.js';
import { asUsageError, kvwireCommand, UsageError, type KvwireCommand } from '../kit/command.js';
import { renderTable } from '../kit/table.js';
import { hostPort, integer, oneOf } from '../kit/values.js';

/** What the demo's flags parse to. */
interface DemoFlags {
  runtime: 'llama' | 'synthetic';
  model?: string;
  layers?: number;
  requests: number;
  concurrency: number;
  seed: number;
  killPrefillAfter?: number;
  listen: { host: string; port: number };
  report: string;
  json?: boolean;
  transports?: string;
  pdThreshold?: number;
}

const LLAMA_MODELS = ['tiny', 'small'];

/** Fails with a UsageError naming --listen when the router's address is taken (port 0 is never). */
async function checkListen(listen: { host: string; port: number }): Promise<void> {
  if (listen.port === 0) return;
  const address = `${listen.host}:${listen.port}`;
  await new Promise<void>((ok, fail) => {
    const s = createServer();
    s.once('error', (e) => fail(listenError(e, '--listen', address)));
    s.listen(listen.port, listen.host, () => s.close(() => ok()));
  });
}

/** Declares `kvwire demo`. */
export function command(): KvwireCommand {
  const positive = integer(1);
  return kvwireCommand('demo')
    .addOption(
      new Option('--runtime <runtime>', 'llama (llama.cpp, a generated model) or synthetic (real KV shapes)')
        .argParser(oneOf(['llama', 'synthetic'] as const))
        .default('llama'),
    )
    .option(
      '--model <name>',
      `llama: ${LLAMA_MODELS.join(' | ')} (default small); synthetic: a KV preset (default llama-3-8b)`,
    )
    .option('--layers <n>', 'synthetic: keep only N layers of the preset', positive)
    .option('--requests <n>', 'requests to send', positive, 100)
    .option('--concurrency <n>', 'sessions in flight at once', positive, 4)
    .option('--seed <n>', 'workload seed', positive, 1)
    .option('--kill-prefill-after <n>', 'fault drill: SIGKILL a prefill worker after N requests finished', positive)
    .addOption(
      new Option('--listen <host:port>', "the router's address (port 0: any free port)")
        .argParser(hostPort)
        .default({ host: '127.0.0.1', port: 8080 }, '127.0.0.1:8080'),
    )
    .option('--report <file>', 'write the HTML report here', 'kvwire-report.html')
    .option('--json', 'print the summary as JSON on stdout (progress goes to stderr)')
    .option('--transports <list>', "the engines' UCX transports, UCX_TLS syntax: tcp, sm, ... (default: UCX's choice)")
    .option(
      '--pd-threshold <tokens>',
      "the router's P/D threshold: uncached prompt tokens worth a separate prefill",
      integer(0),
    )
    .addHelpText(
      'after',
      `
Starts, on this machine, the router (kvwire router), two decode workers (kvwire engine --role decode)
each behind its sidecar (kvwire sidecar), two prefill workers (--role prefill) and a single worker
(--role both) as the reference; the decode workers' KV events (ZMQ) feed the router's index. Sends
--requests chat requests in multi-turn sessions sharing a few system prompts through the router with
the openai client (streaming, --concurrency sessions at once), checks every output against the
reference worker token for token, prints the summary and writes the HTML report. Exit 0 only when
every request succeeded and every output matched.

  npm start                                        the same as: kvwire demo
  kvwire demo --runtime synthetic --model llama-3-8b   data-plane scale (2 MiB KV blocks)
  kvwire demo --kill-prefill-after 40              the fault drill

Ctrl-C stops every process it started; a second Ctrl-C kills them at once.`,
    )
    .run(async (f: DemoFlags) => {
      if (f.runtime === 'llama' && f.model !== undefined && !LLAMA_MODELS.includes(f.model))
        throw new UsageError(`--model: the llama runtime serves ${LLAMA_MODELS.join(', ')}, not '${f.model}'`);
      if (
        f.runtime === 'synthetic' &&
        f.model !== undefined &&
        !(KV_PRESET_NAMES as readonly string[]).includes(f.model)
      )
        throw new UsageError(
          `--model: the synthetic runtime takes a KV preset (${KV_PRESET_NAMES.join(', ')}), not '${f.model}'`,
        );
      if (f.layers !== undefined && f.runtime !== 'synthetic')
        throw new UsageError('--layers applies to --runtime synthetic only');
      if (f.killPrefillAfter !== undefined && f.killPrefillAfter >= f.requests)
        throw new UsageError(
          `--kill-prefill-after must be below --requests (${f.requests}), not ${f.killPrefillAfter}`,
        );
      if (f.transports !== undefined) checkTransports('--transports', [f.transports]);
      checkOutputFile('--report', f.report);
      await checkListen(f.listen);
      const { runSystemDemo } = await import('../../lib/system/run.js');
      const { summaryRows, verdictLine } = await import('../../lib/system/summary-rows.js');
      const log = (line: string): void => void process.stderr.write(`${line}\n`);

      // Ctrl-C: the first stops the run in order; a second kills every component at once.
      const stop = new AbortController();
      let system: LocalSystem | undefined;
      const onSignal = (signal: NodeJS.Signals): void => {
        if (!stop.signal.aborted) {
          log(`\n${signal}: stopping every process the demo started (again to kill them at once) ...`);
          stop.abort();
        } else {
          for (const c of system?.components ?? []) c.signal('SIGKILL');
        }
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const result = await runSystemDemo({
          runtime: f.runtime,
          ...(f.model === undefined ? {} : { model: f.model }),
          ...(f.layers === undefined ? {} : { layers: f.layers }),
          requests: f.requests,
          concurrency: f.concurrency,
          seed: f.seed,
          ...(f.killPrefillAfter === undefined ? {} : { killPrefillAfter: f.killPrefillAfter }),
          routerListen: f.listen,
          ...(f.transports === undefined ? {} : { transports: f.transports }),
          ...(f.pdThreshold === undefined ? {} : { pdThreshold: f.pdThreshold }),
          reportPath: f.report,
          command: `kvwire demo ${process.argv.slice(3).join(' ')}`.trim(),
          signal: stop.signal,
          log,
          onStarted: (s) => (system = s),
        });
        const s = result.summary;
        if (f.json === true) {
          process.stdout.write(`${JSON.stringify({ ...s, report: resolve(f.report) }, null, 2)}\n`);
        } else {
          process.stdout.write(`\n${renderTable(['measure', 'value'], summaryRows(s))}\n`);
          process.stdout.write('\nWhy the hand-off speed is what it is:\n');
          for (const w of s.handoff.why) process.stdout.write(`  - ${w}\n`);
          for (const p of s.problems.slice(0, 20)) process.stdout.write(`PROBLEM ${p}\n`);
          process.stdout.write(`\n${s.ok ? 'OK' : 'FAILED'}: ${verdictLine(s)}\nreport: ${resolve(f.report)}\n`);
        }
        return s.ok ? 0 : 1;
      } catch (e) {
        if (KvwireError.is(e, ErrorCode.CANCELLED) || stop.signal.aborted) {
          log('stopped: every process the demo started has exited');
          return 130;
        }
        // The router's own "in use" message (a port taken between our check and its start).
        if (/is in use/.test((e as Error).message))
          throw new UsageError(
            `--listen ${f.listen.host}:${f.listen.port}: the port is in use; choose another with --listen`,
          );
        throw asUsageError(e, { killPrefillAfter: '--kill-prefill-after', requests: '--requests' });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

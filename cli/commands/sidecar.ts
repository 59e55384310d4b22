/**
 * `kvwire sidecar`: the routing sidecar beside a decode worker (llm-d's pd-sidecar, nixlv2 flow).
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseAllowEntry } from '../../lib/sidecar/allowlist.js';
import type { SidecarOptions } from '../../lib/sidecar/options.js';
import { listenError } from '../kit/checks.js';
import { asUsageError, collect, kvwireCommand, repeatable, UsageError } from '../kit/command.js';
import { hostPort, integer, oneOf, seconds } from '../kit/values.js';

/** What the flags parse to. */
export interface SidecarFlags {
  listen: { host: string; port: number };
  decode: string;
  allow?: string[];
  allowAny?: boolean;
  prefillerSampling?: boolean;
  prefillMaxRetries: number;
  prefillRetryBackoff: number;
  onPrefillFailure: 'decode' | 'fail';
  prefillTimeout: number;
  decodeTimeout: number;
  maxBodyBytes: number;
  metricsPath: string;
  tlsCert?: string;
  tlsKey?: string;
  prefillTls?: boolean;
  prefillCa?: string;
  quiet?: boolean;
}

/** The API option behind each flag, for the library's errors. */
const FLAGS = {
  decode: '--decode',
  port: '--listen',
  allow: '--allow',
  prefillMaxRetries: '--prefill-max-retries',
  prefillRetryBackoffMs: '--prefill-retry-backoff',
  onPrefillFailure: '--on-prefill-failure',
  prefillTimeoutMs: '--prefill-timeout',
  decodeTimeoutMs: '--decode-timeout',
  maxBodyBytes: '--max-body-bytes',
  metricsPath: '--metrics-path',
  tls: '--tls-cert/--tls-key',
};

function allowEntry(text: string): string {
  try {
    parseAllowEntry(text);
  } catch (e) {
    // The library says "allowlist entry 'X': why"; the runner adds the flag and the value.
    throw new InvalidArgumentError((e as Error).message.replace(/^allowlist entry '[^']*': /, 'is refused: '));
  }
  return text;
}

function decodeUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError("must be the decode worker's URL, e.g. http://127.0.0.1:8200");
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidArgumentError('must be an http:// or https:// URL');
  return text;
}

function readPem(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(
      `${flag} ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

/**
 * Turns the parsed flags into `createSidecar()` options (files read, cross-flag rules checked).
 *
 * @throws UsageError for a flag combination that does not work.
 */
export function sidecarOptions(f: SidecarFlags): SidecarOptions {
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together: give both to listen with TLS, or neither');
  }
  if (f.prefillCa !== undefined && f.prefillTls !== true) {
    throw new UsageError('--prefill-ca is the CA for --prefill-tls; add --prefill-tls to talk TLS to prefill workers');
  }
  return {
    decode: f.decode,
    host: f.listen.host,
    port: f.listen.port,
    allow: f.allow ?? [],
    allowAny: f.allowAny === true,
    prefillerSampling: f.prefillerSampling === true,
    prefillMaxRetries: f.prefillMaxRetries,
    prefillRetryBackoffMs: Math.round(f.prefillRetryBackoff * 1000),
    onPrefillFailure: f.onPrefillFailure,
    prefillTimeoutMs: Math.max(1, Math.round(f.prefillTimeout * 1000)),
    decodeTimeoutMs: Math.max(1, Math.round(f.decodeTimeout * 1000)),
    maxBodyBytes: f.maxBodyBytes,
    metricsPath: f.metricsPath,
    ...(f.tlsCert !== undefined && f.tlsKey !== undefined
      ? { tls: { cert: readPem('--tls-cert', f.tlsCert), key: readPem('--tls-key', f.tlsKey) } }
      : {}),
    ...(f.prefillTls === true
      ? { prefillTls: f.prefillCa === undefined ? {} : { ca: readPem('--prefill-ca', f.prefillCa) } }
      : {}),
  };
}

/** Declares `kvwire sidecar`. */
export function command(): Command {
  return kvwireCommand('sidecar')
    .addHelpText(
      'after',
      `
POST /v1/completions and /v1/chat/completions with an x-prefiller-host-port header run the P/D flow:
the target is checked against the allowlist (address AND port; names resolved once, every address
checked, the checked address dialled), the prefill leg gets kv_transfer_params {do_remote_decode:
true}, max_tokens 1, stream false; the decode leg gets the client's body plus the prefill's
kv_transfer_params, and streams back. Without the header, and for every other path and method,
requests go straight to the decode worker. The sidecar's own metrics are on --metrics-path.

--allow entries: HOST:PORT, HOST (any port), CIDR (10.0.0.0/24) or CIDR:PORT, [IPv6]:PORT, NAME:PORT.
Loopback, link-local, cloud metadata and unspecified addresses are refused whatever the list says
(loopback unless an entry names it). Ready: prints 'kvwire-sidecar-ready {"url": ...}' on stdout.
SIGTERM or SIGINT stops it.`,
    )
    .requiredOption('--decode <url>', 'the decode worker this sidecar fronts, e.g. http://127.0.0.1:8200', decodeUrl)
    .addOption(
      new Option('--listen <host:port>', 'address to serve on')
        .argParser(hostPort)
        .default({ host: '127.0.0.1', port: 8000 }, '127.0.0.1:8000'),
    )
    .addOption(
      repeatable(
        new Option('--allow <entry>', 'an allowed prefill target (repeatable; see below)').argParser(
          collect(allowEntry),
        ),
      ),
    )
    .option('--allow-any', 'allow any non-loopback unicast target on any port (no allowlist)')
    .option('--prefiller-sampling', 'pick a random target of the header list instead of the first')
    .option(
      '--prefill-max-retries <n>',
      'retries of a prefill leg after 502/503/504 or a connection error',
      integer(0, 10),
      2,
    )
    .option('--prefill-retry-backoff <seconds>', 'first backoff, doubled per retry (max 2 s)', seconds(0, 60), 0.1)
    .addOption(
      new Option(
        '--on-prefill-failure <policy>',
        'after the prefill failed for good: run decode-only, or fail the request',
      )
        .argParser(oneOf(['decode', 'fail'] as const))
        .default('decode'),
    )
    .option(
      '--prefill-timeout <seconds>',
      'deadline of the whole prefill leg, retries included',
      seconds(0.001, 3600),
      30,
    )
    .option(
      '--decode-timeout <seconds>',
      "deadline for the decode worker's answer to start, and for each pause in it",
      seconds(0.001, 86_400),
      600,
    )
    .option('--max-body-bytes <n>', 'largest request body (413 beyond)', integer(1, 1 << 30), 16 << 20)
    .option(
      '--metrics-path <path>',
      "path of the sidecar's own metrics (the worker's /metrics passes through)",
      '/sidecar/metrics',
    )
    .option('--tls-cert <file>', 'listen with TLS: certificate chain (PEM)')
    .option('--tls-key <file>', 'listen with TLS: private key (PEM)')
    .option('--prefill-tls', 'talk TLS to prefill targets (certificates verified)')
    .option('--prefill-ca <file>', 'CA certificate(s) to trust for prefill targets (PEM)')
    .option('--quiet', 'do not log refused targets and failed legs on stderr')
    .run(async (f: SidecarFlags) => {
      const options = sidecarOptions(f);
      if ((options.allow ?? []).length === 0 && options.allowAny !== true) {
        process.stderr.write(
          'kvwire sidecar: no --allow entries: every request that names a prefill target will be refused (403); give --allow HOST:PORT\n',
        );
      }
      const { createSidecar } = await import('../../lib/sidecar/index.js');
      let sidecar: Awaited<ReturnType<typeof createSidecar>>;
      try {
        sidecar = await createSidecar({
          ...options,
          ...(f.quiet === true ? {} : { log: (line: string) => process.stderr.write(`kvwire sidecar: ${line}\n`) }),
        });
      } catch (e) {
        const listen = f.listen.host.includes(':')
          ? `[${f.listen.host}]:${f.listen.port}`
          : `${f.listen.host}:${f.listen.port}`;
        throw asUsageError(listenError(e, '--listen', listen), FLAGS);
      }
      process.stdout.write(
        `kvwire-sidecar-ready ${JSON.stringify({ url: sidecar.url, decode: options.decode, metrics: `${sidecar.url}${options.metricsPath}` })}\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          resolve();
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      await sidecar.close();
      return 0;
    });
}

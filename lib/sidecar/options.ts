/**
 * {@link SidecarOptions}: what `createSidecar()` takes, its defaults, and its validation.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import type { MetricsRegistry } from '../metrics.js';
import { describeValue } from '../util/describe-value.js';
import { Allowlist } from './allowlist.js';
import { systemResolver, type Resolver } from './target.js';
import type { PrefillTlsOptions, ServerTlsOptions } from './tls.js';

/** What to do when the prefill leg fails for good (after retries). */
export type PrefillFailurePolicy = 'decode' | 'fail';

/** Options of `createSidecar()`. Only `decode` is required. */
export interface SidecarOptions {
  /** The decode worker this sidecar fronts: `http://host:port` or `https://host:port`. */
  readonly decode: string | URL;
  /** Address to listen on (default 127.0.0.1). */
  readonly host?: string;
  /** Port to listen on (default 0: any free port; read it from `sidecar.port`). */
  readonly port?: number;
  /**
   * Allowed prefill targets (`--allow`): `host:port`, `host` (any port), a CIDR block (optionally
   * `:port`), IPv6 in brackets. See allowlist.ts for the forms.
   */
  readonly allow?: readonly string[];
  /** Admit any non-loopback unicast target on any port (`--allow-any`); default false. */
  readonly allowAny?: boolean;
  /** Pick a random entry of `x-prefiller-host-port` instead of the first (default false). */
  readonly prefillerSampling?: boolean;
  /** Retries of a prefill leg that met 502/503/504 or a connection error (default 2). */
  readonly prefillMaxRetries?: number;
  /** First retry's backoff in ms, doubled per retry, capped at 2 s (default 100). */
  readonly prefillRetryBackoffMs?: number;
  /** After the prefill failed for good: run the request decode-only (default) or fail it. */
  readonly onPrefillFailure?: PrefillFailurePolicy;
  /** Deadline of the whole prefill leg, retries and backoff included, in ms (default 30 s). */
  readonly prefillTimeoutMs?: number;
  /**
   * Deadline of the decode leg in ms (default 600 s): for the response to start, and for each gap
   * in a streamed response (a stream that keeps flowing is never cut).
   */
  readonly decodeTimeoutMs?: number;
  /** Largest request body accepted, in bytes (default 16 MiB); larger gets 413. */
  readonly maxBodyBytes?: number;
  /** Largest request header block, in bytes (default 16 KiB); larger gets 431. */
  readonly maxHeaderBytes?: number;
  /** Path of the sidecar's own Prometheus metrics (default `/sidecar/metrics`). */
  readonly metricsPath?: string;
  /** TLS for the listening socket (PEM certificate and key). */
  readonly tls?: ServerTlsOptions;
  /** TLS to prefill targets (`https://`), with an optional CA to trust. */
  readonly prefillTls?: PrefillTlsOptions;
  /** Where the sidecar's metrics go (default: prom-client's global registry). */
  readonly registry?: MetricsRegistry;
  /** Name resolver for prefill targets (default: the system's). Tests inject their own. */
  readonly resolve?: Resolver;
  /** Deadline for resolving a target name, in ms (default 5 s). */
  readonly resolveTimeoutMs?: number;
  /** Random numbers for `prefillerSampling` (default Math.random). */
  readonly random?: () => number;
  /** Receives one line per notable event: refused targets, failed legs, fallbacks (default: dropped). */
  readonly log?: (line: string) => void;
}

/** The options after defaults and validation. */
export interface ResolvedSidecarOptions {
  readonly decode: URL;
  readonly host: string;
  readonly port: number;
  readonly allowlist: Allowlist;
  readonly prefillerSampling: boolean;
  readonly prefillMaxRetries: number;
  readonly prefillRetryBackoffMs: number;
  readonly onPrefillFailure: PrefillFailurePolicy;
  readonly prefillTimeoutMs: number;
  readonly decodeTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly maxHeaderBytes: number;
  readonly metricsPath: string;
  readonly tls: ServerTlsOptions | undefined;
  readonly prefillTls: PrefillTlsOptions | undefined;
  readonly resolve: Resolver;
  readonly resolveTimeoutMs: number;
  readonly random: () => number;
}

function invalid(field: string, message: string): KvwireError {
  return new KvwireError(ErrorCode.INVALID_ARGUMENT, `sidecar option ${field} ${message}`, { field });
}

function integer(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer in ${min}..${max}, got ${describeValue(value)}`);
  }
  return value;
}

function decodeUrl(value: unknown): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw invalid('decode', `must be the decode worker's URL (http://host:port), got ${describeValue(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalid('decode', `must be an http:// or https:// URL, got ${url.protocol}`);
  }
  if (
    (url.pathname !== '/' && url.pathname !== '') ||
    url.search !== '' ||
    url.hash !== '' ||
    url.username !== '' ||
    url.password !== ''
  ) {
    throw invalid(
      'decode',
      `must be an origin only (scheme, host, port), got ${describeValue(String(value))}: paths are forwarded as the client sent them`,
    );
  }
  return url;
}

/**
 * Applies defaults and checks every option.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` with `details.field` naming the option.
 */
export function resolveSidecarOptions(options: SidecarOptions): ResolvedSidecarOptions {
  if (options === null || typeof options !== 'object') throw invalid('options', 'must be an object');
  const policy = options.onPrefillFailure ?? 'decode';
  if (policy !== 'decode' && policy !== 'fail')
    throw invalid('onPrefillFailure', `must be 'decode' or 'fail', got ${describeValue(policy)}`);
  const metricsPath = options.metricsPath ?? '/sidecar/metrics';
  if (typeof metricsPath !== 'string' || !/^\/[\x21-\x7e]*$/.test(metricsPath) || metricsPath.includes('?')) {
    throw invalid('metricsPath', `must be a path starting with '/', got ${describeValue(metricsPath)}`);
  }
  if (metricsPath === '/metrics') {
    throw invalid(
      'metricsPath',
      "must not be '/metrics': that path belongs to the decode worker, whose metrics pass through unchanged",
    );
  }
  const allow = options.allow ?? [];
  if (!Array.isArray(allow) || !allow.every((a) => typeof a === 'string'))
    throw invalid('allow', 'must be an array of strings');
  return {
    decode: decodeUrl(options.decode),
    host: options.host ?? '127.0.0.1',
    port: integer(options.port, 'port', 0, 65535, 0),
    allowlist: Allowlist.from(allow, { allowAny: options.allowAny === true }),
    prefillerSampling: options.prefillerSampling === true,
    prefillMaxRetries: integer(options.prefillMaxRetries, 'prefillMaxRetries', 0, 10, 2),
    prefillRetryBackoffMs: integer(options.prefillRetryBackoffMs, 'prefillRetryBackoffMs', 0, 60_000, 100),
    onPrefillFailure: policy,
    prefillTimeoutMs: integer(options.prefillTimeoutMs, 'prefillTimeoutMs', 1, 3_600_000, 30_000),
    decodeTimeoutMs: integer(options.decodeTimeoutMs, 'decodeTimeoutMs', 1, 86_400_000, 600_000),
    maxBodyBytes: integer(options.maxBodyBytes, 'maxBodyBytes', 1, 1 << 30, 16 << 20),
    maxHeaderBytes: integer(options.maxHeaderBytes, 'maxHeaderBytes', 1024, 1 << 20, 16 << 10),
    metricsPath,
    tls: options.tls,
    prefillTls: options.prefillTls,
    resolve: options.resolve ?? systemResolver,
    resolveTimeoutMs: integer(options.resolveTimeoutMs, 'resolveTimeoutMs', 1, 600_000, 5_000),
    random: options.random ?? Math.random,
  };
}

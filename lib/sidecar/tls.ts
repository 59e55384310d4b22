/**
 * TLS on both sides of the sidecar: the listening socket (`--tls-cert`, `--tls-key`) and the
 * connections to prefill targets (`--prefill-tls`, `--prefill-ca`).
 *
 * @packageDocumentation
 */
import http from 'node:http';
import https from 'node:https';
import { ErrorCode, KvwireError } from '../errors.js';

/** PEM text or bytes. */
export type Pem = string | Buffer;

/** TLS for the sidecar's listening socket. */
export interface ServerTlsOptions {
  /** Certificate chain, PEM. */
  readonly cert: Pem;
  /** Private key, PEM. */
  readonly key: Pem;
}

/** TLS to prefill targets. Certificates are always verified. */
export interface PrefillTlsOptions {
  /** CA certificate(s) to trust instead of Node's bundled roots (PEM). */
  readonly ca?: Pem | readonly Pem[];
}

/** Options shared by both listeners: the header limit, and Nagle off for streamed tokens. */
export interface ListenLimits {
  /** Largest request header block (431 beyond). */
  readonly maxHeaderSize: number;
}

/**
 * Creates the listening server: HTTPS when `tls` is given, else HTTP.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when the certificate or key cannot be used.
 */
export function createListener(
  tls: ServerTlsOptions | undefined,
  limits: ListenLimits,
  handler: http.RequestListener,
): http.Server {
  const common = { maxHeaderSize: limits.maxHeaderSize, noDelay: true, keepAlive: true };
  if (tls === undefined) return http.createServer(common, handler);
  try {
    return https.createServer({ ...common, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler);
  } catch (e) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the TLS certificate or key cannot be used (${(e as Error).message}); give a PEM certificate and its matching PEM key`,
      { field: 'tls' },
      { cause: e },
    );
  }
}

/**
 * Connection pools. Keep-alive matters: without it every request pays a TCP (and TLS) handshake to
 * its worker, which is most of the sidecar's added latency. Pools are keyed by the address
 * connected to (targets are dialled by checked IP), so a pooled socket always leads to an address
 * that passed the check.
 */
export function createAgents(prefillTls: PrefillTlsOptions | undefined): {
  decode: { http: http.Agent; https: https.Agent };
  prefill: http.Agent;
} {
  const pool = { keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' as const, noDelay: true };
  const prefill =
    prefillTls === undefined
      ? new http.Agent(pool)
      : new https.Agent({
          ...pool,
          minVersion: 'TLSv1.2',
          ...(prefillTls.ca === undefined ? {} : { ca: prefillTls.ca as Pem[] | Pem }),
        });
  return {
    decode: { http: new http.Agent(pool), https: new https.Agent({ ...pool, minVersion: 'TLSv1.2' }) },
    prefill,
  };
}

/** TLS errors that retrying cannot fix (the peer's certificate is not one we trust). */
export function isCertificateError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return (
    typeof code === 'string' &&
    (code.startsWith('ERR_TLS_') ||
      code.includes('CERT') ||
      code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
      code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' ||
      code.startsWith('ERR_SSL_'))
  );
}

/**
 * Typed errors: every failure kvwire reports is a {@link KvwireError} with a stable `code`.
 *
 * Codes are part of the public contract: callers branch on `err.code`, never on the message.
 * Messages say what happened and what to do about it.
 *
 * @packageDocumentation
 */

/** The stable error codes kvwire uses. */
export const ErrorCode = {
  /** A descriptor reaches outside its registered region. */
  OUT_OF_BOUNDS: 'ERR_KVWIRE_OUT_OF_BOUNDS',
  /** The region's access mode does not allow this operation (e.g. WRITE to a 'read' region). */
  ACCESS_DENIED: 'ERR_KVWIRE_ACCESS_DENIED',
  /** Metadata bytes are truncated, oversized, corrupted or of an unknown version. */
  BAD_METADATA: 'ERR_KVWIRE_BAD_METADATA',
  /** A transfer, handshake or request did not finish before its deadline. */
  TIMEOUT: 'ERR_KVWIRE_TIMEOUT',
  /** The remote agent died, closed, or became unreachable. */
  PEER_LOST: 'ERR_KVWIRE_PEER_LOST',
  /** A peer could not be reached at all (no common transport, refused). */
  PEER_UNREACHABLE: 'ERR_KVWIRE_PEER_UNREACHABLE',
  /** The agent (or the object's owner) was closed. */
  CLOSED: 'ERR_KVWIRE_CLOSED',
  /** This build or machine cannot do what was asked (no UCX, no CUDA driver, ...). */
  UNSUPPORTED: 'ERR_KVWIRE_UNSUPPORTED',
  /** An argument has the wrong type or value. */
  INVALID_ARGUMENT: 'ERR_KVWIRE_INVALID_ARGUMENT',
  /** The region was deregistered (locally, or by the remote agent). */
  DEREGISTERED: 'ERR_KVWIRE_DEREGISTERED',
  /** No region with that label or id exists. */
  UNKNOWN_REGION: 'ERR_KVWIRE_UNKNOWN_REGION',
  /** The region still has transfers in flight. */
  REGION_BUSY: 'ERR_KVWIRE_REGION_BUSY',
  /** The transfer was cancelled (cancel() or an AbortSignal). */
  CANCELLED: 'ERR_KVWIRE_CANCELLED',
  /** The transport engine reported an error (the message carries its status). */
  TRANSPORT: 'ERR_KVWIRE_TRANSPORT',
  /** Injected by the loopback engine's fault injection. */
  INJECTED: 'ERR_KVWIRE_INJECTED',
  /** Two peers are not compatible (model shape, dtype, layout, protocol version). */
  INCOMPATIBLE: 'ERR_KVWIRE_INCOMPATIBLE',
  /** A handshake or request was not authenticated. */
  UNAUTHORIZED: 'ERR_KVWIRE_UNAUTHORIZED',
  /** A block lease expired before the blocks were read. */
  LEASE_EXPIRED: 'ERR_KVWIRE_LEASE_EXPIRED',
  /** A capacity bound was reached (queue full, pool exhausted). */
  CAPACITY: 'ERR_KVWIRE_CAPACITY',
  /** An external service (e.g. Redis) could not be reached. */
  BACKEND_UNAVAILABLE: 'ERR_KVWIRE_BACKEND_UNAVAILABLE',
  /** Bytes did not verify (a checksum or a --check comparison failed). */
  CORRUPTED: 'ERR_KVWIRE_CORRUPTED',
} as const;

/** One of the stable error code strings in {@link ErrorCode}. */
export type ErrorCodeString = (typeof ErrorCode)[keyof typeof ErrorCode];

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** Extra structured detail some errors carry (which descriptor, which field, ...). */
export interface KvwireErrorDetails {
  /** Index of the offending descriptor in its list, when one is to blame. */
  readonly index?: number;
  /** Name of the offending field (e.g. the compatibility field that differs). */
  readonly field?: string;
  /** Status string of the underlying engine (e.g. UCX's "Connection reset by remote peer"). */
  readonly engineStatus?: string;
  /** Anything else worth keeping for diagnosis. */
  readonly [key: string]: unknown;
}

/**
 * The one error class kvwire throws or rejects with.
 *
 * @example
 * ```ts
 * try { await transfer.done } catch (e) {
 *   if (e instanceof KvwireError && e.code === ErrorCode.TIMEOUT) recompute();
 * }
 * ```
 */
export class KvwireError extends Error {
  /** Stable machine-readable code, e.g. `ERR_KVWIRE_TIMEOUT`. */
  readonly code: ErrorCodeString;
  /** Structured detail, when the error has any. */
  readonly details: KvwireErrorDetails;

  /**
   * @param code - one of {@link ErrorCode}'s values.
   * @param message - what happened and what to do about it.
   * @param details - structured detail (descriptor index, field, engine status).
   * @param options - standard `cause`.
   */
  constructor(code: ErrorCodeString, message: string, details: KvwireErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KvwireError';
    this.code = code;
    this.details = details;
  }

  /** True when `e` is a KvwireError (optionally with the given code). */
  static is(e: unknown, code?: ErrorCodeString): e is KvwireError {
    return e instanceof KvwireError && (code === undefined || e.code === code);
  }

  /**
   * Rebuilds a KvwireError from a code string that crossed a boundary (native addon, wire, child
   * process). Unknown codes become `ERR_KVWIRE_TRANSPORT` so callers still get a stable code.
   */
  static fromCode(code: string, message: string, details: KvwireErrorDetails = {}): KvwireError {
    const c = (KNOWN_CODES.has(code) ? code : ErrorCode.TRANSPORT) as ErrorCodeString;
    return new KvwireError(c, message, details);
  }
}

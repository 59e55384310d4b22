/**
 * Authentication of the handshake: HMAC-SHA256 with a secret both workers share.
 *
 * The decode side signs its request body; the prefill side checks the signature (constant-time)
 * before it parses a single byte, then checks the timestamp against a window and the nonce
 * against the nonces it saw in that window (no replays). It signs its answer over the request's
 * nonce and the answer's body, so the decode side knows the answer is fresh and comes from a
 * holder of the secret. Domain-separation prefixes keep a request signature from ever being
 * valid as a response signature.
 *
 * Confidentiality is not provided: metadata travels in clear over the side channel (as vLLM's
 * does). Run the side channel on a private network, or behind TLS.
 *
 * @packageDocumentation
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';

/** The secret both workers hold: at least 16 bytes (a string is taken as UTF-8). */
export type SharedSecret = string | Uint8Array;

/** Header that carries the signature, as `v1=<64 hex digits>`. */
export const SIGNATURE_HEADER = 'x-kvwire-signature';

/**
 * What a signed side-channel message is: the handshake, or a lease heartbeat (`heartbeat.ts`).
 * Each kind signs under its own domain, so a handshake signature is never valid for a heartbeat.
 */
export type SignedMessageKind = 'handshake' | 'heartbeat';

const REQUEST_DOMAIN: Readonly<Record<SignedMessageKind, string>> = {
  handshake: 'kvwire-handshake-request-v1\n',
  heartbeat: 'kvwire-heartbeat-request-v1\n',
};
const RESPONSE_DOMAIN: Readonly<Record<SignedMessageKind, string>> = {
  handshake: 'kvwire-handshake-response-v1\n',
  heartbeat: 'kvwire-heartbeat-response-v1\n',
};
const MIN_SECRET_BYTES = 16;

/**
 * Checks `secret` and returns it as key bytes.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when it is missing or shorter than 16 bytes.
 */
export function secretKey(secret: unknown): Buffer {
  let key: Buffer;
  if (typeof secret === 'string') key = Buffer.from(secret, 'utf8');
  else if (secret instanceof Uint8Array) key = Buffer.from(secret);
  else {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'secret must be a string or bytes shared by the prefill and decode workers (e.g. `openssl rand -hex 32`)',
      { field: 'secret' },
    );
  }
  if (key.byteLength < MIN_SECRET_BYTES) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `secret has ${key.byteLength} bytes; use at least ${MIN_SECRET_BYTES} random bytes (e.g. \`openssl rand -hex 32\`)`,
      { field: 'secret' },
    );
  }
  return key;
}

function mac(key: Buffer, domain: string, ...parts: (string | Uint8Array)[]): Buffer {
  const h = createHmac('sha256', key).update(domain);
  for (const p of parts) h.update(p);
  return h.digest();
}

function verify(expected: Buffer, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || header.length !== 67 || !header.startsWith('v1=')) return false;
  const hex = header.slice(3);
  if (!/^[0-9a-f]{64}$/.test(hex)) return false;
  return timingSafeEqual(expected, Buffer.from(hex, 'hex'));
}

/** The signature header value of a request of `kind` (default a handshake) with body `body`. */
export function signRequest(key: Buffer, body: Uint8Array, kind: SignedMessageKind = 'handshake'): string {
  return `v1=${mac(key, REQUEST_DOMAIN[kind], body).toString('hex')}`;
}

/** True when `header` is a valid signature of request body `body` of `kind` (constant-time). */
export function verifyRequest(
  key: Buffer,
  body: Uint8Array,
  header: string | string[] | undefined,
  kind: SignedMessageKind = 'handshake',
): boolean {
  return verify(mac(key, REQUEST_DOMAIN[kind], body), header);
}

/** The signature header value of an answer with body `body` to the request of `kind` with nonce `nonce`. */
export function signResponse(
  key: Buffer,
  nonce: string,
  body: Uint8Array,
  kind: SignedMessageKind = 'handshake',
): string {
  return `v1=${mac(key, RESPONSE_DOMAIN[kind], nonce, '\n', body).toString('hex')}`;
}

/** True when `header` is a valid signature of answer `body` to the request of `kind` with nonce `nonce`. */
export function verifyResponse(
  key: Buffer,
  nonce: string,
  body: Uint8Array,
  header: string | string[] | undefined,
  kind: SignedMessageKind = 'handshake',
): boolean {
  return verify(mac(key, RESPONSE_DOMAIN[kind], nonce, '\n', body), header);
}

/**
 * The nonces seen within the replay window. A request is fresh when its timestamp is within
 * `windowMs` of now and its nonce was not seen; older nonces are forgotten once their timestamp
 * leaves the window. At most `maxEntries` are remembered (the oldest are dropped first): only
 * holders of the secret can produce entries, so this bound is against bugs, not attackers.
 */
export class NonceWindow {
  readonly #seen = new Map<string, number>();
  readonly #windowMs: number;
  readonly #max: number;

  /** @param windowMs - accepted clock difference, each way. @param maxEntries - memory bound. */
  constructor(windowMs: number, maxEntries = 100_000) {
    this.#windowMs = windowMs;
    this.#max = maxEntries;
  }

  /** Number of nonces remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /** Records `nonce` and returns true when (`nonce`, `ts`) is fresh at time `now`; false otherwise. */
  admit(nonce: string, ts: number, now: number): boolean {
    if (!Number.isFinite(ts) || Math.abs(now - ts) > this.#windowMs) return false;
    for (const [n, expires] of this.#seen) {
      if (expires > now && this.#seen.size < this.#max) break;
      this.#seen.delete(n);
    }
    if (this.#seen.has(nonce)) return false;
    this.#seen.set(nonce, Math.max(ts, now) + this.#windowMs);
    return true;
  }
}

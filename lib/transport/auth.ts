/**
 * Agent authentication (`AgentOptions.auth`): a secret the agents of a deployment share.
 *
 * From each secret an agent derives a 32-byte key and an 8-byte key id (HMAC-SHA256 with fixed
 * domain strings, so the raw secret is used for nothing else and a key of one purpose never
 * verifies another). With a key:
 * - `agent.metadata()` is signed (HMAC over every byte); `connect()` checks the signature over
 *   the raw bytes before it parses any of them, and refuses unsigned metadata or another key's;
 * - the engines' handshake is authenticated both ways, with replay protection, and a target serves
 *   nothing to a connection until its initiator answered the target's challenge (native/engine/
 *   ucx_handshake.cc).
 *
 * Provisioning: every agent that must reach another gets the same secret, e.g. from the
 * `KVWIRE_SECRET` environment variable (read when `auth` is not given) filled from a secret
 * store; at least 16 bytes, `openssl rand -hex 32` makes a good one. Rotation: give the new
 * secret as `secret` and the old one in `previous` on every agent, then drop `previous`.
 *
 * @packageDocumentation
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';

/** A shared secret: a string (UTF-8) or bytes, at least 16 bytes. */
export type AgentSecret = string | Uint8Array;

/** `AgentOptions.auth`. */
export interface AgentAuthOptions {
  /** The secret every agent of the deployment shares; signs this agent's metadata and handshakes. */
  readonly secret: AgentSecret;
  /** Secrets still accepted from peers (not used to sign): the old ones, during a rotation. */
  readonly previous?: readonly AgentSecret[];
}

/** A derived key: what the engines use. */
export interface AuthKey {
  /** 8 bytes: names the key in metadata and handshakes, says nothing about it. */
  readonly id: Buffer;
  /** 32 bytes. */
  readonly key: Buffer;
}

/** The environment variable a secret is read from when `AgentOptions.auth` is not given. */
export const SECRET_ENV = 'KVWIRE_SECRET';

const MIN_SECRET_BYTES = 16;
const KEY_DOMAIN = 'kvwire agent key v1\0';
const KEY_ID_DOMAIN = 'kvwire key id v1\0';
const METADATA_DOMAIN = 'kvwire metadata v1\0';

function secretBytes(secret: unknown, what: string): Buffer {
  let b: Buffer;
  if (typeof secret === 'string') b = Buffer.from(secret, 'utf8');
  else if (secret instanceof Uint8Array) b = Buffer.from(secret);
  else {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${what} must be a string or bytes shared by the agents of the deployment, not ${describeValue(secret)} (e.g. \`openssl rand -hex 32\`)`,
      { field: what },
    );
  }
  if (b.byteLength < MIN_SECRET_BYTES) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${what} has ${b.byteLength} bytes; use at least ${MIN_SECRET_BYTES} random bytes (e.g. \`openssl rand -hex 32\`)`,
      { field: what },
    );
  }
  return b;
}

/** Derives the key of one secret. */
export function deriveKey(secret: AgentSecret, what = 'auth.secret'): AuthKey {
  const key = createHmac('sha256', secretBytes(secret, what)).update(KEY_DOMAIN).digest();
  const id = createHmac('sha256', key).update(KEY_ID_DOMAIN).digest().subarray(0, 8);
  return { id: Buffer.from(id), key };
}

/**
 * The keys of `AgentOptions.auth` (the signing key first), the keys of `KVWIRE_SECRET` when `auth`
 * is undefined and the variable is set, or none (`auth: false`, or neither given).
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a malformed option or a short secret.
 */
export function authKeys(auth: AgentAuthOptions | false | undefined, env = process.env): AuthKey[] {
  if (auth === false) return [];
  if (auth === undefined) {
    const s = env[SECRET_ENV];
    return s === undefined || s === '' ? [] : [deriveKey(s, SECRET_ENV)];
  }
  if (auth === null || typeof auth !== 'object') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `auth must be { secret, previous? } or false, not ${describeValue(auth)}`,
      { field: 'auth' },
    );
  }
  const keys = [deriveKey(auth.secret, 'auth.secret')];
  if (auth.previous !== undefined) {
    if (!Array.isArray(auth.previous)) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'auth.previous must be an array of secrets', {
        field: 'auth.previous',
      });
    }
    auth.previous.forEach((s, i) => keys.push(deriveKey(s, `auth.previous[${i}]`)));
  }
  return keys;
}

/** The MAC that signs metadata `body` (every byte before the signature trailer). */
export function metadataMac(key: AuthKey, body: Uint8Array): Buffer {
  return createHmac('sha256', key.key).update(METADATA_DOMAIN).update(body).digest();
}

/** True when `mac` is the MAC of `body` under `key` (constant time). */
export function checkMetadataMac(key: AuthKey, body: Uint8Array, mac: Uint8Array): boolean {
  const expected = metadataMac(key, body);
  return mac.byteLength === expected.byteLength && timingSafeEqual(expected, mac);
}

/** A key id as messages quote it. */
export function keyIdText(id: Uint8Array): string {
  return Buffer.from(id).toString('hex');
}

/**
 * Handshake messages (JSON over the side channel) and their validation.
 *
 * Request (decode → prefill), signed with the shared secret (see `handshake-auth.ts`):
 * ```json
 * {"v":1,"engineId":"decode-0","nonce":"<32 hex>","ts":1732500000000,
 *  "compat":{...KvCompatibilityFields},"compatHash":"<sha256 hex>"}
 * ```
 * Answer 200 (prefill → decode), signed over the request's nonce and the body:
 * ```json
 * {"v":1,"engineId":"prefill-0","instance":"<hex>","compat":{...},"compatHash":"...",
 *  "cache":{"numBlocks":8192,"arenaAlignment":256,"addressing":"tensor","tpSize":2},
 *  "leaseTable":{"label":"kvwire-leases","slots":16384},
 *  "ranks":[{"rank":0,"metadata":"<base64 agent metadata>"},{"rank":1,"metadata":"..."}]}
 * ```
 * Answer 409 (authenticated but incompatible), signed the same way:
 * `{"v":1,"error":"incompatible","field":"dtype","compat":{...the prefill's fields}}`.
 * Answer 401 with an empty body: bad signature, stale timestamp or replayed nonce.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import {
  KV_COMPATIBILITY_FIELD_NAMES,
  compatHash,
  compatibilityFields,
  tensorParallelLayouts,
  type Addressing,
  type KvCompatibilityFields,
  type KvLayout,
  type ModelShape,
} from '../kv/index.js';
import { checkId } from './params.js';
import { PD_PROTOCOL_VERSION } from './protocol.js';

/** A handshake request. */
export interface HandshakeRequest {
  /** Message version (1). */
  readonly v: 1;
  /** The decode engine's id. */
  readonly engineId: string;
  /** 16 random bytes, hex: binds the answer to this request and blocks replays. */
  readonly nonce: string;
  /** The decode side's clock, ms since the epoch. */
  readonly ts: number;
  /** The decode side's compatibility fields. */
  readonly compat: KvCompatibilityFields;
  /** Their hash. */
  readonly compatHash: string;
}

/** One prefill rank in an answer. */
export interface HandshakeRank {
  /** TP rank. */
  readonly rank: number;
  /** The rank agent's metadata, base64. */
  readonly metadata: string;
}

/** The prefill cache as an answer describes it (with `compat`, enough to rebuild every rank's KvLayout). */
export interface HandshakeCache {
  /** Blocks per tensor. */
  readonly numBlocks: number;
  /** Arena alignment of the layouts. */
  readonly arenaAlignment: number;
  /** How the prefill registered its cache. */
  readonly addressing: Addressing;
  /** The prefill's TP size. */
  readonly tpSize: number;
}

/** A successful handshake answer. */
export interface HandshakeAnswer {
  /** Message version (1). */
  readonly v: 1;
  /** The prefill engine's id. */
  readonly engineId: string;
  /** Random id of this prefill coordinator instance (changes on restart). */
  readonly instance: string;
  /** The prefill's compatibility fields. */
  readonly compat: KvCompatibilityFields;
  /** Their hash. */
  readonly compatHash: string;
  /** The cache shape. */
  readonly cache: HandshakeCache;
  /** The lease table region. */
  readonly leaseTable: { readonly label: string; readonly slots: number };
  /** One entry per prefill rank, in rank order. */
  readonly ranks: readonly HandshakeRank[];
}

function malformed(what: string, field?: string): KvwireError {
  return new KvwireError(
    ErrorCode.BAD_METADATA,
    `bad handshake message: ${what}`,
    field === undefined ? {} : { field },
  );
}

function parseJson(body: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw malformed(`the ${what} is not JSON`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw malformed(`the ${what} is not a JSON object`);
  const o = v as Record<string, unknown>;
  if (o.v !== 1)
    throw malformed(
      `the ${what} has version ${JSON.stringify(o.v)}; this kvwire speaks version 1 (upgrade the older side)`,
      'v',
    );
  return o;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw malformed(`${field} must be an integer in [${min}, ${max}]`, field);
  return v;
}

/**
 * Checks that `v` holds every compatibility field with the right type, and returns them.
 *
 * @throws KvwireError `ERR_KVWIRE_BAD_METADATA` naming the first missing or mistyped field.
 */
/**
 * Bounds on the numeric compatibility fields a peer may send. A layout is built per layer from these
 * (prefillLayouts), so an authenticated but hostile or buggy peer claiming 2^31 layers made the decode
 * side build tensors for minutes (reliability finding F9); the largest models have a few hundred
 * layers and dimensions far below 2^20.
 */
const MAX_LAYERS = 4096;
const MAX_COMPAT_NUMBER = 1 << 20;

export function parseCompatFields(v: unknown): KvCompatibilityFields {
  if (v === null || typeof v !== 'object')
    throw malformed('compat must be an object of compatibility fields', 'compat');
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of KV_COMPATIBILITY_FIELD_NAMES) {
    const x = o[k];
    const isString = k === 'model' || k === 'attention' || k === 'dtype' || k === 'kv' || k === 'order';
    if (
      isString ? typeof x !== 'string' || x.length > 256 : typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0
    ) {
      throw malformed(`compat.${k} is missing or has the wrong type`, k);
    }
    const limit = k === 'layers' ? MAX_LAYERS : MAX_COMPAT_NUMBER;
    if (!isString && (x as number) > limit) {
      throw malformed(`compat.${k} is ${String(x)}, more than any model has (at most ${limit})`, k);
    }
    out[k] = x;
  }
  return Object.freeze(out) as unknown as KvCompatibilityFields;
}

/** Builds a signed-to-be request body for `engineId` with the decode side's `compat` fields. */
export function buildHandshakeRequest(
  engineId: string,
  compat: KvCompatibilityFields,
  now = Date.now(),
): { body: Buffer; nonce: string } {
  const nonce = randomBytes(16).toString('hex');
  const req: HandshakeRequest = { v: 1, engineId, nonce, ts: now, compat, compatHash: compatHash(compat) };
  return { body: Buffer.from(JSON.stringify(req), 'utf8'), nonce };
}

/**
 * Parses an (already authenticated) request body.
 *
 * @throws KvwireError `ERR_KVWIRE_BAD_METADATA` naming what is wrong.
 */
export function parseHandshakeRequest(body: Buffer): HandshakeRequest {
  const o = parseJson(body, 'handshake request');
  let engineId: string;
  try {
    engineId = checkId(o.engineId, 'engineId');
  } catch (e) {
    throw malformed((e as Error).message, 'engineId');
  }
  if (typeof o.nonce !== 'string' || !/^[0-9a-f]{32}$/.test(o.nonce))
    throw malformed('nonce must be 32 hex digits', 'nonce');
  const ts = int(o.ts, 'ts', 0, Number.MAX_SAFE_INTEGER);
  const compat = parseCompatFields(o.compat);
  if (typeof o.compatHash !== 'string') throw malformed('compatHash must be a string', 'compatHash');
  return { v: 1, engineId, nonce: o.nonce, ts, compat, compatHash: o.compatHash };
}

/**
 * Parses an (already authenticated) 200 answer.
 *
 * @throws KvwireError `ERR_KVWIRE_BAD_METADATA` naming what is wrong.
 */
export function parseHandshakeAnswer(body: Buffer): HandshakeAnswer {
  const o = parseJson(body, 'handshake answer');
  if (typeof o.engineId !== 'string' || typeof o.instance !== 'string')
    throw malformed('engineId and instance must be strings', 'engineId');
  const compat = parseCompatFields(o.compat);
  if (typeof o.compatHash !== 'string') throw malformed('compatHash must be a string', 'compatHash');
  const c = o.cache as Record<string, unknown> | null | undefined;
  if (c === null || typeof c !== 'object') throw malformed('cache must be an object', 'cache');
  if (c.addressing !== 'tensor' && c.addressing !== 'arena')
    throw malformed("cache.addressing must be 'tensor' or 'arena'", 'cache.addressing');
  const cache: HandshakeCache = {
    numBlocks: int(c.numBlocks, 'cache.numBlocks', 1, Number.MAX_SAFE_INTEGER),
    arenaAlignment: int(c.arenaAlignment, 'cache.arenaAlignment', 1, 2 ** 30),
    addressing: c.addressing,
    tpSize: int(c.tpSize, 'cache.tpSize', 1, 4096),
  };
  const lt = o.leaseTable as Record<string, unknown> | null | undefined;
  if (lt === null || typeof lt !== 'object' || typeof lt.label !== 'string')
    throw malformed('leaseTable must be { label, slots }', 'leaseTable');
  const leaseTable = { label: lt.label, slots: int(lt.slots, 'leaseTable.slots', 1, 2 ** 32 - 1) };
  if (!Array.isArray(o.ranks) || o.ranks.length !== cache.tpSize)
    throw malformed(`ranks must list all ${cache.tpSize} prefill ranks`, 'ranks');
  const ranks = (o.ranks as unknown[]).map((r, i): HandshakeRank => {
    const x = r as Record<string, unknown> | null;
    if (x === null || typeof x !== 'object' || x.rank !== i || typeof x.metadata !== 'string')
      throw malformed(`ranks[${i}] must be { rank: ${i}, metadata: base64 }`, 'ranks');
    return { rank: i, metadata: x.metadata };
  });
  return {
    v: 1,
    engineId: o.engineId,
    instance: o.instance,
    compat,
    compatHash: o.compatHash,
    cache,
    leaseTable,
    ranks,
  };
}

/** The model shape the compatibility fields describe. */
export function modelFromCompat(f: KvCompatibilityFields): ModelShape {
  const name = f.model === '' ? {} : { name: f.model };
  if (f.attention === 'mla') {
    return {
      attention: 'mla',
      ...name,
      layers: f.layers,
      kvLoraRank: f.kvLoraRank,
      qkRopeHeadDim: f.qkRopeHeadDim,
      dtype: f.dtype,
    };
  }
  return { attention: 'mha', ...name, layers: f.layers, kvHeads: f.kvHeads, headDim: f.headDim, dtype: f.dtype };
}

/**
 * The KvLayout of every prefill rank an answer describes, checked against its own compatibility
 * hash (so a layout that the fields do not fully determine is caught, not misread).
 *
 * @throws KvwireError `ERR_KVWIRE_BAD_METADATA` when the layouts cannot be rebuilt or their hash
 *   differs from the advertised one.
 */
export function prefillLayouts(answer: HandshakeAnswer): KvLayout[] {
  const f = answer.compat;
  let layouts: KvLayout[];
  try {
    layouts = tensorParallelLayouts(
      {
        model: modelFromCompat(f),
        numBlocks: answer.cache.numBlocks,
        blockTokens: f.blockTokens,
        arenaAlignment: answer.cache.arenaAlignment,
        ...(f.attention === 'mla' ? {} : { kv: f.kv as 'split' | 'joint', order: f.order }),
      },
      answer.cache.tpSize,
    );
  } catch (e) {
    throw malformed(
      `the prefill's cache cannot be described: ${(e as Error).message}`,
      (e as KvwireError).details?.field as string | undefined,
    );
  }
  const rebuilt = compatHash(compatibilityFields(layouts[0]!, { protocolVersion: f.protocolVersion }));
  if (rebuilt !== answer.compatHash || compatHash(f) !== answer.compatHash) {
    throw malformed('the compatibility hash does not match the fields sent with it', 'compatHash');
  }
  return layouts;
}

/** The compatibility fields a coordinator advertises for `layout`. */
export function pdCompatibilityFields(layout: KvLayout): KvCompatibilityFields {
  return compatibilityFields(layout, { protocolVersion: PD_PROTOCOL_VERSION });
}

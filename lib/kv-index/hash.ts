/**
 * Block keys: chained prefix hashes of token ids, so that equal keys mean equal prefixes.
 *
 * ## Definition (version 1; stable across processes, machines and kvwire versions)
 *
 * All hashes are XXH64 (see {@link xxh64}) with the 64-bit `seed` (default 0). `LE64(x)` is the
 * 8-byte little-endian encoding of a 64-bit key, `LE32(t)` the 4-byte little-endian encoding of a
 * token id (an integer in [0, 2^32)).
 *
 * ```
 * ROOT      = XXH64(UTF-8 "kvwire:index:v1", seed)
 * root(x)   = ROOT                                  if the extra keys x are empty
 *           = XXH64(LE64(ROOT) ‖ extra(x), seed)     otherwise
 * key[0]    = XXH64(LE64(root(x))  ‖ LE32(t[0])  ‖ … ‖ LE32(t[B-1]),   seed)
 * key[i]    = XXH64(LE64(key[i-1]) ‖ LE32(t[iB]) ‖ … ‖ LE32(t[iB+B-1]), seed)
 * ```
 *
 * `B` is the block size (default 16). Only full blocks get keys: a trailing partial block is
 * ignored, as engines only cache full blocks. A key is written as 16 lowercase hex digits of its
 * value (most significant first), e.g. `"3fa2c4d51b0e9a77"`.
 *
 * Extra keys (a LoRA adapter, a cache salt) fold into the root only: the chain carries them to every
 * block, so a block key already differs between adapters or salts. `extra(x)` is, for each field
 * present (not `undefined`/`null`) in the order `lora`, `salt`: a field tag byte (`0x4c` 'L' for
 * lora, `0x53` 'S' for salt), then either `0x01` + LE64 of a non-negative safe integer, or `0x02` +
 * LE32 of the UTF-8 byte length + the UTF-8 bytes of a string.
 *
 * Hashing a 4,096-token prompt (256 blocks) takes tens of microseconds.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { xxh64, xxh64Halves } from './xxh64.js';

/** Token ids of a prompt: integers in [0, 2^32). A `Uint32Array` is the fastest input. */
export type TokenIds = ArrayLike<number>;

/** Extra keys that make otherwise equal prefixes different (folded into the chain's root). */
export interface BlockExtra {
  /** The LoRA adapter, by id or by name (`1` and `"1"` are different adapters). */
  readonly lora?: number | string | null;
  /** A cache salt (per tenant isolation of the prefix cache). */
  readonly salt?: string | null;
}

/** Options of {@link BlockHasher}. */
export interface BlockHasherOptions {
  /** Tokens per block; 1 to 65,536. Default 16. */
  readonly blockSize?: number;
  /** The XXH64 seed, an integer in [0, 2^64). Default 0. Every party that compares keys must agree. */
  readonly hashSeed?: number | bigint;
}

/** The domain-separation string hashed into {@link BlockHasher.root}. */
export const ROOT_LABEL = 'kvwire:index:v1';

/** Default tokens per block (vLLM's default). */
export const DEFAULT_BLOCK_SIZE = 16;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const KEY_RE = /^[0-9a-f]{16}$/;

/** Formats a 64-bit key given as unsigned 32-bit halves as 16 lowercase hex digits. */
export function keyToHex(hi: number, lo: number): string {
  return (
    HEX[hi >>> 24]! +
    HEX[(hi >>> 16) & 0xff]! +
    HEX[(hi >>> 8) & 0xff]! +
    HEX[hi & 0xff]! +
    HEX[lo >>> 24]! +
    HEX[(lo >>> 16) & 0xff]! +
    HEX[(lo >>> 8) & 0xff]! +
    HEX[lo & 0xff]!
  );
}

/** True when `s` is a block key: exactly 16 lowercase hex digits. */
export function isBlockKey(s: unknown): s is string {
  return typeof s === 'string' && KEY_RE.test(s);
}

/**
 * A list of block keys, held both as 32-bit halves (what the in-memory index uses) and, on demand,
 * as hex strings (what the Redis backend and the API use).
 */
export class BlockKeyList {
  private hexCache: string[] | undefined;

  /**
   * @param hi - high 32 bits of each key.
   * @param lo - low 32 bits of each key.
   * @param hex - the same keys as hex strings, when the caller already has them.
   */
  constructor(
    readonly hi: Uint32Array,
    readonly lo: Uint32Array,
    hex?: string[],
  ) {
    this.hexCache = hex;
  }

  /** Number of keys. */
  get length(): number {
    return this.hi.length;
  }

  /** The keys as 16-digit lowercase hex strings. */
  get hex(): string[] {
    if (this.hexCache === undefined) {
      const out = new Array<string>(this.hi.length);
      for (let i = 0; i < out.length; i++) out[i] = keyToHex(this.hi[i]!, this.lo[i]!);
      this.hexCache = out;
    }
    return this.hexCache;
  }

  /**
   * Parses hex keys (as {@link BlockHasher.keys} returns them, or as engines send them).
   *
   * @param what - how an error message names the list, e.g. `"keys"`.
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when a key is not 16 lowercase hex digits.
   */
  static fromHex(keys: readonly string[], what = 'keys'): BlockKeyList {
    if (!Array.isArray(keys)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${what} must be an array of block keys (16 lowercase hex digits each)`,
        { field: what },
      );
    }
    const n = keys.length;
    const hi = new Uint32Array(n),
      lo = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const k = keys[i];
      if (!isBlockKey(k)) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${what}[${i}] is ${describeValue(k)}, not a block key: keys are 16 lowercase hex digits, as KvIndex.blockKeys() returns them`,
          { index: i, field: what },
        );
      }
      hi[i] = parseInt(k.slice(0, 8), 16);
      lo[i] = parseInt(k.slice(8), 16);
    }
    return new BlockKeyList(hi, lo, keys.slice());
  }
}

function seedOf(seed: number | bigint): bigint {
  const s = typeof seed === 'bigint' ? seed : Number.isSafeInteger(seed) ? BigInt(seed) : -1n;
  if (s < 0n || s >= 1n << 64n) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `hashSeed ${String(seed)} is not an integer in [0, 2^64): pass the same integer seed to every index and engine that compares keys`,
      { field: 'hashSeed' },
    );
  }
  return s;
}

function encodeExtra(extra: BlockExtra): Uint8Array | undefined {
  const parts: number[] = [];
  const field = (tag: number, name: string, v: number | string | null | undefined): void => {
    if (v === undefined || v === null) return;
    parts.push(tag);
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v) || v < 0) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `extra.${name} is ${v}: a number must be a non-negative safe integer (or pass a string)`,
          { field: `extra.${name}` },
        );
      }
      parts.push(0x01);
      let x = BigInt(v);
      for (let i = 0; i < 8; i++, x >>= 8n) parts.push(Number(x & 0xffn));
    } else if (typeof v === 'string') {
      const b = Buffer.from(v, 'utf8');
      parts.push(0x02, b.length & 0xff, (b.length >>> 8) & 0xff, (b.length >>> 16) & 0xff, b.length >>> 24);
      for (const c of b) parts.push(c);
    } else {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `extra.${name} is ${describeValue(v)}: pass a string or a non-negative integer`,
        { field: `extra.${name}` },
      );
    }
  };
  field(0x4c, 'lora', extra.lora);
  if (extra.salt !== undefined && extra.salt !== null && typeof extra.salt !== 'string') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `extra.salt is ${describeValue(extra.salt)}: a cache salt is a string`,
      { field: 'extra.salt' },
    );
  }
  field(0x53, 'salt', extra.salt);
  return parts.length === 0 ? undefined : Uint8Array.from(parts);
}

/**
 * Computes block keys (see the module documentation for the exact definition).
 *
 * @example
 * ```ts
 * const h = new BlockHasher({ blockSize: 16 });
 * const keys = h.keys(tokenIds);              // one key per full block
 * const lora = h.keys(tokenIds, { lora: 7 }); // different keys for LoRA 7
 * ```
 */
export class BlockHasher {
  /** Tokens per block. */
  readonly blockSize: number;
  /** The root key (parent of the first block) with no extra keys. */
  readonly root: string;
  private readonly seed: bigint;
  /** One block's input: the parent key and the block's tokens, as little-endian bytes. */
  private readonly scratch: DataView;
  private readonly scratchBytes: Uint8Array;
  private readonly out = new Uint32Array(2);

  /** @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a bad block size or seed. */
  constructor(options: BlockHasherOptions = {}) {
    const bs = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isInteger(bs) || bs < 1 || bs > 65_536) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `blockSize ${String(bs)} is not an integer from 1 to 65,536: use the engine's KV block size in tokens (vLLM: --block-size, default 16)`,
        { field: 'blockSize' },
      );
    }
    this.blockSize = bs;
    this.seed = seedOf(options.hashSeed ?? 0);
    this.scratchBytes = new Uint8Array(4 * (2 + bs));
    this.scratch = new DataView(this.scratchBytes.buffer);
    this.root = xxh64(Buffer.from(ROOT_LABEL, 'utf8'), this.seed).toString(16).padStart(16, '0');
  }

  /**
   * The root key for a request with these extra keys (the parent of its first block).
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a malformed extra.
   */
  rootFor(extra?: BlockExtra): string {
    if (extra === undefined || extra === null) return this.root;
    if (typeof extra !== 'object') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `extra is ${describeValue(extra)}: pass an object like { lora: 3, salt: "tenant-a" }`,
        { field: 'extra' },
      );
    }
    const enc = encodeExtra(extra);
    if (enc === undefined) return this.root;
    const bytes = new Uint8Array(8 + enc.length);
    const root = BigInt(`0x${this.root}`);
    new DataView(bytes.buffer).setBigUint64(0, root, true);
    bytes.set(enc, 8);
    return xxh64(bytes, this.seed).toString(16).padStart(16, '0');
  }

  /**
   * Keys of the full blocks of `tokens`, as hex strings.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a token that is not an integer in [0, 2^32).
   */
  keys(tokens: TokenIds, extra?: BlockExtra): string[] {
    return this.keyList(tokens, extra).hex;
  }

  /** Like {@link BlockHasher.keys}, without making strings (the in-memory index's fast path). */
  keyList(tokens: TokenIds, extra?: BlockExtra): BlockKeyList {
    return this.chainList(this.rootFor(extra), tokens, 'tokens');
  }

  /**
   * Keys of the full blocks of `tokens` continuing a chain whose last key is `parent` (for an
   * engine event that reports the blocks after a known parent).
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a bad parent key or token.
   */
  chain(parent: string, tokens: TokenIds): string[] {
    if (!isBlockKey(parent)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `parent is ${describeValue(parent)}, not a block key (16 lowercase hex digits)`,
        { field: 'parent' },
      );
    }
    return this.chainList(parent, tokens, 'tokens').hex;
  }

  private chainList(parentHex: string, tokens: TokenIds, what: string): BlockKeyList {
    if (tokens === null || typeof tokens !== 'object' || typeof tokens.length !== 'number') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${what} is ${describeValue(tokens)}: pass the prompt's token ids as an array or a Uint32Array`,
        { field: what },
      );
    }
    const bs = this.blockSize;
    const n = Math.floor(tokens.length / bs);
    const hi = new Uint32Array(n),
      lo = new Uint32Array(n);
    const w = this.scratch;
    let ph = parseInt(parentHex.slice(0, 8), 16),
      pl = parseInt(parentHex.slice(8), 16);
    const seed = this.seed,
      bytes = this.scratchBytes,
      out = this.out;
    for (let b = 0, t = 0; b < n; b++) {
      w.setUint32(0, pl, true);
      w.setUint32(4, ph, true);
      for (let j = 0; j < bs; j++, t++) {
        const v = tokens[t]!;
        if (v >>> 0 !== v) {
          throw new KvwireError(
            ErrorCode.INVALID_ARGUMENT,
            `${what}[${t}] is ${describeValue(v)}: token ids are integers in [0, 2^32)`,
            { index: t, field: what },
          );
        }
        w.setUint32(8 + 4 * j, v, true);
      }
      xxh64Halves(bytes, seed, out);
      hi[b] = ph = out[0]!;
      lo[b] = pl = out[1]!;
    }
    // The partial tail gets no key, but bad input is bad input wherever it is.
    for (let t = n * bs; t < tokens.length; t++) {
      const v = tokens[t]!;
      if (v >>> 0 !== v) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${what}[${t}] is ${describeValue(v)}: token ids are integers in [0, 2^32)`,
          { index: t, field: what },
        );
      }
    }
    return new BlockKeyList(hi, lo);
  }
}

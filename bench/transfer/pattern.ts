/**
 * Deterministic byte patterns for `--check`: both processes compute the same bytes for any
 * (salt, offset), so the side that receives data can verify every byte without the other side's
 * memory.
 *
 * The pattern is `P(salt, x) = tile[(salt + x) mod T]`: a pseudo-random tile whose length T is a
 * prime just below 2^20. Why a prime: a descriptor landing at the wrong place is displaced by a
 * multiple of a power-of-two block size, and such a displacement is never a multiple of T below
 * 2^20 blocks, so misplaced bytes never match. Why a tile: filling, poisoning and comparing run
 * at memcpy/memcmp speed (typed-array `set` and `Buffer.compare` on slices of a doubled tile),
 * where a per-byte generator in JavaScript would cost a second per GiB.
 *
 * Before a checked transfer the destination is *poisoned* with the complement of the bytes it
 * should receive, so that a byte the transfer never wrote cannot pass for a correct one.
 *
 * @packageDocumentation
 */

/** Length of the pattern tile: the largest prime below 2^20. */
export const TILE_BYTES = 1_048_573;

/** Columns of a verification entry list (a Float64Array, stride 5). */
export const ENTRY_STRIDE = 5;

/**
 * What one destination range must hold, as 5 numbers: [destination region index, destination
 * offset, length, source salt, source offset]: bytes `dst[offset + x] = P(salt, srcOffset + x)`.
 */
export type VerifyEntries = Float64Array;

/** The first byte that did not verify. */
export interface Mismatch {
  /** Entry (descriptor) index in the list that was verified. */
  readonly descriptor: number;
  /** Destination region index (into the verifying side's region list). */
  readonly region: number;
  /** Byte offset of the bad byte inside the destination region. */
  readonly offset: number;
  /** Byte offset inside the descriptor. */
  readonly byteInDescriptor: number;
  /** The byte the pattern says. */
  readonly expected: number;
  /** The byte found. */
  readonly actual: number;
}

/** The salt of region `index` of one side, so that no two regions of a run hold the same bytes. */
export function regionSalt(side: 'initiator' | 'target', index: number): number {
  return ((side === 'target' ? 524_287 : 7_919) + index * 104_729) % TILE_BYTES;
}

function makeTile(seed: number): Buffer {
  const tile = Buffer.allocUnsafe(2 * TILE_BYTES);
  const words = Math.ceil(TILE_BYTES / 4);
  const w = new Uint32Array(words);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    w[i] = x;
  }
  tile.set(new Uint8Array(w.buffer, 0, TILE_BYTES), 0);
  tile.copy(tile, TILE_BYTES, 0, TILE_BYTES);
  return tile;
}

/** The pattern of one seed: fills, poisons and verifies ranges of registered memory. */
export class BytePattern {
  readonly #tile: Buffer;
  readonly #inverse: Buffer;

  /** @param seed - both processes of a run use the same seed. */
  constructor(seed = 0x6b76) {
    this.#tile = makeTile(seed);
    this.#inverse = Buffer.allocUnsafe(this.#tile.length);
    for (let i = 0; i < this.#tile.length; i++) this.#inverse[i] = this.#tile[i]! ^ 0xff;
  }

  /** The pattern byte at (salt, x). */
  byteAt(salt: number, x: number): number {
    return this.#tile[(salt + x) % TILE_BYTES]!;
  }

  /** Writes `P(salt, srcOffset + x)` into `dst[offset + x]` for x in [0, length). */
  fill(dst: Uint8Array, offset: number, length: number, salt: number, srcOffset = offset): void {
    this.#copy(this.#tile, dst, offset, length, salt, srcOffset);
  }

  /** Writes the complement of the pattern (what a transfer must overwrite) into the range. */
  poison(dst: Uint8Array, offset: number, length: number, salt: number, srcOffset = offset): void {
    this.#copy(this.#inverse, dst, offset, length, salt, srcOffset);
  }

  #copy(src: Buffer, dst: Uint8Array, offset: number, length: number, salt: number, srcOffset: number): void {
    let done = 0;
    while (done < length) {
      const phase = (salt + srcOffset + done) % TILE_BYTES;
      const n = Math.min(length - done, TILE_BYTES);
      dst.set(src.subarray(phase, phase + n), offset + done);
      done += n;
    }
  }

  /**
   * The index (from `offset`) of the first byte of `dst[offset, offset + length)` that differs
   * from `P(salt, srcOffset + x)`, or -1 when every byte matches.
   */
  firstMismatch(dst: Uint8Array, offset: number, length: number, salt: number, srcOffset = offset): number {
    const view = Buffer.from(dst.buffer, dst.byteOffset, dst.byteLength);
    let done = 0;
    while (done < length) {
      const phase = (salt + srcOffset + done) % TILE_BYTES;
      const n = Math.min(length - done, TILE_BYTES);
      const a = view.subarray(offset + done, offset + done + n);
      const b = this.#tile.subarray(phase, phase + n);
      if (Buffer.compare(a, b) !== 0) {
        for (let i = 0; i < n; i++) if (a[i] !== b[i]) return done + i;
      }
      done += n;
    }
    return -1;
  }

  /** Poisons every destination range of `entries` in `regions`. */
  poisonEntries(regions: readonly Uint8Array[], entries: VerifyEntries): void {
    for (let i = 0; i < entries.length; i += ENTRY_STRIDE) {
      this.poison(regions[entries[i]!]!, entries[i + 1]!, entries[i + 2]!, entries[i + 3]!, entries[i + 4]!);
    }
  }

  /**
   * Verifies every entry; returns the first mismatch, or undefined. With `restore`, each
   * destination range is then rewritten with its own region's pattern (`ownSalts[region]`), so
   * the region is as it was filled (the next WRITE sources or READ checks start from known bytes).
   */
  verifyEntries(
    regions: readonly Uint8Array[],
    entries: VerifyEntries,
    restore?: readonly number[],
  ): Mismatch | undefined {
    let found: Mismatch | undefined;
    for (let i = 0; i < entries.length && found === undefined; i += ENTRY_STRIDE) {
      const region = entries[i]!;
      const dst = regions[region]!;
      const offset = entries[i + 1]!;
      const length = entries[i + 2]!;
      const salt = entries[i + 3]!;
      const src = entries[i + 4]!;
      const bad = this.firstMismatch(dst, offset, length, salt, src);
      if (bad >= 0) {
        found = {
          descriptor: i / ENTRY_STRIDE,
          region,
          offset: offset + bad,
          byteInDescriptor: bad,
          expected: this.byteAt(salt, src + bad),
          actual: dst[offset + bad]!,
        };
      }
    }
    if (restore !== undefined) {
      for (let i = 0; i < entries.length; i += ENTRY_STRIDE) {
        const region = entries[i]!;
        this.fill(regions[region]!, entries[i + 1]!, entries[i + 2]!, restore[region]!);
      }
    }
    return found;
  }
}

/** Total bytes the entries cover. */
export function entryBytes(entries: VerifyEntries): number {
  let n = 0;
  for (let i = 2; i < entries.length; i += ENTRY_STRIDE) n += entries[i]!;
  return n;
}

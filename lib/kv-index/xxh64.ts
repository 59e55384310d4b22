/**
 * XXH64 (xxHash, 64-bit variant, as specified at https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md)
 * in plain TypeScript.
 *
 * Two implementations of the same function:
 * - {@link xxh64Words}, the fast path: input given as little-endian 32-bit words, 64-bit arithmetic
 *   done on pairs of 32-bit halves, no BigInt and no allocation. Block hashing uses it.
 * - {@link xxh64}, the reference: bytes in, BigInt arithmetic, short and obviously the spec. Used
 *   for the once-per-request root with extra keys, and by the tests to check the fast path.
 *
 * Why the fast path is written out long-hand: every 64-bit step is a few 32-bit operations. As
 * small helper functions returning two halves through shared state, hashing 256 blocks took
 * ~170 µs (~530 µs with module-level `let` registers); written out with locals only it takes
 * ~65 µs, as fast as a WebAssembly build. The repeated groups are mechanical expansions of three
 * steps, each named in a comment:
 * - `x * P` (mod 2^64): split the low words into 16-bit halves so every partial product stays
 *   below 2^53; the cross terms `Math.imul(xH, PL) + Math.imul(xL, PH)` only feed the high word.
 * - `x + y`: add the low words, carry (`s > 0xffffffff`) into the high word.
 * - `rotl(x, r)`: shift each half left by `r`, or in the bits the other half shifts out.
 * The tests check it against the reference and against xxhash-wasm on random inputs.
 *
 * @packageDocumentation
 */

/**
 * XXH64 of the `4 * n` bytes whose little-endian 32-bit words are `words[0..n)`, with the 64-bit
 * seed `seedH:seedL`. Writes the result to `out[0]` (high 32 bits) and `out[1]` (low 32 bits);
 * allocates nothing.
 *
 * The words are values, not memory: the result does not depend on the host's byte order.
 */
export function xxh64Words(words: Uint32Array, n: number, seedH: number, seedL: number, out: Uint32Array): void {
  let a0 = 0,
    a1 = 0,
    p00 = 0,
    p01 = 0,
    p10 = 0,
    p11 = 0,
    mid = 0,
    s = 0,
    t = 0,
    xH = 0,
    xL = 0;
  let hH = 0,
    hL = 0,
    v1H = 0,
    v1L = 0,
    v2H = 0,
    v2L = 0,
    v3H = seedH,
    v3L = seedL,
    v4H = 0,
    v4L = 0;
  let i = 0;
  if (n >= 8) {
    // v1 = seed + P1 + P2; v2 = seed + P2; v3 = seed; v4 = seed - P1 (= seed + 2^64 - P1)
    hH = seedH;
    hL = seedL;
    s = hL + 0x85ebca87;
    v1L = s >>> 0;
    v1H = (hH + 0x9e3779b1 + (s > 0xffffffff ? 1 : 0)) >>> 0;
    s = v1L + 0x27d4eb4f;
    v1L = s >>> 0;
    v1H = (v1H + 0xc2b2ae3d + (s > 0xffffffff ? 1 : 0)) >>> 0;
    s = hL + 0x27d4eb4f;
    v2L = s >>> 0;
    v2H = (hH + 0xc2b2ae3d + (s > 0xffffffff ? 1 : 0)) >>> 0;
    s = seedL + 0x7a143579;
    v4L = s >>> 0;
    v4H = (seedH + 0x61c8864e + (s > 0xffffffff ? 1 : 0)) >>> 0;
    do {
      // v1 = round(v1, lane 0)
      xH = words[i + 1]!;
      xL = words[i + 0]!;
      a0 = xL & 0xffff;
      a1 = xL >>> 16;
      p00 = a0 * 0xeb4f;
      p01 = a0 * 0x27d4;
      p10 = a1 * 0xeb4f;
      p11 = a1 * 0x27d4;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      xH =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(xH, 0x27d4eb4f) + Math.imul(xL, 0xc2b2ae3d)) >>>
        0;
      xL = t;
      s = v1L + xL;
      v1L = s >>> 0;
      v1H = (v1H + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
      t = ((v1H << 31) | (v1L >>> 1)) >>> 0;
      v1L = ((v1L << 31) | (v1H >>> 1)) >>> 0;
      v1H = t;
      a0 = v1L & 0xffff;
      a1 = v1L >>> 16;
      p00 = a0 * 0xca87;
      p01 = a0 * 0x85eb;
      p10 = a1 * 0xca87;
      p11 = a1 * 0x85eb;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      v1H =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v1H, 0x85ebca87) + Math.imul(v1L, 0x9e3779b1)) >>>
        0;
      v1L = t;
      // v2 = round(v2, lane 1)
      xH = words[i + 3]!;
      xL = words[i + 2]!;
      a0 = xL & 0xffff;
      a1 = xL >>> 16;
      p00 = a0 * 0xeb4f;
      p01 = a0 * 0x27d4;
      p10 = a1 * 0xeb4f;
      p11 = a1 * 0x27d4;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      xH =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(xH, 0x27d4eb4f) + Math.imul(xL, 0xc2b2ae3d)) >>>
        0;
      xL = t;
      s = v2L + xL;
      v2L = s >>> 0;
      v2H = (v2H + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
      t = ((v2H << 31) | (v2L >>> 1)) >>> 0;
      v2L = ((v2L << 31) | (v2H >>> 1)) >>> 0;
      v2H = t;
      a0 = v2L & 0xffff;
      a1 = v2L >>> 16;
      p00 = a0 * 0xca87;
      p01 = a0 * 0x85eb;
      p10 = a1 * 0xca87;
      p11 = a1 * 0x85eb;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      v2H =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v2H, 0x85ebca87) + Math.imul(v2L, 0x9e3779b1)) >>>
        0;
      v2L = t;
      // v3 = round(v3, lane 2)
      xH = words[i + 5]!;
      xL = words[i + 4]!;
      a0 = xL & 0xffff;
      a1 = xL >>> 16;
      p00 = a0 * 0xeb4f;
      p01 = a0 * 0x27d4;
      p10 = a1 * 0xeb4f;
      p11 = a1 * 0x27d4;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      xH =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(xH, 0x27d4eb4f) + Math.imul(xL, 0xc2b2ae3d)) >>>
        0;
      xL = t;
      s = v3L + xL;
      v3L = s >>> 0;
      v3H = (v3H + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
      t = ((v3H << 31) | (v3L >>> 1)) >>> 0;
      v3L = ((v3L << 31) | (v3H >>> 1)) >>> 0;
      v3H = t;
      a0 = v3L & 0xffff;
      a1 = v3L >>> 16;
      p00 = a0 * 0xca87;
      p01 = a0 * 0x85eb;
      p10 = a1 * 0xca87;
      p11 = a1 * 0x85eb;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      v3H =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v3H, 0x85ebca87) + Math.imul(v3L, 0x9e3779b1)) >>>
        0;
      v3L = t;
      // v4 = round(v4, lane 3)
      xH = words[i + 7]!;
      xL = words[i + 6]!;
      a0 = xL & 0xffff;
      a1 = xL >>> 16;
      p00 = a0 * 0xeb4f;
      p01 = a0 * 0x27d4;
      p10 = a1 * 0xeb4f;
      p11 = a1 * 0x27d4;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      xH =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(xH, 0x27d4eb4f) + Math.imul(xL, 0xc2b2ae3d)) >>>
        0;
      xL = t;
      s = v4L + xL;
      v4L = s >>> 0;
      v4H = (v4H + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
      t = ((v4H << 31) | (v4L >>> 1)) >>> 0;
      v4L = ((v4L << 31) | (v4H >>> 1)) >>> 0;
      v4H = t;
      a0 = v4L & 0xffff;
      a1 = v4L >>> 16;
      p00 = a0 * 0xca87;
      p01 = a0 * 0x85eb;
      p10 = a1 * 0xca87;
      p11 = a1 * 0x85eb;
      mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
      t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
      v4H =
        (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v4H, 0x85ebca87) + Math.imul(v4L, 0x9e3779b1)) >>>
        0;
      v4L = t;
      i += 8;
    } while (i + 8 <= n);
    // h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
    t = ((v1H << 1) | (v1L >>> 31)) >>> 0;
    hL = ((v1L << 1) | (v1H >>> 31)) >>> 0;
    hH = t;
    t = ((v2H << 7) | (v2L >>> 25)) >>> 0;
    xL = ((v2L << 7) | (v2H >>> 25)) >>> 0;
    xH = t;
    s = hL + xL;
    hL = s >>> 0;
    hH = (hH + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
    t = ((v3H << 12) | (v3L >>> 20)) >>> 0;
    xL = ((v3L << 12) | (v3H >>> 20)) >>> 0;
    xH = t;
    s = hL + xL;
    hL = s >>> 0;
    hH = (hH + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
    t = ((v4H << 18) | (v4L >>> 14)) >>> 0;
    xL = ((v4L << 18) | (v4H >>> 14)) >>> 0;
    xH = t;
    s = hL + xL;
    hL = s >>> 0;
    hH = (hH + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
    // h = (h ^ round(0, v1)) * P1 + P4
    a0 = v1L & 0xffff;
    a1 = v1L >>> 16;
    p00 = a0 * 0xeb4f;
    p01 = a0 * 0x27d4;
    p10 = a1 * 0xeb4f;
    p11 = a1 * 0x27d4;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v1H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v1H, 0x27d4eb4f) + Math.imul(v1L, 0xc2b2ae3d)) >>>
      0;
    v1L = t;
    t = ((v1H << 31) | (v1L >>> 1)) >>> 0;
    v1L = ((v1L << 31) | (v1H >>> 1)) >>> 0;
    v1H = t;
    a0 = v1L & 0xffff;
    a1 = v1L >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v1H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v1H, 0x85ebca87) + Math.imul(v1L, 0x9e3779b1)) >>>
      0;
    v1L = t;
    hH = (hH ^ v1H) >>> 0;
    hL = (hL ^ v1L) >>> 0;
    a0 = hL & 0xffff;
    a1 = hL >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    hH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x85ebca87) + Math.imul(hL, 0x9e3779b1)) >>> 0;
    hL = t;
    s = hL + 0xc2b2ae63;
    hL = s >>> 0;
    hH = (hH + 0x85ebca77 + (s > 0xffffffff ? 1 : 0)) >>> 0;
    // h = (h ^ round(0, v2)) * P1 + P4
    a0 = v2L & 0xffff;
    a1 = v2L >>> 16;
    p00 = a0 * 0xeb4f;
    p01 = a0 * 0x27d4;
    p10 = a1 * 0xeb4f;
    p11 = a1 * 0x27d4;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v2H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v2H, 0x27d4eb4f) + Math.imul(v2L, 0xc2b2ae3d)) >>>
      0;
    v2L = t;
    t = ((v2H << 31) | (v2L >>> 1)) >>> 0;
    v2L = ((v2L << 31) | (v2H >>> 1)) >>> 0;
    v2H = t;
    a0 = v2L & 0xffff;
    a1 = v2L >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v2H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v2H, 0x85ebca87) + Math.imul(v2L, 0x9e3779b1)) >>>
      0;
    v2L = t;
    hH = (hH ^ v2H) >>> 0;
    hL = (hL ^ v2L) >>> 0;
    a0 = hL & 0xffff;
    a1 = hL >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    hH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x85ebca87) + Math.imul(hL, 0x9e3779b1)) >>> 0;
    hL = t;
    s = hL + 0xc2b2ae63;
    hL = s >>> 0;
    hH = (hH + 0x85ebca77 + (s > 0xffffffff ? 1 : 0)) >>> 0;
    // h = (h ^ round(0, v3)) * P1 + P4
    a0 = v3L & 0xffff;
    a1 = v3L >>> 16;
    p00 = a0 * 0xeb4f;
    p01 = a0 * 0x27d4;
    p10 = a1 * 0xeb4f;
    p11 = a1 * 0x27d4;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v3H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v3H, 0x27d4eb4f) + Math.imul(v3L, 0xc2b2ae3d)) >>>
      0;
    v3L = t;
    t = ((v3H << 31) | (v3L >>> 1)) >>> 0;
    v3L = ((v3L << 31) | (v3H >>> 1)) >>> 0;
    v3H = t;
    a0 = v3L & 0xffff;
    a1 = v3L >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v3H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v3H, 0x85ebca87) + Math.imul(v3L, 0x9e3779b1)) >>>
      0;
    v3L = t;
    hH = (hH ^ v3H) >>> 0;
    hL = (hL ^ v3L) >>> 0;
    a0 = hL & 0xffff;
    a1 = hL >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    hH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x85ebca87) + Math.imul(hL, 0x9e3779b1)) >>> 0;
    hL = t;
    s = hL + 0xc2b2ae63;
    hL = s >>> 0;
    hH = (hH + 0x85ebca77 + (s > 0xffffffff ? 1 : 0)) >>> 0;
    // h = (h ^ round(0, v4)) * P1 + P4
    a0 = v4L & 0xffff;
    a1 = v4L >>> 16;
    p00 = a0 * 0xeb4f;
    p01 = a0 * 0x27d4;
    p10 = a1 * 0xeb4f;
    p11 = a1 * 0x27d4;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v4H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v4H, 0x27d4eb4f) + Math.imul(v4L, 0xc2b2ae3d)) >>>
      0;
    v4L = t;
    t = ((v4H << 31) | (v4L >>> 1)) >>> 0;
    v4L = ((v4L << 31) | (v4H >>> 1)) >>> 0;
    v4H = t;
    a0 = v4L & 0xffff;
    a1 = v4L >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v4H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v4H, 0x85ebca87) + Math.imul(v4L, 0x9e3779b1)) >>>
      0;
    v4L = t;
    hH = (hH ^ v4H) >>> 0;
    hL = (hL ^ v4L) >>> 0;
    a0 = hL & 0xffff;
    a1 = hL >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    hH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x85ebca87) + Math.imul(hL, 0x9e3779b1)) >>> 0;
    hL = t;
    s = hL + 0xc2b2ae63;
    hL = s >>> 0;
    hH = (hH + 0x85ebca77 + (s > 0xffffffff ? 1 : 0)) >>> 0;
  } else {
    hH = seedH;
    hL = seedL;
    s = hL + 0x165667c5;
    hL = s >>> 0;
    hH = (hH + 0x27d4eb2f + (s > 0xffffffff ? 1 : 0)) >>> 0;
  }
  // h += length in bytes
  s = hL + ((n * 4) >>> 0);
  hL = s >>> 0;
  hH = (hH + (s > 0xffffffff ? 1 : 0)) >>> 0;
  while (i + 2 <= n) {
    // h = rotl(h ^ round(0, lane), 27) * P1 + P4
    v1H = 0;
    v1L = 0;
    xH = words[i + 1]!;
    xL = words[i]!;
    a0 = xL & 0xffff;
    a1 = xL >>> 16;
    p00 = a0 * 0xeb4f;
    p01 = a0 * 0x27d4;
    p10 = a1 * 0xeb4f;
    p11 = a1 * 0x27d4;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    xH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(xH, 0x27d4eb4f) + Math.imul(xL, 0xc2b2ae3d)) >>> 0;
    xL = t;
    s = v1L + xL;
    v1L = s >>> 0;
    v1H = (v1H + xH + (s > 0xffffffff ? 1 : 0)) >>> 0;
    t = ((v1H << 31) | (v1L >>> 1)) >>> 0;
    v1L = ((v1L << 31) | (v1H >>> 1)) >>> 0;
    v1H = t;
    a0 = v1L & 0xffff;
    a1 = v1L >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    v1H =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(v1H, 0x85ebca87) + Math.imul(v1L, 0x9e3779b1)) >>>
      0;
    v1L = t;
    hH = (hH ^ v1H) >>> 0;
    hL = (hL ^ v1L) >>> 0;
    t = ((hH << 27) | (hL >>> 5)) >>> 0;
    hL = ((hL << 27) | (hH >>> 5)) >>> 0;
    hH = t;
    a0 = hL & 0xffff;
    a1 = hL >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    hH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x85ebca87) + Math.imul(hL, 0x9e3779b1)) >>> 0;
    hL = t;
    s = hL + 0xc2b2ae63;
    hL = s >>> 0;
    hH = (hH + 0x85ebca77 + (s > 0xffffffff ? 1 : 0)) >>> 0;
    i += 2;
  }
  if (i < n) {
    // h = rotl(h ^ (word * P1), 23) * P2 + P3
    xH = 0;
    xL = words[i]!;
    a0 = xL & 0xffff;
    a1 = xL >>> 16;
    p00 = a0 * 0xca87;
    p01 = a0 * 0x85eb;
    p10 = a1 * 0xca87;
    p11 = a1 * 0x85eb;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    xH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(xH, 0x85ebca87) + Math.imul(xL, 0x9e3779b1)) >>> 0;
    xL = t;
    hH = (hH ^ xH) >>> 0;
    hL = (hL ^ xL) >>> 0;
    t = ((hH << 23) | (hL >>> 9)) >>> 0;
    hL = ((hL << 23) | (hH >>> 9)) >>> 0;
    hH = t;
    a0 = hL & 0xffff;
    a1 = hL >>> 16;
    p00 = a0 * 0xeb4f;
    p01 = a0 * 0x27d4;
    p10 = a1 * 0xeb4f;
    p11 = a1 * 0x27d4;
    mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    hH =
      (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x27d4eb4f) + Math.imul(hL, 0xc2b2ae3d)) >>> 0;
    hL = t;
    s = hL + 0x9e3779f9;
    hL = s >>> 0;
    hH = (hH + 0x165667b1 + (s > 0xffffffff ? 1 : 0)) >>> 0;
  }
  // avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
  hL = (hL ^ (hH >>> 1)) >>> 0;
  a0 = hL & 0xffff;
  a1 = hL >>> 16;
  p00 = a0 * 0xeb4f;
  p01 = a0 * 0x27d4;
  p10 = a1 * 0xeb4f;
  p11 = a1 * 0x27d4;
  mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
  hH = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x27d4eb4f) + Math.imul(hL, 0xc2b2ae3d)) >>> 0;
  hL = t;
  hL = (hL ^ ((hL >>> 29) | (hH << 3))) >>> 0;
  hH = (hH ^ (hH >>> 29)) >>> 0;
  a0 = hL & 0xffff;
  a1 = hL >>> 16;
  p00 = a0 * 0x79f9;
  p01 = a0 * 0x9e37;
  p10 = a1 * 0x79f9;
  p11 = a1 * 0x9e37;
  mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  t = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
  hH = (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16) + Math.imul(hH, 0x9e3779f9) + Math.imul(hL, 0x165667b1)) >>> 0;
  hL = t;
  hL = (hL ^ hH) >>> 0;
  out[0] = hH;
  out[1] = hL;
}

const M64 = (1n << 64n) - 1n;
const B1 = 0x9e3779b185ebca87n,
  B2 = 0xc2b2ae3d27d4eb4fn,
  B3 = 0x165667b19e3779f9n;
const B4 = 0x85ebca77c2b2ae63n,
  B5 = 0x27d4eb2f165667c5n;
const brotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M64;
const bround = (acc: bigint, lane: bigint): bigint => (brotl((acc + lane * B2) & M64, 31n) * B1) & M64;
const bmerge = (acc: bigint, v: bigint): bigint => ((acc ^ bround(0n, v)) * B1 + B4) & M64;

/**
 * XXH64 of `bytes` with a 64-bit `seed`: the reference implementation (BigInt, straight from the
 * spec). Slower than {@link xxh64Words}; used off the hot path and to check it.
 *
 * @returns the 64-bit hash as an unsigned bigint.
 */
export function xxh64(bytes: Uint8Array, seed: bigint = 0n): bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.byteLength;
  const s = seed & M64;
  let i = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (s + B1 + B2) & M64,
      v2 = (s + B2) & M64,
      v3 = s,
      v4 = (s - B1) & M64;
    for (; i + 32 <= len; i += 32) {
      v1 = bround(v1, view.getBigUint64(i, true));
      v2 = bround(v2, view.getBigUint64(i + 8, true));
      v3 = bround(v3, view.getBigUint64(i + 16, true));
      v4 = bround(v4, view.getBigUint64(i + 24, true));
    }
    h = (brotl(v1, 1n) + brotl(v2, 7n) + brotl(v3, 12n) + brotl(v4, 18n)) & M64;
    h = bmerge(bmerge(bmerge(bmerge(h, v1), v2), v3), v4);
  } else {
    h = (s + B5) & M64;
  }
  h = (h + BigInt(len)) & M64;
  for (; i + 8 <= len; i += 8) h = (brotl(h ^ bround(0n, view.getBigUint64(i, true)), 27n) * B1 + B4) & M64;
  if (i + 4 <= len) {
    h = (brotl(h ^ ((BigInt(view.getUint32(i, true)) * B1) & M64), 23n) * B2 + B3) & M64;
    i += 4;
  }
  for (; i < len; i++) h = (brotl(h ^ ((BigInt(bytes[i]!) * B5) & M64), 11n) * B1) & M64;
  h ^= h >> 33n;
  h = (h * B2) & M64;
  h ^= h >> 29n;
  h = (h * B3) & M64;
  h ^= h >> 32n;
  return h;
}

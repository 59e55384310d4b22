// Metadata parsing is defensive: anything but the exact bytes agent.metadata() returned is refused
// with ERR_KVWIRE_BAD_METADATA, never a crash, never a hang; signed metadata is checked before any
// of it is parsed (ERR_KVWIRE_UNAUTHORIZED).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { deriveKey } from '../../lib/transport/auth.js';
import { crc32, decodeMetadata, encodeMetadata, verifyMetadata } from '../../lib/transport/metadata.js';
import type { MetadataInput } from '../../lib/transport/metadata.js';

const sample: MetadataInput = {
  engine: 'ucx',
  name: 'prefill-0',
  pid: 1234,
  pidStart: 987654321,
  hostId: 'node-7/boot/pid:[4026531836]',
  address: Uint8Array.from({ length: 215 }, (_, i) => (i * 31) & 255),
  regions: [
    { id: 1, label: 'kv-L0-K', access: 'read', length: 1 << 20 },
    { id: 2, label: 'kv-L0-V', access: 'readwrite', length: 4096, memory: 'cuda' },
  ],
};
const key = deriveKey('metadata-test-secret-0123456789');
const other = deriveKey('another-secret-0123456789abcdef');

function expectBad(bytes: unknown): void {
  let err: unknown;
  try {
    decodeMetadata(bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KvwireError);
  expect((err as KvwireError).code).toBe(ErrorCode.BAD_METADATA);
}

describe('metadata', () => {
  it('round-trips, and carries no base address or key (those come from the grant)', () => {
    const d = decodeMetadata(encodeMetadata(sample));
    expect(d).toMatchObject({ ...sample, version: 2 });
    expect(d.regions[0]!.memory).toBe('host');
    expect(d.regions[0]!.base).toBeUndefined();
    expect(d.regions[0]!.key).toBeUndefined();
    expect(d.keyId).toBeUndefined();
  });

  it('signs, and checks the signature before parsing: another key, an unsigned blob, any altered byte', () => {
    const signed = encodeMetadata(sample, key);
    expect(verifyMetadata(signed, [key])).toBe(key.id.toString('hex'));
    expect(verifyMetadata(signed, [other, key])).toBe(key.id.toString('hex')); // rotation: any held key
    expect(decodeMetadata(signed)).toMatchObject({ ...sample, keyId: key.id.toString('hex') });
    const unauthorized = (bytes: Uint8Array, keys: (typeof key)[], msg: RegExp) => {
      let err: unknown;
      try {
        verifyMetadata(bytes, keys);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KvwireError);
      expect((err as KvwireError).code).toBe(ErrorCode.UNAUTHORIZED);
      expect((err as KvwireError).message).toMatch(msg);
    };
    unauthorized(signed, [other], /signed with key [0-9a-f]{16}, which this agent does not hold/);
    unauthorized(encodeMetadata(sample), [key], /is not signed/);
    unauthorized(signed, [], /is signed, and its agent authenticates its peers/);
    // Every byte flip of the body is caught by the MAC even when the checksum is recomputed.
    for (let i = 16; i < signed.length - 40; i++) {
      const bad = Uint8Array.from(signed);
      bad[i]! ^= 0x40;
      new DataView(bad.buffer).setUint32(12, crc32(bad.subarray(16, bad.length - 40)), true);
      unauthorized(bad, [key], /does not match its bytes/);
    }
  });

  it('computes zlib-compatible CRC-32', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });

  it('refuses every truncation and every extension', () => {
    const md = encodeMetadata(sample);
    for (let n = 0; n < md.length; n++) expectBad(md.subarray(0, n));
    expectBad(Buffer.concat([md, Buffer.of(0)]));
  });

  it('refuses every single-bit flip', () => {
    const md = encodeMetadata(sample);
    for (let i = 0; i < md.length; i++) {
      const bad = Uint8Array.from(md);
      bad[i]! ^= 1 << (i % 8);
      expectBad(bad);
    }
  });

  it('refuses random bytes, and bytes with a valid header and checksum but garbage inside', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
        expectBad(bytes);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 2048 }), (body) => {
        // A well-formed envelope around random content: only the field checks stand between it
        // and the engine, and they must hold without reading out of bounds.
        const out = new Uint8Array(32 + body.length);
        const v = new DataView(out.buffer);
        v.setUint32(0, 0x4d57564b, true);
        v.setUint16(4, 2, true);
        v.setUint32(8, out.length, true);
        out[16] = 1;
        out.set(body, 32);
        v.setUint32(12, crc32(out.subarray(16)), true);
        try {
          decodeMetadata(out);
        } catch (e) {
          expect((e as KvwireError).code).toBe(ErrorCode.BAD_METADATA);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses declared sizes beyond the limit, other versions, and non-bytes', () => {
    const md = Uint8Array.from(encodeMetadata(sample));
    const v = new DataView(md.buffer);
    v.setUint16(4, 1, true);
    expect(() => decodeMetadata(md)).toThrow(/version 1 is not supported/);
    v.setUint16(4, 2, true);
    v.setUint32(8, 0xffffffff, true);
    expect(() => decodeMetadata(md)).toThrow(/exceeds/);
    for (const x of [undefined, null, 'metadata', 42, {}, [1, 2, 3], new ArrayBuffer(64)]) expectBad(x);
  });
});

// Device region keys (lib/transport/device-key.ts) and device regions in metadata: round trips,
// and every malformed key refused with ERR_KVWIRE_BAD_METADATA before it reaches the engine.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { decodeDeviceKey, encodeDeviceKey } from '../../lib/transport/device-key.js';
import type { DeviceKey } from '../../lib/transport/device-key.js';
import { decodeMetadata, encodeMetadata } from '../../lib/transport/metadata.js';

const withIpc: DeviceKey = {
  device: 3,
  stagingChunk: 16 << 20,
  busId: '0000:3b:00.0',
  ipcHandle: Uint8Array.from({ length: 64 }, (_, i) => i * 3),
  ipcOffset: 2 ** 40 + 12288,
  rkey: Uint8Array.of(9, 8, 7),
};
const withoutIpc: DeviceKey = { device: 0, stagingChunk: 65536, busId: '', ipcOffset: 0, rkey: new Uint8Array(0) };

function expectBad(fn: () => unknown): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(KvwireError);
  expect((err as KvwireError).code).toBe(ErrorCode.BAD_METADATA);
}

describe('device region keys', () => {
  it('round-trip, with and without an IPC handle', () => {
    expect(decodeDeviceKey(encodeDeviceKey(withIpc))).toEqual(withIpc);
    expect(decodeDeviceKey(encodeDeviceKey(withoutIpc))).toEqual(withoutIpc);
  });

  it('refuse every truncation and extension, other magic, versions, flags and a zero chunk', () => {
    const k = encodeDeviceKey(withIpc);
    for (let n = 0; n < k.length; n++) expectBad(() => decodeDeviceKey(k.subarray(0, n)));
    expectBad(() => decodeDeviceKey(Uint8Array.from([...k, 0])));
    for (const [at, value] of [
      [0, 0x4a],
      [4, 2],
      [5, 3],
      [13, 0x7a],
    ] as const) {
      const bad = Uint8Array.from(k);
      bad[at] = value;
      expectBad(() => decodeDeviceKey(bad));
    }
    const zero = Uint8Array.from(encodeDeviceKey(withoutIpc));
    zero.fill(0, 8, 12);
    expectBad(() => decodeDeviceKey(zero));
  });

  it('never throw anything but BAD_METADATA on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeDeviceKey(bytes);
        } catch (e) {
          expect((e as KvwireError).code).toBe(ErrorCode.BAD_METADATA);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('device regions in metadata', () => {
  const base = {
    engine: 'ucx' as const,
    name: 'gpu-0',
    pid: 1,
    pidStart: 2,
    hostId: 'h',
    address: Uint8Array.of(1, 2, 3),
  };

  it('round-trip with their memory kind; host regions stay host; keys travel in grants only', () => {
    const md = encodeMetadata({
      ...base,
      regions: [
        { id: 1, label: 'kv', access: 'readwrite', length: 4096, memory: 'cuda' },
        { id: 2, label: 'host', access: 'read', length: 4096 },
      ],
    });
    const d = decodeMetadata(md);
    expect(d.regions.map((r) => [r.label, r.access, r.memory, r.key])).toEqual([
      ['kv', 'readwrite', 'cuda', undefined],
      ['host', 'read', 'host', undefined],
    ]);
  });
});

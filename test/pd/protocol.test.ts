import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeLeaseMessage, encodeLeaseMessage } from '../../lib/pd/protocol.js';

describe('lease notifications', () => {
  it('round-trip done and abort messages, whatever the request id', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('done' as const, 'abort' as const),
        fc.string({ minLength: 1, maxLength: 200 }),
        fc.integer({ min: 1, max: 2 ** 48 - 1 }),
        (kind, requestId, token) => {
          const bytes = Buffer.from(encodeLeaseMessage({ kind, requestId, token }));
          expect(decodeLeaseMessage(bytes)).toEqual({ kind, requestId, token });
        },
      ),
    );
  });

  it('has the documented wire form', () => {
    expect(encodeLeaseMessage({ kind: 'done', requestId: 'r1', token: 42 })).toBe(
      '{"kvwire":"done","req":"r1","lease":42}',
    );
  });

  it('leaves other notifications alone', () => {
    for (const s of [
      'hello',
      'kvwire:done:r1',
      '{"kvwire":"free","req":"r","lease":1}',
      '{"kvwire":"done","req":"","lease":1}',
      '{"kvwire":"done","req":"r","lease":0}',
      '{"kvwire":"done","req":"r","lease":1.5}',
      '{"kvwire":"done","req":"r"}',
      '{"kvwire":',
      '',
    ]) {
      expect(decodeLeaseMessage(Buffer.from(s))).toBeUndefined();
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const m = decodeLeaseMessage(b);
        if (m !== undefined) expect(['done', 'abort']).toContain(m.kind);
      }),
    );
  });
});

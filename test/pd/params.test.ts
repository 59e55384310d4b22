import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { parseKvTransferParams } from '../../lib/pd/params.js';

const good = {
  do_remote_prefill: true,
  do_remote_decode: false,
  remote_engine_id: 'prefill-0',
  remote_request_id: 'req-1',
  remote_block_ids: [3, 4, 5],
  remote_host: '10.0.0.7',
  remote_port: 5600,
  tp_size: 2,
  remote_lease_slot: 17,
  remote_lease_token: 123456789,
};

function fieldOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(KvwireError.is(e, ErrorCode.INVALID_ARGUMENT)).toBe(true);
    return (e as KvwireError).details.field;
  }
  throw new Error('expected a throw');
}

describe('kv_transfer_params', () => {
  it('accepts what a prefill coordinator returns and freezes a copy', () => {
    const p = parseKvTransferParams(JSON.parse(JSON.stringify(good)));
    expect(p).toEqual(good);
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.remote_block_ids)).toBe(true);
  });

  it('names the field that is wrong', () => {
    expect(fieldOf(() => parseKvTransferParams({ ...good, do_remote_prefill: false }))).toBe('do_remote_prefill');
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_engine_id: '' }))).toBe(
      'kv_transfer_params.remote_engine_id',
    );
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_request_id: 'x'.repeat(2000) }))).toBe(
      'kv_transfer_params.remote_request_id',
    );
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_block_ids: [1, -2] }))).toBe('remote_block_ids');
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_block_ids: [1.5] }))).toBe('remote_block_ids');
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_host: 'evil.com/x' }))).toBe('remote_host');
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_port: 70000 }))).toBe('remote_port');
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_host: 'a\u0000b' }))).toBe('remote_host');
    expect(fieldOf(() => parseKvTransferParams({ ...good, tp_size: 0 }))).toBe('tp_size');
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_lease_token: 0 }))).toBe('remote_lease_token');
    expect(fieldOf(() => parseKvTransferParams({ ...good, remote_lease_slot: undefined }))).toBe('remote_lease_slot');
    expect(fieldOf(() => parseKvTransferParams(null))).toBe('kv_transfer_params');
  });

  it('reports the index of a bad block id', () => {
    try {
      parseKvTransferParams({ ...good, remote_block_ids: [0, 1, 'x'] });
      throw new Error('expected a throw');
    } catch (e) {
      expect((e as KvwireError).details.index).toBe(2);
    }
  });

  it('never crashes on arbitrary input: it returns params or throws a typed error', () => {
    fc.assert(
      fc.property(fc.anything(), fc.dictionary(fc.constantFrom(...Object.keys(good)), fc.anything()), (junk, patch) => {
        for (const input of [junk, { ...good, ...patch }]) {
          try {
            parseKvTransferParams(input);
          } catch (e) {
            expect(KvwireError.is(e, ErrorCode.INVALID_ARGUMENT)).toBe(true);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });
});

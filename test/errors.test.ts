import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../lib/errors.js';

describe('KvwireError', () => {
  it('carries a stable code, a message and details', () => {
    const e = new KvwireError(ErrorCode.OUT_OF_BOUNDS, 'descriptor 3 reaches byte 10 of region r which has 8 bytes', {
      index: 3,
    });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('KvwireError');
    expect(e.code).toBe('ERR_KVWIRE_OUT_OF_BOUNDS');
    expect(e.details.index).toBe(3);
    expect(KvwireError.is(e, ErrorCode.OUT_OF_BOUNDS)).toBe(true);
    expect(KvwireError.is(e, ErrorCode.TIMEOUT)).toBe(false);
  });

  it('maps unknown codes from across a boundary to ERR_KVWIRE_TRANSPORT', () => {
    expect(KvwireError.fromCode('ERR_KVWIRE_TIMEOUT', 'late').code).toBe(ErrorCode.TIMEOUT);
    expect(KvwireError.fromCode('EWHATEVER', 'odd').code).toBe(ErrorCode.TRANSPORT);
  });
});

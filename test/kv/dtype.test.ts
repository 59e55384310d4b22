import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { KV_DTYPES, dtypeBytes, isKvDtype, parseKvDtype } from '../../lib/kv/index.js';

describe('KV dtypes', () => {
  it('knows the size of every element type', () => {
    expect(Object.fromEntries(KV_DTYPES.map((d) => [d, dtypeBytes(d)]))).toEqual({
      fp16: 2,
      bf16: 2,
      fp32: 4,
      'fp8-e4m3': 1,
      'fp8-e5m2': 1,
      int8: 1,
    });
  });

  it('reads the spellings of PyTorch and vLLM configs', () => {
    expect(parseKvDtype('bfloat16')).toBe('bf16');
    expect(parseKvDtype('torch.float16')).toBe('fp16');
    expect(parseKvDtype('half')).toBe('fp16');
    expect(parseKvDtype('FP8')).toBe('fp8-e4m3'); // vLLM's --kv-cache-dtype fp8 is e4m3
    expect(parseKvDtype('fp8_e5m2')).toBe('fp8-e5m2');
    expect(parseKvDtype(' float32 ')).toBe('fp32');
    expect(parseKvDtype('int8')).toBe('int8');
  });

  it('rejects unknown dtypes with ERR_KVWIRE_INVALID_ARGUMENT and lists the known ones', () => {
    expect(() => parseKvDtype('fp4')).toThrowError(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringContaining('bf16') }),
    );
    expect(() => dtypeBytes('float16' as never)).toThrowError(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    expect(() => parseKvDtype('constructor')).toThrowError(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    expect(isKvDtype('bf16')).toBe(true);
    expect(isKvDtype('toString')).toBe(false);
  });
});

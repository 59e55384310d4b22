import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { isMla, latentWidth, modelBytesPerToken, validateModelShape, type ModelShape } from '../../lib/kv/index.js';

describe('model KV shapes', () => {
  it('counts K and V for every layer and head of an MHA/GQA model', () => {
    expect(modelBytesPerToken({ layers: 3, kvHeads: 5, headDim: 7, dtype: 'fp32' })).toBe(2 * 3 * 5 * 7 * 4);
  });

  it('counts one latent per layer for an MLA model', () => {
    const m: ModelShape = { attention: 'mla', layers: 3, kvLoraRank: 10, qkRopeHeadDim: 2, dtype: 'bf16' };
    expect(isMla(m)).toBe(true);
    expect(latentWidth(m as Extract<ModelShape, { attention: 'mla' }>)).toBe(12);
    expect(modelBytesPerToken(m)).toBe(3 * 12 * 2);
  });

  it('rejects malformed shapes naming the field', () => {
    const bad: [unknown, string][] = [
      [{ layers: 0, kvHeads: 8, headDim: 128, dtype: 'bf16' }, 'model.layers'],
      [{ layers: 32, kvHeads: 8.5, headDim: 128, dtype: 'bf16' }, 'model.kvHeads'],
      [{ layers: 32, kvHeads: 8, headDim: -1, dtype: 'bf16' }, 'model.headDim'],
      [{ layers: 32, kvHeads: 8, headDim: 128, dtype: 'bfloat16' }, 'dtype'],
      [{ attention: 'mla', layers: 61, kvLoraRank: 512, dtype: 'bf16' }, 'model.qkRopeHeadDim'],
      [{ attention: 'gqa', layers: 32, kvHeads: 8, headDim: 128, dtype: 'bf16' }, 'model.attention'],
      [null, 'model'],
    ];
    for (const [shape, field] of bad) {
      expect(() => validateModelShape(shape as ModelShape)).toThrowError(
        expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, details: expect.objectContaining({ field }) }),
      );
    }
  });
});

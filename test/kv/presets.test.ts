import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { KV_PRESET_NAMES, KvLayout, kvPreset, modelBytesPerToken, type KvPresetName } from '../../lib/kv/index.js';

// layers, KV heads, head dim, dtype bytes — from the models' Hugging Face configs.
const MHA: Record<Exclude<KvPresetName, 'deepseek-v3'>, [number, number, number, number]> = {
  'llama-2-7b': [32, 32, 128, 2],
  'llama-3-8b': [32, 8, 128, 2],
  'llama-3-70b': [80, 8, 128, 2],
  'mistral-7b': [32, 8, 128, 2],
  'qwen3-8b': [36, 8, 128, 2],
};

describe('model presets', () => {
  for (const [name, [layers, heads, dim, bytes]] of Object.entries(MHA)) {
    it(`${name}: 2 x ${layers} layers x ${heads} KV heads x ${dim} x ${bytes} bytes per token`, () => {
      const shape = kvPreset(name as KvPresetName);
      expect(modelBytesPerToken(shape)).toBe(2 * layers * heads * dim * bytes);
      expect(new KvLayout({ model: shape, numBlocks: 4 }).bytesPerToken).toBe(2 * layers * heads * dim * bytes);
    });
  }

  it('llama-3-8b is 128 KiB per token and 32 KiB per layer-K block of 16 tokens', () => {
    const layout = new KvLayout({ model: kvPreset('llama-3-8b'), numBlocks: 4 });
    expect(layout.bytesPerToken).toBe(131_072);
    expect(layout.tensor('kv-L0-K').bytes / layout.numBlocks).toBe(32_768);
    expect(layout.tensors).toHaveLength(64);
  });

  it('deepseek-v3 (MLA): 61 layers x (512 + 64) latent x 2 bytes per token, one latent per layer', () => {
    const shape = kvPreset('deepseek-v3');
    expect(modelBytesPerToken(shape)).toBe(61 * 576 * 2);
    const layout = new KvLayout({ model: shape, numBlocks: 4 });
    expect(layout.tensors.map((t) => t.label).slice(0, 2)).toEqual(['mla-L0', 'mla-L1']);
    expect(layout.tensors).toHaveLength(61);
    expect(layout.bytesPerToken).toBe(70_272);
  });

  it('covers the six models the issue names', () => {
    expect([...KV_PRESET_NAMES].sort()).toEqual([
      'deepseek-v3',
      'llama-2-7b',
      'llama-3-70b',
      'llama-3-8b',
      'mistral-7b',
      'qwen3-8b',
    ]);
  });

  it('takes another cache dtype by spreading the preset', () => {
    expect(modelBytesPerToken({ ...kvPreset('llama-3-8b'), dtype: 'fp8-e4m3' })).toBe(65_536);
  });

  it('presets are frozen and unknown names are rejected', () => {
    expect(Object.isFrozen(kvPreset('mistral-7b'))).toBe(true);
    expect(() => kvPreset('llama-4' as KvPresetName)).toThrowError(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: expect.stringContaining('llama-3-8b') }),
    );
  });
});

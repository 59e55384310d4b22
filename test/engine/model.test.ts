import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { ensureModelFile, generatedModel, kvBytesPerToken } from '../../lib/engine/model/catalog.js';
import { generateModel } from '../../lib/engine/model/generate.js';
import { writeGguf } from '../../lib/engine/model/gguf.js';
import { buildVocabulary } from '../../lib/engine/model/vocabulary.js';

// The generated models: byte-identical on every machine (the pinned hash), GGUF that parses.
describe('generated models', () => {
  it('tiny is under 1 MB and its bytes have the pinned SHA-256', () => {
    const entry = generatedModel('tiny');
    const bytes = generateModel(entry.spec);
    expect(bytes.length).toBeLessThan(1_000_000);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(entry.sha256);
    expect(kvBytesPerToken(entry.spec)).toBe(256);
    expect(kvBytesPerToken(generatedModel('small').spec)).toBe(8192);
  });

  it('writes GGUF v3: header, metadata and aligned tensor data', () => {
    const b = generateModel(generatedModel('tiny').spec);
    expect(b.subarray(0, 4).toString('ascii')).toBe('GGUF');
    expect(b.readUInt32LE(4)).toBe(3);
    expect(Number(b.readBigUInt64LE(8))).toBe(3 + 2 * 9); // embeddings, norm, output + 9 per layer
    const one = writeGguf(new Map([['general.architecture', { type: 'string', value: 'llama' }]]), [
      { name: 't', dims: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
    ]);
    expect(one.length % 32).toBe(0);
    expect(one.readFloatLE(one.length - 32)).toBe(1); // data section starts aligned, tensor padded to 32
    expect(() => writeGguf(new Map(), [{ name: 'bad', dims: [3], data: new Float32Array(2) }])).toThrow(
      /dims 3 hold 3 values/,
    );
  });

  it('the vocabulary: specials, 256 byte tokens, printable characters and pieces', () => {
    const v = buildVocabulary();
    expect(v.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(v.tokens[258]).toBe('<0xFF>');
    expect(v.tokens.length).toBe(444);
    expect(new Set(v.tokens).size).toBe(v.tokens.length);
  });

  it('ensureModelFile writes once, reuses, and replaces a corrupted file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvwire-model-'));
    try {
      const path = await ensureModelFile('tiny', dir);
      const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
      expect(sha(path)).toBe(generatedModel('tiny').sha256);
      writeFileSync(path, 'not a model');
      expect(await ensureModelFile('tiny', dir)).toBe(path);
      expect(sha(path)).toBe(generatedModel('tiny').sha256);
      await expect(ensureModelFile('huge', dir)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

import type { Token } from 'node-llama-cpp';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { KvLayout } from '../../lib/kv/index.js';
import { buildStateFile, parseStateFile, rowBytesOf, scatterRows } from '../../lib/engine/runtimes/llama/state-file.js';

// llama.cpp's sequence state file <-> kvwire blocks: rows land by position, round trips are exact.
const layout = new KvLayout({
  model: { layers: 2, kvHeads: 2, headDim: 16, dtype: 'fp16' },
  numBlocks: 8,
  kv: 'split',
  order: 'NHD',
});
const views = () => layout.tensors.map(() => new Uint8Array(layout.numBlocks * layout.blockBytes));
const row = rowBytesOf(layout);

function fill(v: Uint8Array[], blockIds: number[], n: number): void {
  v.forEach((t, ti) => {
    for (let p = 0; p < n; p++) {
      const at = blockIds[Math.floor(p / 16)]! * layout.blockBytes + (p % 16) * row;
      for (let i = 0; i < row; i++) t[at + i] = (ti * 31 + p * 7 + i) & 0xff;
    }
  });
}

describe('llama.cpp sequence state files', () => {
  it('builds a file that parses back to the same tokens and rows', () => {
    const src = views();
    fill(src, [3, 5, 1], 40);
    const tokens = Array.from({ length: 40 }, (_, i) => i + 100);
    const file = buildStateFile(tokens, 4, layout, src, [3, 5, 1]);
    const st = parseStateFile(file, 2, row);
    expect([...st.tokens]).toEqual(tokens);
    expect(st.nStream).toBe(4);
    expect([...st.positions]).toEqual(tokens.map((_, i) => i));
    const dst = views();
    expect(scatterRows(file, st, layout, dst, [6, 0, 2], 0, 40)).toBe(40);
    for (let t = 0; t < src.length; t++) {
      for (let p = 0; p < 40; p++) {
        const a = [3, 5, 1][Math.floor(p / 16)]! * layout.blockBytes + (p % 16) * row;
        const b = [6, 0, 2][Math.floor(p / 16)]! * layout.blockBytes + (p % 16) * row;
        expect(Buffer.from(dst[t]!.subarray(b, b + row)).equals(Buffer.from(src[t]!.subarray(a, a + row)))).toBe(true);
      }
    }
  });

  it('places rows by position, skips rows outside the range, and zero rows are zeros', () => {
    const src = views();
    fill(src, [0, 1], 20);
    const file = buildStateFile(
      Array.from({ length: 20 }, () => 7),
      1,
      layout,
      src,
      [0, 1],
    );
    const st = parseStateFile(file, 2, row);
    expect(scatterRows(file, st, layout, views(), [4, 5], 16, 20)).toBe(4);
    const zero = parseStateFile(buildStateFile([1, 2, 3], 1, layout, src, [0], true), 2, row);
    expect(zero.k.length).toBe(2);
  });

  it('refuses other formats, truncation and other models with typed errors', () => {
    const file = buildStateFile([1, 2, 3], 2, layout, views(), [0]);
    expect(() => parseStateFile(file.subarray(0, file.length - 5), 2, row)).toThrow(
      expect.objectContaining({ code: ErrorCode.CORRUPTED }),
    );
    expect(() => parseStateFile(file, 3, row)).toThrow(expect.objectContaining({ code: ErrorCode.INCOMPATIBLE }));
    expect(() => parseStateFile(file, 2, row * 2)).toThrow(/f16 rows of/);
    const other = Buffer.from(file);
    other.writeUInt32LE(0x12345678, 0);
    expect(() => parseStateFile(other, 2, row)).toThrow(/magic/);
    expect(() => buildStateFile(Array(40).fill(1), 1, layout, views(), [0])).toThrow(/need 3 blocks/);
  });
});

describe("llama.cpp's own state files (node-llama-cpp 3.21.1, the tiny model)", () => {
  // What the engine builds from blocks must be byte for byte what llama.cpp wrote, with flash
  // attention (V rows per token) and without it (V element-major, the engine's default).
  for (const flashAttention of [false, true]) {
    it(`round-trips through blocks to the same bytes (flash attention ${flashAttention ? 'on' : 'off'})`, async () => {
      const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
      const { ensureModelFile } = await import('../../lib/engine/model/catalog.js');
      const { generatedModel } = await import('../../lib/engine/model/catalog.js');
      const { headDim } = await import('../../lib/engine/model/generate.js');
      const spec = generatedModel('tiny').spec;
      const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, logLevel: LlamaLogLevel.error });
      const model = await llama.loadModel({ modelPath: await ensureModelFile('tiny'), gpuLayers: 0 });
      const context = await model.createContext({ contextSize: 256, sequences: 2, flashAttention, threads: 1 });
      const dir = mkdtempSync(join(tmpdir(), 'kvwire-state-'));
      try {
        const seq = context.getSequence();
        // Token ids are branded in node-llama-cpp's types; 1 is the generated vocabulary's BOS.
        const tokens = [
          1 as Token,
          ...model.tokenize('The quick brown fox jumps over the lazy dog, twice and again.', false),
        ];
        await seq.evaluateWithoutGeneratingNewTokens(tokens.slice(0, 40));
        await seq.saveStateToFile(join(dir, 's.bin'));
        const original = readFileSync(join(dir, 's.bin'));
        const real = new KvLayout({
          model: { layers: spec.layers, kvHeads: spec.kvHeads, headDim: headDim(spec), dtype: 'fp16' },
          numBlocks: 4,
          kv: 'split',
          order: 'NHD',
        });
        const st = parseStateFile(original, spec.layers, rowBytesOf(real));
        expect(st.vTrans).toBe(!flashAttention);
        const blocks = real.tensors.map(() => new Uint8Array(real.numBlocks * real.blockBytes));
        expect(scatterRows(original, st, real, blocks, [2, 0, 3], 0, 40)).toBe(40);
        const rebuilt = buildStateFile(tokens.slice(0, 40), st, real, blocks, [2, 0, 3]);
        expect(Buffer.compare(rebuilt, original)).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
        await context.dispose();
        await model.dispose();
        await llama.dispose();
      }
    }, 60_000);
  }
});

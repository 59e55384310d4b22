import { describe, expect, it } from 'vitest';
import { DEFAULT_BATCHES, DEFAULT_SIZES, parseBenchArgs, UsageError } from '../../bench/transfer/options.js';
import { fmtSize, parseByteList, parseBytes } from '../../bench/transfer/units.js';

describe('bench options', () => {
  it('defaults to the issue grid: READ and WRITE, 4 KiB to 16 MiB, batches 1, 16 and 64', () => {
    const o = parseBenchArgs([]);
    expect(o.sweep).toBe(true);
    expect(o.ops).toEqual(['read', 'write']);
    expect(o.sizes).toEqual(DEFAULT_SIZES);
    expect(o.sizes[0]).toBe(4096);
    expect(o.sizes[o.sizes.length - 1]).toBe(16 << 20);
    expect(o.batches).toEqual(DEFAULT_BATCHES);
    expect(o.inflight).toBe(1);
    expect(o.check).toBe(false);
    expect(o.transports).toBeUndefined();
  });

  it('parses sizes with binary units and power-of-two ranges', () => {
    expect(parseBytes('4K')).toBe(4096);
    expect(parseBytes('64KiB')).toBe(65536);
    expect(parseBytes('16m')).toBe(16 << 20);
    expect(parseBytes('1G')).toBe(1 << 30);
    expect(parseByteList('4K..32K,1M')).toEqual([4096, 8192, 16384, 32768, 1 << 20]);
    expect(parseBenchArgs(['--sizes=1M,4K']).sizes).toEqual([4096, 1 << 20]);
    expect(fmtSize(16 << 20)).toBe('16M');
    expect(fmtSize(1000)).toBe('1000');
  });

  it('takes every documented option', () => {
    const o = parseBenchArgs([
      '--engine',
      'loopback',
      '--transports',
      'loopback',
      '--ops',
      'write',
      '--sizes',
      '4K',
      '--batches',
      '2,1',
      '--iters',
      '7',
      '--warmup',
      '0',
      '--inflight',
      '4',
      '--check',
      '--baseline',
      '--max-region',
      '64M',
      '--row-cap',
      '0',
      '--json',
      '--plot',
      'x.svg',
      '--plot-batch',
      '2',
      '--markdown',
      'r.md',
      '--quiet',
      '--fault',
      'corrupt=2',
    ]);
    expect(o).toMatchObject({
      engine: 'loopback',
      transports: ['loopback'],
      ops: ['write'],
      sizes: [4096],
      batches: [1, 2],
      iters: 7,
      warmup: 0,
      inflight: 4,
      check: true,
      baseline: true,
      maxRegionBytes: 64 << 20,
      rowCapS: 0,
      json: true,
      plot: 'x.svg',
      plotBatch: 2,
      markdown: 'r.md',
      quiet: true,
      fault: { corrupt: 2 },
    });
    expect(parseBenchArgs(['--duration', '0.5']).durationS).toBe(0.5);
    const m = parseBenchArgs([
      '--model',
      'llama-3-8b',
      '--tokens',
      '4096',
      '--addressing',
      'arena',
      '--contiguous',
      '--cache-blocks',
      '300',
    ]);
    expect(m).toMatchObject({
      model: 'llama-3-8b',
      tokens: 4096,
      addressing: 'arena',
      contiguous: true,
      cacheBlocks: 300,
      sweep: false,
    });
    expect(parseBenchArgs(['--register']).sweep).toBe(false);
    expect(parseBenchArgs(['--register', '--sweep']).sweep).toBe(true);
    expect(parseBenchArgs(['--idle', '10']).idleS).toBe(10);
    expect(parseBenchArgs([]).batchBelow).toBeUndefined();
    expect(parseBenchArgs(['--batch-below', '0']).batchBelow).toBe(0);
    expect(parseBenchArgs(['--batch-below', '64K']).batchBelow).toBe(65536);
  });

  it.each([
    [['--bogus'], /unknown option --bogus/],
    [['stray'], /unexpected argument 'stray'/],
    [['--sizes', 'big'], /not a byte size/],
    [['--sizes'], /--sizes needs a value/],
    [['--batches', '0'], /--batches must be an integer from 1/],
    [['--iters', '5', '--duration', '1'], /not both/],
    [['--engine', 'nixl'], /--engine must be ucx or loopback/],
    [['--ops', 'copy'], /--ops takes read and write/],
    [['--model', 'gpt-5'], /--model must be one of/],
    [['--tokens', '10'], /belongs to --model/],
    [['--json', '--csv'], /one of --json and --csv/],
    [['--plot', 'out.png'], /ending in .svg/],
    [['--fault', 'corrupt=1'], /needs --engine loopback/],
    [['--check', '--check'], /given twice/],
    [['--check=yes'], /takes no value/],
  ])('rejects %j with a usage error', (argv, message) => {
    expect(() => parseBenchArgs(argv as string[])).toThrow(UsageError);
    expect(() => parseBenchArgs(argv as string[])).toThrow(message as RegExp);
  });
});

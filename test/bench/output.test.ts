import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BenchReportJson } from '../../bench/transfer/schema.js';
import { renderPlot } from '../../bench/transfer/plot.js';
import { hasUcx, runCli } from './helpers.js';

describe('kvwire bench output', () => {
  it('prints a table per op with the nixlbench columns, and writes a plot and a Markdown report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvwire-bench-out-'));
    const svg = join(dir, 'p.svg');
    const md = join(dir, 'r.md');
    const r = await runCli([
      '--engine',
      'loopback',
      '--sizes',
      '4K,64K,1M',
      '--batches',
      '1,16',
      '--iters',
      '5',
      '--plot',
      svg,
      '--markdown',
      md,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^READ over loopback/m);
    expect(r.stdout).toMatch(/^WRITE over loopback/m);
    const header = r.stdout.split('\n').find((l) => l.startsWith('block'))!;
    expect(header.split(/\s{2,}/)).toEqual([
      'block',
      'batch',
      'iters',
      'GB/s',
      'lat avg',
      'lat p50',
      'lat p99',
      'prep p50',
      'prep p99',
      'post p50',
      'post p99',
      'compl p50',
      'compl p99',
      'status',
    ]);
    expect(r.stdout.split('\n').filter((l) => /^\s+(4K|64K|1M)\s+(1|16)\s/.test(l))).toHaveLength(12);
    // No progress bar when stderr is not a terminal.
    expect(r.stderr).not.toMatch(/\[#*\.*\]/);

    const plot = readFileSync(svg, 'utf8');
    expect(plot.startsWith('<?xml')).toBe(true);
    expect(plot).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(plot.match(/<polyline /g)).toHaveLength(2); // READ and WRITE over loopback, batch 16
    expect(plot).toContain('READ (kvwire)');
    expect(plot).toMatch(/font-weight="bold">loopback</); // one panel, named by its transport
    expect(plot.match(/class="spread"/g)!.length).toBeGreaterThanOrEqual(6); // a whisker per point
    expect(plot).toContain('block size (bytes per descriptor, log2 scale)');
    expect(plot).toContain('batch 16');
    expect(plot.trim().endsWith('</svg>')).toBe(true);

    const report = readFileSync(md, 'utf8');
    expect(report).toMatch(/^# kvwire bench results/);
    expect(report).toContain('CPUs (`nproc`)');
    expect(report).toContain('kvwire bench --engine loopback --sizes 4K,64K,1M');
    expect(report).toContain('![GB/s against block size](p.svg)');
  });

  it('prints usage and exits 2 on bad input, 0 on --help', async () => {
    const bad = await runCli(['--sizes', 'lots']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/kvwire bench: --sizes 'lots' is not a byte size/);
    expect(bad.stderr).toContain("(see 'kvwire bench --help')");
    expect(bad.stdout).toBe('');
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--baseline/);
    const wrongEngine = await runCli(['--engine', 'loopback', '--transports', 'tcp']);
    expect(wrongEngine.code).toBe(2);
    expect(wrongEngine.stderr).toMatch(/needs --engine ucx/);
    // Output paths are checked before the run starts, not after it.
    const badPlot = await runCli(['--engine', 'loopback', '--plot', join(tmpdir(), 'kvwire-no-such-dir', 'p.svg')]);
    expect(badPlot.code).toBe(2);
    expect(badPlot.stderr).toMatch(/^kvwire bench: --plot .*: the folder .*kvwire-no-such-dir does not exist/);
    expect(badPlot.stdout).toBe('');
  });

  it.runIf(hasUcx)('reports a bad transport name as such, and UCX prints nothing of its own', async () => {
    const typo = await runCli(['--transports', 'tpc', '--sizes', '4K', '--batches', '1', '--iters', '1']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^kvwire bench: --transports: unknown transport 'tpc'/);
    expect(typo.stderr).not.toMatch(/UCX\s+(ERROR|WARN)|No such device/);
  });

  it('skips rows that need more memory than --max-region, and says so', async () => {
    const r = await runCli([
      '--engine',
      'loopback',
      '--sizes',
      '1M',
      '--batches',
      '1,64',
      '--iters',
      '5',
      '--max-region',
      '16M',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as BenchReportJson;
    const skipped = doc.sweep!.rows.filter((x) => x.status === 'skipped');
    expect(skipped.map((x) => [x.op, x.batch])).toEqual([
      ['read', 64],
      ['write', 64],
    ]);
    expect(skipped[0]!.error).toMatch(/needs 64 MiB per side/);
    expect(doc.notices.some((n) => /2 row\(s\) skipped/.test(n))).toBe(true);
  });

  it('draws a plot with no rows without failing, and says on the image when the machine was busy', () => {
    const report = {
      schema: 'kvwire-bench/1',
      kvwire: '0',
      command: 'kvwire bench',
      startedAt: new Date(0).toISOString(),
      durationS: 0,
      exitCode: 0,
      machine: {
        cpus: 1,
        cpuModel: 'x',
        memoryBytes: 1,
        kernel: 'k',
        platform: 'linux',
        arch: 'x64',
        node: 'v20',
        ucx: null,
        ucxPerftest: null,
        loadAvg1: 0,
      },
      settings: {
        engine: 'loopback',
        transports: [],
        ops: [],
        sizes: [],
        batches: [],
        iters: null,
        durationS: null,
        warmup: null,
        budgetBytes: 1,
        inflight: 1,
        check: false,
        baseline: false,
        maxRegionBytes: 1,
        rowCapS: 0,
        initiatorMemory: 'allocate',
        targetMemory: 'allocate',
        cudaPath: 'auto',
        sameBlock: false,
        batchBelow: null,
      },
      notices: [],
      sweep: null,
      model: null,
      register: null,
      idle: null,
      targets: [],
    } as const;
    const svg = renderPlot(report);
    expect(svg).toContain('no rows to plot');
    expect(svg).not.toContain('Machine busy');
    const busy = renderPlot({ ...report, machine: { ...report.machine, cpus: 2, loadAvg1: 3.5 } });
    expect(busy).toContain('Machine busy: load average 3.5 on 2 CPUs when the run started.');
  });
});

describe('kvwire bench --csv', () => {
  it('prints sizes and counts exactly', async () => {
    const r = await runCli([
      '--engine',
      'loopback',
      '--ops',
      'read',
      '--sizes',
      '16M',
      '--batches',
      '1',
      '--iters',
      '5',
      '--csv',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const [header, row] = r.stdout.trim().split('\n');
    const cols = header!.split(',');
    const cells = row!.split(',');
    expect(cells[cols.indexOf('block_size')]).toBe('16777216');
    expect(cells[cols.indexOf('bytes')]).toBe(String(5 * 16777216));
  });
});

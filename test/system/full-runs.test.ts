/**
 * The long runs, as a user starts them: `kvwire demo` with its defaults (the llama runtime, the
 * larger generated model, 100 requests), the fault drill on the same, and the synthetic runtime
 * at data-plane scale (every layer of Llama-3-8B, 2 MiB KV blocks). Each is a process, exit code
 * and `--json` summary checked. Minutes each on a busy 2-core machine, so they run only with
 * `npm run test:system:full` (KVWIRE_SYSTEM=full); `npm test` runs the short versions
 * (report.test.ts, run.test.ts, test/cli/demo.test.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DemoSummary } from '../../lib/system/summary.js';

const ROOT = join(import.meta.dirname, '..', '..');
const FULL = process.env['KVWIRE_SYSTEM'] === 'full';
const dir = mkdtempSync(join(tmpdir(), 'kvwire-full-runs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `kvwire demo ARGS --json`; resolves with the exit code and the parsed summary. */
function demo(args: readonly string[]): Promise<{ code: number | null; summary: DemoSummary; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin', 'kvwire.js'), 'demo', ...args, '--listen', '127.0.0.1:0', '--json'],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-20_000)));
    child.on('exit', (code) => {
      try {
        resolve({ code, summary: JSON.parse(stdout) as DemoSummary, stderr });
      } catch {
        reject(new Error(`kvwire demo ${args.join(' ')} exited ${code} without a JSON summary:\n${stderr}`));
      }
    });
  });
}

/** What every complete run must show. */
function expectComplete(s: DemoSummary, requests: number): void {
  expect(s.problems).toEqual([]);
  expect(s.requests).toEqual({ total: requests, ok: requests, failed: 0 });
  expect(s.reference).toEqual({ matched: requests, checked: requests, by: 'token ids' });
  expect(s.handoff.handoffs).toBeGreaterThan(0);
  expect(s.handoff.bytes).toBeGreaterThan(0);
  expect(s.decisions.map((d) => d.kind).sort()).toEqual(['decode_only', 'disaggregated']);
  expect(s.prefixCache.hitRate).toBeGreaterThan(0);
  expect(s.kvIndex.events['stored']).toBeGreaterThan(0);
  expect(s.kvIndex.picksWonBy['prefix-cache']).toBeGreaterThan(0);
  expect(s.ok).toBe(true);
}

describe.runIf(FULL)('the long runs of kvwire demo', () => {
  it('npm start: the llama runtime, the larger generated model, 100 requests, every output matched', async () => {
    const report = join(dir, 'default.html');
    const r = await demo(['--report', report]);
    expect(r.code, `${JSON.stringify(r.summary.problems)}\n${r.stderr}`).toBe(0);
    expect(r.summary.runtime).toBe('llama');
    expect(r.summary.model).toBe('small');
    expectComplete(r.summary, 100);
    // 8 KiB of KV per token: 128 KiB per 16-token block.
    expect(r.summary.handoff.bytesPerBlock).toBe(131_072);
    expect(readFileSync(report, 'utf8')).toContain(
      'OK: 100/100 outputs matched the single-worker reference, token for token',
    );
  }, 1_800_000);

  it('the fault drill: a prefill worker SIGKILLed after 40 requests, the run recovers, every output matched', async () => {
    const report = join(dir, 'drill.html');
    const r = await demo(['--kill-prefill-after', '40', '--report', report]);
    expect(r.code, `${JSON.stringify(r.summary.problems)}\n${r.stderr}`).toBe(0);
    expectComplete(r.summary, 100);
    const d = r.summary.drill!;
    expect(d.killed.name).toBe('prefill-1');
    expect(d.afterRequests).toBe(40);
    expect(d.failedAfter).toBe(0);
    expect(d.recovered).toBe(true);
    expect(readFileSync(report, 'utf8')).toMatch(/class="kill"/);
  }, 1_800_000);

  it('the synthetic runtime at data-plane scale: Llama-3-8B, 2 MiB blocks, every byte and output checked', async () => {
    const report = join(dir, 'synthetic.html');
    const r = await demo(['--runtime', 'synthetic', '--model', 'llama-3-8b', '--report', report]);
    expect(r.code, `${JSON.stringify(r.summary.problems)}\n${r.stderr}`).toBe(0);
    expect(r.summary.runtime).toBe('synthetic');
    expectComplete(r.summary, 100);
    // 32 layers x K and V x 16 tokens x 8 KV heads x 128 x bf16.
    expect(r.summary.handoff.bytesPerBlock).toBe(2 * 1024 * 1024);
    expect(existsSync(report)).toBe(true);
  }, 1_800_000);
});

describe.skipIf(FULL)('the long runs of kvwire demo (npm run test:system:full)', () => {
  it('are left to npm run test:system:full', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['test:system:full']).toContain('KVWIRE_SYSTEM=full');
    expect(pkg.scripts['test:system:full']).toContain('test/system/full-runs.test.ts');
  });
});

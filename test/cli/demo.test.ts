/**
 * `kvwire demo` as a user runs it: its arguments, a port in use, `--json`, and Ctrl-C (SIGINT to
 * the demo stops every process it started: none is left, nothing is left in /dev/shm).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';
import { shmFilesOf, stateFilesOf } from '../../lib/system/shm.js';

const ROOT = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'kvwire-demo-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `kvwire demo ...` as a process; resolves with its exit code and output. */
function demo(
  args: readonly string[],
  onStderr?: (text: string, child: ReturnType<typeof spawn>) => void,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'kvwire.js'), 'demo', ...args], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      onStderr?.(stderr, child);
    });
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('kvwire demo (arguments)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('is listed, prints its usage, and refuses bad options with exit code 2 naming the flag', async () => {
    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
      out.push(String(s));
      return true;
    });
    const err: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      err.push(String(s));
      return true;
    });
    expect(await main(['--help'])).toBe(0);
    expect(out.join('\n')).toMatch(/demo\s+the whole P\/D serving path/);
    expect(await main(['demo', '--help'])).toBe(0);
    expect(out.join('\n')).toContain('Usage: kvwire demo [options]');
    expect(out.join('\n')).toContain('--kill-prefill-after');
    expect(await main(['demo', '--bogus'])).toBe(2);
    expect(await main(['demo', '--requests', '0'])).toBe(2);
    expect(err.join('\n')).toMatch(/--requests must be a positive integer/);
    expect(await main(['demo', '--model', 'gpt-17'])).toBe(2);
    expect(err.join('\n')).toMatch(/--model: the llama runtime serves tiny, small, not 'gpt-17'/);
    expect(await main(['demo', '--runtime', 'synthetic', '--model', 'small'])).toBe(2);
    expect(err.join('\n')).toMatch(/--model: the synthetic runtime takes a KV preset/);
    expect(await main(['demo', '--requests', '10', '--kill-prefill-after', '10'])).toBe(2);
    expect(err.join('\n')).toMatch(/--kill-prefill-after must be below --requests \(10\)/);
    expect(await main(['demo', '--layers', '2'])).toBe(2);
    expect(await main(['demo', '--report', join(dir, 'no', 'such', 'folder.html')])).toBe(2);
    expect(err.join('\n')).toMatch(/--report .*does not exist/);
  });

  it('a router port in use: exit 2, naming --listen, before starting anything', async () => {
    const taken: Server = createServer();
    await new Promise<void>((ok) => taken.listen(0, '127.0.0.1', ok));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await demo(['--model', 'tiny', '--requests', '2', '--listen', `127.0.0.1:${port}`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--listen 127.0.0.1:${port}: the port is in use`);
      expect(r.stderr).toContain('choose another with --listen');
      expect(r.stderr).not.toContain('starting the system');
    } finally {
      taken.close();
    }
  }, 60_000);
});

describe('kvwire demo (a run)', () => {
  it('--json prints the summary as JSON on stdout, progress on stderr, exit 0 when everything matched', async () => {
    const report = join(dir, 'json-run.html');
    const r = await demo([
      '--model',
      'tiny',
      '--requests',
      '8',
      '--concurrency',
      '2',
      '--listen',
      '127.0.0.1:0',
      '--report',
      report,
      '--json',
    ]);
    expect(r.stderr).toContain('starting the system');
    const summary = JSON.parse(r.stdout) as {
      ok: boolean;
      requests: { ok: number; total: number };
      reference: { matched: number; checked: number };
      report: string;
    };
    expect(summary.requests).toMatchObject({ ok: 8, total: 8 });
    expect(summary.reference).toMatchObject({ matched: 8, checked: 8 });
    expect(summary.ok).toBe(true);
    expect(summary.report).toBe(report);
    expect(existsSync(report)).toBe(true);
    expect(r.code).toBe(0);
  }, 300_000);

  it('Ctrl-C (SIGINT) mid-run stops every process it started and leaves nothing in /dev/shm', async () => {
    const pids: number[] = [];
    const mapped = new Set<string>();
    let sent = false;
    const r = await demo(
      ['--model', 'tiny', '--requests', '400', '--listen', '127.0.0.1:0', '--report', join(dir, 'sigint.html')],
      (stderr, child) => {
        for (const m of stderr.matchAll(/\(pid (\d+)\)/g)) if (!pids.includes(Number(m[1]))) pids.push(Number(m[1]));
        // Once requests flow (the first progress line), interrupt as a terminal's Ctrl-C would.
        if (!sent && /\d+\/400 done/.test(stderr)) {
          sent = true;
          // What the components map in /dev/shm now must be gone after they stopped.
          for (const pid of pids) for (const f of [...shmFilesOf(pid), ...stateFilesOf(pid)]) mapped.add(f);
          child.kill('SIGINT');
        }
      },
    );
    expect(sent).toBe(true);
    expect(r.code).toBe(130);
    expect(r.stderr).toContain('SIGINT: stopping every process the demo started');
    expect(pids).toHaveLength(8); // 2 prefill, 2 decode, reference, 2 sidecars, router
    for (const pid of pids) expect(alive(pid), `pid ${pid} is still running`).toBe(false);
    const leftovers = [...mapped, ...pids.flatMap((pid) => stateFilesOf(pid))].filter((f) => existsSync(f));
    expect(leftovers).toEqual([]);
  }, 300_000);
});

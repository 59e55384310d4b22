/**
 * Baselines the bench prints beside its own rows: raw UCX (`ucx_perftest`, a server and a client
 * process, the same transport and size) and memcpy (the addon's native loop, one core).
 *
 * ucx_perftest prints bandwidth in MiB/s (2^20 bytes/s; its header says "MB/s"); we convert to
 * GB/s (10^9 bytes/s) as `MiB/s × 1.048576 / 1000`, the unit of our rows.
 *
 * Every ucx_perftest process runs under a deadline and is tracked (killed if the bench exits).
 *
 * @packageDocumentation
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { loadNative } from '../../lib/native.js';
import { trackChild } from './children.js';
import type { MemcpyJson, PerftestJson } from './schema.js';

/** The ucx_perftest tests the bench runs. */
export type PerftestTest = 'ucp_put_bw' | 'ucp_get' | 'ucp_am_bw';

/** In run order. */
export const PERFTEST_TESTS: readonly PerftestTest[] = ['ucp_put_bw', 'ucp_get', 'ucp_am_bw'];

/** MiB/s (ucx_perftest) → GB/s (10^9 bytes/s). */
export function mibpsToGbps(mibps: number): number {
  return (mibps * 1.048576) / 1000;
}

/** The path of `ucx_perftest` on PATH (or `KVWIRE_UCX_PERFTEST`), or undefined. */
export function findPerftest(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env['KVWIRE_UCX_PERFTEST'];
  const candidates =
    explicit !== undefined
      ? [explicit]
      : (env['PATH'] ?? '')
          .split(delimiter)
          .filter((d) => d !== '')
          .map((d) => join(d, 'ucx_perftest'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/**
 * ucx_perftest's iterations (`-n`) for a size: the same byte budget as our rows, 5..20000
 * iterations. UCX 1.13's get over tcp costs about 1 ms per operation: a tenth of that, as the
 * shared ucx-baseline script does.
 */
export function perftestIterations(tls: string, test: PerftestTest, size: number, budgetBytes: number): number {
  let n = Math.max(5, Math.min(20_000, Math.round(budgetBytes / size)));
  if (test === 'ucp_get' && tls === 'tcp') n = Math.max(5, Math.floor(n / 10));
  return n;
}

/** ucx_perftest's "Final:" line: iterations, latency (50%, avg, overall), bandwidth MiB/s (avg, overall), msg rate. */
export function parsePerftestFinal(output: string): { mibps: number; latencyUs: number } | undefined {
  const line = output.split('\n').find((l) => /^\s*Final:/.test(l));
  if (line === undefined) return undefined;
  const f = line.trim().split(/\s+/);
  const mibps = Number(f[5]);
  const latencyUs = Number(f[3]);
  if (!Number.isFinite(mibps) || !Number.isFinite(latencyUs)) return undefined;
  return { mibps, latencyUs };
}

/** A TCP port nothing listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

interface Exit {
  code: number | null;
  signal: string | null;
  output: string;
  timedOut: boolean;
}

function runProcess(
  bin: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): { done: Promise<Exit>; kill: () => void } {
  const child = trackChild(spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  let output = '';
  let timedOut = false;
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const done = new Promise<Exit>((resolve) => {
    let settled = false;
    const finish = (code: number | null, signal: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code, signal, output, timedOut });
    };
    child.on('error', (e) => {
      output += `\n${e.message}`;
      finish(null, null);
    });
    child.on('close', (code, signal) => finish(code, signal));
    // 'close' waits for the pipes, which a stray grandchild could hold open: give up on them soon after 'exit'.
    child.on('exit', (code, signal) => setTimeout(() => finish(code, signal), 1000).unref());
  });
  return { done, kill: () => child.kill('SIGKILL') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs one ucx_perftest server+client pair over `tls` (UCX_TLS=`tls`,self) on loopback and
 * returns what the client's "Final:" line says. Never throws: failures are results.
 */
export async function runPerftest(
  bin: string,
  transport: string,
  tls: string,
  test: PerftestTest,
  size: number,
  iterations: number,
  timeoutS = 60,
): Promise<PerftestJson> {
  const started = Date.now();
  const env = { ...process.env, UCX_TLS: `${tls},self` };
  const warmup = String(Math.max(1, Math.min(100, Math.floor(iterations / 10))));
  const result = (status: PerftestJson['status'], fields: Partial<PerftestJson>): PerftestJson => ({
    transport,
    ucxTls: `${tls},self`,
    test,
    size,
    iterations,
    status,
    mibps: null,
    gbps: null,
    latencyUs: null,
    wallS: (Date.now() - started) / 1000,
    error: null,
    ...fields,
  });
  let lastError = 'no attempt';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = String(await freePort());
    const server = runProcess(bin, ['-p', port], env, (timeoutS + 15) * 1000);
    await sleep(250 + attempt * 250);
    const client = runProcess(
      bin,
      ['127.0.0.1', '-p', port, '-t', test, '-s', String(size), '-n', String(iterations), '-w', warmup],
      env,
      timeoutS * 1000,
    );
    const c = await client.done;
    const final = parsePerftestFinal(c.output);
    if (final !== undefined) {
      await Promise.race([server.done, sleep(2000)]);
      server.kill();
      return result('ok', { mibps: final.mibps, gbps: mibpsToGbps(final.mibps), latencyUs: final.latencyUs });
    }
    server.kill();
    await server.done;
    if (c.timedOut)
      return result('timeout', {
        error: `ucx_perftest ${test} -s ${size} -n ${iterations} did not finish within ${timeoutS} s`,
      });
    const tail = c.output.trim().split('\n').slice(-2).join(' | ');
    lastError = `ucx_perftest exited with ${c.signal ?? `code ${c.code}`} and no result: ${tail || '(no output)'}`;
    // A client that came before its server was listening: try again with a fresh port.
    if (!/refused|connect|Connection/i.test(c.output)) break;
  }
  return result('failed', { error: lastError });
}

/** memcpy iterations for a size: about 256 MiB copied, 10..100000 copies. */
export function memcpyIterations(size: number): number {
  return Math.max(10, Math.min(100_000, Math.round((256 << 20) / size)));
}

/** memcpy bandwidth of `size`-byte copies on one core, or undefined without the addon. */
export function memcpyBaseline(size: number): MemcpyJson | undefined {
  const native = loadNative();
  if (native === undefined) return undefined;
  const iterations = memcpyIterations(size);
  return { size, iterations, gbps: native.memcpyBandwidth(size, iterations) / 1e9 };
}

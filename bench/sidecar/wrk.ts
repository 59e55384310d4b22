/**
 * Runs wrk (Debian's `wrk`) with a Lua script that POSTs a completion body (and, for the P/D path,
 * `x-prefiller-host-port`) and reports the latency percentiles as JSON.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One wrk run's figures. */
export interface WrkResult {
  /** Requests completed. */
  readonly requests: number;
  /** Requests per second. */
  readonly rps: number;
  /** Latency percentiles in microseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  /** Socket errors plus non-2xx answers. */
  readonly errors: number;
}

const BODY = JSON.stringify({
  model: 'bench',
  prompt: 'The quick brown fox '.repeat(12),
  max_tokens: 16,
  temperature: 0,
});

function script(headers: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvwire-bench-sidecar-'));
  const file = join(dir, 'post.lua');
  const lines = [
    'wrk.method = "POST"',
    `wrk.body = ${JSON.stringify(BODY)}`,
    'wrk.headers["Content-Type"] = "application/json"',
    ...Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format("WRK_JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"p50\\":%d,\\"p90\\":%d,\\"p99\\":%d,\\"errors\\":%d}\\n",',
    '    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),',
    '    e.connect + e.read + e.write + e.timeout + e.status))',
    'end',
  ];
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** Runs wrk for `seconds` with `connections` against `url`. */
export function runWrk(
  url: string,
  connections: number,
  seconds: number,
  headers: Record<string, string> = {},
): Promise<WrkResult> {
  const lua = script(headers);
  return new Promise((resolve, reject) => {
    execFile(
      'wrk',
      ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', lua, url],
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
          return;
        }
        const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
        if (line === undefined) {
          reject(new Error(`wrk printed no result:\n${stdout}\n${stderr}`));
          return;
        }
        const r = JSON.parse(line.slice(9)) as {
          requests: number;
          duration_us: number;
          p50: number;
          p90: number;
          p99: number;
          errors: number;
        };
        resolve({
          requests: r.requests,
          rps: r.requests / (r.duration_us / 1e6),
          p50: r.p50,
          p90: r.p90,
          p99: r.p99,
          errors: r.errors,
        });
      },
    );
  });
}

/**
 * `npm run bench:sidecar`: the sidecar's added latency (p50, p99) and throughput against calling
 * the decode worker directly, at 1, 16 and 64 concurrent requests, decode-only and P/D paths.
 *
 * Options (environment, so the npm script takes them): BENCH_SECONDS (5), BENCH_ROUNDS (3),
 * BENCH_CONCURRENCY (1,16,64), BENCH_SERVICE_MS (0), BENCH_MARKDOWN (file to write the table to),
 * BENCH_JSON (file for the full report).
 */
import { writeFileSync } from 'node:fs';
import { renderMarkdown, runSidecarBench } from './bench.js';

function positive(name: string, fallback: number, min = 1): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got '${text}'`);
  return n;
}

const concurrency = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`BENCH_CONCURRENCY must be a comma-separated list of positive integers, got '${s}'`);
  return n;
});
const report = await runSidecarBench({
  concurrency,
  seconds: positive('BENCH_SECONDS', 5),
  rounds: positive('BENCH_ROUNDS', 3),
  serviceMs: positive('BENCH_SERVICE_MS', 0, 0),
  log: (line) => process.stderr.write(`${line}\n`),
});
const table = renderMarkdown(report);
console.log(table);
if (process.env.BENCH_MARKDOWN) writeFileSync(process.env.BENCH_MARKDOWN, `${table}\n`);
if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, `${JSON.stringify(report, null, 2)}\n`);

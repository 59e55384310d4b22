// libFuzzer on the native parsers that stand between a peer and UCX or the engine: the worker-address
// check (native/engine/address_check.cc, before ucp_address_unpack) and the handshake
// authentication (native/engine/auth.cc: the replay window, MACs, key lookup). Each is compiled from
// the project's own source (pure C++17: no Node-API, no UCX) with clang
// -fsanitize=fuzzer,address,undefined, seeded (the address check with genuine addresses from real
// agents) and run for a fixed number of inputs with a fixed seed. 0 crashes, 0 hangs (no input may
// take 10 s), 0 sanitizer reports, and every property its harness checks holds (the harness traps
// otherwise: fuzz-native/*.cc).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/native.js';
import { record, runScenario, scale, why } from './harness.js';

const run = promisify(execFile);
const root = packageRoot();
const RUNS = scale(200_000, 10_000_000);
const SEED = 1010;

interface NativeTarget {
  name: string;
  /** The project's sources the harness links (relative to the package root). */
  sources: string[];
  harness: string;
  /** Seeds the corpus with genuine inputs from real agents. */
  corpus?: string;
  /**
   * Fails today, with the finding in /work/wt/notes/findings-reliability.md; expected to fail until
   * the fix is on main. None now: F11 (the replay window admitted a hello replayed exactly windowMs
   * after the first) is fixed on main (26f666f).
   */
  failsToday?: string;
}

const TARGETS: NativeTarget[] = [
  {
    name: 'the worker-address check',
    sources: ['native/engine/address_check.cc'],
    harness: 'test/reliability/fuzz-native/address_check_fuzzer.cc',
    corpus: 'address-corpus.js',
  },
  {
    name: 'the handshake authentication',
    sources: ['native/engine/auth.cc', 'native/util/sha256.cc'],
    harness: 'test/reliability/fuzz-native/auth_fuzzer.cc',
  },
];

/** Why the native fuzzer cannot run here, or undefined. */
async function unavailable(t: NativeTarget): Promise<string | undefined> {
  const missing = t.sources.find((s) => !existsSync(join(root, s)));
  if (missing !== undefined) return `${missing} is not in this tree`;
  try {
    await run('clang++', ['--version']);
  } catch {
    return 'clang++ is not installed (Debian: clang, libclang-rt-14-dev)';
  }
  return undefined;
}

const scratch: string[] = [];
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

describe.each(TARGETS)('libFuzzer on $name', (t) => {
  const test = t.failsToday !== undefined ? it.fails : it;
  test(`runs ${RUNS.toLocaleString('en-US')} inputs: no crash, no hang, no sanitizer report, every property holds`, async (ctx) => {
    const reason = await unavailable(t);
    if (reason !== undefined) {
      console.warn(`native fuzzing skipped: ${reason}`);
      ctx.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), 'kvwire-libfuzzer-'));
    scratch.push(dir);
    const fuzzer = join(dir, 'fuzzer');
    await run(
      'clang++',
      [
        '-std=c++17',
        '-g',
        '-O1',
        '-fsanitize=fuzzer,address,undefined',
        '-fno-sanitize-recover=undefined',
        `-I${join(root, 'native')}`,
        join(root, t.harness),
        ...t.sources.map((s) => join(root, s)),
        '-o',
        fuzzer,
      ],
      { maxBuffer: 16 << 20 },
    );
    const corpus = join(dir, 'corpus');
    mkdirSync(corpus);
    let seeds = 0;
    if (t.corpus !== undefined) {
      const s = await runScenario<{ files: string[] }>(t.corpus, { dir: corpus }, 120_000);
      expect(s.report, why(s)).toBeDefined();
      seeds = s.report!.files.length;
    }
    const artifacts = join(dir, 'artifacts') + '/';
    mkdirSync(artifacts);
    let out = '';
    let code = 0;
    try {
      const r = await run(
        fuzzer,
        [
          `-runs=${RUNS}`,
          `-seed=${SEED}`,
          '-timeout=10',
          '-rss_limit_mb=2048',
          '-max_len=4096',
          '-print_final_stats=1',
          `-artifact_prefix=${artifacts}`,
          corpus,
        ],
        { maxBuffer: 64 << 20, timeout: 1_800_000 },
      );
      out = r.stdout + r.stderr;
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      code = err.code ?? -1;
      out = `${err.stdout ?? ''}${err.stderr ?? ''}`;
    }
    const stat = (name: string) => Number(out.match(new RegExp(`stat::${name}:\\s+(\\d+)`))?.[1] ?? NaN);
    const findings = readdirSync(artifacts);
    record(
      `native-fuzz-${t.harness
        .split('/')
        .at(-1)!
        .replace(/_fuzzer\.cc$/, '')
        .replace(/_/g, '-')}`,
      {
        runs: stat('number_of_executed_units'),
        execPerSec: stat('average_exec_per_sec'),
        peakRssMb: stat('peak_rss_mb'),
        newUnits: stat('new_units_added'),
        coverage: out.match(/cov: (\d+) ft: (\d+)/g)?.at(-1),
        seeds,
        crashes: findings.filter((f) => f.startsWith('crash-')).length,
        hangs: findings.filter((f) => f.startsWith('timeout-') || f.startsWith('slow-unit-')).length,
        artifacts: findings,
        exitCode: code,
        ...(t.failsToday !== undefined ? { failsToday: t.failsToday } : {}),
      },
    );
    expect(findings, out.slice(-4000)).toEqual([]);
    expect(code, out.slice(-4000)).toBe(0);
    expect(stat('number_of_executed_units')).toBeGreaterThanOrEqual(RUNS);
  });
});

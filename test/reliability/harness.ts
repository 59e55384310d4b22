// The test side of the reliability suite: scale (CI or full), running scenario programs in child
// processes, and recording the figures each scenario measured.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { Proc } from './fixtures/process.js';
import type { Message, StartOptions } from './fixtures/process.js';

/** True for the full (nightly-style) run: `npm run test:reliability:full` sets KVWIRE_RELIABILITY=full. */
export const FULL = process.env.KVWIRE_RELIABILITY === 'full';

/** `ci` in the CI part, `full` in the full run. */
export function scale<T>(ci: T, full: T): T {
  return FULL ? full : ci;
}

/** Where figures go: KVWIRE_RELIABILITY_OUT, else .reliability-out/ in the package root. */
export const OUT_DIR = process.env.KVWIRE_RELIABILITY_OUT ?? join(packageRoot(), '.reliability-out');

/** Writes the figures of one scenario to OUT_DIR/<name>.json (with the run's scale and date). */
export function record(name: string, figures: unknown): void {
  mkdirSync(OUT_DIR, { recursive: true });
  const body = { name, scale: FULL ? 'full' : 'ci', date: new Date().toISOString(), figures };
  writeFileSync(join(OUT_DIR, `${name}.json`), `${JSON.stringify(body, null, 2)}\n`);
}

/** What a scenario program ended with. */
export interface ScenarioResult<R> {
  /** The scenario's report, when it got that far. */
  report: R | undefined;
  /** The last message: the report, an error, an exit or a timeout. */
  last: Message;
  exit: { code: number | null; signal: NodeJS.Signals | null };
  stderr: string;
}

/**
 * Runs a scenario program (a compiled fixture) to its report. A crash, a hang past `timeoutMs` or
 * an error inside the scenario comes back as `report: undefined` with the reason in `last`.
 */
export async function runScenario<R>(
  fixture: string,
  args: unknown,
  timeoutMs: number,
  opts: Omit<StartOptions, 'args'> = {},
): Promise<ScenarioResult<R>> {
  const p = new Proc(fixture, { ...opts, args });
  const last = await p.next('report', timeoutMs);
  if (last.type === 'timeout') p.kill('SIGKILL');
  const exit = await p.exited;
  return { report: last.type === 'report' ? (last.report as R) : undefined, last, exit, stderr: p.stderr };
}

/** A one-line account of why a scenario produced no report (for assertion messages). */
export function why(r: ScenarioResult<unknown>): string {
  return `${JSON.stringify(r.last).slice(0, 1500)}; exit ${JSON.stringify(r.exit)}; stderr: ${r.stderr.slice(-3000)}`;
}

// The sanitizer runs of the reliability suite: the addon built with AddressSanitizer or
// ThreadSanitizer (sanitizers/build.sh, into build-sanitize/<kind>/), a copy of the package that
// loads that build, and the suite's own scenario programs run from the copy with the sanitizer's
// runtime preloaded into every process (node itself is not instrumented). Each process writes its
// reports to a log file; the test reads them back.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../lib/native.js';
import { Proc } from './fixtures/process.js';
import { triage } from './tsan-triage.js';
import type { Triage } from './tsan-triage.js';

const run = promisify(execFile);
const root = packageRoot();

/** A sanitizer the suite runs. */
export type SanitizerKind = 'asan' | 'tsan';

/** One report a sanitizer wrote. */
export interface SanitizerReport {
  pid: string;
  /** The report's SUMMARY line (or its first line). */
  summary: string;
  /** The first lines of the report, for the assertion message. */
  text: string;
  /** Why the report is counted and not failed (tsan-triage.ts); absent: it fails the run. */
  triage?: Exclude<Triage, undefined>;
}

/** A package copy that loads the sanitized addon, with its environment. */
export interface SanitizedPackage {
  kind: SanitizerKind;
  dir: string;
  addon: string;
  env: NodeJS.ProcessEnv;
  logDir: string;
  remove(): void;
}

/**
 * Builds the addon with `kind` (incremental), copies the package to a scratch folder that loads it
 * (package.json, binding.gyp, dist/, node_modules linked) and returns the environment that preloads
 * the runtime into every process started from it.
 */
export async function sanitizedPackage(kind: SanitizerKind): Promise<SanitizedPackage> {
  const { stdout } = await run(join(root, 'test/reliability/sanitizers/build.sh'), [kind], {
    cwd: root,
    maxBuffer: 64 << 20,
    timeout: 1_800_000,
  });
  const addon = stdout.trim().split('\n').at(-1)!;
  const dir = mkdtempSync(join(tmpdir(), `kvwire-${kind}-`));
  for (const f of ['package.json', 'binding.gyp', 'dist']) cpSync(join(root, f), join(dir, f), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
  cpSync(addon, join(dir, 'build', 'Release', 'kvwire.node'));
  const logDir = join(dir, 'sanitizer-logs');
  mkdirSync(logDir);
  const runtime = (await run('gcc', [`-print-file-name=lib${kind}.so`], { encoding: 'utf8' })).stdout.trim();
  const env: NodeJS.ProcessEnv = {
    LD_PRELOAD: runtime,
    // UCX's memory hooks (libucm) patch madvise/mmap; a thread exiting calls madvise after TSan has
    // torn down its state, and the hook's lock crashes inside TSan. kvwire does not use the hooks
    // (UCX_MEM_EVENTS=no already); they are switched off entirely for the sanitizer runs.
    UCX_MEM_MMAP_HOOK_MODE: 'none',
    UCX_MEM_MALLOC_HOOKS: 'no',
    // Leaks are measured by leaks.test.ts (RSS and fds over many cycles): at exit, Node itself holds
    // memory LeakSanitizer would report, so LSan is off here.
    ASAN_OPTIONS: `log_path=${logDir}/asan:detect_leaks=0:abort_on_error=0`,
    TSAN_OPTIONS: `log_path=${logDir}/tsan:suppressions=${join(root, 'test/reliability/sanitizers/tsan.supp')}:report_signal_unsafe=0:print_suppressions=0`,
  };
  return { kind, dir, addon, env, logDir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every report in the package's log folder, and empties it for the next scenario. */
export function takeReports(p: SanitizedPackage): SanitizerReport[] {
  const out: SanitizerReport[] = [];
  for (const f of readdirSync(p.logDir)) {
    const text = readFileSync(join(p.logDir, f), 'utf8');
    rmSync(join(p.logDir, f));
    const pid = f.split('.').at(-1)!;
    // Reports are separated by lines of '='; each has a WARNING/ERROR line and a SUMMARY line.
    for (const block of text.split(/^=+$/m)) {
      const head = block.match(
        /^(WARNING: ThreadSanitizer:.*|==\d+==ERROR: AddressSanitizer:.*|ERROR: AddressSanitizer:.*|ThreadSanitizer:DEADLYSIGNAL|AddressSanitizer:DEADLYSIGNAL)$/m,
      );
      if (head === null) continue;
      const summary = block.match(/^SUMMARY: .*$/m)?.[0] ?? head[0];
      const why = triage(block);
      out.push({
        pid,
        summary,
        text: block.trim().split('\n').slice(0, 40).join('\n'),
        ...(why ? { triage: why } : {}),
      });
    }
  }
  return out;
}

/**
 * What the package's processes wrote to their sanitizer logs so far, as it is (the end of each
 * file): for the message of a scenario that did not complete, whose cause (a sanitizer's own fatal
 * error, say) may be no report that {@link takeReports} parses.
 */
export function logText(p: SanitizedPackage, maxPerFile = 3000): string {
  return readdirSync(p.logDir)
    .map((f) => `--- ${f}\n${readFileSync(join(p.logDir, f), 'utf8').slice(-maxPerFile)}`)
    .join('\n');
}

/** Starts a scenario program from the sanitized package copy. */
export function startSanitized(p: SanitizedPackage, fixture: string, args: unknown, execArgv: string[] = []): Proc {
  return new Proc(fixture, { dir: join(p.dir, 'dist/test/reliability/fixtures'), args, env: p.env, execArgv });
}

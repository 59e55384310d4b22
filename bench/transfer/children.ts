/**
 * Every child process the bench starts (targets, ucx_perftest pairs) is tracked here, so that
 * none outlives the bench: they are killed when the bench process exits, however it exits, and
 * when the user interrupts it (SIGINT/SIGTERM; see {@link installInterruptHandlers}).
 *
 * @packageDocumentation
 */
import type { ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

/** Tracks `child` until it exits; it is killed if the bench exits first. */
export function trackChild(child: ChildProcess): ChildProcess {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', killAll);
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Children still running. */
export function liveChildren(): number {
  return live.size;
}

/** Kills every tracked child now. */
export function killChildren(): void {
  killAll();
}

/**
 * On SIGINT or SIGTERM: kill every child, then exit with 130 (143). Returns a function that
 * removes the handlers again (the CLI calls it when the bench ends).
 */
export function installInterruptHandlers(onInterrupt?: () => void): () => void {
  const handler = (signal: NodeJS.Signals) => {
    onInterrupt?.();
    killAll();
    process.stderr.write(`\nkvwire bench: interrupted (${signal}); child processes killed\n`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

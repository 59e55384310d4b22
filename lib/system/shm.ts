/**
 * Shared-memory files a component process leaves behind when it is SIGKILLed (the fault drill),
 * and the check that nothing is left after the demo stops.
 *
 * A component that exits cleanly removes what it made in `/dev/shm`: UCX unlinks its segments on
 * close (most are unlinked at once and reached through `/proc/<pid>/fd`), and the llama runtime
 * deletes its state files (`kvwire-seq-<pid>-*.bin`) after each hand-off. A SIGKILL skips both, so
 * before killing, the demo records the files the process maps or holds open; after the run it
 * removes those that still exist and that no live process maps, plus the runtime's state files
 * named with that pid.
 *
 * Linux only (`/proc`); elsewhere every function here returns nothing.
 *
 * @packageDocumentation
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const SHM = '/dev/shm';

/** Files under /dev/shm that process `pid` maps or holds open now (not those already unlinked). */
export function shmFilesOf(pid: number): string[] {
  const out = new Set<string>();
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const i = line.indexOf(`${SHM}/`);
      if (i < 0 || line.endsWith('(deleted)')) continue;
      out.add(line.slice(i).trim());
    }
  } catch {
    // gone, or not Linux
  }
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.startsWith(`${SHM}/`) && !target.endsWith('(deleted)')) out.add(target);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // gone, or not Linux
  }
  return [...out];
}

/** The llama runtime's state files of process `pid` that still exist. */
export function stateFilesOf(pid: number): string[] {
  try {
    return readdirSync(SHM)
      .filter((f) => f.startsWith(`kvwire-seq-${pid}-`))
      .map((f) => join(SHM, f));
  } catch {
    return [];
  }
}

/** True when some live process maps or holds `path` open. */
function inUse(path: string): boolean {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return false;
  }
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/maps`, 'utf8').includes(path)) return true;
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  return false;
}

/**
 * Removes what a killed process left: the `recorded` files (from {@link shmFilesOf} before the
 * kill) that still exist and that no live process maps, and its state files. Returns the paths removed.
 */
export function removeLeftovers(pid: number, recorded: readonly string[]): string[] {
  const removed: string[] = [];
  for (const path of [...new Set([...recorded, ...stateFilesOf(pid)])]) {
    if (!existsSync(path) || inUse(path)) continue;
    try {
      unlinkSync(path);
      removed.push(path);
    } catch {
      // removed by someone else meanwhile
    }
  }
  return removed;
}

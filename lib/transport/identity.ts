/**
 * Process identity in the terms peers check: pid, process start time (guards pid reuse) and a
 * host id equal exactly when two processes share a kernel and a pid namespace. Must produce the
 * same strings as native/engine/process.cc, which the native engine compares against.
 *
 * @packageDocumentation
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { loadNative } from '../native.js';

/** Who this process is. */
export interface ProcessIdentity {
  readonly pid: number;
  /** Clock ticks since boot when the process started (0 when unknown). */
  readonly pidStart: number;
  /** "<hostname>/<boot id>/<pid namespace>". */
  readonly hostId: string;
}

let cached: ProcessIdentity | undefined;

function readOr(fn: () => string, fallback: string): string {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

/** This process's identity (computed once). */
export function processIdentity(): ProcessIdentity {
  if (cached !== undefined) return cached;
  const native = loadNative();
  if (native !== undefined) {
    cached = native.processIdentity();
    return cached;
  }
  const stat = readOr(() => readFileSync('/proc/self/stat', 'utf8'), '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const boot = readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').split('\n')[0] ?? '', '');
  const pidns = readOr(() => readlinkSync('/proc/self/ns/pid'), '');
  cached = {
    pid: process.pid,
    pidStart: Number(fields[19] ?? 0) || 0, // field 22 of /proc/<pid>/stat
    hostId: `${hostname()}/${boot}/${pidns}`,
  };
  return cached;
}

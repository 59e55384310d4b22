/**
 * The machine a run measured, as a results document states it: CPUs (`nproc`), CPU model, memory,
 * kernel, UCX version, and where ucx_perftest is.
 *
 * @packageDocumentation
 */
import { arch, availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { capabilities } from '../../lib/transport/capabilities.js';
import { findPerftest } from './baselines.js';
import type { MachineJson } from './schema.js';

/** Describes this machine (call it when the run starts: it samples the load average). */
export function describeMachine(): MachineJson {
  const ucx = capabilities().engines.ucx;
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryBytes: totalmem(),
    kernel: release(),
    platform: platform(),
    arch: arch(),
    node: process.version,
    ucx: ucx.version ?? null,
    ucxPerftest: findPerftest() ?? null,
    loadAvg1: loadavg()[0] ?? 0,
  };
}

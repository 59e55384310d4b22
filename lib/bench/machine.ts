/**
 * The machine a run measured, as a results document states it: CPUs (`nproc`), CPU model, memory,
 * kernel, UCX version, and where ucx_perftest is.
 *
 * @packageDocumentation
 */
import { arch, availableParallelism, cpus, platform, release, totalmem } from 'node:os';
import { capabilities } from '../transport/capabilities.js';
import { findPerftest } from './baselines.js';
import type { MachineJson } from './schema.js';

/** Describes this machine. */
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
  };
}

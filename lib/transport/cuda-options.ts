/**
 * `AgentOptions.cuda`: checked when an agent is created, and the forced CUDA path checked against
 * a peer before connecting (the engine checks again what only it can know, such as the lanes).
 *
 * @packageDocumentation
 */
import { invalid } from './arguments.js';
import { capabilities } from './capabilities.js';
import { processIdentity } from './identity.js';
import type { AgentDescription } from './metadata.js';
import type { AgentOptions } from './types.js';

const PATHS = new Set(['auto', 'ucx', 'ipc', 'staging']);

/** Throws INVALID_ARGUMENT for a malformed `cuda` option. */
export function checkCudaOptions(c: AgentOptions['cuda']): void {
  if (c === undefined) return;
  if (c === null || typeof c !== 'object') invalid('cuda', 'an object { path, stagingChunkBytes, stagingBuffers }', c);
  if (c.path !== undefined && !PATHS.has(c.path)) invalid('cuda.path', "'auto', 'ucx', 'ipc' or 'staging'", c.path);
  const chunk = c.stagingChunkBytes;
  if (chunk !== undefined && (!Number.isSafeInteger(chunk) || chunk < 4096 || chunk > 1 << 30)) {
    invalid('cuda.stagingChunkBytes', `an integer from 4096 to ${1 << 30}`, chunk);
  }
  const n = c.stagingBuffers;
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 1 || n > 64)) {
    invalid('cuda.stagingBuffers', 'an integer from 1 to 64', n);
  }
}

/** Why a forced CUDA path cannot reach the agent `d` describes, or undefined when it may. */
export function forcedCudaPathProblem(path: string, d: AgentDescription): string | undefined {
  if (path === 'ipc' && d.hostId !== processIdentity().hostId) {
    return `cuda path 'ipc' was asked for, but '${d.name}' runs on another host; use 'staging' or 'auto'`;
  }
  if (path === 'ipc' && !capabilities().cuda.driver) {
    return `cuda path 'ipc' was asked for, but CUDA is unavailable here: ${capabilities().cuda.reason ?? 'unknown'}`;
  }
  if (path === 'ucx' && !capabilities().engines.ucx.cudaTransports) {
    return "cuda path 'ucx' was asked for, but this UCX has no CUDA transports (see `kvwire info`); use 'ipc' or 'staging'";
  }
  return undefined;
}

/**
 * `AgentOptions`, checked once when an agent is created: every option is of its documented type
 * and within its documented range, or `Agent.create` rejects with `ERR_KVWIRE_INVALID_ARGUMENT`
 * naming it. Nothing is accepted silently and then ignored or clamped (a `protocol: 'bogus'` or a
 * `tuning.batchBytes` of a terabyte used to be).
 *
 * @packageDocumentation
 */
import { booleanOption, choiceOption, integerOption, invalid, optionsObject } from './arguments.js';
import { authKeys, type AuthKey } from './auth.js';
import { checkCudaOptions } from './cuda-options.js';
import type { AgentOptions, EngineChoice } from './types.js';

/** Largest packed message over tcp (`tuning.batchBytes`): the target accepts up to 64 MiB. */
export const MAX_BATCH_BYTES = 32 << 20;

/** The documented range of each `tuning` value. */
export const TUNING_LIMITS: Readonly<Record<keyof NonNullable<AgentOptions['tuning']>, readonly [number, number]>> =
  Object.freeze({
    spinUs: [0, 1_000_000],
    rndvThreshold: [0, 1 << 30],
    windowOps: [1, 65_536],
    batchBelow: [0, MAX_BATCH_BYTES],
    batchBytes: [1, MAX_BATCH_BYTES],
    inlineBytes: [0, 1 << 30],
    completionSpinUs: [0, 10_000],
    completionSpinBytes: [0, 1 << 30],
  });

/** Longest deadline a timer can hold (ms). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Checks a deadline in milliseconds; returns it rounded up. */
export function checkTimeout(ms: unknown, what: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > MAX_TIMEOUT_MS) {
    invalid(what, `a positive number of milliseconds up to ${MAX_TIMEOUT_MS}`, ms);
  }
  return Math.ceil(ms);
}

/** AgentOptions after checking. */
export interface CheckedAgentOptions {
  readonly engine: EngineChoice;
  readonly name: string | undefined;
  readonly transports: string | undefined;
  readonly defaultTimeoutMs: number;
  readonly protocol: 'auto' | 'rma' | 'am';
  readonly keepAlive: boolean;
  readonly tuning: NonNullable<AgentOptions['tuning']>;
  readonly cuda: AgentOptions['cuda'];
  /** Derived keys, the signing key first; empty: no authentication. */
  readonly authKeys: readonly AuthKey[];
  readonly directAccess: boolean;
}

/**
 * Checks every option of `Agent.create`.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the first bad option.
 */
export function checkAgentOptions(input: AgentOptions | undefined): CheckedAgentOptions {
  const o = optionsObject(input, 'Agent.create options');
  const engine = choiceOption(o.engine, 'engine', ['auto', 'ucx', 'loopback'] as const) ?? 'auto';
  const name = o.name;
  if (name !== undefined && (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 1024)) {
    invalid('name', 'a non-empty string of at most 1024 bytes', name);
  }
  let transports: string | undefined;
  if (o.transports !== undefined) {
    const t: unknown = o.transports;
    const ok =
      typeof t === 'string'
        ? /^\^?[a-z0-9_]+(,\s*[a-z0-9_]+)*$/i.test(t)
        : Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === 'string' && /^\^?[a-z0-9_]+$/i.test(x));
    if (!ok) invalid('transports', "transport names as UCX_TLS spells them (e.g. 'tcp', 'sm,tcp' or ['sm', 'tcp'])", t);
    transports = typeof t === 'string' ? t : (t as string[]).join(',');
  }
  const defaultTimeoutMs = checkTimeout(o.defaultTimeoutMs ?? 30_000, 'defaultTimeoutMs');
  const protocol = choiceOption(o.protocol, 'protocol', ['auto', 'rma', 'am'] as const) ?? 'auto';
  const keepAlive = booleanOption(o.keepAlive, 'keepAlive') ?? false;
  const tuning = optionsObject(o.tuning, 'tuning');
  for (const key of Object.keys(tuning)) {
    const limits = TUNING_LIMITS[key as keyof typeof TUNING_LIMITS];
    if (limits === undefined) {
      invalid(`tuning.${key}`, `one of the known tuning keys (${Object.keys(TUNING_LIMITS).join(', ')})`, key);
    }
    integerOption(tuning[key as keyof typeof tuning], `tuning.${key}`, limits[0], limits[1]);
  }
  if (o.cuda !== undefined) {
    const cuda = optionsObject(o.cuda, 'cuda');
    for (const key of Object.keys(cuda)) {
      if (key !== 'path' && key !== 'stagingChunkBytes' && key !== 'stagingBuffers') {
        invalid(`cuda.${key}`, 'one of the known cuda keys (path, stagingChunkBytes, stagingBuffers)', key);
      }
    }
    checkCudaOptions(cuda);
  }
  const authKeysList = authKeys(o.auth);
  const directAccess =
    (choiceOption(o.directAccess, 'directAccess', ['same-host', 'none'] as const) ?? 'same-host') === 'same-host';
  return {
    engine,
    name,
    transports,
    defaultTimeoutMs,
    protocol,
    keepAlive,
    tuning,
    cuda: o.cuda,
    authKeys: authKeysList,
    directAccess,
  };
}

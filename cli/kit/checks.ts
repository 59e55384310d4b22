/**
 * Checks a command makes before it starts its work, each failing with a {@link UsageError} that
 * names the flag: an output file that could not be written (found before a long run, not after),
 * a transport name UCX does not know or this machine does not have (rather than UCX's "No such
 * device"), and an address to listen on that is taken.
 *
 * @packageDocumentation
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { capabilities } from '../../lib/transport/capabilities.js';
import { UsageError } from './command.js';

/**
 * Checks that `path` (the value of `flag`, e.g. `--plot`) can be written: its folder exists and is
 * writable, and it is not a folder itself. Creates nothing.
 *
 * @throws UsageError naming the flag and the path.
 */
export function checkOutputFile(flag: string, path: string): void {
  const abs = resolve(path);
  const dir = dirname(abs);
  let dirStat;
  try {
    dirStat = statSync(dir);
  } catch {
    throw new UsageError(`${flag} ${path}: the folder ${dir} does not exist; create it or write elsewhere`);
  }
  if (!dirStat.isDirectory()) throw new UsageError(`${flag} ${path}: ${dir} is not a folder`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UsageError(`${flag} ${path}: the folder ${dir} is not writable; write elsewhere`);
  }
  try {
    const st = statSync(abs);
    if (st.isDirectory()) throw new UsageError(`${flag} ${path}: that is a folder; give a file name`);
    accessSync(abs, constants.W_OK);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UsageError(`${flag} ${path}: the file exists and is not writable; write elsewhere`);
    }
  }
}

/** UCX_TLS aliases (groups of transports), by the category of transport they select. */
const UCX_ALIASES: Readonly<Record<string, string>> = {
  all: 'any',
  sm: 'sm',
  shm: 'sm',
  mm: 'sm',
  rdma: 'rdma', // kvwire's name for UCX's 'ib'
  ib: 'rdma',
  rc: 'rdma',
  rc_v: 'rdma',
  rc_x: 'rdma',
  ud: 'rdma',
  ud_v: 'rdma',
  ud_x: 'rdma',
  dc: 'rdma',
  dc_x: 'rdma',
  cuda: 'cuda',
  rocm: 'rocm',
};

/** Transport names UCX 1.x knows (so that a name this machine lacks is told apart from a typo). */
const UCX_TRANSPORTS = new Set([
  'tcp',
  'self',
  'posix',
  'sysv',
  'cma',
  'knem',
  'xpmem',
  'rc_verbs',
  'rc_mlx5',
  'ud_verbs',
  'ud_mlx5',
  'dc_mlx5',
  'cuda_copy',
  'cuda_ipc',
  'gdr_copy',
  'rocm_copy',
  'rocm_ipc',
  'rocm_gdr',
  'ugni_rdma',
  'ugni_udt',
  'ugni_smsg',
]);

/**
 * Checks transport names given to `flag` (kvwire's `tcp`, `sm`, `rdma`, or UCX_TLS names, `^name`
 * to exclude) against what UCX knows and what this machine has.
 *
 * @throws UsageError for a name UCX does not know, or one this machine cannot use.
 */
export function checkTransports(flag: string, names: readonly string[]): void {
  const ucx = capabilities().engines.ucx;
  if (!ucx.available) return; // the command reports the missing engine itself, with its reason
  const here = new Set(ucx.transports.map((t) => t.name));
  const categories = new Set<string>(ucx.categories);
  const have = `UCX here reaches peers over ${ucx.categories.join(', ') || 'nothing'} (transports ${[...here].join(', ')}; see 'kvwire info')`;
  for (const raw of names.flatMap((n) => n.split(','))) {
    const name = raw.trim().replace(/^\^/, '');
    if (name === '') continue;
    const alias = UCX_ALIASES[name];
    if (alias !== undefined) {
      if (alias !== 'any' && !categories.has(alias)) {
        throw new UsageError(`${flag}: transport '${name}' is not available on this machine: ${have}`);
      }
    } else if (!here.has(name)) {
      if (UCX_TRANSPORTS.has(name)) {
        throw new UsageError(`${flag}: transport '${name}' is not available on this machine: ${have}`);
      }
      throw new UsageError(
        `${flag}: unknown transport '${name}': give tcp, sm or rdma, or UCX_TLS names such as posix, cma, rc_verbs; ${have}`,
      );
    }
  }
}

/** Node's error code, also when a library wrapped the listen error (`cause`). */
function errnoOf(e: unknown): string | undefined {
  for (let x = e, depth = 0; x !== null && typeof x === 'object' && depth < 5; depth++) {
    const code = (x as { code?: unknown }).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') return code;
    x = (x as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Rewords a failure to listen on `address` (the value of `flag`) as a {@link UsageError} naming
 * the flag, or returns `e` unchanged when it is another failure. Use it as
 * `catch (e) { throw listenError(e, '--listen', opts.listen) }`.
 */
export function listenError(e: unknown, flag: string, address: string): unknown {
  switch (errnoOf(e)) {
    case 'EADDRINUSE':
      return new UsageError(
        `${flag} ${address}: the port is in use by another process; choose another with ${flag} (port 0 lets the system pick)`,
      );
    case 'EACCES':
      return new UsageError(`${flag} ${address}: not allowed to listen there (ports below 1024 need privileges)`);
    case 'EADDRNOTAVAIL':
      return new UsageError(`${flag} ${address}: no interface of this machine has that address`);
    default:
      return e;
  }
}

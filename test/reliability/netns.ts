// Two network namespaces joined by a veth pair, made and removed by the partition test. Addresses
// exist only inside them (10.213.0.1/30 and 10.213.0.2/30); no traffic leaves them. Names carry
// this process's id, so runs of the suite beside each other never share a namespace.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One side of the pair. */
export interface NetnsSide {
  /** Namespace name (for `ip netns exec` / `ip -n`). */
  ns: string;
  /** The veth end inside it. */
  dev: string;
  /** Its address (no prefix). */
  addr: string;
}

/** The pair. */
export interface NetnsPair {
  a: NetnsSide;
  b: NetnsSide;
}

/** Runs `ip` (or `tc` inside a namespace) and returns stdout; throws with stderr on failure. */
export async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args, { encoding: 'utf8' })).stdout;
}

/**
 * Why namespaces cannot be made here (not root, no iproute2, no veth), or undefined when they can.
 * Tries for real: adds and removes a probe namespace.
 */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'network namespaces need root (the suite runs as root in CI)';
  const probe = `kvwp${process.pid}`;
  try {
    await ip('netns', 'add', probe);
  } catch (e) {
    return `cannot make a network namespace (iproute2 missing, or no CAP_SYS_ADMIN): ${(e as Error).message.split('\n')[0]}`;
  }
  await ip('netns', 'del', probe).catch(() => {});
  return undefined;
}

/** Makes the two namespaces and the veth pair between them, links up, addresses set. */
export async function makePair(): Promise<NetnsPair> {
  const id = process.pid % 100_000;
  const pair: NetnsPair = {
    a: { ns: `kvwire-rel-${id}-a`, dev: `kvra${id}`, addr: '10.213.0.1' },
    b: { ns: `kvwire-rel-${id}-b`, dev: `kvrb${id}`, addr: '10.213.0.2' },
  };
  await removePair(pair); // left over by a run that was killed
  await ip('netns', 'add', pair.a.ns);
  await ip('netns', 'add', pair.b.ns);
  await ip(
    'link',
    'add',
    pair.a.dev,
    'netns',
    pair.a.ns,
    'type',
    'veth',
    'peer',
    'name',
    pair.b.dev,
    'netns',
    pair.b.ns,
  );
  for (const s of [pair.a, pair.b]) {
    await ip('-n', s.ns, 'addr', 'add', `${s.addr}/30`, 'dev', s.dev);
    await ip('-n', s.ns, 'link', 'set', s.dev, 'up');
  }
  await carrier(pair);
  return pair;
}

/**
 * Waits until both ends have carrier: UCX lists only running interfaces, so an agent started a
 * moment too early finds no tcp device at all.
 */
export async function carrier(pair: NetnsPair, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const s of [pair.a, pair.b]) {
    while (!(await ip('-n', s.ns, 'link', 'show', 'dev', s.dev)).includes('LOWER_UP')) {
      if (Date.now() > deadline) throw new Error(`${s.dev} in ${s.ns} has no carrier after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Removes both namespaces (and so the veth pair); never throws. */
export async function removePair(pair: NetnsPair): Promise<void> {
  for (const s of [pair.a, pair.b]) await ip('netns', 'del', s.ns).catch(() => {});
}

/**
 * For the test files that SIGKILL a tcp peer while this process has sends in flight to it. UCX
 * 1.13's tcp transport can complete a zero-copy send twice when the peer dies mid-send
 * (`Assertion 'comp->count > 0' failed`, an abort of the whole process; docs/transport.md, "UCX
 * 1.13's tcp abort on peer death"). These files test kvwire's handling of the death, so their tcp
 * cases run with the documented mitigation (UCX's zero-copy off): set before the case's agents and
 * processes are created (UCX reads the environment when a context is created; children inherit
 * it), restored after. Only for tcp: over shared memory it would push AM data through UCX's
 * shared-memory FIFO, where a killed sender can leave a slot that blocks the receiver (defect 8).
 */
import { afterAll, beforeAll } from 'vitest';

const SETTINGS = { UCX_ZCOPY_THRESH: 'inf', UCX_TCP_PUT_ENABLE: 'n' } as const;

/** Call in a describe block: with `transport` 'tcp', its agents and children run with zero-copy off. */
export function tcpZeroCopyOff(transport: string): void {
  if (transport !== 'tcp') return;
  const saved = new Map<string, string | undefined>();
  beforeAll(() => {
    for (const [k, v] of Object.entries(SETTINGS)) {
      saved.set(k, process.env[k]);
      // An explicit setting in the environment wins.
      process.env[k] ??= v;
    }
  });
  afterAll(() => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

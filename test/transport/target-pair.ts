// One agent in this process and one target child process (fixtures/transport-target.ts) per test
// case, both ended after the case: for describe blocks that start a fresh pair in each case.
import { afterEach, expect } from 'vitest';
import { Agent } from '../../lib/index.js';
import type { AgentOptions, Peer, Region } from '../../lib/index.js';
import { Child } from './child.js';

/** A region the target creates: filled with `fillPattern(seed)`. */
export interface TargetRegion {
  label: string;
  size: number;
  access: 'read' | 'write' | 'readwrite';
  seed: number;
  allocate?: boolean;
}

/** A connected pair: this process's agent, the target child, and a registered local buffer. */
export interface TargetPair {
  agent: Agent;
  child: Child;
  peer: Peer;
  local: Region;
  mem: Buffer;
}

/**
 * Registers an afterEach that closes the case's agent and kills its target; returns `start`, which
 * makes the case's pair (agent options `opts`, a local buffer of `localBytes`, by default as large
 * as the largest region, filled with 0xee and registered with access none). A case that starts a
 * second pair ends its first.
 */
export function targetPairs(): (
  transports: string,
  regions: TargetRegion[],
  opts?: Omit<AgentOptions, 'transports'>,
  localBytes?: number,
) => Promise<TargetPair> {
  let pair: Partial<TargetPair> = {};
  const end = async (): Promise<void> => {
    await pair.agent?.close();
    if (pair.child !== undefined) {
      pair.child.proc.kill('SIGKILL');
      await pair.child.exited;
    }
    pair = {};
  };
  afterEach(end);
  return async (transports, regions, opts = {}, localBytes = Math.max(...regions.map((r) => r.size))) => {
    await end();
    const child = new Child('transport-target.js');
    pair.child = child;
    const m = await child.request(
      { cmd: 'init', engineOpts: { name: 'pair-target', transports }, regions },
      'metadata',
    );
    const agent = await Agent.create({ name: 'pair-initiator', ...opts, transports });
    pair.agent = agent;
    const peer = await agent.connect(Uint8Array.from(m.metadata as number[]));
    expect(peer.transport).toBe(transports);
    const mem = Buffer.alloc(localBytes, 0xee);
    const local = agent.register(mem, { label: 'dst' });
    return Object.assign(pair, { peer, local, mem }) as TargetPair;
  };
}
